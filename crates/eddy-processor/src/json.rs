//! Helpers for processors whose record values are JSON documents.
//!
//! [`parse`] builds a whole [`Value`]; [`lookup`] finds one field without
//! building anything, for processors that only look at a field or two.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// Parses a record value as JSON, with an error message fit for a
/// [`crate::RecordError`].
pub fn parse(bytes: Option<&[u8]>) -> Result<Value, String> {
    let bytes = bytes.ok_or("the record has no value (a tombstone), expected a JSON document")?;
    serde_json::from_slice(bytes).map_err(|e| format!("the record value is not valid JSON: {e}"))
}

/// The value at a dotted `path` in `value` (`"position.lat"`), looking into
/// objects by key and arrays by index (`"stops.0"`). An empty path is the
/// whole value.
pub fn field<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A scalar JSON value as text, for comparing with a parameter: strings
/// without quotes, numbers and booleans as written, `null` as `"null"`.
/// Objects and arrays are rendered as compact JSON.
pub fn text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed("null"),
        other => Cow::Owned(other.to_string()),
    }
}

/// The raw JSON text at a dotted `path` of the document `json`, found
/// without building the document: other fields are skipped, not parsed
/// into values. `None` when the document is not JSON or has no such
/// field. Paths work as in [`field`].
pub fn lookup<'a>(json: &'a [u8], path: &str) -> Option<&'a RawValue> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let found = Seek { path }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// The text of a raw JSON value as [`text`] renders it: strings unquoted
/// and unescaped, anything else as written.
pub fn raw_text(raw: &RawValue) -> Cow<'_, str> {
    let s = raw.get();
    if !s.starts_with('"') {
        return Cow::Borrowed(s);
    }
    // A valid JSON string without escapes is its own text between the quotes.
    if !s.contains('\\') && s.len() >= 2 && s.ends_with('"') {
        return Cow::Borrowed(&s[1..s.len() - 1]);
    }
    match serde_json::from_str::<&str>(s) {
        Ok(unescaped) => Cow::Borrowed(unescaped),
        Err(_) => serde_json::from_str::<String>(s).map_or(Cow::Borrowed(s), Cow::Owned),
    }
}

/// Finds `path` in whatever it deserializes, skipping everything else.
struct Seek<'p> {
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.path.is_empty() {
            return <&RawValue>::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (head, rest) = self.path.split_once('.').unwrap_or((self.path, ""));
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(head))? {
            if matches && found.is_none() {
                found = map.next_value_seed(Seek { path: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (head, rest) = self.path.split_once('.').unwrap_or((self.path, ""));
        let wanted = head.parse::<usize>().ok();
        let mut found = None;
        let mut i = 0;
        loop {
            if Some(i) == wanted {
                match seq.next_element_seed(Seek { path: rest })? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    // A scalar has no fields: the path does not exist.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Deserializes an object key to whether it equals the wanted one.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn found(json: &str, path: &str) -> Option<String> {
        lookup(json.as_bytes(), path).map(|raw| raw_text(raw).into_owned())
    }

    #[test]
    fn lookup_finds_nested_fields_and_array_items() {
        let doc = r#"{"a": {"b": [10, {"c": "x\"y"}], "n": 1.50}, "z": null}"#;
        assert_eq!(found(doc, "a.n").as_deref(), Some("1.50"));
        assert_eq!(found(doc, "a.b.0").as_deref(), Some("10"));
        assert_eq!(found(doc, "a.b.1.c").as_deref(), Some("x\"y"));
        assert_eq!(found(doc, "z").as_deref(), Some("null"));
        assert_eq!(found(doc, "a.b.2"), None);
        assert_eq!(found(doc, "a.n.deeper"), None);
        assert_eq!(found(doc, "missing"), None);
    }

    #[test]
    fn lookup_rejects_documents_that_are_not_json() {
        assert_eq!(found(r#"{"a": 1"#, "a"), None);
        assert_eq!(found(r#"{"a": 1} trailing"#, "a"), None);
    }

    #[test]
    fn raw_text_unquotes_strings_with_and_without_escapes() {
        assert_eq!(found(r#"{"s": "plain"}"#, "s").as_deref(), Some("plain"));
        assert_eq!(found(r#"{"s": ""}"#, "s").as_deref(), Some(""));
        assert_eq!(found(r#"{"s": "a\u0041\n"}"#, "s").as_deref(), Some("aA\n"));
        assert_eq!(found(r#"{"n": -1.5e3}"#, "n").as_deref(), Some("-1.5e3"));
    }

    #[test]
    fn lookup_agrees_with_field_and_text() {
        let doc = r#"{"region": "north", "speed": 80, "ok": true}"#;
        let value: Value = serde_json::from_str(doc).unwrap();
        for path in ["region", "speed", "ok"] {
            assert_eq!(
                found(doc, path).unwrap(),
                text(field(&value, path).unwrap())
            );
        }
    }
}
