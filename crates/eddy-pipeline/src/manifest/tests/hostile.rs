//! Malformed and hostile files are refused with an error, never a panic or a hang.

use proptest::prelude::*;

use super::super::{ManifestError, parse, to_yaml};
use super::{VALID, assert_refused, errors_of, with_line};

#[test]
fn a_file_over_1_mib_is_refused_unread() {
    let file = format!("{VALID}# {}\n", "x".repeat(2 * 1024 * 1024));
    assert_refused(
        &file,
        "",
        (1, 1),
        &format!(
            "the file is {} bytes long; at most 1048576 bytes are allowed",
            file.len()
        ),
    );
}

#[test]
fn deep_nesting_is_refused() {
    assert_refused(
        &"[".repeat(100),
        "",
        (1, 65),
        "nesting deeper than 64 levels is not allowed",
    );
    // saphyr's scanner has its own limit, which it reaches first on a long run.
    assert_refused(
        &"[".repeat(100_000),
        "",
        (1, 256),
        "not valid YAML: recursion limit exceeded",
    );
    let block: String = (0..100)
        .map(|depth| format!("{}a:\n", " ".repeat(depth)))
        .collect();
    let errors = errors_of(&block);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].message,
        "nesting deeper than 64 levels is not allowed"
    );
}

/// Ten levels of ten aliases each: a billion leaves if aliases were copied.
fn alias_bomb(indent: &str) -> String {
    let mut text = format!("{indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let previous = format!("*l{}", level - 1);
        let aliases = [previous.as_str(); 10].join(", ");
        text.push_str(&format!("{indent}l{level}: &l{level} [{aliases}]\n"));
    }
    text
}

#[test]
fn an_alias_bomb_is_refused_at_once() {
    let file = format!("{}{}", alias_bomb(""), VALID);
    let errors = errors_of(&file);
    assert_eq!(errors.len(), 10, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.message.starts_with("unknown field l"))
    );

    // Even when the bomb reaches a field that is read.
    let file = with_line(
        12,
        &format!("    params:\n{}      p: *l9", alias_bomb("      ")),
    );
    let errors = errors_of(&file);
    assert_eq!(errors.len(), 11, "{errors:?}");
    assert!(errors.iter().all(|e| e.message.ends_with("found a list")));
}

#[test]
fn a_long_chain_of_aliases_is_dropped_without_overflowing_the_stack() {
    let mut file = String::from("a0: &a0 [x]\n");
    for i in 1..40_000 {
        file.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
    }
    assert_eq!(errors_of(&file).len(), 101);
}

#[test]
fn an_alias_inside_its_own_anchor_is_refused() {
    let errors = errors_of("a: &x [*x]\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].line, errors[0].column, errors[0].message.as_str()),
        (1, 8, "this alias refers to a node that is not complete yet")
    );
    let errors = errors_of("a: *nowhere\n");
    assert!(
        errors[0].message.starts_with("not valid YAML: "),
        "{errors:?}"
    );
}

#[test]
fn an_anchor_does_not_reach_into_the_next_document() {
    let file = format!("x: &t truck_gps\n---\n{}", with_line(7, "    topics: [*t]"));
    let errors = errors_of(&file);
    assert!(errors.iter().any(|e| e.document == 2), "{errors:?}");
}

#[test]
fn at_most_100_errors_are_reported() {
    let noise: String = (0..5000).map(|i| format!("x{i}: 1\n")).collect();
    let errors = errors_of(&format!("{VALID}{noise}"));
    assert_eq!(errors.len(), 101);
    assert_eq!(
        errors[100].message,
        "too many errors; reporting stopped here, after 100"
    );

    let many_documents = format!("{}---\n", with_line(2, "kind: Job")).repeat(500);
    assert_eq!(errors_of(&many_documents).len(), 101);
}

#[test]
fn odd_yaml_gives_errors_not_panics() {
    let samples = [
        "\0",
        ":",
        "-",
        "- - -",
        "?",
        "? : ",
        "&a",
        "*a",
        "!",
        "!!",
        "|",
        ">",
        "'",
        "\"",
        "{",
        "}",
        "[",
        "]",
        "{[}]",
        "...",
        "---",
        "--- |\n  x",
        "%YAML 1.2\n---\na: 1",
        "%FOO\n",
        "\u{feff}a: 1",
        "a:\tb",
        "\ta: b",
        "a: b\n\tc: d",
        "a: &x\n",
        "? [a]\n: b",
        "{a: 1}: b",
        "[a]: b",
        "a: 'unterminated",
        "a: \"\\q\"",
        "a: !<tag:x> b",
        "apiVersion: eddy/v1\nkind: Pipeline\nmetadata: 5\nspec: 5\n",
        "apiVersion: [eddy/v1]\nkind: {Pipeline: 1}\n",
    ];
    for sample in samples {
        // Any outcome but a panic will do; errors must still be well-formed.
        if let Err(errors) = parse(sample) {
            errors.iter().for_each(assert_well_formed);
        }
    }
}

fn assert_well_formed(error: &ManifestError) {
    assert!(
        error.document >= 1 && error.line >= 1 && error.column >= 1,
        "{error:?}"
    );
    assert!(!error.to_string().contains('\n'), "{error:?}");
}

/// One edit to a text: an insertion, deletion or replacement at a byte offset.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Characters that matter to YAML, plus some that only make a value wrong.
    let chars = prop::sample::select(
        &[
            ':', '-', ' ', '\n', '\t', '[', ']', '{', '}', ',', '#', '&', '*', '!', '|', '>', '\'',
            '"', '?', '%', '@', '`', '0', '9', 'x', '_', '.', '\u{e9}', '\u{feff}', '\0',
        ][..],
    );
    prop_oneof![
        (any::<usize>(), chars.clone()).prop_map(|(at, c)| Edit::Insert(at, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), chars).prop_map(|(at, c)| Edit::Replace(at, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let len = chars.len();
        match *edit {
            Edit::Insert(at, c) => chars.insert(at % (len + 1), c),
            Edit::Delete(at) if len > 0 => {
                chars.remove(at % len);
            }
            Edit::Replace(at, c) if len > 0 => chars[at % len] = c,
            Edit::Delete(_) | Edit::Replace(..) => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_manifests_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        let text = apply(VALID, &edits);
        match parse(&text) {
            // Whatever still parses must print back to the same manifests.
            Ok(manifests) => {
                for manifest in manifests {
                    prop_assert_eq!(parse(&to_yaml(&manifest)), Ok(vec![manifest]));
                }
            }
            Err(errors) => errors.iter().for_each(assert_well_formed),
        }
    }
}

/// Pieces of YAML to build random files from: structure, anchors, aliases, tags and
/// the manifest's own words.
const PIECES: &[&str] = &[
    "\n",
    "  ",
    "- ",
    ": ",
    "? ",
    "---\n",
    "...\n",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "&b ",
    "*a",
    "*b",
    "!!str ",
    "!t ",
    "|\n",
    ">-\n",
    "#c\n",
    "'q'",
    "\"d\\n\"",
    "~",
    "",
    "0",
    "-1",
    "1e9",
    "apiVersion",
    "eddy/v1",
    "kind",
    "Pipeline",
    "metadata",
    "name",
    "spec",
    "input",
    "topics",
    "startFrom",
    "offset",
    "timestamp",
    "2026-12-01T10:00:00Z",
    "processor",
    "params",
    "outputs",
    "topic",
    "delivery",
    "exactly-once",
    "onError",
    "deadLetter",
    "batch",
    "limits",
];

proptest! {
    #[test]
    fn random_yaml_never_panics(pieces in prop::collection::vec(prop::sample::select(PIECES), 0..80)) {
        if let Err(errors) = parse(&pieces.concat()) {
            errors.iter().for_each(assert_well_formed);
        }
    }
}
