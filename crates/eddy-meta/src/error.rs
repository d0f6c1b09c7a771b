use std::path::PathBuf;

/// Why a metadata change or load failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {0:?} does not exist; list topics with `eddy topic list`")]
    UnknownTopic(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    /// No metadata leader could take the change (an election, or too few
    /// voters running); the message says what to do.
    #[error("{0}")]
    Unavailable(String),
    /// A processor or pipeline that does not exist; the message says how to find one.
    #[error("{0}")]
    NotFound(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "metadata log {} is damaged at line {line}: {reason}; restore the data directory from a backup or another node",
        path.display()
    )]
    CorruptLog {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl MetaError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> MetaError {
        let path = path.into();
        move |source| MetaError::Io { op, path, source }
    }
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;
