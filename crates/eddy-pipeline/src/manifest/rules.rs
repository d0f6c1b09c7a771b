//! Rules on names and params that go beyond YAML types. Each check returns the
//! message to report.

use super::reader::quote;

/// Longest param name, in bytes.
const MAX_PARAM_NAME_BYTES: usize = 256;
/// Most params one processor may be given.
const MAX_PARAMS: usize = 256;
/// Longest param value, in bytes.
const MAX_PARAM_VALUE_BYTES: usize = 64 * 1024;

/// What a name names; the rules differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameKind {
    /// `metadata.name`.
    Pipeline,
    /// `spec.processor.name`.
    Processor,
    /// An input, output or dead-letter topic.
    Topic,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Pipeline => "pipeline name",
            NameKind::Processor => "processor name",
            NameKind::Topic => "topic name",
        }
    }

    /// The "expected …" text when the value is not a string at all.
    pub fn expected(self) -> &'static str {
        match self {
            NameKind::Pipeline => "a pipeline name",
            NameKind::Processor => "a processor name",
            NameKind::Topic => "a topic name",
        }
    }

    /// The longest name allowed; 249 is Kafka's own limit for topics.
    fn max_len(self) -> usize {
        match self {
            NameKind::Pipeline | NameKind::Processor => 128,
            NameKind::Topic => 249,
        }
    }
}

/// Names are limited to characters that are safe in file names, URLs and metric
/// labels, as Kafka does for topics.
pub(super) fn check_name(name: &str, kind: NameKind) -> Result<(), String> {
    let noun = kind.noun();
    let max = kind.max_len();
    if name.is_empty() {
        return Err(format!(
            "expected a {noun} of 1 to {max} characters, found an empty string"
        ));
    }
    if let Some(bad) = name.chars().find(|&c| !is_name_char(c)) {
        return Err(format!(
            "{noun} {} contains {bad:?}; use only letters a-z and A-Z, digits, '.', '_' and '-'",
            quote(name)
        ));
    }
    // Only ASCII is left, so bytes are characters.
    if name.len() > max {
        return Err(format!(
            "expected a {noun} of at most {max} characters, found {} characters",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name} is not allowed as a {noun}"));
    }
    if kind == NameKind::Topic && name.starts_with("__") {
        return Err(format!(
            "topic name {} starts with __, which is reserved for internal topics",
            quote(name)
        ));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

pub(super) fn check_param_count(count: usize) -> Result<(), String> {
    if count > MAX_PARAMS {
        return Err(format!(
            "expected at most {MAX_PARAMS} params, found {count}"
        ));
    }
    Ok(())
}

pub(super) fn check_param_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a param name must not be empty".to_owned());
    }
    if name.len() > MAX_PARAM_NAME_BYTES {
        return Err(format!(
            "param name {} is {} bytes long; at most {MAX_PARAM_NAME_BYTES} are allowed",
            quote(name),
            name.len()
        ));
    }
    Ok(())
}

pub(super) fn check_param_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_PARAM_VALUE_BYTES {
        return Err(format!(
            "expected a value of at most {MAX_PARAM_VALUE_BYTES} bytes, found {} bytes",
            value.len()
        ));
    }
    Ok(())
}
