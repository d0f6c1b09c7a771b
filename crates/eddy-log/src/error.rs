use std::io;
use std::path::PathBuf;

use crate::batch::BatchError;
use crate::types::{LeaderEpoch, Offset};

/// Everything that can go wrong in `eddy-log`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}{}", path.display(), disk_full_hint(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),
    #[error(
        "corrupt data in {} at byte {position}: {reason}; these records cannot be served — restore the partition from a replica or a backup",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error(
        "offset {requested} is out of range: the log holds offsets from {start} up to (not including) {end}"
    )]
    OffsetOutOfRange {
        requested: Offset,
        start: Offset,
        end: Offset,
    },
    #[error(
        "{} is not an Eddy partition directory ({reason}); give Eddy an empty directory or one it created",
        path.display()
    )]
    NotEddyDir { path: PathBuf, reason: String },
    #[error(
        "leader epoch {epoch} is older than the log's latest epoch {}; a newer leader has written here",
        latest.map_or(-1, |e| e.0)
    )]
    StaleEpoch {
        epoch: LeaderEpoch,
        latest: Option<LeaderEpoch>,
    },
    #[error(
        "replicated batch starts at offset {got} but this log ends at {expected}; fetch from the log end, after truncate_to (the logs diverged) or reset_to (the leader no longer has it)"
    )]
    NotContiguous { expected: Offset, got: Offset },
    #[error("{0}")]
    Sequence(#[from] crate::producer_state::SequenceError),
    #[error("invalid log configuration: {0}")]
    Config(String),
}

fn disk_full_hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::StorageFull {
        " — the disk is full; free space or delete data (retention), then retry"
    } else {
        ""
    }
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// Whether this error means the disk has no room left.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
