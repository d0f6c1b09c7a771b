//! Zig-zag variable-length integers, as in protobuf's `sint32`/`sint64` and
//! Kafka's record format.

/// Longest encoding of a zig-zag `i64`.
pub const VARLONG_LEN_MAX: usize = 10;

/// Appends `value` zig-zag encoded.
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `value` zig-zag encoded.
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_varlong(out, i64::from(value));
}

/// Bytes `put_varlong(value)` would write.
pub fn varlong_len(value: i64) -> usize {
    let v = ((value << 1) ^ (value >> 63)) as u64;
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Decodes a zig-zag varlong from the front of `buf`, returning the value and
/// how many bytes it took; `None` when `buf` ends first or the encoding is
/// longer than ten bytes.
pub fn get_varlong(buf: &[u8]) -> Option<(i64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().take(VARLONG_LEN_MAX).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let value = ((v >> 1) as i64) ^ -((v & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// Like [`get_varlong`], refusing values outside `i32`.
pub fn get_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let (v, n) = get_varlong(buf)?;
    Some((i32::try_from(v).ok()?, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings_match_kafka() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out, bytes, "encoding {value}");
            assert_eq!(varlong_len(value), bytes.len());
            assert_eq!(get_varlong(bytes), Some((value, bytes.len())));
        }
    }

    #[test]
    fn truncated_and_overlong_inputs_are_refused() {
        assert_eq!(get_varlong(&[]), None);
        assert_eq!(get_varlong(&[0x80, 0x80]), None);
        assert_eq!(get_varlong(&[0xff; 11]), None);
        assert_eq!(get_varint(&[0xfe, 0xff, 0xff, 0xff, 0x1f]), None);
    }
}
