//! Typed access to the YAML tree that reports every mismatch with its path and position.
//!
//! Each reader returns `None` after reporting why, so that callers can go on with the
//! other fields of a mapping and leave out only what depends on the failed one: one
//! mistake gives one error, and unrelated mistakes are all reported.

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;

use super::error::ManifestError;
use super::tree::{Content, Mark, Node};

/// After this many errors a file is not worth reading further.
const MAX_ERRORS: usize = 100;

/// Longest stretch of a found value quoted back in a message.
const MAX_QUOTED_CHARS: usize = 60;

/// A field path in YAML names, such as `spec.outputs[1].topic`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Path(String);

impl Path {
    /// The path of a field of this mapping. A name that a dot would make ambiguous
    /// (a param called `a.b` or `min lat`) is written as `params["a.b"]`, and a long
    /// one is cut short, so that an error stays one readable line.
    pub fn field(&self, name: &str) -> Path {
        let simple = (1..=MAX_QUOTED_CHARS).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match (self.0.is_empty(), simple) {
            (true, true) => Path(name.to_owned()),
            (false, true) => Path(format!("{}.{name}", self.0)),
            (_, false) => Path(format!("{}[{:?}]", self.0, shorten(name))),
        }
    }

    /// The path of an item of this list.
    pub fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects a file's errors, stamping each with the document being read.
#[derive(Debug, Default)]
pub(super) struct Sink {
    document: usize,
    errors: Vec<ManifestError>,
    /// Where the first error past [`MAX_ERRORS`] was, if there was one.
    overflow: Option<(usize, Mark)>,
}

impl Sink {
    /// Stamps the errors reported from now on with this document number.
    pub fn start_document(&mut self, document: usize) {
        self.document = document;
    }

    /// Records an error, unless so many were recorded that one more would not help.
    pub fn report(&mut self, path: &Path, mark: Mark, message: impl Into<String>) {
        if self.errors.len() >= MAX_ERRORS {
            self.overflow.get_or_insert((self.document, mark));
            return;
        }
        self.errors.push(ManifestError {
            document: self.document,
            path: path.0.clone(),
            line: mark.line,
            column: mark.column,
            message: message.into(),
        });
    }

    /// Whether errors had to be dropped, so reading further is pointless.
    pub fn is_full(&self) -> bool {
        self.overflow.is_some()
    }

    /// The errors in file order (decoding goes field by field, not line by line),
    /// then a note if some were dropped.
    pub fn into_errors(mut self) -> Vec<ManifestError> {
        self.errors.sort_by_key(|e| (e.document, e.line, e.column));
        if let Some((document, mark)) = self.overflow {
            self.errors.push(ManifestError {
                document,
                path: String::new(),
                line: mark.line,
                column: mark.column,
                message: format!("too many errors; reporting stopped here, after {MAX_ERRORS}"),
            });
        }
        self.errors
    }
}

/// What a node holds, after refusing tags: the manifest format has no use for them,
/// and honouring some (`!!str`) but not others would be a trap.
fn content<'n, 'a>(node: &'n Node<'a>, path: &Path, sink: &mut Sink) -> Option<&'n Content<'a>> {
    match node.tag() {
        Some(tag) => {
            let message = format!("YAML tags are not supported; remove {tag}");
            sink.report(path, node.mark, message);
            None
        }
        None => Some(node.content()),
    }
}

/// Reports `expected EXPECTED, found WHAT-NODE-IS`.
pub(super) fn mismatch(node: &Node<'_>, path: &Path, expected: &str, sink: &mut Sink) {
    let message = format!("expected {expected}, found {}", describe(node));
    sink.report(path, node.mark, message);
}

/// A scalar's text as written, for fields that hold names or words. Any non-null
/// scalar is taken, so a topic named `2024` need not be quoted.
pub(super) fn text<'n>(
    node: &'n Node<'_>,
    path: &Path,
    expected: &str,
    sink: &mut Sink,
) -> Option<&'n str> {
    match content(node, path, sink)? {
        Content::Scalar(scalar) if !scalar.is_null() => Some(&scalar.text),
        _ => {
            mismatch(node, path, expected, sink);
            None
        }
    }
}

/// An unquoted integer within `range`.
pub(super) fn integer(
    node: &Node<'_>,
    path: &Path,
    range: RangeInclusive<u64>,
    sink: &mut Sink,
) -> Option<u64> {
    let expected = format!("an integer from {} to {}", range.start(), range.end());
    let Content::Scalar(scalar) = content(node, path, sink)? else {
        mismatch(node, path, &expected, sink);
        return None;
    };
    let value = yaml_integer(&scalar.text).and_then(|n| u64::try_from(n).ok());
    match value {
        Some(n) if !scalar.quoted && range.contains(&n) => Some(n),
        Some(_) if scalar.quoted => {
            let message = format!(
                "expected {expected}, found {}, which is quoted and so a string; \
                 remove the quotes",
                describe(node)
            );
            sink.report(path, node.mark, message);
            None
        }
        _ => {
            mismatch(node, path, &expected, sink);
            None
        }
    }
}

/// [`integer`] for the many fields that fit in a `u32`.
pub(super) fn small_integer(
    node: &Node<'_>,
    path: &Path,
    range: RangeInclusive<u32>,
    sink: &mut Sink,
) -> Option<u32> {
    let wide = u64::from(*range.start())..=u64::from(*range.end());
    integer(node, path, wide, sink).and_then(|n| u32::try_from(n).ok())
}

/// An integer in YAML 1.2 core-schema form: decimal with an optional sign, `0o` octal
/// or `0x` hexadecimal.
fn yaml_integer(text: &str) -> Option<i128> {
    let (digits, radix) = if let Some(octal) = text.strip_prefix("0o") {
        (octal, 8)
    } else if let Some(hex) = text.strip_prefix("0x") {
        (hex, 16)
    } else {
        (text, 10)
    };
    // from_str_radix would also take a sign after the prefix, which YAML does not.
    let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if unsigned.is_empty() || (radix != 10 && unsigned.len() != digits.len()) {
        return None;
    }
    if !unsigned.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    i128::from_str_radix(digits, radix).ok()
}

/// The items of a list.
pub(super) fn list<'n, 'a>(
    node: &'n Node<'a>,
    path: &Path,
    expected: &str,
    sink: &mut Sink,
) -> Option<&'n [Node<'a>]> {
    if let Content::List(items) = content(node, path, sink)? {
        Some(items)
    } else {
        mismatch(node, path, expected, sink);
        None
    }
}

/// One entry of a mapping: its key as written, where the key is, and its value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry<'n, 'a> {
    pub key: &'n str,
    pub key_mark: Mark,
    pub value: &'n Node<'a>,
}

/// The entries of a mapping whose keys are all scalars, each given once; `noun` says
/// what a key is ("field", "param") in messages.
///
/// A bad key or a repeated one is reported and left out; the other entries are still
/// returned, so their own mistakes get reported too.
pub(super) fn entries<'n, 'a>(
    node: &'n Node<'a>,
    path: &Path,
    noun: &str,
    sink: &mut Sink,
) -> Option<Vec<Entry<'n, 'a>>> {
    let Content::Map(pairs) = content(node, path, sink)? else {
        mismatch(node, path, "a mapping", sink);
        return None;
    };
    let mut entries: Vec<Entry<'n, 'a>> = Vec::with_capacity(pairs.len());
    // A map, not a scan of `entries`: a hostile mapping may have 100 000 keys.
    let mut first_seen: HashMap<&str, Mark> = HashMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        let Some(name) = text(key, path, &format!("a {noun} name"), sink) else {
            continue;
        };
        if let Some(first) = first_seen.get(name) {
            let message = format!(
                "duplicate {noun} {}; it is already given at line {}, column {}",
                quote(name),
                first.line,
                first.column
            );
            sink.report(path, key.mark, message);
            continue;
        }
        first_seen.insert(name, key.mark);
        entries.push(Entry {
            key: name,
            key_mark: key.mark,
            value,
        });
    }
    Some(entries)
}

/// A mapping with a fixed set of fields: the manifest's equivalent of serde's
/// `deny_unknown_fields`.
#[derive(Debug)]
pub(super) struct Fields<'n, 'a> {
    path: Path,
    mark: Mark,
    allowed: &'static [&'static str],
    entries: Vec<Entry<'n, 'a>>,
}

impl<'n, 'a> Fields<'n, 'a> {
    /// Reads `node` as a mapping that may have the `allowed` fields.
    pub fn new(
        node: &'n Node<'a>,
        path: &Path,
        allowed: &'static [&'static str],
        sink: &mut Sink,
    ) -> Option<Self> {
        let entries = entries(node, path, "field", sink)?;
        Some(Self {
            path: path.clone(),
            mark: node.mark,
            allowed,
            entries,
        })
    }

    /// The mapping's own path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the mapping starts.
    pub fn mark(&self) -> Mark {
        self.mark
    }

    /// The path of one of its fields.
    pub fn path_of(&self, name: &str) -> Path {
        self.path.field(name)
    }

    /// A field's value, if given.
    pub fn get(&self, name: &str) -> Option<&'n Node<'a>> {
        debug_assert!(
            self.allowed.contains(&name),
            "{name} is not an allowed field"
        );
        self.entries.iter().find(|e| e.key == name).map(|e| e.value)
    }

    /// Reports each field that is not allowed, and in one error at the mapping, the
    /// `required` fields that are missing. Returns whether all was well.
    pub fn check(&self, required: &[&str], sink: &mut Sink) -> bool {
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|name| self.get(name).is_none())
            .collect();
        let mut clean = missing.is_empty();
        if !clean {
            let message = match missing.as_slice() {
                [one] => format!("missing required field {one}"),
                several => format!("missing required fields {}", all_of(several)),
            };
            sink.report(&self.path, self.mark, message);
        }
        for entry in &self.entries {
            if !self.allowed.contains(&entry.key) {
                let message = format!(
                    "unknown field {}; expected {}",
                    quote(entry.key),
                    one_of(self.allowed)
                );
                sink.report(&self.path, entry.key_mark, message);
                clean = false;
            }
        }
        clean
    }
}

/// `a`, `a and b`, `a, b and c`: everything that is missing.
fn all_of(words: &[&str]) -> String {
    join_words(words, "and")
}

/// `a`, `a or b`, `a, b or c`: the alternatives in a message.
pub(super) fn one_of(words: &[&str]) -> String {
    join_words(words, "or")
}

fn join_words(words: &[&str], conjunction: &str) -> String {
    match words {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

/// What a node is, for the "found …" half of a message.
pub(super) fn describe(node: &Node<'_>) -> String {
    match node.content() {
        Content::Map(pairs) if pairs.is_empty() => "an empty mapping".to_owned(),
        Content::Map(_) => "a mapping".to_owned(),
        Content::List(items) if items.is_empty() => "an empty list".to_owned(),
        Content::List(_) => "a list".to_owned(),
        Content::Scalar(s) if !s.quoted && s.text.is_empty() => "nothing".to_owned(),
        Content::Scalar(s) if s.is_null() && &*s.text == "~" => "null (~)".to_owned(),
        Content::Scalar(s) if s.is_null() => "null".to_owned(),
        Content::Scalar(s) if s.quoted => format!("{:?}", shorten(&s.text)),
        Content::Scalar(s) => quote(&s.text),
        // content() looks through every alias.
        Content::Shared(_) => "an alias".to_owned(),
    }
}

/// Text from the file, made safe to quote in a one-line message: as written when it is
/// plain and short, escaped and in quotes when it holds spaces or control characters.
pub(super) fn quote(text: &str) -> String {
    let short = shorten(text);
    let plain = !short.is_empty() && short.chars().all(|c| c.is_ascii_graphic() || c == '…');
    if plain {
        short.into_owned()
    } else {
        format!("{short:?}")
    }
}

fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()).into(),
        None => text.into(),
    }
}
