//! Helpers for processors whose record values are JSON documents.
//!
//! [`parse`] builds a whole [`Value`]; a [`Path`] finds one field without
//! building anything, for processors that only look at a field or two.

mod scan;

use std::borrow::Cow;

use serde_json::Value;

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

/// A dotted path into JSON documents (`"position.lat"`, `"stops.0"`),
/// split once so that looking it up in many records costs nothing more.
/// Each step looks into an object by key or, when it is a number, into an
/// array by index, as [`field`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    steps: Vec<scan::Step>,
}

impl Path {
    /// Splits `path` at its dots. An empty path is the whole document.
    pub fn new(path: &str) -> Path {
        let steps = if path.is_empty() {
            Vec::new()
        } else {
            path.split('.')
                .map(|part| scan::Step {
                    key: part.to_owned(),
                    index: part.parse().ok(),
                })
                .collect()
        };
        Path { steps }
    }

    /// The raw JSON text of the value at this path in the document `json`,
    /// found without building the document: other fields are checked
    /// against the JSON grammar and skipped, not parsed into values.
    /// `None` when the document is not JSON (including strings that are
    /// not UTF-8) or has no such value. Of repeated keys, the first that
    /// leads to a value wins.
    pub fn find<'a>(&self, json: &'a [u8]) -> Option<&'a str> {
        // Always UTF-8 (see `find_bytes`); checking costs little, and no
        // `unsafe`.
        self.find_bytes(json)
            .and_then(|raw| std::str::from_utf8(raw).ok())
    }

    /// [`Path::find`] without turning the raw text into a `&str`, for
    /// comparing it ([`text_is`]) on every record: in a guest, the UTF-8
    /// check is a call that costs about as much as the comparison.
    pub fn find_bytes<'a>(&self, json: &'a [u8]) -> Option<&'a [u8]> {
        scan::find(json, &self.steps).ok().flatten()
    }
}

/// [`Path::find`] for a path given as text; a processor that looks up the
/// same path in every record should keep a [`Path`] instead.
pub fn lookup<'a>(json: &'a [u8], path: &str) -> Option<&'a str> {
    Path::new(path).find(json)
}

/// Whether the text of a raw JSON value (from [`Path::find`] or
/// [`Path::find_bytes`]), as [`raw_text`] renders it, is `text`; allocates
/// nothing unless the value is a string with escapes.
pub fn text_is(raw: impl AsRef<[u8]>, text: &str) -> bool {
    let bytes = raw.as_ref();
    match bytes {
        [b'"', inner @ .., b'"'] if !scan::has_backslash(inner) => {
            scan::same(inner, text.as_bytes())
        }
        [b'"', ..] => std::str::from_utf8(bytes).is_ok_and(|raw| raw_text(raw) == text),
        _ => scan::same(bytes, text.as_bytes()),
    }
}

/// The text of a raw JSON value as [`text`] renders it: strings unquoted
/// and unescaped, anything else as written. A string whose escapes do not
/// make text (a lone surrogate) is returned as written, quotes included.
pub fn raw_text(raw: &str) -> Cow<'_, str> {
    if !raw.starts_with('"') {
        return Cow::Borrowed(raw);
    }
    // A valid JSON string without escapes is its own text between the quotes.
    if !raw.contains('\\') && raw.len() >= 2 && raw.ends_with('"') {
        return Cow::Borrowed(&raw[1..raw.len() - 1]);
    }
    serde_json::from_str::<String>(raw).map_or(Cow::Borrowed(raw), Cow::Owned)
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
