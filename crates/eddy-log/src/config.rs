//! Per-log settings, named after Kafka's topic configs.

use crate::error::{Error, Result};

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every appended batch, before the append returns.
    Always,
    /// When at least this many milliseconds passed since the last fsync
    /// (checked on append and by [`crate::Log::flush_if_due`]).
    IntervalMs(u64),
    /// Only on segment roll and clean close; replication is the durability,
    /// as in Kafka's defaults.
    Never,
}

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Whole segments are deleted by age and size.
    Delete,
    /// Only the newest record per key is kept.
    Compact,
    /// Both.
    CompactDelete,
}

impl CleanupPolicy {
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// Largest segment: positions in the offset index are 32-bit.
pub const SEGMENT_BYTES_LIMIT: u64 = 1 << 31;
/// Largest batch any log accepts, whatever its configuration.
pub const BATCH_BYTES_LIMIT: usize = 64 << 20;

/// Settings for one log. Build with `LogConfig::default()` and [`LogConfig::set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll to a new segment when the active one is this old.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of batches between offset-index entries.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: largest batch accepted.
    pub batch_bytes_max: usize,
    /// `retention.ms`: delete segments whose newest record is older; `None` keeps forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete oldest segments while the log is larger; `None` is unlimited.
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a tombstone survives compaction.
    pub delete_retention_ms: i64,
    /// `flush.policy`: `always`, `never` or an interval (`flush.ms`).
    pub fsync: FsyncPolicy,
    /// Memory for compaction's key map; compaction covers as many segments as fit.
    pub compaction_map_bytes_max: usize,
    /// `eddy.changelog`: a pipeline's state changelog, compacted only up to
    /// what its commit markers vouch for (see `compaction.rs`).
    pub changelog: bool,
    /// `producer.id.expiration.ms` and the number of idempotent producers remembered.
    pub producers: crate::producer_state::ProducerStateConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            batch_bytes_max: 8 << 20,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            fsync: FsyncPolicy::Never,
            compaction_map_bytes_max: 64 << 20,
            changelog: false,
            producers: crate::producer_state::ProducerStateConfig::default(),
        }
    }
}

/// The topic config keys [`LogConfig::set`] understands.
pub const CONFIG_KEYS: &[&str] = &[
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "delete.retention.ms",
    "flush.ms",
    "producer.id.expiration.ms",
    "eddy.changelog",
];

impl LogConfig {
    /// Sets one setting from its Kafka-style key and text value, e.g.
    /// `("retention.ms", "3600000")`. `-1` means unlimited for the
    /// retention settings; `flush.ms` takes `always`, `never` or milliseconds.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |expected: &str| {
            Error::Config(format!("{key}={value:?} is not valid: expected {expected}"))
        };
        let int = |v: &str| v.trim().parse::<i64>().map_err(|_| bad("an integer"));
        match key {
            "segment.bytes" => {
                let v = int(value)?;
                if !(1024..=SEGMENT_BYTES_LIMIT as i64).contains(&v) {
                    return Err(bad(&format!("1024..={SEGMENT_BYTES_LIMIT} bytes")));
                }
                self.segment_bytes = v as u64;
            }
            "segment.ms" => self.segment_ms = positive(int(value)?, || bad("milliseconds > 0"))?,
            "index.interval.bytes" => {
                let v = int(value)?;
                if !(1..=(16 << 20)).contains(&v) {
                    return Err(bad("1..=16777216 bytes"));
                }
                self.index_interval_bytes = v as u32;
            }
            "max.message.bytes" => {
                let v = int(value)?;
                if !(1024..=BATCH_BYTES_LIMIT as i64).contains(&v) {
                    return Err(bad(&format!("1024..={BATCH_BYTES_LIMIT} bytes")));
                }
                self.batch_bytes_max = v as usize;
            }
            "retention.ms" => self.retention_ms = unlimited_or_positive(int(value)?, bad)?,
            "retention.bytes" => {
                self.retention_bytes = unlimited_or_positive(int(value)?, bad)?.map(|v| v as u64)
            }
            "cleanup.policy" => {
                self.cleanup_policy = match value.trim() {
                    "delete" => CleanupPolicy::Delete,
                    "compact" => CleanupPolicy::Compact,
                    "compact,delete" | "delete,compact" => CleanupPolicy::CompactDelete,
                    _ => return Err(bad("delete, compact or compact,delete")),
                }
            }
            "delete.retention.ms" => {
                let v = int(value)?;
                if v < 0 {
                    return Err(bad("0 or more milliseconds"));
                }
                self.delete_retention_ms = v;
            }
            "producer.id.expiration.ms" => {
                self.producers.expiration_ms = positive(int(value)?, || bad("milliseconds > 0"))?
            }
            "eddy.changelog" => {
                self.changelog = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("true or false")),
                }
            }
            "flush.ms" => {
                self.fsync = match value.trim() {
                    "always" | "0" => FsyncPolicy::Always,
                    "never" | "-1" => FsyncPolicy::Never,
                    v => FsyncPolicy::IntervalMs(positive(int(v)?, || {
                        bad("always, never or milliseconds")
                    })? as u64),
                }
            }
            _ => {
                return Err(Error::Config(format!(
                    "unknown setting {key:?}; known settings: {}",
                    CONFIG_KEYS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// One setting's value as [`LogConfig::set`] reads it (so that
    /// `set(key, &get(key))` changes nothing); `None` for an unknown key.
    pub fn get(&self, key: &str) -> Option<String> {
        let unlimited = |v: Option<i64>| v.unwrap_or(-1).to_string();
        Some(match key {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.batch_bytes_max.to_string(),
            "retention.ms" => unlimited(self.retention_ms),
            "retention.bytes" => unlimited(self.retention_bytes.map(|v| v as i64)),
            "cleanup.policy" => match self.cleanup_policy {
                CleanupPolicy::Delete => "delete",
                CleanupPolicy::Compact => "compact",
                CleanupPolicy::CompactDelete => "compact,delete",
            }
            .to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "producer.id.expiration.ms" => self.producers.expiration_ms.to_string(),
            "eddy.changelog" => self.changelog.to_string(),
            "flush.ms" => match self.fsync {
                FsyncPolicy::Always => "always".to_string(),
                FsyncPolicy::Never => "never".to_string(),
                FsyncPolicy::IntervalMs(ms) => ms.to_string(),
            },
            _ => return None,
        })
    }

    /// Checks settings that depend on each other.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes > SEGMENT_BYTES_LIMIT || self.segment_bytes < 1024 {
            return Err(Error::Config(format!(
                "segment.bytes={} must be between 1024 and {SEGMENT_BYTES_LIMIT}",
                self.segment_bytes
            )));
        }
        if self.batch_bytes_max > BATCH_BYTES_LIMIT {
            return Err(Error::Config(format!(
                "max.message.bytes={} exceeds the limit of {BATCH_BYTES_LIMIT}",
                self.batch_bytes_max
            )));
        }
        Ok(())
    }
}

fn positive(v: i64, bad: impl FnOnce() -> Error) -> Result<i64> {
    if v > 0 { Ok(v) } else { Err(bad()) }
}

fn unlimited_or_positive(v: i64, bad: impl Fn(&str) -> Error) -> Result<Option<i64>> {
    match v {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v)),
        _ => Err(bad("-1 (unlimited) or 0 and more")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_keys_set_their_fields() {
        let mut c = LogConfig::default();
        c.set("retention.ms", "-1").unwrap();
        c.set("retention.bytes", "1048576").unwrap();
        c.set("cleanup.policy", "compact,delete").unwrap();
        c.set("segment.bytes", "4096").unwrap();
        c.set("flush.ms", "250").unwrap();
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.retention_bytes, Some(1 << 20));
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(c.segment_bytes, 4096);
        assert_eq!(c.fsync, FsyncPolicy::IntervalMs(250));
    }

    #[test]
    fn every_key_reads_back_what_set_takes() {
        let mut changed = LogConfig::default();
        for (key, value) in [
            ("retention.ms", "-1"),
            ("retention.bytes", "1048576"),
            ("cleanup.policy", "compact,delete"),
            ("flush.ms", "250"),
            ("eddy.changelog", "true"),
        ] {
            changed.set(key, value).unwrap();
        }
        for config in [LogConfig::default(), changed] {
            let mut copy = LogConfig::default();
            for key in CONFIG_KEYS {
                let value = config
                    .get(key)
                    .unwrap_or_else(|| panic!("no value for {key}"));
                copy.set(key, &value).unwrap();
            }
            assert_eq!(copy, config);
        }
        assert_eq!(LogConfig::default().get("retention.hours"), None);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_with_the_valid_range() {
        let mut c = LogConfig::default();
        let e = c.set("segment.bytes", "12").unwrap_err().to_string();
        assert!(e.contains("1024..="), "{e}");
        let e = c.set("retention.ms", "soon").unwrap_err().to_string();
        assert!(e.contains("an integer"), "{e}");
        let e = c.set("retention.hours", "1").unwrap_err().to_string();
        assert!(
            e.contains("known settings") && e.contains("retention.ms"),
            "{e}"
        );
        assert_eq!(c, LogConfig::default());
    }
}
