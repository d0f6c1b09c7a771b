//! Helpers for processors whose record values are JSON documents.

use std::borrow::Cow;

use serde_json::Value;

/// Parses a record value as JSON, with an error message fit for a
/// [`crate::RecordError`].
pub fn parse_json(bytes: Option<&[u8]>) -> Result<Value, String> {
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
