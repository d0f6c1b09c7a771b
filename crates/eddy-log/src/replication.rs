//! What replication needs from a log (Kafka's leader epochs, KIP-101 and
//! KIP-279): a follower copies its leader's batches as they are
//! ([`Log::append_replicated`]); after a leader change it asks the new
//! leader where its last epoch ended ([`Log::end_offset_for_epoch`] on the
//! leader) and cuts its own log back to there ([`Log::truncate_to`]); and a
//! follower left behind the leader's log start starts over
//! ([`Log::reset_to`]).
//!
//! Crash safety: truncation removes the newest data first (later segments,
//! then the cut, each made durable before the next step), and only then the
//! epoch history and producer snapshots that described it, so a crash at any
//! point leaves a prefix of the old log that [`Log::open`] repairs as after
//! any crash. After an error, drop the `Log` and open it again: the files
//! are a prefix of the old log, but the log in memory may not match them.

use std::collections::BTreeMap;

use crate::batch::BatchError;
use crate::config::BATCH_BYTES_LIMIT;
use crate::epoch::EpochCache;
use crate::error::{Error, Result};
use crate::log::{AppendInfo, CheckedBatch, Log, sync_dir};
use crate::producer_state::{ProducerState, delete_snapshots};
use crate::segment::Segment;
use crate::types::{LeaderEpoch, Offset};

impl Log {
    /// Appends a batch copied from the partition leader, keeping the base
    /// offset and leader epoch the leader gave it (both in its header,
    /// outside the CRC), so the follower's log is byte for byte the
    /// leader's. The batch must start at [`Log::end_offset`] or after it
    /// (where the leader's compaction removed whole batches; before it is
    /// [`Error::NotContiguous`]) and its epoch must not be older than
    /// [`Log::latest_epoch`] ([`Error::StaleEpoch`]).
    ///
    /// Sequences are not checked (the leader did), but producer state is
    /// updated exactly as on the leader, so a follower that becomes leader
    /// detects the same duplicates. Rolls segments and syncs as
    /// [`Log::append_checked`] does.
    pub fn append_replicated<B: AsRef<[u8]>>(
        &mut self,
        batch: &CheckedBatch<B>,
    ) -> Result<AppendInfo> {
        let (bytes, header) = (batch.bytes(), batch.header());
        // Only the format's limit, not the topic's `max.message.bytes`: the
        // leader accepted the batch under the limit of its day, and a
        // follower that refused it could never catch up.
        if bytes.len() > BATCH_BYTES_LIMIT {
            let (size, limit) = (bytes.len(), BATCH_BYTES_LIMIT);
            return Err(BatchError::TooLarge { size, limit }.into());
        }
        let end = self.end_offset();
        if header.base_offset < end {
            return Err(Error::NotContiguous {
                expected: end,
                got: header.base_offset,
            });
        }
        self.check_epoch(header.leader_epoch)?;
        self.write_batch(bytes, header)
    }

    /// Removes every batch at or after `offset` (Kafka's `truncateTo`).
    ///
    /// Batches stay whole: the cut is before the first batch whose last
    /// offset is at or after `offset`, so a batch holding `offset` goes
    /// too, and the new [`Log::end_offset`] is the end of the last batch
    /// kept, which without compaction gaps is the base offset of the first
    /// batch removed (at most `offset`, and exactly `offset` when it is a
    /// batch boundary). `offset` outside `start_offset()..=end_offset()` is
    /// [`Error::OffsetOutOfRange`]; `end_offset()` itself changes nothing.
    ///
    /// Segments starting after `offset` are deleted; the one holding it is
    /// cut (log and both indexes) and becomes the active segment, empty if
    /// `offset` is its base. The epoch history and producer state then
    /// describe the shorter log, exactly as [`Log::open`] would rebuild
    /// them: producer snapshots past the new end are deleted, and the
    /// batches after the newest remaining one are replayed.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<()> {
        let (start, end) = (self.start_offset(), self.end_offset());
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                start,
                end,
            });
        }
        if offset == end {
            return Ok(());
        }
        self.delete_segments_after(offset)?;
        let dir = self.dir.clone();
        let (interval, now) = (self.config.index_interval_bytes, self.clock.now_ms());
        let holding = self.active_mut();
        let pos = holding.cut_position(offset)?;
        holding.truncate_into_active(&dir, pos, interval, now)?;
        assert!(self.end_offset() <= offset, "truncation only removes");
        self.fit_epochs_to_log(false)?;
        self.rebuild_producers()?;
        // The snapshot deletions and the epoch checkpoint's rename must not
        // be undone by a power loss once the log grows again.
        sync_dir(&self.dir)
    }

    /// Deletes the segments that start after `offset`, newest first, and
    /// makes that durable. Never the first segment: `offset` is in the log.
    fn delete_segments_after(&mut self, offset: Offset) -> Result<()> {
        while let Some((&base, segment)) = self.segments.last_key_value()
            && base > offset
        {
            segment.delete_files(&self.dir)?;
            self.segments.pop_last();
        }
        sync_dir(&self.dir)
    }

    /// Deletes all data and restarts the log empty at `offset`: for a
    /// follower whose whole log is behind the leader's log start, after
    /// retention removed what it would need. Afterwards
    /// `start_offset() == end_offset() == offset`, with no epoch history and
    /// no producer state.
    pub fn reset_to(&mut self, offset: Offset) -> Result<()> {
        // History first: until the new segment exists, a crash leaves a
        // prefix of the old log, whose epochs and producers open() rebuilds
        // from the batches, never from a checkpoint that is no longer true.
        self.epochs.delete_checkpoint()?;
        delete_snapshots(&self.dir)?;
        for segment in self.segments.values().rev() {
            segment.delete_files(&self.dir)?;
        }
        sync_dir(&self.dir)?;
        let now = self.clock.now_ms();
        let segment = Segment::create(&self.dir, offset, self.config.index_interval_bytes, now)?;
        self.segments = BTreeMap::from([(offset, segment)]);
        self.epochs = EpochCache::empty(&self.dir);
        self.epochs.save()?;
        self.producers = ProducerState::new(self.config.producers);
        sync_dir(&self.dir)
    }

    /// Kafka's `OffsetForLeaderEpoch`: for the newest epoch `E` in this
    /// log's history with `E <= epoch`, returns `E` and where it ended: the
    /// start of the next epoch in the history, or [`Log::end_offset`] when
    /// `E` is the latest. `None` when the history holds no epoch at or below
    /// `epoch` (the follower asking then truncates to its log start).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.end_offset_for(epoch, self.end_offset())
    }
}
