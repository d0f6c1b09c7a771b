//! Sparse indexes beside each segment.
//!
//! Every `index.interval.bytes` of batches, the segment appends one entry to
//! each of its two indexes, so entry *k* of both describes the same batch:
//!
//! - `.index`: (offset − segment base: u32, file position: u32), 8 bytes.
//! - `.timeindex`: (largest timestamp of all batches *before* that batch:
//!   i64, offset − segment base: u32), 12 bytes. "Before" makes the lookup
//!   exact: when entry *k*'s timestamp is below T, no record before entry
//!   *k*'s batch can have a timestamp ≥ T.
//!
//! The active segment keeps its entries in memory as well; sealed segments
//! binary-search the file with positioned reads, so memory stays flat however
//! much data a partition holds.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::types::{Offset, Timestamp};

/// A fixed-size index entry.
pub(crate) trait Entry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn decode(b: &[u8]) -> Self;
    fn encode(&self, out: &mut Vec<u8>);
}

/// `.index` entry: where a batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;

    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
}

/// `.timeindex` entry: the largest timestamp before a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub max_timestamp_before: Timestamp,
    pub relative_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;

    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[0..8]);
        TimeEntry {
            max_timestamp_before: Timestamp(i64::from_be_bytes(ts)),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.max_timestamp_before.0.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
}

/// One index file.
#[derive(Debug)]
pub(crate) struct IndexFile<E: Entry> {
    path: PathBuf,
    file: File,
    len: usize,
    /// All entries, for the active segment; `None` for sealed segments.
    cached: Option<Vec<E>>,
}

impl<E: Entry> IndexFile<E> {
    /// Opens (creating if missing) an index; a trailing partial entry is cut off.
    pub fn open(path: &Path, cache: bool) -> Result<IndexFile<E>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::io("opening index", path))?;
        let bytes = file
            .metadata()
            .map_err(Error::io("reading index size of", path))?
            .len();
        let len = (bytes / E::SIZE as u64) as usize;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            file,
            len,
            cached: None,
        };
        if bytes % E::SIZE as u64 != 0 {
            index.truncate(len)?;
        }
        if cache {
            index.load()?;
        }
        Ok(index)
    }

    fn load(&mut self) -> Result<()> {
        let mut raw = vec![0u8; self.len * E::SIZE];
        self.file
            .read_exact_at(&mut raw, 0)
            .map_err(Error::io("reading index", &self.path))?;
        self.cached = Some(raw.chunks_exact(E::SIZE).map(E::decode).collect());
        Ok(())
    }

    /// Stops caching entries in memory (the segment was sealed).
    pub fn uncache(&mut self) {
        self.cached = None;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the entries are kept in memory (the active segment's).
    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    pub fn entry(&self, i: usize) -> Result<E> {
        debug_assert!(i < self.len);
        if let Some(cached) = &self.cached {
            return Ok(cached[i]);
        }
        let mut raw = [0u8; 16];
        let raw = &mut raw[..E::SIZE];
        self.file
            .read_exact_at(raw, (i * E::SIZE) as u64)
            .map_err(Error::io("reading index", &self.path))?;
        Ok(E::decode(raw))
    }

    pub fn last(&self) -> Result<Option<E>> {
        if self.len == 0 {
            Ok(None)
        } else {
            self.entry(self.len - 1).map(Some)
        }
    }

    /// The last entry for which `at_or_before` holds, given that it holds
    /// for a prefix of the entries.
    pub fn search(&self, at_or_before: impl Fn(&E) -> bool) -> Result<Option<(usize, E)>> {
        let (mut lo, mut hi) = (0usize, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if at_or_before(&self.entry(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            Ok(None)
        } else {
            Ok(Some((lo - 1, self.entry(lo - 1)?)))
        }
    }

    pub fn append(&mut self, entry: E) -> Result<()> {
        let mut raw = Vec::with_capacity(E::SIZE);
        entry.encode(&mut raw);
        self.file
            .write_all_at(&raw, (self.len * E::SIZE) as u64)
            .map_err(Error::io("writing index", &self.path))?;
        if let Some(cached) = &mut self.cached {
            cached.push(entry);
        }
        self.len += 1;
        Ok(())
    }

    /// Keeps the first `len` entries.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        self.file
            .set_len((len * E::SIZE) as u64)
            .map_err(Error::io("truncating index", &self.path))?;
        if let Some(cached) = &mut self.cached {
            cached.truncate(len);
        }
        self.len = self.len.min(len);
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(Error::io("syncing index", &self.path))
    }
}

/// Writes a whole index file at once; used when compaction rebuilds a segment.
pub(crate) fn write_index<E: Entry>(path: &Path, entries: &[E]) -> Result<()> {
    let mut raw = Vec::with_capacity(entries.len() * E::SIZE);
    for e in entries {
        e.encode(&mut raw);
    }
    std::fs::write(path, &raw).map_err(Error::io("writing index", path))?;
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("syncing index", path))
}

/// Offset of an entry, given the segment's base.
pub(crate) fn absolute(base: Offset, relative: u32) -> Offset {
    base.plus(u64::from(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_finds_the_last_entry_at_or_before_the_target_cached_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = IndexFile::<OffsetEntry>::open(&path, true).unwrap();
        for i in 0..100u32 {
            index
                .append(OffsetEntry {
                    relative_offset: i * 10,
                    position: i * 4096,
                })
                .unwrap();
        }
        let sealed = IndexFile::<OffsetEntry>::open(&path, false).unwrap();
        for idx in [&index, &sealed] {
            assert_eq!(
                idx.search(|e| e.relative_offset <= 5).unwrap().map(|x| x.0),
                Some(0)
            );
            let (i, e) = idx.search(|e| e.relative_offset <= 555).unwrap().unwrap();
            assert_eq!((i, e.relative_offset, e.position), (55, 550, 55 * 4096));
            assert_eq!(
                idx.search(|e| e.relative_offset <= 990).unwrap().unwrap().0,
                99
            );
        }
        let none = IndexFile::<OffsetEntry>::open(&dir.path().join("1.index"), false).unwrap();
        assert_eq!(none.search(|_| true).unwrap(), None);
    }

    #[test]
    fn a_torn_trailing_entry_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut index = IndexFile::<TimeEntry>::open(&path, true).unwrap();
        let e = TimeEntry {
            max_timestamp_before: Timestamp(7),
            relative_offset: 3,
        };
        index.append(e).unwrap();
        index.append(e).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(12 + 5).unwrap();
        let index = IndexFile::<TimeEntry>::open(&path, true).unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index.last().unwrap(), Some(e));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12);
    }
}
