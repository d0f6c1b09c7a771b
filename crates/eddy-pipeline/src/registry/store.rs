//! Component bytes in the internal compacted topic `__processors`.
//!
//! One record per chunk of at most [`CHUNK_BYTES`], one chunk per batch,
//! keyed by the component's sha256 and the chunk's index:
//!
//! ```text
//! key:   u16 version=1, [u8; 32] sha256, u32 chunk index, u32 chunk count
//! value: the chunk's bytes (a tombstone when the component is deleted)
//! ```
//!
//! Keys are content addresses, so the same bytes uploaded under two names
//! are stored once, and compaction never has two values for a key. Which
//! names and versions exist is metadata (`eddy-meta`); a component no
//! version refers to (an upload cut off between its chunks and its
//! registration) is removed when the registry next loads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use eddy_broker::{Broker, BrokerError, InternalTopic, Role};
use eddy_log::{LeaderEpoch, Offset};
use eddy_meta::PartitionId;
use eddy_wasm::Digest;

use crate::error::{Error, Result};

/// The internal topic holding components.
pub const PROCESSORS_TOPIC: &str = "__processors";
/// Bytes per stored chunk (and the most an upload message may carry).
pub const CHUNK_BYTES: usize = 1 << 20;

const KEY_VERSION: u16 = 1;
const KEY_BYTES: usize = 2 + 32 + 4 + 4;

fn topic() -> InternalTopic {
    InternalTopic {
        name: PROCESSORS_TOPIC,
        partitions: 1,
        configs: BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), (256u64 << 20).to_string()),
        ]),
    }
}

/// A chunk's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkKey {
    digest: Digest,
    index: u32,
    count: u32,
}

impl ChunkKey {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEY_BYTES);
        out.extend_from_slice(&KEY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.digest.0);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<ChunkKey> {
        if b.len() != KEY_BYTES || b[..2] != KEY_VERSION.to_be_bytes() {
            return None;
        }
        let digest = Digest(b[2..34].try_into().ok()?);
        let index = u32::from_be_bytes(b[34..38].try_into().ok()?);
        let count = u32::from_be_bytes(b[38..42].try_into().ok()?);
        Some(ChunkKey {
            digest,
            index,
            count,
        })
    }
}

/// Where each stored component's chunks are: digest → chunk offsets in order.
#[derive(Debug, Default)]
pub(crate) struct ChunkIndex {
    components: BTreeMap<Digest, Vec<Offset>>,
    /// The leader epoch of `__processors-0` under which this broker, as
    /// its leader, loaded the index and removed orphaned components;
    /// `None` if loaded as a follower (for reads only).
    pub writable_in: Option<LeaderEpoch>,
}

/// This broker's part in `__processors-0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// It leads the partition, in this epoch: writes happen here.
    Leader(LeaderEpoch),
    /// Another broker leads it, at this address; this one may hold a
    /// replica to read from.
    Elsewhere { leader: String, replica: bool },
}

impl ChunkIndex {
    pub fn contains(&self, digest: &Digest) -> bool {
        self.components.contains_key(digest)
    }
}

/// Reads and writes `__processors`.
#[derive(Debug)]
pub(crate) struct ComponentStore {
    broker: Arc<Broker>,
}

impl ComponentStore {
    pub fn new(broker: Arc<Broker>) -> ComponentStore {
        ComponentStore { broker }
    }

    /// Where writes go, and whether reads can be served here.
    pub async fn part(&self) -> Result<Part> {
        self.broker.ensure_internal_topic(&topic()).await?;
        let local = self
            .broker
            .topics
            .get(PROCESSORS_TOPIC)
            .ok()
            .and_then(|t| t.partition(PartitionId(0)).ok().cloned());
        if let Some(p) = &local
            && p.role() == Role::Leader
        {
            return Ok(Part::Leader(p.leader_epoch()));
        }
        let state = self.broker.meta.state();
        let meta = state
            .topics
            .get(PROCESSORS_TOPIC)
            .and_then(|t| t.partitions.first());
        // Another broker is called where this one's --peers list says.
        let leader = meta
            .and_then(|m| m.leader)
            .filter(|&id| id != self.broker.config.node_id)
            .and_then(|id| self.broker.peer_address(id, &state));
        match leader {
            Some(leader) => Ok(Part::Elsewhere {
                leader,
                replica: local.is_some(),
            }),
            _ => Err(BrokerError::NotLeader {
                topic: PROCESSORS_TOPIC.to_string(),
                partition: PartitionId(0),
                leader: meta.and_then(|m| m.leader),
                epoch: meta.map_or(0, |m| m.leader_epoch.0),
            }
            .into()),
        }
    }

    /// Scans the topic into an index of complete components. Incomplete
    /// ones (a write cut short) are left out.
    pub async fn load(&self) -> Result<ChunkIndex> {
        self.broker.ensure_internal_topic(&topic()).await?;
        let records = self
            .broker
            .scan_internal(PROCESSORS_TOPIC, PartitionId(0))
            .await?;
        let mut chunks: BTreeMap<Digest, (u32, BTreeMap<u32, Offset>)> = BTreeMap::new();
        for r in records {
            let Some(key) = r.key.as_deref().and_then(ChunkKey::decode) else {
                tracing::warn!(
                    offset = r.offset.0,
                    "skipping an unreadable {PROCESSORS_TOPIC} record"
                );
                continue;
            };
            let entry = chunks
                .entry(key.digest)
                .or_insert((key.count, BTreeMap::new()));
            match r.value {
                Some(_) => {
                    entry.0 = key.count;
                    entry.1.insert(key.index, r.offset);
                }
                None => {
                    entry.1.remove(&key.index);
                }
            }
        }
        let components = chunks
            .into_iter()
            .filter(|(_, (count, found))| {
                *count > 0 && found.len() == *count as usize && found.keys().copied().eq(0..*count)
            })
            .map(|(digest, (_, found))| (digest, found.into_values().collect()))
            .collect();
        Ok(ChunkIndex {
            components,
            writable_in: None,
        })
    }

    /// Writes a component's chunks and records them in `index`.
    pub async fn write(&self, index: &mut ChunkIndex, digest: Digest, bytes: &Bytes) -> Result<()> {
        self.broker.ensure_internal_topic(&topic()).await?;
        let count = u32::try_from(bytes.len().div_ceil(CHUNK_BYTES))
            .map_err(|_| Error::InvalidProcessor("the component is too large".into()))?;
        let mut offsets = Vec::with_capacity(count as usize);
        for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            let key = ChunkKey {
                digest,
                index: i as u32,
                count,
            };
            let value = bytes.slice_ref(chunk);
            let offset = self
                .broker
                .append_internal(
                    PROCESSORS_TOPIC,
                    PartitionId(0),
                    vec![(key.encode(), Some(value))],
                )
                .await?;
            offsets.push(offset);
        }
        index.components.insert(digest, offsets);
        Ok(())
    }

    /// Writes tombstones for a component's chunks and forgets it.
    pub async fn remove(&self, index: &mut ChunkIndex, digest: Digest) -> Result<()> {
        let Some(offsets) = index.components.get(&digest) else {
            return Ok(());
        };
        let count = offsets.len() as u32;
        let tombstones = (0..count)
            .map(|i| {
                let key = ChunkKey {
                    digest,
                    index: i,
                    count,
                };
                (key.encode(), None)
            })
            .collect();
        self.broker
            .append_internal(PROCESSORS_TOPIC, PartitionId(0), tombstones)
            .await?;
        index.components.remove(&digest);
        Ok(())
    }

    /// Removes every stored component whose digest is not in `keep`.
    pub async fn collect_garbage(
        &self,
        index: &mut ChunkIndex,
        keep: &BTreeSet<Digest>,
    ) -> Result<usize> {
        let orphans: Vec<Digest> = index
            .components
            .keys()
            .filter(|d| !keep.contains(d))
            .copied()
            .collect();
        for d in &orphans {
            tracing::info!(sha256 = %d, "removing a stored component no processor version uses");
            self.remove(index, *d).await?;
        }
        Ok(orphans.len())
    }

    /// Where a stored component's chunks are, in order.
    pub fn chunks(&self, index: &ChunkIndex, digest: &Digest) -> Result<Vec<Offset>> {
        index.components.get(digest).cloned().ok_or_else(|| {
            Error::Internal(format!(
                "component {digest} is registered but its bytes are not in {PROCESSORS_TOPIC}"
            ))
        })
    }

    /// One chunk's bytes.
    pub async fn read_chunk(&self, offset: Offset) -> Result<Bytes> {
        let records = self
            .broker
            .read_internal(PROCESSORS_TOPIC, PartitionId(0), offset)
            .await?;
        records
            .into_iter()
            .find(|r| r.offset == offset)
            .and_then(|r| r.value)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "{PROCESSORS_TOPIC} has no chunk at offset {}; the topic may be damaged",
                    offset.0
                ))
            })
    }
}

/// The digest a hex sha256 names, if it is one.
pub(crate) fn parse_digest(hex: &str) -> Option<Digest> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Digest(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_round_trip_and_refuse_other_bytes() {
        let key = ChunkKey {
            digest: Digest([7; 32]),
            index: 3,
            count: 9,
        };
        assert_eq!(ChunkKey::decode(&key.encode()), Some(key));
        assert_eq!(ChunkKey::decode(b"short"), None);
        let mut other_version = key.encode();
        other_version[1] = 9;
        assert_eq!(ChunkKey::decode(&other_version), None);
    }

    #[test]
    fn digests_parse_from_lowercase_hex_only_when_whole() {
        let d = Digest([0xab; 32]);
        assert_eq!(parse_digest(&d.to_string()), Some(d));
        assert_eq!(parse_digest("abc"), None);
        assert_eq!(parse_digest(&"zz".repeat(32)), None);
    }
}
