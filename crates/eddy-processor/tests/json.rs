//! The JSON field scanner against `serde_json`: on documents made from
//! random values it finds what `serde_json` finds, and on random edits of
//! them it accepts exactly the documents `serde_json` accepts.
#![allow(clippy::unwrap_used)]

use eddy_processor::json::{Path, field, lookup, raw_text, text, text_is};
use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::Value;

/// Strings with the characters that need care: quotes, backslashes,
/// control characters, non-ASCII of every UTF-8 length.
fn string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range('a', 'z'),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('\n'),
            1 => Just('\u{1}'),
            1 => Just('é'),
            1 => Just('€'),
            1 => Just('🚚'),
            1 => Just('.'),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "id", "0", "1", "lat"]).prop_map(str::to_owned),
        1 => string(),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Paths that exist in `v`, and some that do not.
fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    out.push(prefix.to_owned());
    out.push(
        format!("{prefix}.missing")
            .trim_start_matches('.')
            .to_owned(),
    );
    let join = |step: &str| {
        if prefix.is_empty() {
            step.to_owned()
        } else {
            format!("{prefix}.{step}")
        }
    };
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                // A key with a dot cannot be named by a dotted path.
                if !k.contains('.') && !k.is_empty() {
                    paths(item, &join(k), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                paths(item, &join(&i.to_string()), out);
            }
            out.push(join(&items.len().to_string()));
        }
        _ => {}
    }
}

/// Whether `serde_json` takes `doc` as one JSON document with UTF-8 text.
fn serde_accepts(doc: &[u8]) -> bool {
    std::str::from_utf8(doc).is_ok() && serde_json::from_slice::<IgnoredAny>(doc).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn finds_what_serde_json_finds(v in value(), pretty in any::<bool>()) {
        let doc = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            serde_json::to_string(&v).unwrap()
        };
        let mut all = Vec::new();
        paths(&v, "", &mut all);
        for path in all {
            let expected = field(&v, &path);
            let found = lookup(doc.as_bytes(), &path);
            prop_assert_eq!(found.is_some(), expected.is_some(), "path {:?} in {}", path, doc);
            if let (Some(raw), Some(expected)) = (found, expected) {
                // Both through the same text, as float parsing rounds.
                let parsed: Value = serde_json::from_str(raw).unwrap();
                let reparsed: Value = serde_json::from_str(&expected.to_string()).unwrap();
                prop_assert_eq!(parsed, reparsed, "path {:?} in {}", path, doc);
                if !expected.is_object() && !expected.is_array() {
                    let wanted = text(expected);
                    prop_assert_eq!(raw_text(raw), wanted.clone());
                    prop_assert!(text_is(raw, &wanted));
                    let bytes = Path::new(&path).find_bytes(doc.as_bytes());
                    prop_assert_eq!(bytes, Some(raw.as_bytes()));
                    prop_assert!(text_is(bytes.unwrap_or_default(), &wanted));
                    let longer = format!("{wanted}x");
                    prop_assert!(!text_is(raw, &longer));
                }
            }
        }
    }

    #[test]
    fn accepts_exactly_what_serde_json_accepts(
        v in value(),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), 0..3u8, prop::sample::select(
                b"{}[]:,\"\\ 0123456789.eE+-tfnrulasx\x01\x7f\xc3\xa9\xe2\x82\xac\xf0\x80\xff".to_vec()
            )),
            1..4,
        ),
    ) {
        let mut doc = serde_json::to_vec(&v).unwrap();
        for (at, kind, byte) in edits {
            let i = at.index(doc.len() + 1);
            match kind {
                0 => doc.insert(i, byte),
                1 if i < doc.len() => { doc.remove(i); }
                _ if i < doc.len() => doc[i] = byte,
                _ => doc.push(byte),
            }
        }
        let accepted = Path::new("").find(&doc).is_some();
        prop_assert_eq!(accepted, serde_accepts(&doc), "{:?}", String::from_utf8_lossy(&doc));
        if !accepted {
            prop_assert_eq!(lookup(&doc, "a"), None);
        }
    }
}

/// `serde_json` limits nesting when it builds values (skipping them, it
/// has no limit); the scanner has the same limit.
fn serde_parses(doc: &[u8]) -> bool {
    serde_json::from_slice::<Value>(doc).is_ok()
}

#[test]
fn refuses_nesting_where_serde_json_does() {
    for depth in 120..135 {
        let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            lookup(doc.as_bytes(), "").is_some(),
            serde_parses(doc.as_bytes()),
            "depth {depth}"
        );
        let doc = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
        let path = vec!["a"; depth].join(".");
        assert_eq!(
            lookup(doc.as_bytes(), &path).is_some(),
            serde_parses(doc.as_bytes()),
            "depth {depth}"
        );
    }
}

#[test]
fn grammar_edge_cases_match_serde_json() {
    let docs: &[&[u8]] = &[
        b"",
        b" ",
        b"1",
        b"-",
        b"-0",
        b"01",
        b"1.",
        b"1.e5",
        b"1e",
        b"1e+",
        b"1E-7",
        b"-1.5e300",
        b"1e400",
        b"tru",
        b"true",
        b"nul",
        b"null ",
        b"\"",
        b"\"\\u12\"",
        b"\"\\u12G4\"",
        b"\"\\ud800\"",
        b"\"\\ud83d\\ude9a\"",
        b"\"\\x\"",
        b"\"a\tb\"",
        b"\"\xc3\"",
        b"\"\xc3\xa9\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xf4\x90\x80\x80\"",
        b"\"\xe2\x82\xac\"",
        b"{\"a\":1,}",
        b"[1,]",
        b"{\"a\" 1}",
        b"{,}",
        b"[,1]",
        b"{\"a\":1}}",
        b"[] []",
        b"{\"a\":[1,{\"b\":null}]}",
        b"\"12345678901234567890\"",
        b"\"1234567\\\"89\"",
    ];
    for doc in docs {
        assert_eq!(
            lookup(doc, "").is_some(),
            serde_accepts(doc),
            "{:?}",
            String::from_utf8_lossy(doc)
        );
    }
}

#[test]
fn keys_with_escapes_match_their_text() {
    let doc = br#"{"re\u0067ion": "north", "a\"b": 1}"#;
    assert_eq!(lookup(doc, "region"), Some(r#""north""#));
    assert_eq!(lookup(doc, "a\"b"), Some("1"));
}

#[test]
fn the_first_key_that_leads_somewhere_wins() {
    let doc = br#"{"a": 1, "a": 2, "b": {"x": 1}, "b": {"y": 2}}"#;
    assert_eq!(lookup(doc, "a"), Some("1"));
    assert_eq!(lookup(doc, "b.y"), Some("2"));
}
