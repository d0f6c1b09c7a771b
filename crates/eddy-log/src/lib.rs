//! `eddy-log`: everything about one partition's data on disk.
//!
//! A [`Log`] is a directory of segments. Each segment is a `.log` file of
//! record batches in Kafka's v2 layout ([`batch`]) named by its 20-digit
//! base offset, with a sparse offset index (`.index`) and time index
//! (`.timeindex`). Appends assign offsets and stamp the leader epoch; reads
//! return whole batches as stored, checked (CRC, offsets, epoch) on the way
//! out. Opening a log after a crash scans only the active segment's tail.
//! Old data goes by retention (time, size) or compaction (newest per key).
//!
//! For replication, a follower's log copies the leader's batches unchanged
//! (offsets and leader epochs included), is cut back where it diverged from
//! the leader's by the leader-epoch history (KIP-101/KIP-279), or starts over
//! empty at a later offset; see [`Log::append_replicated`],
//! [`Log::end_offset_for_epoch`], [`Log::truncate_to`] and [`Log::reset_to`].
//! The crate only provides these operations; fetching from a leader is the
//! broker's job.
//!
//! Architecture invariant: this crate knows nothing about networking, gRPC
//! or async runtimes; it is plain blocking file I/O behind `&mut self` for
//! writes and `&self` for reads, and time comes from a [`Clock`].

pub mod batch;
mod clock;
mod compaction;
mod compression;
mod config;
mod epoch;
mod error;
mod index;
mod log;
pub mod partitioner;
mod pool;
mod producer_state;
mod replication;
mod segment;
mod types;
pub mod varint;

pub use batch::{
    Batch, BatchBuilder, BatchError, BatchHeader, ProducerStamp, RecordIter, RecordRef, RecordView,
    Records, batches, restamp,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compaction::{
    CHANGE_HEADER, COMMITTED_HEADER, CompactionJob, CompactionOutput, CompactionStats,
};
pub use compression::{Compression, DECOMPRESSED_BYTES_MAX};
pub use config::{
    BATCH_BYTES_LIMIT, CONFIG_KEYS, CleanupPolicy, FsyncPolicy, LogConfig, SEGMENT_BYTES_LIMIT,
};
pub use error::{Error, Result};
pub use log::{
    AppendInfo, CheckedBatch, Log, MARKER_FILE, ReadResult, RecoveryReport, RetentionReport,
    SegmentInfo, Written, check_batch, check_replicated_batch,
};
pub use producer_state::{
    BATCHES_KEPT, BatchRecord, ProducerState, ProducerStateConfig, STABLE_PRODUCER_ID_BASE,
    SequenceCheck, SequenceError,
};
pub use types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, Sequence, Timestamp};
