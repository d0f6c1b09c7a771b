//! One segment: a `.log` file of whole batches starting at `base`, with its
//! sparse `.index` and `.timeindex`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::batch::{Batch, BatchHeader, HEADER_LEN, set_base_offset, set_leader_epoch};

/// The header bytes an append rewrites: base offset, length, epoch, magic.
const PATCHED_PREFIX_LEN: usize = 17;
use crate::config::BATCH_BYTES_LIMIT;
use crate::epoch::EpochCache;
use crate::error::{Error, Result};
use crate::index::{IndexFile, OffsetEntry, TimeEntry, absolute};
use crate::types::{Offset, Timestamp};

/// `00000000000000001234.log` and friends.
pub(crate) fn file_name(base: Offset, ext: &str) -> String {
    format!("{:020}.{ext}", base.0)
}

/// What opening a segment found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SegmentRecovery {
    pub batches_scanned: u64,
    pub bytes_scanned: u64,
    pub truncated_bytes: u64,
    pub index_entries_dropped: usize,
    /// Where the active segment was cut, and why.
    pub truncation: Option<(u64, String)>,
    /// A sealed segment that failed its check: (position, reason).
    pub corruption: Option<(u64, String)>,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base: Offset,
    pub path: PathBuf,
    pub file: Arc<File>,
    pub size: u64,
    /// One past the last offset this segment covers.
    pub next_offset: Offset,
    pub max_timestamp: Timestamp,
    /// Compaction removed batches, so offsets may have gaps.
    pub compacted: bool,
    pub created_ms: i64,
    /// Written since the last fsync.
    dirty: bool,
    index: IndexFile<OffsetEntry>,
    time_index: IndexFile<TimeEntry>,
    bytes_since_entry: u64,
    index_interval: u64,
    /// A damaged index entry was found and logged (once per segment).
    index_damage_reported: AtomicBool,
}

/// Whether a segment may still be appended to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Active,
    Sealed { next_offset: Offset },
}

impl Segment {
    /// Creates a new, empty active segment.
    pub fn create(dir: &Path, base: Offset, index_interval: u32, now_ms: i64) -> Result<Segment> {
        let path = dir.join(file_name(base, "log"));
        for ext in ["index", "timeindex"] {
            let p = dir.join(file_name(base, ext));
            if p.exists() {
                std::fs::remove_file(&p).map_err(Error::io("removing stale index", &p))?;
            }
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            // An empty file of this name is a roll that failed before
            // (the disk was full, say): it holds nothing, so take it over.
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    && std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) =>
            {
                OpenOptions::new().read(true).write(true).open(&path)
            }
            other => other,
        }
        .map_err(Error::io("creating segment", &path))?;
        let indexes =
            IndexFile::open(&dir.join(file_name(base, "index")), true).and_then(|index| {
                Ok((
                    index,
                    IndexFile::open(&dir.join(file_name(base, "timeindex")), true)?,
                ))
            });
        let (index, time_index) = match indexes {
            Ok(both) => both,
            Err(e) => {
                // Leave nothing half made: the next roll starts afresh.
                drop(file);
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        Ok(Segment {
            base,
            file: Arc::new(file),
            size: 0,
            next_offset: base,
            max_timestamp: Timestamp::MIN,
            compacted: false,
            created_ms: now_ms,
            dirty: false,
            index,
            time_index,
            bytes_since_entry: 0,
            index_interval: u64::from(index_interval),
            index_damage_reported: AtomicBool::new(false),
            path,
        })
    }

    /// Opens an existing segment and checks it: indexes that disagree with
    /// the log are cut back and rebuilt from it; the batches after the last
    /// good index entry are scanned. An active segment is truncated at the
    /// first torn or corrupt batch; a sealed one is never changed, and
    /// corruption is reported instead.
    pub fn open(
        dir: &Path,
        base: Offset,
        role: Role,
        index_interval: u32,
        now_ms: i64,
    ) -> Result<(Segment, SegmentRecovery)> {
        let path = dir.join(file_name(base, "log"));
        let active = role == Role::Active;
        let file = OpenOptions::new()
            .read(true)
            .write(active)
            .open(&path)
            .map_err(Error::io("opening segment", &path))?;
        let size = file
            .metadata()
            .map_err(Error::io("reading size of", &path))?
            .len();
        let mut segment = Segment {
            base,
            file: Arc::new(file),
            size,
            next_offset: match role {
                Role::Active => base,
                Role::Sealed { next_offset } => next_offset,
            },
            max_timestamp: Timestamp::MIN,
            compacted: dir.join(file_name(base, "compacted")).exists(),
            created_ms: now_ms,
            dirty: false,
            index: IndexFile::open(&dir.join(file_name(base, "index")), active)?,
            time_index: IndexFile::open(&dir.join(file_name(base, "timeindex")), active)?,
            bytes_since_entry: 0,
            index_interval: u64::from(index_interval),
            index_damage_reported: AtomicBool::new(false),
            path,
        };
        let report = segment.recover(active)?;
        if active && segment.size > 0 {
            // The segment's age survives restarts: it is as old as its first
            // batch says (never younger than now), as Kafka's `segment.ms` is.
            if let Some(Ok((_, first))) = segment.headers_from(0).next() {
                segment.created_ms = now_ms.min(first.max_timestamp.0);
            }
        }
        if !active {
            segment.index.uncache();
            segment.time_index.uncache();
        }
        Ok((segment, report))
    }

    fn recover(&mut self, active: bool) -> Result<SegmentRecovery> {
        let mut report = SegmentRecovery {
            index_entries_dropped: self.trim_indexes(active)?,
            ..SegmentRecovery::default()
        };
        let (mut expected, mut pos, mut max_ts) = match self.index.last()? {
            Some(e) => {
                let t = self.time_index.entry(self.time_index.len() - 1)?;
                (
                    absolute(self.base, e.relative_offset),
                    u64::from(e.position),
                    t.max_timestamp_before,
                )
            }
            None => (self.base, 0, Timestamp::MIN),
        };
        let mut scratch = Vec::new();
        // Scanning starts at an indexed batch (or the segment start), where
        // `bytes_since_entry` is 0, so the first batch never gets a second
        // entry and later ones get exactly the entries an append would add.
        self.bytes_since_entry = 0;
        while pos < self.size {
            match self.check_batch_at(pos, expected, active, &mut scratch) {
                Ok(h) => {
                    self.maybe_index(pos, h.base_offset, max_ts)?;
                    self.bytes_since_entry += h.total_len() as u64;
                    max_ts = max_ts.max(h.max_timestamp);
                    expected = h.next_offset();
                    pos += h.total_len() as u64;
                    report.batches_scanned += 1;
                    report.bytes_scanned += h.total_len() as u64;
                }
                Err(reason) if active => {
                    report.truncated_bytes = self.size - pos;
                    report.truncation = Some((pos, reason));
                    self.truncate_log(pos)?;
                    break;
                }
                Err(reason) => {
                    report.corruption = Some((pos, reason));
                    break;
                }
            }
        }
        self.max_timestamp = max_ts;
        if active {
            self.next_offset = expected;
        } else if report.corruption.is_none() && !self.compacted && expected != self.next_offset {
            report.corruption = Some((pos, self.missing_tail(expected)));
        }
        Ok(report)
    }

    /// Cuts both indexes back to entries that agree with each other and
    /// with the log: same length, increasing (checked in full for the
    /// active segment), and a last entry that points at the batch it names.
    fn trim_indexes(&mut self, active: bool) -> Result<usize> {
        let before = self.index.len().max(self.time_index.len());
        let mut len = self.index.len().min(self.time_index.len());
        if active {
            len = self.monotonic_prefix(len)?;
        }
        let mut misses = 0;
        while len > 0 {
            let e = self.index.entry(len - 1)?;
            let t = self.time_index.entry(len - 1)?;
            let offset = absolute(self.base, e.relative_offset);
            if t.relative_offset == e.relative_offset
                && u64::from(e.position) < self.size
                && self
                    .header_at(u64::from(e.position))
                    .is_ok_and(|h| h.base_offset == offset)
            {
                break;
            }
            len -= 1;
            misses += 1;
            if misses == 8 {
                len = 0; // the index is garbage; rebuild it from the log
            }
        }
        self.index.truncate(len)?;
        self.time_index.truncate(len)?;
        Ok(before - len)
    }

    fn monotonic_prefix(&self, len: usize) -> Result<usize> {
        let mut prev: Option<(OffsetEntry, TimeEntry)> = None;
        for k in 0..len {
            let (e, t) = (self.index.entry(k)?, self.time_index.entry(k)?);
            if let Some((pe, pt)) = prev
                && (e.relative_offset <= pe.relative_offset
                    || e.position <= pe.position
                    || t.max_timestamp_before < pt.max_timestamp_before)
            {
                return Ok(k);
            }
            prev = Some((e, t));
        }
        Ok(len)
    }

    /// The batch header at `pos`, checked for a sane length.
    fn header_at(&self, pos: u64) -> Result<BatchHeader, String> {
        let mut raw = [0u8; HEADER_LEN];
        let n = read_up_to(&self.file, &mut raw, pos).map_err(|e| e.to_string())?;
        let h = BatchHeader::parse(&raw[..n]).map_err(|e| e.to_string())?;
        if h.total_len() > BATCH_BYTES_LIMIT {
            return Err(format!(
                "batch length {} is beyond any valid batch",
                h.total_len()
            ));
        }
        if pos + h.total_len() as u64 > self.size {
            return Err(format!(
                "batch of {} bytes runs past the end of the segment ({} bytes)",
                h.total_len(),
                self.size
            ));
        }
        Ok(h)
    }

    /// Checks the batch at `pos` during recovery: header, offsets, and for
    /// the active segment the CRC (sealed segments were checked when they
    /// were active; their CRCs are checked on every read).
    fn check_batch_at(
        &self,
        pos: u64,
        expected: Offset,
        active: bool,
        scratch: &mut Vec<u8>,
    ) -> Result<BatchHeader, String> {
        let h = self.header_at(pos)?;
        let offset_ok = if self.compacted {
            h.base_offset >= expected
        } else {
            h.base_offset == expected
        };
        if !offset_ok {
            return Err(format!(
                "batch has base offset {}, expected {expected}",
                h.base_offset
            ));
        }
        let beyond = if active {
            h.last_offset().0 - self.base.0 > u64::from(u32::MAX)
        } else {
            h.last_offset() >= self.next_offset
        };
        if beyond {
            return Err(format!(
                "batch offset {} is beyond this segment",
                h.last_offset()
            ));
        }
        if active {
            scratch.resize(h.total_len(), 0);
            self.file
                .read_exact_at(scratch, pos)
                .map_err(|e| e.to_string())?;
            Batch::parse(scratch, BATCH_BYTES_LIMIT).map_err(|e| e.to_string())?;
        }
        Ok(h)
    }

    /// Where to cut so that no batch holding `offset` or a later one stays:
    /// the position of the first batch whose last offset is at or after
    /// `offset`, or the size when there is none. A damaged header before
    /// that is cut as well, as nothing after it can be read.
    pub fn cut_position(&self, offset: Offset) -> Result<u64> {
        let (_, mut pos) = self.seek(offset)?;
        while pos < self.size {
            match self.header_at(pos) {
                Ok(h) if h.last_offset() < offset => pos += h.total_len() as u64,
                Ok(_) => break,
                Err(reason) => {
                    tracing::warn!(
                        segment = %self.path.display(),
                        position = pos,
                        %reason,
                        "damaged batch before the truncation point; cutting there"
                    );
                    break;
                }
            }
        }
        Ok(pos)
    }

    /// Cuts the segment at `pos` (a batch boundary), durably, and reopens
    /// it as the active segment, so its end, newest timestamp and indexes
    /// are exactly what a restart would find.
    pub fn truncate_into_active(
        &mut self,
        dir: &Path,
        pos: u64,
        index_interval: u32,
        now_ms: i64,
    ) -> Result<()> {
        // A sealed segment's file is open read-only.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(Error::io("opening segment", &self.path))?;
        self.file = Arc::new(file);
        self.truncate_log(pos)?;
        self.sync_log()?;
        let (reopened, report) =
            Segment::open(dir, self.base, Role::Active, index_interval, now_ms)?;
        if let Some((position, reason)) = &report.truncation {
            tracing::warn!(
                segment = %self.path.display(),
                position,
                %reason,
                "damaged batch before the truncation point; cut there"
            );
        }
        *self = reopened;
        Ok(())
    }

    fn truncate_log(&mut self, pos: u64) -> Result<()> {
        self.file
            .set_len(pos)
            .map_err(Error::io("truncating segment", &self.path))?;
        self.size = pos;
        let keep = match self.index.search(|e| u64::from(e.position) < pos)? {
            Some((k, _)) => k + 1,
            None => 0,
        };
        self.index.truncate(keep)?;
        self.time_index.truncate(keep)?;
        Ok(())
    }

    /// Adds an index entry for the batch at `pos` if enough bytes passed
    /// since the last one. `max_ts_before` is the largest timestamp of the
    /// batches before it.
    fn maybe_index(&mut self, pos: u64, offset: Offset, max_ts_before: Timestamp) -> Result<()> {
        if self.bytes_since_entry < self.index_interval {
            return Ok(());
        }
        let relative_offset = (offset.0 - self.base.0) as u32;
        let entries = self.index.len();
        self.index.append(OffsetEntry {
            relative_offset,
            position: pos as u32,
        })?;
        let timed = self.time_index.append(TimeEntry {
            max_timestamp_before: max_ts_before,
            relative_offset,
        });
        if let Err(e) = timed {
            // Both or neither: entry k of each index describes one batch.
            let _ = self.index.truncate(entries);
            return Err(e);
        }
        self.bytes_since_entry = 0;
        Ok(())
    }

    /// Appends a batch as `header` says: its bytes as given, except the
    /// first 17 (base offset, length, leader epoch, magic), which come from
    /// `header`. Those fields sit outside the CRC, so the batch stays valid,
    /// and the caller's buffer need not be copied or mutable.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader) -> Result<()> {
        assert_eq!(header.total_len(), batch.len());
        assert!(header.base_offset >= self.next_offset, "offsets only grow");
        let pos = self.size;
        let mut prefix = [0u8; PATCHED_PREFIX_LEN];
        prefix.copy_from_slice(&batch[..PATCHED_PREFIX_LEN]);
        set_base_offset(&mut prefix, header.base_offset);
        set_leader_epoch(&mut prefix, header.leader_epoch);
        let written = self
            .file
            .write_all_at(&prefix, pos)
            .and_then(|()| {
                self.file.write_all_at(
                    &batch[PATCHED_PREFIX_LEN..],
                    pos + PATCHED_PREFIX_LEN as u64,
                )
            })
            .map_err(Error::io("writing segment", &self.path))
            .and_then(|()| self.maybe_index(pos, header.base_offset, self.max_timestamp));
        if let Err(e) = written {
            // Leave no partial or unindexed batch behind, for reads or for
            // recovery to find: a full disk loses nothing written before.
            let _ = self.file.set_len(pos);
            return Err(e);
        }
        self.size += batch.len() as u64;
        self.bytes_since_entry += batch.len() as u64;
        self.next_offset = header.next_offset();
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.dirty = true;
        Ok(())
    }

    /// Stops appends to this segment: drops the in-memory index copies.
    pub fn seal(&mut self) {
        self.index.uncache();
        self.time_index.uncache();
    }

    /// Forces the log file (not the indexes, which recovery can rebuild) to disk.
    pub fn sync_log(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(Error::io("syncing segment", &self.path))
    }

    /// Forces the log and its indexes to disk if anything was written since the last sync.
    pub fn sync(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.sync_log()?;
        self.index.sync()?;
        self.time_index.sync()?;
        self.dirty = false;
        Ok(())
    }

    /// Where to start scanning for `target`: the last indexed batch at or
    /// before it, as (its offset, its position).
    fn seek(&self, target: Offset) -> Result<(Offset, u64)> {
        let rel = target
            .0
            .saturating_sub(self.base.0)
            .min(u64::from(u32::MAX)) as u32;
        match self.index.search(|e| e.relative_offset <= rel)? {
            Some((k, _)) => self.verified_entry(k, |offset| offset <= target),
            None => Ok((self.base, 0)),
        }
    }

    /// Index entry `k`, or the nearest one before it, whose batch is where
    /// the entry says and whose offset passes `wanted`, as (offset,
    /// position); `(base, 0)` when there is none. The active segment's
    /// entries are trusted (written by this process, or checked in full on
    /// open). A sealed segment's are checked here, on use, as opening
    /// checks only its last one: a damaged entry costs a longer scan from an
    /// earlier one, never a failed read.
    fn verified_entry(&self, k: usize, wanted: impl Fn(Offset) -> bool) -> Result<(Offset, u64)> {
        let mut next = Some(k);
        while let Some(i) = next {
            let e = self.index.entry(i)?;
            let offset = absolute(self.base, e.relative_offset);
            let pos = u64::from(e.position);
            if self.index.is_cached() {
                return Ok((offset, pos));
            }
            if wanted(offset)
                && pos < self.size
                && self.header_at(pos).is_ok_and(|h| h.base_offset == offset)
            {
                return Ok((offset, pos));
            }
            if !self.index_damage_reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    segment = %self.path.display(),
                    entry = i,
                    "index entry does not match the log; reading from an earlier entry (the index is rebuilt if the file is deleted while the partition is closed)"
                );
            }
            next = i.checked_sub(1);
        }
        Ok((self.base, 0))
    }

    /// Reads whole batches from the one containing (or first after) `from`,
    /// stopping before `max_bytes` would be exceeded (but always returning
    /// at least one batch) and before any batch reaching `upper`. Every
    /// returned batch is checked: CRC, offsets, leader epoch.
    pub fn read(
        &self,
        from: Offset,
        upper: Offset,
        max_bytes: usize,
        epochs: &EpochCache,
    ) -> Result<Option<(Bytes, Offset)>> {
        let (mut expected, mut pos) = self.seek(from)?;
        let window = (self.index_interval as usize).saturating_add(max_bytes);
        let mut chunk = Bytes::new();
        let mut chunk_pos = pos;
        let mut first: Option<usize> = None;
        let mut end = 0usize;
        while pos < self.size {
            let at = (pos - chunk_pos) as usize;
            if at + HEADER_LEN > chunk.len() {
                if first.is_some() {
                    break;
                }
                chunk = self.read_chunk(pos, window)?;
                chunk_pos = pos;
                if chunk.len() < HEADER_LEN {
                    return Err(self.corrupt(
                        pos,
                        format!("the segment ends {} bytes into a batch header", chunk.len()),
                    ));
                }
                continue;
            }
            let h = self.check_header(&chunk[at..], pos, expected)?;
            let total = h.total_len();
            if h.last_offset() < from {
                expected = h.next_offset();
                pos += total as u64;
                continue;
            }
            if h.last_offset() >= upper {
                break;
            }
            if let Some(f) = first
                && end - f + total > max_bytes
            {
                break;
            }
            if at + total > chunk.len() {
                if first.is_some() {
                    break;
                }
                chunk = self.read_chunk(pos, window.max(total))?;
                chunk_pos = pos;
                continue;
            }
            self.check_body(&chunk[at..at + total], pos, &h, epochs)?;
            first.get_or_insert(at);
            end = at + total;
            expected = h.next_offset();
            pos += total as u64;
        }
        if first.is_none() && pos >= self.size && !self.compacted && expected < self.next_offset {
            return Err(self.corrupt(pos, self.missing_tail(expected)));
        }
        Ok(first.map(|f| (chunk.slice(f..end), expected)))
    }

    /// Why a sealed segment that ends at a batch boundary before its last
    /// offset is damaged: the records between are lost, not skipped.
    fn missing_tail(&self, found_end: Offset) -> String {
        format!(
            "the segment ends after offset {} but the next segment starts at {}; the records between are missing",
            found_end.0.saturating_sub(1),
            self.next_offset
        )
    }

    fn read_chunk(&self, pos: u64, len: usize) -> Result<Bytes> {
        let len = len.min((self.size - pos) as usize);
        crate::pool::filled(len, |buf| {
            self.file
                .read_exact_at(buf, pos)
                .map_err(Error::io("reading segment", &self.path))
        })
    }

    fn corrupt(&self, position: u64, reason: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    fn check_header(&self, raw: &[u8], pos: u64, expected: Offset) -> Result<BatchHeader> {
        let h = BatchHeader::parse(raw).map_err(|e| self.corrupt(pos, e.to_string()))?;
        let offset_ok = if self.compacted {
            h.base_offset >= expected
        } else {
            h.base_offset == expected
        };
        if !offset_ok || h.last_offset() >= self.next_offset {
            return Err(self.corrupt(
                pos,
                format!(
                    "batch covers offsets {}..={} but this segment expects {expected} next and ends before {}",
                    h.base_offset,
                    h.last_offset(),
                    self.next_offset
                ),
            ));
        }
        if h.total_len() > BATCH_BYTES_LIMIT || pos + h.total_len() as u64 > self.size {
            return Err(self.corrupt(
                pos,
                format!("batch length {} is impossible here", h.total_len()),
            ));
        }
        Ok(h)
    }

    fn check_body(&self, raw: &[u8], pos: u64, h: &BatchHeader, epochs: &EpochCache) -> Result<()> {
        Batch::parse(raw, BATCH_BYTES_LIMIT).map_err(|e| self.corrupt(pos, e.to_string()))?;
        let epoch = epochs.epoch_for(h.base_offset);
        if epoch.is_some_and(|e| e != h.leader_epoch) {
            return Err(self.corrupt(
                pos,
                format!(
                    "batch at offset {} has leader epoch {} but the epoch history says {}",
                    h.base_offset,
                    h.leader_epoch,
                    epoch.map_or(-1, |e| e.0)
                ),
            ));
        }
        Ok(())
    }

    /// Walks the headers of every batch from position `pos` to the end.
    pub fn headers_from(&self, pos: u64) -> HeaderWalk<'_> {
        HeaderWalk { segment: self, pos }
    }

    /// Walks batch headers from the last indexed batch at or before `from`,
    /// so a walk that starts late in the segment reads little.
    pub fn headers_from_offset(&self, from: Offset) -> Result<HeaderWalk<'_>> {
        let (_, pos) = self.seek(from)?;
        Ok(self.headers_from(pos))
    }

    /// The first record whose timestamp is at least `ts` (its offset and
    /// timestamp), if any record in this segment has one.
    pub fn record_for_timestamp(&self, ts: Timestamp) -> Result<Option<(Offset, Timestamp)>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let pos = match self.time_index.search(|t| t.max_timestamp_before < ts)? {
            // Every batch before entry `k` is older than `ts`, so any
            // earlier entry is a correct (if slower) place to start.
            Some((k, _)) => self.verified_entry(k, |_| true)?.1,
            None => 0,
        };
        for item in self.headers_from(pos) {
            let (pos, h) = item?;
            if h.max_timestamp < ts {
                continue;
            }
            let raw = self.read_chunk(pos, h.total_len())?;
            let batch = Batch::parse(&raw, BATCH_BYTES_LIMIT)
                .map_err(|e| self.corrupt(pos, e.to_string()))?;
            let records = batch
                .decoded()
                .map_err(|e| self.corrupt(pos, e.to_string()))?;
            for record in records.iter() {
                let record = record.map_err(|e| self.corrupt(pos, e.to_string()))?;
                if record.timestamp >= ts {
                    return Ok(Some((record.offset, record.timestamp)));
                }
            }
        }
        Ok(None)
    }

    /// Deletes the segment's files.
    pub fn delete_files(&self, dir: &Path) -> Result<()> {
        for ext in ["log", "index", "timeindex", "compacted"] {
            let p = dir.join(file_name(self.base, ext));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("deleting", p)(e)),
            }
        }
        Ok(())
    }
}

/// Iterator over (position, header) of a segment's batches.
#[derive(Debug)]
pub(crate) struct HeaderWalk<'a> {
    segment: &'a Segment,
    pos: u64,
}

impl Iterator for HeaderWalk<'_> {
    type Item = Result<(u64, BatchHeader)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.segment.size {
            return None;
        }
        let pos = self.pos;
        match self.segment.header_at(pos) {
            Ok(h) => {
                self.pos += h.total_len() as u64;
                Some(Ok((pos, h)))
            }
            Err(reason) => {
                self.pos = self.segment.size;
                Some(Err(self.segment.corrupt(pos, reason)))
            }
        }
    }
}

/// Reads as much of `buf` as the file has at `pos`.
fn read_up_to(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], pos + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
