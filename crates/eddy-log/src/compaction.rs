//! Key-based compaction: keep only the newest record per key.
//!
//! It runs in three steps so that a caller holding the log behind a lock
//! only holds it briefly: [`Log::compaction_job`] (needs `&Log`) picks the
//! sealed segments; [`CompactionJob::run`] (needs no log) reads them, builds
//! the key map and writes cleaned copies beside them; and
//! [`Log::install_compaction`] (needs `&mut Log`) swaps the copies in.
//!
//! Offsets never change: a kept record keeps its offset, and a batch keeps
//! its base offset, epoch and producer stamp, so consumers see gaps.
//! Tombstones (null values) are dropped once they are the newest record for
//! their key and older than `delete.retention.ms`.
//!
//! A pipeline's state changelog (`eddy.changelog=true`) is compacted only
//! up to what its pipeline committed: there a record numbered by the
//! [`CHANGE_HEADER`] header at or past the count the producer's newest
//! marker (a record with a [`COMMITTED_HEADER`] header) vouches for is not
//! yet committed — a replay is about to write it again, or a restore skips
//! it — so it is kept, and it replaces no older value of its key. A
//! producer without a marker has nothing committed as far as the cleaner
//! knows. Markers say less than the truth, never more, so that a key's
//! last committed value always survives.
//!
//! A pass that covered every sealed segment is remembered: the next one
//! waits until another segment is sealed (new records to compact, new
//! markers to trust) or `delete.retention.ms` has passed (tombstones to
//! drop), instead of reading every sealed segment again each time.
//!
//! Crash safety: a cleaned copy is written as `X.log.cleaned` and fsynced,
//! then renamed to `X.log.swap` (the commit point), then put in place.
//! [`Log::open`] deletes leftover `.cleaned` files and finishes `.swap` ones.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{Batch, BatchHeader, HEADER_LEN, retain_records};
use crate::config::BATCH_BYTES_LIMIT;
use crate::error::{Error, Result};
use crate::index::{OffsetEntry, TimeEntry, write_index};
use crate::log::{Log, finish_swap, sync_dir};
use crate::segment::{Role, Segment, file_name};
use crate::types::{Offset, Timestamp};

/// The header numbering a state change in a changelog (8 bytes, big-endian).
pub const CHANGE_HEADER: &str = "eddy.change";
/// The header of a changelog's commit marker: how many of its producer's
/// changes were committed when it was written (8 bytes, big-endian).
pub const COMMITTED_HEADER: &str = "eddy.committed";

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Sealed segments read.
    pub segments_read: usize,
    /// Segments rewritten (those with something to remove).
    pub segments_cleaned: usize,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Debug, Clone)]
struct Source {
    base: Offset,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
}

/// A pass that covered every sealed segment: where the sealed segments
/// ended and when it was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanPass {
    sealed_end: Offset,
    at_ms: i64,
}

/// A compaction pass over a prefix of the sealed segments, detached from the log.
#[derive(Debug)]
pub struct CompactionJob {
    dir: PathBuf,
    sources: Vec<Source>,
    /// The pass, if it covers every source.
    pass: CleanPass,
    tombstone_horizon: Timestamp,
    map_bytes_max: usize,
    index_interval: u64,
    /// A state changelog: compacted only up to what its markers vouch for.
    changelog: bool,
}

/// Which records of a changelog may be compacted: per producer, the count
/// of changes its newest marker vouches for. Everything, for another log.
#[derive(Debug, Default)]
struct Committed {
    changelog: bool,
    counts: HashMap<i64, u64>,
}

impl Committed {
    /// Whether `record` of a batch from `producer` may replace older values
    /// of its key or be replaced: everything but an uncommitted change.
    fn settled(&self, producer: i64, record: &crate::batch::RecordView<'_>) -> bool {
        if !self.changelog {
            return true;
        }
        match header_u64(record, CHANGE_HEADER) {
            Some(number) => self.counts.get(&producer).is_some_and(|&c| number < c),
            None => true,
        }
    }
}

/// The 8-byte big-endian header `name` of `record`, if it has one.
fn header_u64(record: &crate::batch::RecordView<'_>, name: &str) -> Option<u64> {
    record
        .headers()
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| <[u8; 8]>::try_from(v).ok())
        .map(u64::from_be_bytes)
}

#[derive(Debug)]
struct Cleaned {
    base: Offset,
    source: Arc<File>,
    size: u64,
}

/// Cleaned segment copies waiting to be installed.
#[derive(Debug)]
pub struct CompactionOutput {
    dir: PathBuf,
    cleaned: Vec<Cleaned>,
    stats: CompactionStats,
    /// Set when the pass covered every sealed segment.
    pass: Option<CleanPass>,
}

impl CompactionOutput {
    /// How many segments have cleaned copies waiting.
    pub fn cleaned_segments(&self) -> usize {
        self.cleaned.len()
    }
}

impl Log {
    /// The next compaction pass, or `None` when this log is not compacted,
    /// has no sealed segment, or nothing changed since the last full pass.
    pub fn compaction_job(&self) -> Option<CompactionJob> {
        if !self.config.cleanup_policy.compacts() || self.segments.len() < 2 {
            return None;
        }
        let now = self.clock.now_ms();
        let pass = CleanPass {
            sealed_end: *self.segments.keys().next_back()?,
            at_ms: now,
        };
        if let Some(last) = self.compacted
            && last.sealed_end == pass.sealed_end
            && now.saturating_sub(last.at_ms) < self.config.delete_retention_ms
        {
            return None;
        }
        let sealed = self.segments.len() - 1;
        let sources = self
            .segments
            .values()
            .take(sealed)
            .map(|s| Source {
                base: s.base,
                path: s.path.clone(),
                file: s.file.clone(),
                size: s.size,
            })
            .collect();
        Some(CompactionJob {
            dir: self.dir.clone(),
            sources,
            pass,
            tombstone_horizon: Timestamp(
                self.clock
                    .now_ms()
                    .saturating_sub(self.config.delete_retention_ms),
            ),
            map_bytes_max: self.config.compaction_map_bytes_max,
            index_interval: u64::from(self.config.index_interval_bytes),
            changelog: self.config.changelog,
        })
    }

    /// Puts cleaned segments in place. Copies of segments that retention
    /// deleted meanwhile are discarded.
    pub fn install_compaction(&mut self, output: CompactionOutput) -> Result<CompactionStats> {
        if output.pass.is_some() {
            self.compacted = output.pass;
        }
        for cleaned in output.cleaned {
            let current = self.segments.get(&cleaned.base);
            let is_source = current.is_some_and(|s| Arc::ptr_eq(&s.file, &cleaned.source));
            let is_sealed = self.segments.keys().next_back() != Some(&cleaned.base);
            if !is_source || !is_sealed {
                discard(&output.dir, cleaned.base)?;
                continue;
            }
            if cleaned.size == 0 {
                // Nothing left: drop the segment; readers skip the offset gap.
                if let Some(s) = self.segments.remove(&cleaned.base) {
                    s.delete_files(&self.dir)?;
                }
                discard(&output.dir, cleaned.base)?;
                continue;
            }
            let swap = PathBuf::from(format!(
                "{}.swap",
                output.dir.join(file_name(cleaned.base, "log")).display()
            ));
            rename(&cleaned_path(&output.dir, cleaned.base, "log"), &swap)?;
            finish_swap(&output.dir, cleaned.base)?;
            for ext in ["index", "timeindex"] {
                rename(
                    &cleaned_path(&output.dir, cleaned.base, ext),
                    &output.dir.join(file_name(cleaned.base, ext)),
                )?;
            }
            sync_dir(&output.dir)?;
            let next_offset = self
                .segments
                .range(cleaned.base..)
                .nth(1)
                .map_or(cleaned.base, |(&b, _)| b);
            let now = self.clock.now_ms();
            let interval = self.config.index_interval_bytes;
            let role = Role::Sealed { next_offset };
            let (segment, _) = Segment::open(&self.dir, cleaned.base, role, interval, now)?;
            self.segments.insert(cleaned.base, segment);
        }
        if self.epochs.trim_before(self.start_offset()) {
            self.epochs.save()?;
        }
        Ok(output.stats)
    }

    /// One whole compaction pass in place; see the module docs.
    pub fn compact(&mut self) -> Result<CompactionStats> {
        match self.compaction_job() {
            Some(job) => {
                let output = job.run()?;
                self.install_compaction(output)
            }
            None => Ok(CompactionStats::default()),
        }
    }
}

impl CompactionJob {
    /// Reads the segments, decides what to keep, and writes cleaned copies.
    pub fn run(self) -> Result<CompactionOutput> {
        let committed = self.committed()?;
        let (newest, covered) = self.key_map(&committed)?;
        let mut output = CompactionOutput {
            dir: self.dir.clone(),
            cleaned: Vec::new(),
            stats: CompactionStats {
                segments_read: covered,
                ..Default::default()
            },
            pass: (covered == self.sources.len()).then_some(self.pass),
        };
        for source in &self.sources[..covered] {
            output.stats.bytes_before += source.size;
            match self.clean(source, &newest, &committed, &mut output.stats) {
                Ok(Some(cleaned)) => {
                    output.stats.bytes_after += cleaned.size;
                    output.stats.segments_cleaned += 1;
                    output.cleaned.push(cleaned);
                }
                Ok(None) => output.stats.bytes_after += source.size,
                Err(e) => {
                    for c in &output.cleaned {
                        discard(&self.dir, c.base)?;
                    }
                    discard(&self.dir, source.base)?;
                    return Err(e);
                }
            }
        }
        Ok(output)
    }

    /// What a changelog's markers in the sealed segments vouch for.
    fn committed(&self) -> Result<Committed> {
        let mut committed = Committed {
            changelog: self.changelog,
            counts: HashMap::new(),
        };
        if !self.changelog {
            return Ok(committed);
        }
        for source in &self.sources {
            scan(source, |batch| {
                let producer = batch.header.producer_id.0;
                let records = batch
                    .decoded()
                    .map_err(|e| corrupt(source, batch.header, e.to_string()))?;
                for record in records.iter() {
                    let record =
                        record.map_err(|e| corrupt(source, batch.header, e.to_string()))?;
                    if let Some(count) = header_u64(&record, COMMITTED_HEADER) {
                        let c = committed.counts.entry(producer).or_insert(0);
                        *c = (*c).max(count);
                    }
                }
                Ok(())
            })?;
        }
        Ok(committed)
    }

    /// Newest offset per key over as many leading segments as fit in the
    /// memory budget; returns the map and how many segments it covers.
    fn key_map(&self, committed: &Committed) -> Result<(HashMap<Vec<u8>, Offset>, usize)> {
        let mut newest: HashMap<Vec<u8>, Offset> = HashMap::new();
        let mut bytes = 0usize;
        let mut covered = 0;
        for source in &self.sources {
            if covered > 0 && bytes >= self.map_bytes_max {
                break;
            }
            scan(source, |batch| {
                let producer = batch.header.producer_id.0;
                let records = batch
                    .decoded()
                    .map_err(|e| corrupt(source, batch.header, e.to_string()))?;
                for record in records.iter() {
                    let record =
                        record.map_err(|e| corrupt(source, batch.header, e.to_string()))?;
                    if let Some(key) = record.key
                        && committed.settled(producer, &record)
                        && newest.insert(key.to_vec(), record.offset).is_none()
                    {
                        bytes += key.len() + 64;
                    }
                }
                Ok(())
            })?;
            covered += 1;
        }
        Ok((newest, covered))
    }

    /// Writes the cleaned copy of one segment, or nothing when every record stays.
    fn clean(
        &self,
        source: &Source,
        newest: &HashMap<Vec<u8>, Offset>,
        committed: &Committed,
        stats: &mut CompactionStats,
    ) -> Result<Option<Cleaned>> {
        let horizon = self.tombstone_horizon;
        let mut removed = 0u64;
        let mut tombstones = 0u64;
        let keep = |producer: i64, r: &crate::batch::RecordView<'_>| -> (bool, bool) {
            let Some(key) = r.key else {
                return (true, false);
            };
            if !committed.settled(producer, r) {
                return (true, false);
            }
            if newest.get(key) != Some(&r.offset) {
                return (false, false);
            }
            if r.is_tombstone() && r.timestamp <= horizon {
                return (false, true);
            }
            (true, false)
        };
        // First a dry run: most passes find most segments already clean.
        scan(source, |batch| {
            let producer = batch.header.producer_id.0;
            let records = batch
                .decoded()
                .map_err(|e| corrupt(source, batch.header, e.to_string()))?;
            for record in records.iter().flatten() {
                let (kept, tomb) = keep(producer, &record);
                removed += u64::from(!kept);
                tombstones += u64::from(tomb);
            }
            Ok(())
        })?;
        if removed == 0 {
            return Ok(None);
        }
        stats.records_removed += removed;
        stats.tombstones_removed += tombstones;
        let path = cleaned_path(&self.dir, source.base, "log");
        let file = File::create(&path).map_err(Error::io("creating", &path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut writer = IndexBuilder::new(source.base, self.index_interval);
        scan(source, |batch| {
            let producer = batch.header.producer_id.0;
            let kept = retain_records(batch, |r| keep(producer, r).0)
                .map_err(|e| corrupt(source, batch.header, e.to_string()))?;
            if let Some(bytes) = kept {
                writer.add(batch.header, bytes.len());
                out.write_all(&bytes).map_err(Error::io("writing", &path))?;
            }
            Ok(())
        })?;
        let file = out
            .into_inner()
            .map_err(|e| Error::io("writing", &path)(e.into_error()))?;
        file.sync_all().map_err(Error::io("syncing", &path))?;
        write_index(
            &cleaned_path(&self.dir, source.base, "index"),
            &writer.offsets,
        )?;
        write_index(
            &cleaned_path(&self.dir, source.base, "timeindex"),
            &writer.times,
        )?;
        Ok(Some(Cleaned {
            base: source.base,
            source: source.file.clone(),
            size: writer.position,
        }))
    }
}

/// Builds index entries for a segment written from scratch, with the same
/// rule appends use.
struct IndexBuilder {
    base: Offset,
    interval: u64,
    position: u64,
    since_entry: u64,
    max_ts: Timestamp,
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
}

impl IndexBuilder {
    fn new(base: Offset, interval: u64) -> IndexBuilder {
        IndexBuilder {
            base,
            interval,
            position: 0,
            since_entry: 0,
            max_ts: Timestamp::MIN,
            offsets: Vec::new(),
            times: Vec::new(),
        }
    }

    fn add(&mut self, header: BatchHeader, len: usize) {
        if self.since_entry >= self.interval {
            let relative_offset = (header.base_offset.0 - self.base.0) as u32;
            self.offsets.push(OffsetEntry {
                relative_offset,
                position: self.position as u32,
            });
            self.times.push(TimeEntry {
                max_timestamp_before: self.max_ts,
                relative_offset,
            });
            self.since_entry = 0;
        }
        self.since_entry += len as u64;
        self.position += len as u64;
        self.max_ts = self.max_ts.max(header.max_timestamp);
    }
}

/// Calls `f` with every batch of a segment, CRC-checked, in order.
fn scan(source: &Source, mut f: impl FnMut(&Batch<'_>) -> Result<()>) -> Result<()> {
    const WINDOW: usize = 1 << 20;
    let mut buf = Vec::new();
    let mut buf_pos = 0u64;
    let mut pos = 0u64;
    while pos < source.size {
        let need_header = (pos + HEADER_LEN as u64).min(source.size);
        if pos < buf_pos || need_header > buf_pos + buf.len() as u64 {
            fill(source, &mut buf, &mut buf_pos, pos, WINDOW)?;
        }
        let at = (pos - buf_pos) as usize;
        let header = BatchHeader::parse(&buf[at..]).map_err(|e| Error::Corrupt {
            path: source.path.clone(),
            position: pos,
            reason: e.to_string(),
        })?;
        let total = header.total_len();
        if total > BATCH_BYTES_LIMIT || pos + total as u64 > source.size {
            return Err(corrupt(
                source,
                header,
                format!("impossible batch length {total}"),
            ));
        }
        if at + total > buf.len() {
            fill(source, &mut buf, &mut buf_pos, pos, WINDOW.max(total))?;
        }
        let at = (pos - buf_pos) as usize;
        let batch = Batch::parse(&buf[at..at + total], BATCH_BYTES_LIMIT)
            .map_err(|e| corrupt(source, header, e.to_string()))?;
        f(&batch)?;
        pos += total as u64;
    }
    Ok(())
}

fn fill(source: &Source, buf: &mut Vec<u8>, buf_pos: &mut u64, pos: u64, len: usize) -> Result<()> {
    let len = len.min((source.size - pos) as usize);
    buf.resize(len, 0);
    source
        .file
        .read_exact_at(buf, pos)
        .map_err(Error::io("reading", &source.path))?;
    *buf_pos = pos;
    Ok(())
}

fn corrupt(source: &Source, header: BatchHeader, reason: String) -> Error {
    Error::Corrupt {
        path: source.path.clone(),
        position: 0,
        reason: format!("batch at offset {}: {reason}", header.base_offset),
    }
}

fn cleaned_path(dir: &Path, base: Offset, ext: &str) -> PathBuf {
    dir.join(format!("{}.cleaned", file_name(base, ext)))
}

fn discard(dir: &Path, base: Offset) -> Result<()> {
    for ext in ["log", "index", "timeindex"] {
        let p = cleaned_path(dir, base, ext);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", p)(e)),
        }
    }
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(Error::io("renaming", from))
}
