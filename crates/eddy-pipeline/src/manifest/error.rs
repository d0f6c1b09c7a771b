//! Refusals: what was wrong, and exactly where in the file.

use std::fmt;

use thiserror::Error;

/// One reason a manifest file was refused.
///
/// Displays as `document 1, spec.delivery (line 9, column 13): expected …, found …`;
/// the path part is left out when the error is about a whole document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "document {document}{} (line {line}, column {column}): {message}",
    PathPart(path)
)]
pub struct ManifestError {
    /// The document's number in the file, from 1, counting every `---` section
    /// (empty ones too).
    pub document: usize,
    /// The field in YAML names, such as `spec.outputs[1].topic`; empty for the document
    /// itself.
    pub path: String,
    /// The line in the whole file, from 1.
    pub line: usize,
    /// The column, from 1, counted in characters.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// Writes `, PATH` for a non-empty path, nothing otherwise.
struct PathPart<'p>(&'p str);

impl fmt::Display for PathPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, ", {}", self.0)
        }
    }
}

/// Every error found in a manifest file, in file order; never empty.
///
/// Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", Lines(errors))]
pub struct ManifestErrors {
    errors: Vec<ManifestError>,
}

impl ManifestErrors {
    /// Wraps the errors of a refused file; `None` when there are none.
    pub(super) fn new(errors: Vec<ManifestError>) -> Option<Self> {
        (!errors.is_empty()).then_some(Self { errors })
    }

    /// The errors, in file order.
    #[must_use]
    pub fn errors(&self) -> &[ManifestError] {
        &self.errors
    }

    /// Iterates over the errors, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ManifestError> {
        self.errors.iter()
    }

    /// Takes the errors out, in file order.
    #[must_use]
    pub fn into_errors(self) -> Vec<ManifestError> {
        self.errors
    }
}

impl<'e> IntoIterator for &'e ManifestErrors {
    type Item = &'e ManifestError;
    type IntoIter = std::slice::Iter<'e, ManifestError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Writes errors one per line, without a trailing newline.
struct Lines<'e>(&'e [ManifestError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
