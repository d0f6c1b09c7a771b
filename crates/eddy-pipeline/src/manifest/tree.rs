//! A positioned YAML tree, built from `saphyr-parser` events.
//!
//! General YAML loaders resolve scalars to typed values and drop what good error
//! messages need. This tree keeps the text of every scalar as written, whether it was
//! quoted, where each node starts, any tag, and mapping entries in file order with
//! duplicates (so the decoder can name them).

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span, Tag};

/// Collections nested deeper than this are refused, so that nothing downstream (drop
/// included) recurses without bound on hostile input.
pub(super) const MAX_DEPTH: usize = 64;

/// A position in the whole file: line and column, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    /// The start of the file.
    pub const START: Mark = Mark { line: 1, column: 1 };
}

impl From<Marker> for Mark {
    /// saphyr counts lines from 1 but columns from 0.
    fn from(marker: Marker) -> Self {
        Mark {
            line: marker.line().max(1),
            column: marker.col().saturating_add(1),
        }
    }
}

/// A YAML node and where it starts.
#[derive(Debug)]
pub(super) struct Node<'a> {
    /// Where the node (or the alias standing for it) is written.
    pub mark: Mark,
    tag: Option<String>,
    content: Content<'a>,
}

/// What a node holds.
#[derive(Debug)]
pub(super) enum Content<'a> {
    Scalar(Scalar<'a>),
    List(Vec<Node<'a>>),
    /// Entries in file order; keys may repeat.
    Map(Vec<(Node<'a>, Node<'a>)>),
    /// A node with an anchor, or an alias to one. Sharing instead of copying is what
    /// keeps an alias bomb ("billion laughs") as small as the text that wrote it.
    Shared(Rc<Node<'a>>),
}

/// A scalar's text, with escapes and folding already applied by the parser.
#[derive(Debug)]
pub(super) struct Scalar<'a> {
    pub text: Cow<'a, str>,
    /// Quoted or block style: always a string, never a number, boolean or null.
    pub quoted: bool,
}

impl Scalar<'_> {
    /// A YAML 1.2 core-schema null: nothing at all, `~` or `null`, unquoted.
    pub fn is_null(&self) -> bool {
        !self.quoted && matches!(&*self.text, "" | "~" | "null" | "Null" | "NULL")
    }
}

impl<'a> Node<'a> {
    /// What the node holds, looking through anchors and aliases.
    pub fn content(&self) -> &Content<'a> {
        let mut node = self;
        while let Content::Shared(target) = &node.content {
            node = target;
        }
        &node.content
    }

    /// The node's tag (such as `!!str`), looking through anchors and aliases.
    pub fn tag(&self) -> Option<&str> {
        match &self.content {
            Content::Shared(target) => target.tag(),
            _ => self.tag.as_deref(),
        }
    }

    /// Whether this is the root of a document with nothing in it (such as the one a
    /// trailing `---` opens).
    pub fn is_empty_document(&self) -> bool {
        self.tag.is_none()
            && matches!(&self.content, Content::Scalar(s) if !s.quoted && s.text.is_empty())
    }
}

impl Drop for Node<'_> {
    /// Drops the subtree with a loop instead of recursion. Nesting is bounded, but a
    /// chain of anchors each aliasing the one before (`b: &b [*a]`, `c: &c [*b]`, …)
    /// is not, and dropping its last link recursively would overflow the stack.
    fn drop(&mut self) {
        if matches!(self.content, Content::Scalar(_)) {
            return;
        }
        let mut pending = vec![take_content(self)];
        while let Some(content) = pending.pop() {
            match content {
                Content::Scalar(_) => {}
                Content::List(items) => {
                    pending.extend(items.into_iter().map(|mut n| take_content(&mut n)));
                }
                Content::Map(pairs) => {
                    for (mut key, mut value) in pairs {
                        pending.push(take_content(&mut key));
                        pending.push(take_content(&mut value));
                    }
                }
                // Only the last owner of a shared node drops what it holds.
                Content::Shared(shared) => {
                    if let Some(mut node) = Rc::into_inner(shared) {
                        pending.push(take_content(&mut node));
                    }
                }
            }
        }
    }
}

/// Takes a node's content, leaving an empty scalar that is free to drop.
fn take_content<'a>(node: &mut Node<'a>) -> Content<'a> {
    let empty = Content::Scalar(Scalar {
        text: Cow::Borrowed(""),
        quoted: false,
    });
    std::mem::replace(&mut node.content, empty)
}

/// One document of the file.
#[derive(Debug)]
pub(super) struct Document<'a> {
    /// From 1, in file order, counting empty documents too.
    pub number: usize,
    pub root: Node<'a>,
}

/// Why reading the file stopped before its end.
#[derive(Debug)]
pub(super) struct Failure {
    pub document: usize,
    pub mark: Mark,
    pub message: String,
}

/// The documents read before the end of the file or the first failure.
#[derive(Debug)]
pub(super) struct Loaded<'a> {
    pub documents: Vec<Document<'a>>,
    pub failure: Option<Failure>,
}

/// Reads every document of `text`. Reading stops at the first syntax error, or at
/// nesting deeper than [`MAX_DEPTH`]; the documents completed before it are kept.
pub(super) fn load(text: &str) -> Loaded<'_> {
    let mut builder = Builder::default();
    let mut failure = None;
    for event in Parser::new_from_str(text) {
        let step = match event {
            Ok((event, span)) => builder.on_event(event, span),
            Err(error) => Err(builder.failure(
                (*error.marker()).into(),
                format!("not valid YAML: {}", error.info()),
            )),
        };
        if let Err(stop) = step {
            failure = Some(stop);
            break;
        }
    }
    Loaded {
        documents: builder.documents,
        failure,
    }
}

/// A collection whose end event has not come yet.
#[derive(Debug)]
struct Open<'a> {
    mark: Mark,
    tag: Option<String>,
    anchor: usize,
    is_map: bool,
    /// For a mapping: key, value, key, value, …
    items: Vec<Node<'a>>,
}

#[derive(Debug, Default)]
struct Builder<'a> {
    documents: Vec<Document<'a>>,
    /// How many documents have started.
    started: usize,
    in_document: bool,
    /// Innermost last.
    open: Vec<Open<'a>>,
    /// Completed anchored nodes of the current document, by saphyr's anchor id.
    anchors: HashMap<usize, Rc<Node<'a>>>,
    root: Option<Node<'a>>,
}

impl<'a> Builder<'a> {
    fn on_event(&mut self, event: Event<'a>, span: Span) -> Result<(), Failure> {
        let mark = Mark::from(span.start);
        match event {
            Event::DocumentStart(_) => {
                self.started = self.started.saturating_add(1);
                self.in_document = true;
                // Anchors are local to their document.
                self.anchors.clear();
            }
            Event::DocumentEnd => self.end_document(),
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let content = Content::Scalar(Scalar { text, quoted });
                self.attach(leaf(mark, tag.as_deref(), content), anchor);
            }
            Event::SequenceStart(anchor, tag) => self.open(mark, tag.as_deref(), anchor, false)?,
            Event::MappingStart(anchor, tag) => self.open(mark, tag.as_deref(), anchor, true)?,
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(anchor) => self.alias(mark, anchor)?,
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn failure(&self, mark: Mark, message: String) -> Failure {
        // Between documents, the trouble belongs to the one about to start.
        let document = if self.in_document {
            self.started
        } else {
            self.started.saturating_add(1)
        };
        Failure {
            document: document.max(1),
            mark,
            message,
        }
    }

    fn end_document(&mut self) {
        if let Some(root) = self.root.take() {
            self.documents.push(Document {
                number: self.started.max(1),
                root,
            });
        }
        self.in_document = false;
    }

    fn open(
        &mut self,
        mark: Mark,
        tag: Option<&Tag>,
        anchor: usize,
        is_map: bool,
    ) -> Result<(), Failure> {
        if self.open.len() >= MAX_DEPTH {
            let message = format!("nesting deeper than {MAX_DEPTH} levels is not allowed");
            return Err(self.failure(mark, message));
        }
        self.open.push(Open {
            mark,
            tag: tag.map(tag_text),
            anchor,
            is_map,
            items: Vec::new(),
        });
        Ok(())
    }

    fn close(&mut self) {
        let Some(open) = self.open.pop() else {
            return;
        };
        let content = if open.is_map {
            Content::Map(pairs(open.items))
        } else {
            Content::List(open.items)
        };
        let node = Node {
            mark: open.mark,
            tag: open.tag,
            content,
        };
        self.attach(node, open.anchor);
    }

    fn alias(&mut self, mark: Mark, anchor: usize) -> Result<(), Failure> {
        // saphyr already refuses an alias to an undefined anchor; what is left is an
        // alias inside the very node its anchor names, which would make a cycle.
        let Some(target) = self.anchors.get(&anchor) else {
            let message = "this alias refers to a node that is not complete yet".to_owned();
            return Err(self.failure(mark, message));
        };
        let content = Content::Shared(Rc::clone(target));
        self.attach(leaf(mark, None, content), 0);
        Ok(())
    }

    /// Adds a completed node to its parent, or makes it the document's root.
    fn attach(&mut self, mut node: Node<'a>, anchor: usize) {
        // saphyr numbers anchors from 1; 0 means "no anchor".
        if anchor != 0 {
            let mark = node.mark;
            let shared = Rc::new(node);
            self.anchors.insert(anchor, Rc::clone(&shared));
            node = Node {
                mark,
                tag: None,
                content: Content::Shared(shared),
            };
        }
        match self.open.last_mut() {
            Some(parent) => parent.items.push(node),
            None => self.root = Some(node),
        }
    }
}

/// A node that is not a collection: a scalar or an alias.
fn leaf<'a>(mark: Mark, tag: Option<&Tag>, content: Content<'a>) -> Node<'a> {
    Node {
        mark,
        tag: tag.map(tag_text),
        content,
    }
}

/// A tag as its author would have written it: `!!str` rather than the resolved prefix.
fn tag_text(tag: &Tag) -> String {
    if tag.handle == "tag:yaml.org,2002:" {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

/// Pairs a mapping's alternating keys and values.
fn pairs(items: Vec<Node<'_>>) -> Vec<(Node<'_>, Node<'_>)> {
    let mut items = items.into_iter();
    let mut pairs = Vec::with_capacity(items.len() / 2);
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        pairs.push((key, value));
    }
    pairs
}
