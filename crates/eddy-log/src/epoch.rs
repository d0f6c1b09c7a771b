//! The leader-epoch history of a partition: which epoch wrote from which
//! offset on. Persisted as `leader-epoch-checkpoint`; used to check every
//! batch read (its epoch field sits outside the CRC) and, with replication,
//! to find where a follower's log diverges from its leader's.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::types::{LeaderEpoch, Offset};

pub(crate) const FILE_NAME: &str = "leader-epoch-checkpoint";
const VERSION: &str = "eddy-epochs 1";

#[derive(Debug, Clone)]
pub(crate) struct EpochCache {
    path: PathBuf,
    /// (epoch, first offset written in it), both strictly increasing.
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl EpochCache {
    pub fn empty(dir: &Path) -> EpochCache {
        EpochCache {
            path: dir.join(FILE_NAME),
            entries: Vec::new(),
        }
    }

    /// Loads the checkpoint; `None` when it is missing or unreadable, in
    /// which case the caller rebuilds it from the log.
    pub fn load(dir: &Path) -> Option<EpochCache> {
        let path = dir.join(FILE_NAME);
        let text = fs::read_to_string(&path).ok()?;
        let mut lines = text.lines();
        if lines.next()? != VERSION {
            return None;
        }
        let mut entries: Vec<(LeaderEpoch, Offset)> = Vec::new();
        for line in lines {
            let (e, o) = line.split_once(' ')?;
            let entry = (LeaderEpoch(e.parse().ok()?), Offset(o.parse().ok()?));
            if entries
                .last()
                .is_some_and(|&(le, lo)| le >= entry.0 || lo > entry.1)
            {
                return None;
            }
            entries.push(entry);
        }
        Some(EpochCache { path, entries })
    }

    pub fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    pub fn latest(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.0)
    }

    /// The epoch that wrote `offset`.
    pub fn epoch_for(&self, offset: Offset) -> Option<LeaderEpoch> {
        let i = self.entries.partition_point(|&(_, start)| start <= offset);
        i.checked_sub(1).map(|i| self.entries[i].0)
    }

    /// For the newest epoch at or below `epoch`: that epoch and where it
    /// ended, which is where the next epoch started, or `log_end` for the
    /// latest. `None` when every epoch here is newer (or there is none).
    pub fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let i = self.entries.partition_point(|&(e, _)| e <= epoch);
        let (found, _) = *self.entries.get(i.checked_sub(1)?)?;
        let end = self.entries.get(i).map_or(log_end, |&(_, start)| start);
        Some((found, end))
    }

    /// Records that `epoch` starts writing at `start`; no-op if it already is the latest.
    /// Returns whether the history changed (and must be saved).
    pub fn assign(&mut self, epoch: LeaderEpoch, start: Offset) -> bool {
        match self.entries.last() {
            Some(&(e, _)) if e == epoch => false,
            Some(&(e, s)) => {
                assert!(
                    epoch > e && start >= s,
                    "epochs and their start offsets only grow"
                );
                self.entries.push((epoch, start));
                true
            }
            None => {
                self.entries.push((epoch, start));
                true
            }
        }
    }

    /// Forgets epochs that start at or after `end` (the log was truncated there).
    pub fn truncate_from(&mut self, end: Offset) -> bool {
        let keep = self.entries.partition_point(|&(_, start)| start < end);
        let changed = keep != self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Forgets epochs that ended before `start` (retention removed their data).
    pub fn trim_before(&mut self, start: Offset) -> bool {
        let covering = self.entries.partition_point(|&(_, s)| s <= start);
        if covering <= 1 {
            return false;
        }
        self.entries.drain(..covering - 1);
        true
    }

    /// Deletes the checkpoint, so that until the next save an open rebuilds
    /// the history from the log.
    pub fn delete_checkpoint(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", &self.path)(e)),
        }
    }

    /// Writes the checkpoint atomically (temp file, fsync, rename).
    pub fn save(&self) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut text = String::from(VERSION);
        text.push('\n');
        for (e, o) in &self.entries {
            text.push_str(&format!("{} {}\n", e.0, o.0));
        }
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().map_err(Error::io("writing", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_for_finds_the_epoch_that_wrote_an_offset_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EpochCache::empty(dir.path());
        assert!(c.assign(LeaderEpoch(0), Offset(0)));
        assert!(!c.assign(LeaderEpoch(0), Offset(5)));
        assert!(c.assign(LeaderEpoch(3), Offset(10)));
        c.save().unwrap();
        let c = EpochCache::load(dir.path()).unwrap();
        assert_eq!(c.epoch_for(Offset(9)), Some(LeaderEpoch(0)));
        assert_eq!(c.epoch_for(Offset(10)), Some(LeaderEpoch(3)));
        assert_eq!(c.epoch_for(Offset(1000)), Some(LeaderEpoch(3)));
    }

    #[test]
    fn truncation_and_trimming_drop_only_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EpochCache::empty(dir.path());
        for (e, o) in [(1, 0), (2, 10), (3, 20)] {
            c.assign(LeaderEpoch(e), Offset(o));
        }
        assert!(c.truncate_from(Offset(20)));
        assert_eq!(c.latest(), Some(LeaderEpoch(2)));
        assert!(c.trim_before(Offset(15)));
        assert_eq!(c.entries(), &[(LeaderEpoch(2), Offset(10))]);
    }

    #[test]
    fn a_damaged_checkpoint_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "eddy-epochs 1\n3 10\n2 20\n").unwrap();
        assert!(EpochCache::load(dir.path()).is_none());
        fs::write(dir.path().join(FILE_NAME), "garbage").unwrap();
        assert!(EpochCache::load(dir.path()).is_none());
    }
}
