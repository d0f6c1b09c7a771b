//! A validating JSON scanner that finds one field without building
//! anything: it walks the document once, checks every byte against the
//! JSON grammar (RFC 8259) and remembers where the wanted value starts and
//! ends.
//!
//! Strings are skipped eight bytes per step (one `u64` word tested for a
//! quote, a backslash, a control character or a non-ASCII byte at once),
//! and numbers are checked but never converted. The word is a `u64` on
//! every target, so a wasm32 guest takes the same steps as a 64-bit host.

use std::cmp::Ordering;

/// Nesting this deep is refused, as `serde_json` refuses it when it builds
/// values.
const DEPTH_MAX: usize = 128;

/// The document is not JSON (the scanner does not say why: callers only
/// need to know the field cannot be trusted).
pub(super) struct Invalid;

/// One step of a path: an object key, or an array index when it is a
/// number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub(super) key: String,
    pub(super) index: Option<usize>,
}

/// Finds the raw text of the value at `path` in `json`; `Ok(None)` when the
/// document is valid but has no such value. Strings are checked to be
/// UTF-8 and everything else in a valid document is ASCII, so the bytes
/// are always UTF-8.
pub(super) fn find<'a>(json: &'a [u8], path: &[Step]) -> Result<Option<&'a [u8]>, Invalid> {
    let (found, end) = seek(json, ws(json, 0), path, 0)?;
    if ws(json, end) != json.len() {
        return Err(Invalid);
    }
    Ok(found.map(|(start, end)| &json[start..end]))
}

// The scanning functions take a position and return the position after
// what they scanned, or `BAD` when the document is not JSON. Both are one
// integer: in a wasm32 guest anything bigger (a `Result<usize, _>`, a
// tuple) is returned through linear memory, which would cost a store and a
// load on every call. For the same reason the small steps are inlined and
// the rare ones (escapes, non-ASCII) kept out of line: a call in a guest
// costs a stack check and an epoch check, and a callee that needs stack
// space moves the guest's stack pointer, a global in linear memory.

/// Not a position: the document is not JSON. (A slice is never longer
/// than `isize::MAX`, so no position can be `usize::MAX`.)
const BAD: usize = usize::MAX;

/// Where a value starts and ends in the document.
type Span = (usize, usize);

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that may end a run of plain string
/// bytes: a quote, a backslash, a control character (< 0x20) or a non-ASCII byte. The
/// lowest set bit is always exact (the usual borrow trick can only add
/// false hits above a true one).
#[inline(always)]
fn specials(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero_quote = quote.wrapping_sub(ONES) & !quote;
    let zero_backslash = backslash.wrapping_sub(ONES) & !backslash;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    (zero_quote | zero_backslash | control | w) & HIGHS
}

/// The position of the first byte at or after `i` that is not whitespace.
#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// Scans the value at `i` (no leading whitespace), looking into it along
/// `path`: the span of the value the path ends at, and where the scanned
/// value ends. Called once per step of the path, so it may return a pair.
fn seek(b: &[u8], i: usize, path: &[Step], depth: usize) -> Result<(Option<Span>, usize), Invalid> {
    let Some((step, rest)) = path.split_first() else {
        let end = ok(value(b, i, depth))?;
        return Ok((Some((i, end)), end));
    };
    match b.get(i) {
        Some(b'{') => seek_in_object(b, i + 1, step, rest, depth + 1),
        Some(b'[') => seek_in_array(b, i + 1, step, rest, depth + 1),
        // A scalar has no fields: the path does not exist.
        _ => Ok((None, ok(value(b, i, depth))?)),
    }
}

#[inline(always)]
fn ok(position: usize) -> Result<usize, Invalid> {
    if position == BAD {
        Err(Invalid)
    } else {
        Ok(position)
    }
}

// The four container loops below (`seek_in_object`, `seek_in_array`,
// `object`, `array`) spell out their opening and separator steps. Folding
// those into shared inline helpers returning an enum measured 3–8% slower
// in the guest (interleaved filter benchmark, fastest rounds 59–63 µs
// against 57–58 µs), so they stay apart.

/// [`seek`] inside an object whose `{` ends before `i`.
fn seek_in_object(
    b: &[u8],
    i: usize,
    step: &Step,
    rest: &[Step],
    depth: usize,
) -> Result<(Option<Span>, usize), Invalid> {
    if depth >= DEPTH_MAX {
        return Err(Invalid);
    }
    let mut i = ws(b, i);
    if b.get(i) == Some(&b'}') {
        return Ok((None, i + 1));
    }
    let mut found = None;
    loop {
        let key_end = ok(key(b, i))?;
        let at = ok(colon(b, key_end))?;
        // The first occurrence of a key that leads somewhere wins.
        if found.is_none() && key_is(&b[i + 1..key_end - 1], &step.key) {
            (found, i) = seek(b, at, rest, depth)?;
        } else {
            i = ok(value(b, at, depth))?;
        }
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return Ok((found, i + 1)),
            _ => return Err(Invalid),
        }
    }
}

/// [`seek`] inside an array whose `[` ends before `i`.
fn seek_in_array(
    b: &[u8],
    i: usize,
    step: &Step,
    rest: &[Step],
    depth: usize,
) -> Result<(Option<Span>, usize), Invalid> {
    if depth >= DEPTH_MAX {
        return Err(Invalid);
    }
    let mut i = ws(b, i);
    if b.get(i) == Some(&b']') {
        return Ok((None, i + 1));
    }
    let mut found = None;
    let mut index = 0;
    loop {
        if step.index == Some(index) {
            (found, i) = seek(b, i, rest, depth)?;
        } else {
            i = ok(value(b, i, depth))?;
        }
        index += 1;
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return Ok((found, i + 1)),
            _ => return Err(Invalid),
        }
    }
}

/// Skips the object key at `i`, a string.
#[inline(always)]
fn key(b: &[u8], i: usize) -> usize {
    if b.get(i) == Some(&b'"') {
        string(b, i)
    } else {
        BAD
    }
}

/// Skips the colon after a key that ends at `i`, and the whitespace around
/// it: where the key's value starts.
#[inline(always)]
fn colon(b: &[u8], i: usize) -> usize {
    let i = ws(b, i);
    if b.get(i) == Some(&b':') {
        ws(b, i + 1)
    } else {
        BAD
    }
}

/// Skips the value at `i` (no leading whitespace). Scalars are skipped in
/// line; only objects and arrays cost a call.
fn value(b: &[u8], i: usize, depth: usize) -> usize {
    match b.get(i) {
        Some(b'"') => string(b, i),
        Some(b'-' | b'0'..=b'9') => number(b, i),
        Some(b'{') => object(b, i + 1, depth + 1),
        Some(b'[') => array(b, i + 1, depth + 1),
        Some(b't') => literal(b, i, b"true"),
        Some(b'f') => literal(b, i, b"false"),
        Some(b'n') => literal(b, i, b"null"),
        _ => BAD,
    }
}

/// Skips an object whose `{` ends before `i`.
#[inline(never)]
fn object(b: &[u8], i: usize, depth: usize) -> usize {
    if depth >= DEPTH_MAX {
        return BAD;
    }
    let mut i = ws(b, i);
    if b.get(i) == Some(&b'}') {
        return i + 1;
    }
    loop {
        i = key(b, i);
        if i == BAD {
            return BAD;
        }
        i = colon(b, i);
        if i == BAD {
            return BAD;
        }
        i = value(b, i, depth);
        if i == BAD {
            return BAD;
        }
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return i + 1,
            _ => return BAD,
        }
    }
}

/// Skips an array whose `[` ends before `i`.
#[inline(never)]
fn array(b: &[u8], i: usize, depth: usize) -> usize {
    if depth >= DEPTH_MAX {
        return BAD;
    }
    let mut i = ws(b, i);
    if b.get(i) == Some(&b']') {
        return i + 1;
    }
    loop {
        i = value(b, i, depth);
        if i == BAD {
            return BAD;
        }
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return i + 1,
            _ => return BAD,
        }
    }
}

#[inline(always)]
fn literal(b: &[u8], i: usize, word: &[u8]) -> usize {
    match b.get(i..i + word.len()) {
        Some(bytes) if bytes == word => i + word.len(),
        _ => BAD,
    }
}

/// Skips the string whose opening quote is at `i`, through its closing
/// quote.
#[inline(always)]
fn string(b: &[u8], i: usize) -> usize {
    let mut i = i + 1;
    // One loop, not a word loop inside a byte loop: in a guest every loop
    // entered costs an epoch check.
    loop {
        if let Some(word) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
            let hits = specials(u64::from_le_bytes(*word));
            if hits == 0 {
                i += 8;
                continue;
            }
            i += (hits.trailing_zeros() / 8) as usize;
        }
        match b.get(i) {
            Some(b'"') => return i + 1,
            Some(b'\\') => i = escape(b, i),
            Some(0..0x20) | None => return BAD,
            Some(0x80..) => i = utf8(b, i),
            Some(_) => i += 1,
        }
        if i == BAD {
            return BAD;
        }
    }
}

/// Checks the escape whose backslash is at `i` and skips it.
#[cold]
#[inline(never)]
fn escape(b: &[u8], i: usize) -> usize {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i + 2,
        Some(b'u') => match b.get(i + 2..i + 6) {
            // Any code unit is accepted, lone surrogates included, as the
            // grammar allows; `raw_text` copes with them.
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => i + 6,
            _ => BAD,
        },
        _ => BAD,
    }
}

/// Checks the UTF-8 sequence starting at `i` and skips it.
#[cold]
#[inline(never)]
fn utf8(b: &[u8], i: usize) -> usize {
    let len = match b.get(i) {
        Some(0xC2..=0xDF) => 2,
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF4) => 4,
        _ => return BAD,
    };
    match b.get(i..i + len) {
        Some(bytes) if std::str::from_utf8(bytes).is_ok() => i + len,
        _ => BAD,
    }
}

/// Checks the number at `i` against the JSON grammar and skips it:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number(b: &[u8], i: usize) -> usize {
    let mut i = i;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(b, i + 1),
        _ => return BAD,
    };
    if b.get(i) == Some(&b'.') {
        i = some_digits(b, i + 1);
        if i == BAD {
            return BAD;
        }
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = some_digits(b, i);
    }
    i
}

/// Skips digits, eight per step while a whole word remains.
#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while let Some(word) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let others = non_digits(u64::from_le_bytes(*word));
        if others != 0 {
            return i + (others.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

/// The high bit of each byte of `w` that is not an ASCII digit; as in
/// [`specials`], the lowest set bit is exact.
#[inline(always)]
fn non_digits(w: u64) -> u64 {
    // A digit is 0x30..=0x39: its high nibble is 3, and adding 6 to its low
    // nibble does not carry into the high one.
    let high_nibble_not_3 = (w & (ONES * 0xF0)) ^ (ONES * 0x30);
    let carries = (w & (ONES * 0x0F)).wrapping_add(ONES * 0x06) & (ONES * 0xF0);
    let bad = high_nibble_not_3 | carries;
    // Any set bit in a byte's high nibble marks it; gather them on bit 7.
    (bad | (bad << 1) | (bad << 2) | (bad << 3)) & HIGHS
}

/// Skips one or more digits.
#[inline(always)]
fn some_digits(b: &[u8], i: usize) -> usize {
    let end = digits(b, i);
    if end == i { BAD } else { end }
}

/// Whether the key between a string's quotes is `wanted`. An escape is
/// longer than the text it stands for, so a key of `wanted`'s length
/// matches only without escapes, and a shorter one never does.
fn key_is(raw: &[u8], wanted: &str) -> bool {
    match raw.len().cmp(&wanted.len()) {
        Ordering::Less => false,
        Ordering::Equal => same(raw, wanted.as_bytes()) && !has_backslash(raw),
        Ordering::Greater => has_backslash(raw) && unescaped_is(raw, wanted),
    }
}

/// `a == b` for the short keys and values of records, done in line: in a
/// guest, `==` on slices is a call to a `memcmp` that goes byte by byte.
#[inline(always)]
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a, b);
    while let (Some((wa, ra)), Some((wb, rb))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*wa) != u64::from_ne_bytes(*wb) {
            return false;
        }
        (a, b) = (ra, rb);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Whether a short slice has a backslash, done in line (see [`same`]);
/// `contains` would call `memchr`, which costs more than it saves here.
#[inline(always)]
#[allow(clippy::manual_contains)]
pub(super) fn has_backslash(raw: &[u8]) -> bool {
    raw.iter().any(|&c| c == b'\\')
}

/// Rare: a key with escapes is compared once unescaped. A key that does
/// not unescape (a lone surrogate) cannot equal a Rust string.
#[cold]
#[inline(never)]
fn unescaped_is(raw: &[u8], wanted: &str) -> bool {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|key| key == wanted)
}
