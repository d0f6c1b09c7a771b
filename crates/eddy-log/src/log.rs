//! A partition's log: an ordered set of segments in one directory, the last
//! of which takes appends.
//!
//! Invariants, held by every operation that changes the log:
//!
//! - There is always at least one segment; the last one is active.
//! - Offsets grow along the log: each batch starts where the log ended
//!   (compaction may later leave gaps in sealed segments, never reorder).
//!   The end moves back only when a follower removes whole batches from the
//!   end ([`Log::truncate_to`]) or starts over ([`Log::reset_to`]).
//! - The leader-epoch history covers every batch on disk: an epoch is saved
//!   before its first batch is written, and cut only after the batches it
//!   covered are gone (reads check each batch's epoch against it).
//! - A producer-state snapshot named `N` describes exactly the batches below
//!   `N`; snapshots past the log end are deleted before the log grows again.
//!
//! A leader appends with [`Log::append`]; a follower copies the leader's
//! batches with [`Log::append_replicated`] and cuts its log back where it
//! diverged with [`Log::truncate_to`] (see `replication.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{ATTR_CONTROL, ATTR_TRANSACTIONAL, Batch, BatchError, BatchHeader};
use crate::clock::Clock;
use crate::config::{FsyncPolicy, LogConfig};
use crate::epoch::EpochCache;
use crate::error::{Error, Result};
use crate::producer_state::{ProducerState, SequenceCheck};
use crate::segment::{Role, Segment, file_name};
use crate::types::{LeaderEpoch, Offset, ProducerId, Timestamp};

/// Name of the file that marks a directory as an Eddy partition.
pub const MARKER_FILE: &str = "eddy-partition";
const MARKER_TEXT: &str = "eddy-log format 1\n";

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub max_timestamp: Timestamp,
    pub record_count: u32,
    pub written: Written,
}

/// Whether an append wrote anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    New,
    /// An idempotent producer sent this batch before; nothing was written
    /// and the offsets are the original ones.
    Duplicate,
    /// An idempotent producer resent a batch older than the ones whose
    /// offsets are remembered; nothing was written and the original offsets
    /// are no longer known (the offsets given are 0).
    DuplicateOffsetsUnknown,
}

/// Whole batches read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Concatenated batches exactly as stored; empty when nothing is there yet.
    pub bytes: Bytes,
    /// The offset to read from next.
    pub next_offset: Offset,
}

/// What [`Log::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Batches checked after the last good index entries.
    pub batches_scanned: u64,
    pub bytes_scanned: u64,
    /// Bytes cut off the end of the active segment (a torn or corrupt tail).
    pub truncated_bytes: u64,
    /// Why the tail was cut.
    pub truncation_reason: Option<String>,
    pub index_entries_dropped: usize,
    /// Sealed segments that failed their check: (base, position, reason).
    /// They stay on disk; reads that reach the damage return an error.
    pub corrupt_segments: Vec<(Offset, u64, String)>,
    /// Compactions interrupted after their output was complete, now finished.
    pub swaps_completed: usize,
    /// Whether the leader-epoch checkpoint was missing and rebuilt from the log.
    pub epochs_rebuilt: bool,
    /// Idempotent-producer batches replayed after the newest snapshot.
    pub producer_batches_replayed: u64,
}

/// What [`Log::apply_retention`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// A segment, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: Offset,
    pub next_offset: Offset,
    pub size_bytes: u64,
    pub max_timestamp: Timestamp,
    pub compacted: bool,
}

/// One partition's data on disk.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) clock: Arc<dyn Clock>,
    /// By base offset; the last one is active. Never empty.
    pub(crate) segments: BTreeMap<Offset, Segment>,
    pub(crate) epochs: EpochCache,
    pub(crate) producers: ProducerState,
    last_sync_ms: i64,
    recovery: RecoveryReport,
    /// The last compaction pass that covered every sealed segment.
    pub(crate) compacted: Option<crate::compaction::CleanPass>,
}

impl Log {
    /// Opens the log in `dir`, creating it if the directory is missing or
    /// empty, and recovers from an unclean stop: only the batches after
    /// the active segment's last good index entry are scanned; a torn or
    /// corrupt tail is truncated.
    pub fn open(dir: &Path, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Log> {
        config.validate()?;
        claim_dir(dir)?;
        let mut recovery = RecoveryReport::default();
        let bases = tidy_files(dir, &mut recovery)?;
        let now = clock.now_ms();
        let mut segments = BTreeMap::new();
        if bases.is_empty() {
            let s = Segment::create(dir, Offset::ZERO, config.index_interval_bytes, now)?;
            segments.insert(Offset::ZERO, s);
        }
        for (i, &base) in bases.iter().enumerate() {
            let role = match bases.get(i + 1) {
                Some(&next_offset) => Role::Sealed { next_offset },
                None => Role::Active,
            };
            let (segment, r) = Segment::open(dir, base, role, config.index_interval_bytes, now)?;
            recovery.batches_scanned += r.batches_scanned;
            recovery.bytes_scanned += r.bytes_scanned;
            recovery.truncated_bytes += r.truncated_bytes;
            recovery.index_entries_dropped += r.index_entries_dropped;
            if let Some((_, reason)) = r.truncation {
                recovery.truncation_reason = Some(reason);
            }
            if let Some((pos, reason)) = r.corruption {
                recovery.corrupt_segments.push((base, pos, reason));
            }
            segments.insert(base, segment);
        }
        recovery.segments = segments.len();
        let mut log = Log {
            dir: dir.to_path_buf(),
            epochs: EpochCache::empty(dir),
            producers: ProducerState::new(config.producers),
            config,
            clock,
            segments,
            last_sync_ms: now,
            recovery,
            compacted: None,
        };
        log.load_epochs()?;
        log.recovery.producer_batches_replayed = log.rebuild_producers()?;
        Ok(log)
    }

    /// Rebuilds idempotent-producer state for the log as it is now: the
    /// newest snapshot at or below the log end (later ones are deleted),
    /// then the batch headers after it. Returns how many batches it replayed.
    pub(crate) fn rebuild_producers(&mut self) -> Result<u64> {
        let end = self.end_offset();
        let (mut state, from) =
            ProducerState::load_snapshot(&self.dir, self.config.producers, end)?;
        let from = from.unwrap_or(self.start_offset());
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(from, |(&b, _)| b);
        let mut replayed = 0u64;
        // Replayed producers were active after the snapshot, so they count
        // as seen now: a client's own (possibly old) timestamps must not
        // expire them.
        let now = self.clock.now_ms();
        for segment in self.segments.range(first..).map(|(_, s)| s) {
            for item in segment.headers_from_offset(from)? {
                let Ok((_, h)) = item else { break };
                if h.base_offset >= from && h.producer_id != ProducerId::NONE {
                    state.update(&h, now);
                    replayed += 1;
                }
            }
        }
        self.producers = state;
        Ok(replayed)
    }

    /// Idempotent-producer state (for inspection and tests).
    pub fn producer_state(&self) -> &ProducerState {
        &self.producers
    }

    /// Forgets producers silent past `producer.id.expiration.ms` and saves
    /// a snapshot, so a restart replays little.
    pub fn checkpoint_producers(&mut self) -> Result<usize> {
        let expired = self.producers.expire(self.clock.now_ms());
        self.producers.save_snapshot(&self.dir, self.end_offset())?;
        Ok(expired)
    }

    fn load_epochs(&mut self) -> Result<()> {
        let (epochs, rebuilt) = match EpochCache::load(&self.dir) {
            Some(e) => (e, false),
            None => (self.rebuild_epochs()?, true),
        };
        self.recovery.epochs_rebuilt = rebuilt;
        self.epochs = epochs;
        self.fit_epochs_to_log(rebuilt)
    }

    /// Forgets epochs that start at or past the log end (it was cut) or
    /// ended before its start (retention), and saves the history if that
    /// changed it or `save` asks.
    pub(crate) fn fit_epochs_to_log(&mut self, save: bool) -> Result<()> {
        let (start, end) = (self.start_offset(), self.end_offset());
        let changed = self.epochs.truncate_from(end) | self.epochs.trim_before(start);
        if save || changed {
            self.epochs.save()?;
        }
        Ok(())
    }

    /// Reads every batch header to recover which epoch wrote what.
    fn rebuild_epochs(&self) -> Result<EpochCache> {
        let mut epochs = EpochCache::empty(&self.dir);
        for segment in self.segments.values() {
            for item in segment.headers_from(0) {
                let Ok((_, h)) = item else { break };
                // Headers are not CRC-checked here: a damaged one must not
                // make the history go backwards, so it ends the walk.
                if epochs
                    .entries()
                    .last()
                    .is_some_and(|&(_, s)| h.base_offset < s)
                {
                    break;
                }
                if epochs.latest().is_none_or(|e| h.leader_epoch > e) {
                    epochs.assign(h.leader_epoch, h.base_offset);
                }
            }
        }
        Ok(epochs)
    }

    fn active(&self) -> &Segment {
        match self.segments.values().next_back() {
            Some(s) => s,
            None => unreachable!("a log always has an active segment"),
        }
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        match self.segments.values_mut().next_back() {
            Some(s) => s,
            None => unreachable!("a log always has an active segment"),
        }
    }

    /// The first offset still in the log.
    pub fn start_offset(&self) -> Offset {
        self.segments
            .first_key_value()
            .map_or(Offset::ZERO, |(&b, _)| b)
    }

    /// The offset the next appended record will get ("log end offset").
    pub fn end_offset(&self) -> Offset {
        self.active().next_offset
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .values()
            .map(|s| SegmentInfo {
                base_offset: s.base,
                next_offset: s.next_offset,
                size_bytes: s.size,
                max_timestamp: s.max_timestamp,
                compacted: s.compacted,
            })
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings (a topic's configs were altered); they apply
    /// from the next append, roll or retention pass.
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The newest leader epoch that wrote to this log.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest()
    }

    /// Which leader epoch started writing at which offset, oldest first.
    pub fn leader_epochs(&self) -> &[(LeaderEpoch, Offset)] {
        self.epochs.entries()
    }

    /// The leader epoch that wrote `offset`.
    pub fn epoch_for(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.epochs.epoch_for(offset)
    }

    /// Appends one batch as the leader in `epoch`: checks it (size, magic,
    /// CRC, record structure, timestamps), gives it the next offsets and
    /// the epoch, and writes it without re-encoding.
    pub fn append(&mut self, batch: &[u8], epoch: LeaderEpoch) -> Result<AppendInfo> {
        let checked = check_batch(batch, self.config.batch_bytes_max)?;
        self.append_checked(&checked, epoch)
    }

    /// Appends a batch that already passed [`check_batch`]. The bytes are
    /// written as they are, except for the base offset and leader epoch,
    /// which sit outside the CRC.
    pub fn append_checked<B: AsRef<[u8]>>(
        &mut self,
        batch: &CheckedBatch<B>,
        epoch: LeaderEpoch,
    ) -> Result<AppendInfo> {
        let bytes = batch.bytes.as_ref();
        let size = bytes.len();
        if size > self.config.batch_bytes_max {
            let limit = self.config.batch_bytes_max;
            return Err(BatchError::TooLarge { size, limit }.into());
        }
        self.check_epoch(epoch)?;
        if batch.header.producer_id != ProducerId::NONE {
            let h = &batch.header;
            let duplicate = |first: Offset, last: Offset, written: Written| AppendInfo {
                base_offset: first,
                last_offset: last,
                max_timestamp: h.max_timestamp,
                record_count: h.record_count,
                written,
            };
            match self.producers.check(h)? {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(b) => {
                    return Ok(duplicate(b.first_offset, b.last_offset, Written::Duplicate));
                }
                SequenceCheck::DuplicateUncached => {
                    return Ok(duplicate(
                        Offset::ZERO,
                        Offset::ZERO,
                        Written::DuplicateOffsetsUnknown,
                    ));
                }
            }
        }
        let header = BatchHeader {
            base_offset: self.end_offset(),
            leader_epoch: epoch,
            ..batch.header
        };
        self.write_batch(bytes, &header)
    }

    /// Refuses a write in an epoch older than the newest one that wrote here.
    pub(crate) fn check_epoch(&self, epoch: LeaderEpoch) -> Result<()> {
        let latest = self.epochs.latest();
        if epoch.0 < 0 || latest.is_some_and(|latest| epoch < latest) {
            return Err(Error::StaleEpoch { epoch, latest });
        }
        Ok(())
    }

    /// Writes a batch that passed every check at the log end, as `header`
    /// says (its base offset and leader epoch): rolls first if due, records
    /// a new epoch, updates producer state and syncs per the fsync policy.
    pub(crate) fn write_batch(&mut self, bytes: &[u8], header: &BatchHeader) -> Result<AppendInfo> {
        // Callers check this; a replicated batch may start past the end
        // where compaction emptied whole batches on the leader.
        debug_assert!(
            header.base_offset >= self.end_offset(),
            "a batch starts at or after the log end"
        );
        self.maybe_roll(bytes.len(), header.last_offset_delta)?;
        if header.base_offset > self.end_offset() && !self.active().compacted {
            // A gap the leader's compaction left: mark the segment as one
            // whose offsets may skip, as compaction does, before writing.
            let marker = self.dir.join(file_name(self.active().base, "compacted"));
            fs::write(&marker, b"").map_err(Error::io("writing", &marker))?;
            self.active_mut().compacted = true;
        }
        let (epoch, base_offset) = (header.leader_epoch, header.base_offset);
        if self.epochs.assign(epoch, base_offset)
            && let Err(e) = self.epochs.save()
        {
            self.epochs.truncate_from(base_offset);
            return Err(e);
        }
        self.active_mut().append(bytes, header)?;
        if header.producer_id != ProducerId::NONE {
            self.producers.update(header, self.clock.now_ms());
        }
        if let Err(e) = self.sync_per_policy() {
            // Not on disk, so not written: a batch left in place would be
            // served, and a retry taken for a duplicate and acknowledged,
            // though the kernel may already have dropped its pages.
            if let Err(undo) = self.truncate_to(base_offset) {
                tracing::error!(error = %undo, "could not take back a batch whose fsync failed");
            }
            return Err(e);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
            record_count: header.record_count,
            written: Written::New,
        })
    }

    fn maybe_roll(&mut self, batch_len: usize, last_offset_delta: u32) -> Result<()> {
        let now = self.clock.now_ms();
        let a = self.active();
        if a.size == 0 {
            return Ok(());
        }
        let full = a.size + batch_len as u64 > self.config.segment_bytes;
        let old = now - a.created_ms >= self.config.segment_ms;
        let offsets_overflow =
            a.next_offset.0 + u64::from(last_offset_delta) - a.base.0 > u64::from(u32::MAX);
        if full || old || offsets_overflow {
            self.roll()?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end; no-op
    /// while the active segment is empty.
    pub fn roll(&mut self) -> Result<()> {
        if self.active().size == 0 {
            return Ok(());
        }
        let sync = self.config.fsync != FsyncPolicy::Never;
        let active = self.active_mut();
        active.seal();
        if sync {
            active.sync()?;
        }
        let end = self.end_offset();
        let now = self.clock.now_ms();
        let segment = Segment::create(&self.dir, end, self.config.index_interval_bytes, now)?;
        self.segments.insert(end, segment);
        // A snapshot per segment keeps the replay after a restart to the active segment.
        self.producers.save_snapshot(&self.dir, end)?;
        Ok(())
    }

    /// Syncs what `fsync` asks of each append. Only `Always` makes the
    /// append wait for (and fail with) the disk; an interval flush that
    /// fails is logged here and retried by the next append or by
    /// housekeeping, which reports it, while the append it rode on stands.
    fn sync_per_policy(&mut self) -> Result<()> {
        match self.config.fsync {
            FsyncPolicy::Always => self.active().sync_log(),
            FsyncPolicy::IntervalMs(_) => {
                if let Err(e) = self.flush_if_due() {
                    tracing::warn!(error = %e, "interval flush failed; retrying later");
                }
                Ok(())
            }
            FsyncPolicy::Never => Ok(()),
        }
    }

    /// Forces every segment's data and indexes to disk.
    pub fn flush(&mut self) -> Result<()> {
        for segment in self.segments.values_mut() {
            segment.sync()?;
        }
        self.last_sync_ms = self.clock.now_ms();
        Ok(())
    }

    /// With an interval fsync policy, flushes when the interval has passed.
    /// Returns whether it flushed.
    pub fn flush_if_due(&mut self) -> Result<bool> {
        let FsyncPolicy::IntervalMs(ms) = self.config.fsync else {
            return Ok(false);
        };
        if self.clock.now_ms() - self.last_sync_ms < ms as i64 {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// Flushes everything and snapshots producer state; the next open
    /// finds nothing to repair or replay.
    pub fn close(mut self) -> Result<()> {
        self.flush()?;
        self.producers.save_snapshot(&self.dir, self.end_offset())
    }

    /// Deletes the log and its directory (the topic was deleted).
    pub fn delete(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(Error::io("deleting", &self.dir))
    }

    /// Reads whole batches starting with the one that holds `from`, up to
    /// `max_bytes` (but always at least one whole batch when one is
    /// there), and only batches that end before `upper` (the high
    /// watermark; `None` is the log end). Every batch returned has had its
    /// CRC, offsets and leader epoch checked; damage is an error, never data.
    pub fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Option<Offset>,
    ) -> Result<ReadResult> {
        let (start, end) = (self.start_offset(), self.end_offset());
        if from < start || from > end {
            return Err(Error::OffsetOutOfRange {
                requested: from,
                start,
                end,
            });
        }
        let upper = upper.map_or(end, |u| u.min(end));
        let mut cursor = from;
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(start, |(&b, _)| b);
        for segment in self.segments.range(first..).map(|(_, s)| s) {
            if cursor >= upper {
                break;
            }
            if let Some((bytes, next_offset)) =
                segment.read(cursor, upper, max_bytes, &self.epochs)?
            {
                return Ok(ReadResult { bytes, next_offset });
            }
            if segment.next_offset >= upper {
                break;
            }
            cursor = cursor.max(segment.next_offset);
        }
        Ok(ReadResult {
            bytes: Bytes::new(),
            next_offset: from,
        })
    }

    /// The first offset whose record has a timestamp at or after `ts`;
    /// `None` when every record is older.
    pub fn offset_for_timestamp(&self, ts: Timestamp) -> Result<Option<Offset>> {
        Ok(self.record_for_timestamp(ts)?.map(|(offset, _)| offset))
    }

    /// [`Log::offset_for_timestamp`] with that record's own timestamp.
    pub fn record_for_timestamp(&self, ts: Timestamp) -> Result<Option<(Offset, Timestamp)>> {
        for segment in self.segments.values() {
            if let Some(found) = segment.record_for_timestamp(ts)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Deletes the oldest sealed segments that are past `retention.ms`
    /// (their newest record is older) or beyond `retention.bytes`. The
    /// active segment is never deleted.
    pub fn apply_retention(&mut self) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        if !self.config.cleanup_policy.deletes() {
            return Ok(report);
        }
        let now = self.clock.now_ms();
        let mut total = self.size_bytes();
        while self.segments.len() > 1 {
            let Some((_, first)) = self.segments.first_key_value() else {
                break;
            };
            let expired = self
                .config
                .retention_ms
                .is_some_and(|ms| first.max_timestamp.0 < now.saturating_sub(ms));
            let oversize = self
                .config
                .retention_bytes
                .is_some_and(|max| total - first.size >= max);
            if !(expired || oversize) {
                break;
            }
            first.delete_files(&self.dir)?;
            total -= first.size;
            report.segments_deleted += 1;
            report.bytes_deleted += first.size;
            self.segments.pop_first();
        }
        if report.segments_deleted > 0 && self.epochs.trim_before(self.start_offset()) {
            self.epochs.save()?;
        }
        Ok(report)
    }
}

/// A producer's batch that passed [`check_batch`], in any byte container
/// (a slice, a `Vec`, a `Bytes` straight from the network).
#[derive(Debug, Clone)]
pub struct CheckedBatch<B> {
    bytes: B,
    header: BatchHeader,
}

impl<B: AsRef<[u8]>> CheckedBatch<B> {
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }
}

/// The checks a batch copied from a partition leader must pass: exactly one
/// whole batch of at most `size_limit` bytes, magic 2, a good CRC. Its
/// records are not parsed again (the leader checked them when a producer
/// sent them), and its offsets may have gaps (compaction).
pub fn check_replicated_batch<B: AsRef<[u8]>>(
    bytes: B,
    size_limit: usize,
) -> Result<CheckedBatch<B>> {
    let parsed = Batch::parse(bytes.as_ref(), size_limit)?;
    let header = parsed.header;
    let len = bytes.as_ref().len();
    if header.total_len() != len {
        return Err(BatchError::TrailingBytes {
            extra: len - header.total_len(),
        }
        .into());
    }
    Ok(CheckedBatch { bytes, header })
}

/// The checks a producer's batch must pass before it is written: exactly
/// one whole batch of at most `size_limit` bytes, magic 2, a good CRC, a
/// codec Eddy reads, not transactional, records (decompressed, within
/// [`crate::DECOMPRESSED_BYTES_MAX`]) numbered 0, 1, 2, … and well-formed,
/// and a header whose newest timestamp matches its records. A compressed
/// batch is stored as sent.
pub fn check_batch<B: AsRef<[u8]>>(bytes: B, size_limit: usize) -> Result<CheckedBatch<B>> {
    let batch = bytes.as_ref();
    let parsed = Batch::parse(batch, size_limit)?;
    let h = parsed.header;
    if h.total_len() != batch.len() {
        return Err(BatchError::TrailingBytes {
            extra: batch.len() - h.total_len(),
        }
        .into());
    }
    if h.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL) != 0 {
        return Err(BatchError::Transactional.into());
    }
    if h.last_offset_delta + 1 != h.record_count {
        return Err(BatchError::BadRecord {
            index: 0,
            reason: "a new batch must number its records 0, 1, 2, … without gaps",
        }
        .into());
    }
    let max = parsed.validate_records()?;
    if max != h.max_timestamp {
        return Err(BatchError::MaxTimestampMismatch {
            header: h.max_timestamp,
            records: max,
        }
        .into());
    }
    Ok(CheckedBatch { bytes, header: h })
}

/// Makes sure `dir` is an Eddy partition directory, creating it if missing
/// or empty.
fn claim_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let marker = dir.join(MARKER_FILE);
    match fs::read_to_string(&marker) {
        Ok(text) if text == MARKER_TEXT => Ok(()),
        Ok(text) => Err(Error::NotEddyDir {
            path: dir.to_path_buf(),
            reason: format!(
                "its {MARKER_FILE} file says {:?}, this Eddy reads {:?}",
                text.trim(),
                MARKER_TEXT.trim()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut entries = fs::read_dir(dir).map_err(Error::io("listing", dir))?;
            if entries.next().is_some() {
                return Err(Error::NotEddyDir {
                    path: dir.to_path_buf(),
                    reason: format!("it holds files but no {MARKER_FILE} file"),
                });
            }
            fs::write(&marker, MARKER_TEXT).map_err(Error::io("writing", &marker))
        }
        Err(e) => Err(Error::io("reading", marker)(e)),
    }
}

/// Finishes interrupted compactions, removes leftovers, and returns the
/// segment base offsets in order.
fn tidy_files(dir: &Path, recovery: &mut RecoveryReport) -> Result<Vec<Offset>> {
    let mut bases = Vec::new();
    let mut others = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io("listing", dir))? {
        let entry = entry.map_err(Error::io("listing", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".cleaned") || name.ends_with(".tmp") {
            fs::remove_file(entry.path()).map_err(Error::io("removing", entry.path()))?;
        } else if name.ends_with(".snapshot") {
            // Producer-state snapshots are named by log end, not by segment.
        } else if let Some(base) = name.strip_suffix(".log.swap").and_then(parse_base) {
            finish_swap(dir, base)?;
            recovery.swaps_completed += 1;
            bases.push(base);
        } else if let Some(base) = name.strip_suffix(".log").and_then(parse_base) {
            bases.push(base);
        } else if let Some((stem, _)) = name.split_once('.')
            && let Some(base) = parse_base(stem)
        {
            others.push((base, entry.path()));
        }
    }
    bases.sort();
    bases.dedup();
    for (base, path) in others {
        if bases.binary_search(&base).is_err() {
            fs::remove_file(&path).map_err(Error::io("removing orphan", &path))?;
        }
    }
    Ok(bases)
}

/// A compacted segment was complete (`.log.swap`) but not yet in place:
/// put it in place and let its indexes be rebuilt from it.
pub(crate) fn finish_swap(dir: &Path, base: Offset) -> Result<()> {
    for ext in ["index", "timeindex"] {
        let p = dir.join(file_name(base, ext));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", p)(e)),
        }
    }
    let marker = dir.join(file_name(base, "compacted"));
    fs::write(&marker, b"").map_err(Error::io("writing", &marker))?;
    let swap = dir.join(format!("{}.swap", file_name(base, "log")));
    let log = dir.join(file_name(base, "log"));
    fs::rename(&swap, &log).map_err(Error::io("renaming", &swap))
}

/// Makes file creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir))
}

fn parse_base(stem: &str) -> Option<Offset> {
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok().map(Offset))
        .flatten()
}
