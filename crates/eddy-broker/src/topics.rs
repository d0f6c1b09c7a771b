//! The topics this broker knows and the partition replicas it hosts, kept in
//! step with the metadata by [`Topics::reconcile`].
//!
//! Partition data lives in `<data>/topics/<topic>-<partition>/`, with a
//! `topic-id` file naming the topic incarnation. A directory whose id does
//! not match (a deleted topic's leftovers) is removed before the new
//! incarnation uses the name. Deleting renames the directory to
//! `<name>.<id>-delete` first, so a crash mid-delete never leaves data that
//! looks alive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use eddy_log::Clock;
use eddy_meta::{MetaState, NodeId, PartitionId, PartitionMeta, TopicMeta};
use parking_lot::RwLock;

use crate::config::{TopicConfig, TopicDefaults};
use crate::error::BrokerError;
use crate::partition::{Partition, TOPIC_ID_FILE};

/// A topic as this broker serves it.
#[derive(Debug)]
pub struct TopicState {
    pub meta: TopicMeta,
    pub config: TopicConfig,
    /// Indexed by partition number; `None` where this broker holds no replica.
    pub partitions: Vec<Option<Arc<Partition>>>,
    /// Rotates the partition that keyless records without a partition go to.
    sticky: AtomicU32,
    /// This broker.
    me: NodeId,
}

impl TopicState {
    pub fn partition_count(&self) -> u32 {
        self.meta.partitions.len() as u32
    }

    /// The local replica of `partition`, which this broker leads: produce,
    /// fetch and offset lookups go to the leader only, and the metadata
    /// names it.
    pub fn partition(&self, partition: PartitionId) -> Result<&Arc<Partition>, BrokerError> {
        let Some(meta) = self.meta.partitions.get(partition.0 as usize) else {
            return Err(BrokerError::UnknownPartition {
                topic: self.meta.name.clone(),
                partition,
                count: self.partition_count(),
            });
        };
        let not_leader = || BrokerError::NotLeader {
            topic: self.meta.name.clone(),
            partition,
            leader: meta.leader,
            epoch: meta.leader_epoch.0,
        };
        if meta.leader != Some(self.me) {
            return Err(not_leader());
        }
        match self.partitions.get(partition.0 as usize) {
            Some(Some(p)) => Ok(p),
            _ => Err(not_leader()),
        }
    }

    /// The partition for the next keyless batch the broker places.
    pub fn next_sticky_partition(&self) -> PartitionId {
        PartitionId(self.sticky.fetch_add(1, Ordering::Relaxed) % self.partition_count())
    }
}

/// The registry.
#[derive(Debug)]
pub struct Topics {
    dir: PathBuf,
    node_id: NodeId,
    defaults: TopicDefaults,
    clock: Arc<dyn Clock>,
    map: RwLock<HashMap<String, Arc<TopicState>>>,
    /// Woken by every append to a hosted partition.
    appended: Arc<tokio::sync::Notify>,
    /// Serializes reconciliations.
    reconciling: parking_lot::Mutex<()>,
    /// Whether this broker may take the leaderships the metadata gives it.
    /// A broker that restarts among other voters reads its own, possibly
    /// old, copy of the metadata first: until it has rejoined (its previous
    /// run's leaderships given up), the leaders that copy names may have
    /// moved on without it, and serving as one would hand out an old log.
    may_lead: AtomicBool,
}

impl Topics {
    /// Creates the registry over `<data>/topics`, removing directories left
    /// by interrupted deletes.
    pub fn new(
        data_dir: &Path,
        node_id: NodeId,
        defaults: TopicDefaults,
        clock: Arc<dyn Clock>,
        may_lead: bool,
    ) -> Result<Topics, BrokerError> {
        let dir = data_dir.join("topics");
        std::fs::create_dir_all(&dir).map_err(|e| storage("creating", &dir, e))?;
        for entry in std::fs::read_dir(&dir).map_err(|e| storage("listing", &dir, e))? {
            let path = entry.map_err(|e| storage("listing", &dir, e))?.path();
            if path.to_string_lossy().ends_with("-delete") {
                std::fs::remove_dir_all(&path).map_err(|e| storage("removing", &path, e))?;
            }
        }
        Ok(Topics {
            dir,
            node_id,
            defaults,
            clock,
            map: RwLock::new(HashMap::new()),
            appended: Arc::new(tokio::sync::Notify::new()),
            reconciling: parking_lot::Mutex::new(()),
            may_lead: AtomicBool::new(may_lead),
        })
    }

    /// Lets this broker take the leaderships the metadata gives it (the
    /// next reconciliation applies them).
    pub fn allow_leading(&self) {
        self.may_lead.store(true, Ordering::Release);
    }

    /// Woken by every append to a hosted partition (followers' fetches
    /// wait on it).
    pub fn appended(&self) -> &tokio::sync::Notify {
        &self.appended
    }

    pub fn defaults(&self) -> &TopicDefaults {
        &self.defaults
    }

    pub fn get(&self, name: &str) -> Result<Arc<TopicState>, BrokerError> {
        self.map
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    /// Every topic, sorted by name.
    pub fn all(&self) -> Vec<Arc<TopicState>> {
        let mut v: Vec<_> = self.map.read().values().cloned().collect();
        v.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        v
    }

    /// Every hosted partition.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.map
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().flatten().cloned())
            .collect()
    }

    /// Opens replicas that the metadata assigns to this broker, closes and
    /// deletes those of removed topics. Blocks on disk I/O.
    ///
    /// `state` is read once the previous reconcile has finished: a state
    /// read before could be older than what that one applied, and would
    /// take newer topics for deleted ones (and delete their data).
    pub fn reconcile(&self, state: impl FnOnce() -> Arc<MetaState>) -> Result<(), BrokerError> {
        let _guard = self.reconciling.lock();
        let state = &*state();
        // Removed topics (gone, or re-created under a new id) go first, so
        // their directories are deleted before a new incarnation reuses the names.
        let removed: Vec<Arc<TopicState>> = {
            let mut map = self.map.write();
            let gone: Vec<String> = map
                .iter()
                .filter(|(name, t)| state.topics.get(*name).is_none_or(|m| m.id != t.meta.id))
                .map(|(name, _)| name.clone())
                .collect();
            gone.iter().filter_map(|name| map.remove(name)).collect()
        };
        for topic in removed {
            for p in topic.partitions.iter().flatten() {
                self.delete_dir(&p.dir)?;
            }
            tracing::info!(topic = %topic.meta.name, "deleted topic data");
        }
        let current: HashMap<String, Arc<TopicState>> = self.map.read().clone();
        let mut next = HashMap::with_capacity(state.topics.len());
        for (name, meta) in &state.topics {
            let topic = self.build(meta, current.get(name))?;
            next.insert(name.clone(), Arc::new(topic));
        }
        *self.map.write() = next;
        Ok(())
    }

    fn build(
        &self,
        meta: &TopicMeta,
        old: Option<&Arc<TopicState>>,
    ) -> Result<TopicState, BrokerError> {
        let config = TopicConfig::parse(&self.defaults, &meta.configs)?;
        let name: Arc<str> = Arc::from(meta.name.as_str());
        let mut partitions = Vec::with_capacity(meta.partitions.len());
        for (i, pm) in meta.partitions.iter().enumerate() {
            if !pm.replicas.contains(&self.node_id) {
                partitions.push(None);
                continue;
            }
            let existing = old.and_then(|t| t.partitions.get(i).cloned().flatten());
            let partition = match existing {
                Some(p) => {
                    if old.is_some_and(|t| t.config.log != config.log) {
                        p.set_config(config.log.clone())
                            .map_err(BrokerError::log(&meta.name, PartitionId(i as u32)))?;
                    }
                    p
                }
                None => Arc::new(self.open_partition(meta, &name, i as u32, &config)?),
            };
            let now = self.clock.now_ms();
            if pm.leader == Some(self.node_id) && !self.may_lead.load(Ordering::Acquire) {
                // Not yet: offline until the broker has rejoined.
                let offline = PartitionMeta {
                    leader: None,
                    ..pm.clone()
                };
                partition.apply_metadata(&offline, now);
            } else {
                partition.apply_metadata(pm, now);
            }
            partitions.push(Some(partition));
        }
        let sticky = old.map_or(0, |t| t.sticky.load(Ordering::Relaxed));
        Ok(TopicState {
            meta: meta.clone(),
            config,
            partitions,
            sticky: AtomicU32::new(sticky),
            me: self.node_id,
        })
    }

    fn open_partition(
        &self,
        meta: &TopicMeta,
        name: &Arc<str>,
        index: u32,
        config: &TopicConfig,
    ) -> Result<Partition, BrokerError> {
        let dir = self.dir.join(format!("{}-{index}", meta.name));
        if dir.exists() {
            // Only a directory that names another incarnation is removed.
            // One without a name (a crash before its first open finished,
            // or a file left empty by an older Eddy) is this topic's: the
            // name is written before any record can be.
            let id_file = dir.join(TOPIC_ID_FILE);
            let owner = match std::fs::read_to_string(&id_file) {
                Ok(owner) => owner.trim().to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(storage("reading", &id_file, e)),
            };
            if owner.is_empty() {
                tracing::warn!(dir = %dir.display(), "a partition directory without its topic id; keeping its data as this topic's");
            } else if owner != meta.id.to_string() {
                tracing::warn!(dir = %dir.display(), stale_id = %owner, "removing a deleted topic's leftover data");
                self.delete_dir(&dir)?;
            }
        }
        Partition::open(
            &dir,
            name.clone(),
            PartitionId(index),
            meta.id,
            self.node_id,
            config.log.clone(),
            self.clock.clone(),
            self.appended.clone(),
        )
        .map_err(BrokerError::log(&meta.name, PartitionId(index)))
    }

    fn delete_dir(&self, dir: &Path) -> Result<(), BrokerError> {
        let doomed = PathBuf::from(format!("{}.{}-delete", dir.display(), uuid_suffix(dir)));
        std::fs::rename(dir, &doomed).map_err(|e| storage("renaming", dir, e))?;
        std::fs::remove_dir_all(&doomed).map_err(|e| storage("removing", &doomed, e))
    }
}

fn uuid_suffix(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(TOPIC_ID_FILE))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

fn storage(op: &'static str, path: &Path, source: std::io::Error) -> BrokerError {
    BrokerError::Internal(format!("{op} {}: {source}", path.display()))
}
