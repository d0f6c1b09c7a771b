//! Where a field of an already parsed manifest is written, for refusals
//! that come after parsing (an unknown processor, a missing input topic).

use super::tree::{self, Content, Node};

/// The line and column (both from 1) of the value at `path` (YAML names,
/// `spec.input.topics[1]`) in document `document` (from 1) of `text`;
/// `None` if the file has no such field.
pub fn locate(text: &str, document: usize, path: &str) -> Option<(usize, usize)> {
    if text.len() > super::MAX_FILE_BYTES {
        return None;
    }
    let loaded = tree::load(text);
    let doc = loaded.documents.iter().find(|d| d.number == document)?;
    let mut node: &Node<'_> = &doc.root;
    for step in steps(path)? {
        node = match (step, node.content()) {
            (Step::Field(name), Content::Map(entries)) => {
                &entries.iter().find(|(k, _)| is_key(k, name))?.1
            }
            (Step::Index(i), Content::List(items)) => items.get(i)?,
            _ => return None,
        };
    }
    Some((node.mark.line, node.mark.column))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'p> {
    Field(&'p str),
    Index(usize),
}

/// `a.b[2].c` as steps; `None` for a malformed path.
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Step::Field(name));
        }
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']')?;
            out.push(Step::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

fn is_key(key: &Node<'_>, name: &str) -> bool {
    matches!(key.content(), Content::Scalar(s) if s.text == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "apiVersion: eddy/v1\nkind: Pipeline\n---\nmetadata: { name: a }\nspec:\n  input:\n    topics: [one, two]\n  processor:\n    name: geofence\n";

    #[test]
    fn finds_fields_and_list_items_in_the_right_document() {
        assert_eq!(locate(TEXT, 2, "spec.processor.name"), Some((9, 11)));
        assert_eq!(locate(TEXT, 2, "spec.input.topics[1]"), Some((7, 19)));
        assert_eq!(locate(TEXT, 1, "kind"), Some((2, 7)));
    }

    #[test]
    fn unknown_fields_and_bad_paths_are_not_found() {
        assert_eq!(locate(TEXT, 2, "spec.outputs"), None);
        assert_eq!(locate(TEXT, 2, "spec.input.topics[5]"), None);
        assert_eq!(locate(TEXT, 3, "spec"), None);
        assert_eq!(locate(TEXT, 2, "spec.input.topics[x]"), None);
    }
}
