//! Committed offsets: cached in memory, written as records of the
//! compacted `__consumer_offsets` (`records.rs` is their format). A
//! broker coordinates the groups of the partitions it leads, loading a
//! partition's groups when it becomes its leader and forgetting them when
//! it stops.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use eddy_log::LeaderEpoch;
use eddy_log::partitioner::partition_for_key;
use eddy_meta::NodeId;

use super::assignor::Tp;
use super::records::{GroupValue, Key, OffsetValue};
use super::state::Group;
use super::{OFFSETS_TOPIC, check_group_id};
use crate::api::{CommitOffsets, Committed, PartitionId, TopicPartition};
use crate::broker::{Broker, blocking};
use crate::error::BrokerError;
use crate::internal::{InternalTopic, key_value_batch};
use crate::partition::{Partition, Role};

impl Broker {
    /// Makes sure this broker coordinates `group`: it leads the group's
    /// partition of `__consumer_offsets` (else `NOT_COORDINATOR`) and has
    /// that partition's groups loaded for its current leader epoch, so a
    /// new coordinator serves what the old one committed.
    pub(super) async fn coordinate(self: &Arc<Self>, group: &str) -> Result<(), BrokerError> {
        if !self.meta.state().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        if self.topics.get(OFFSETS_TOPIC).is_err() {
            // Another request created it and has not opened it here yet.
            self.reconcile().await?;
        }
        let topic = self.topics.get(OFFSETS_TOPIC)?;
        let index = partition_for_key(group.as_bytes(), topic.partition_count());
        let not_coordinator = || BrokerError::NotCoordinator {
            group: group.to_string(),
        };
        let partition = topic
            .partition(PartitionId(index))
            .map_err(|_| not_coordinator())?
            .clone();
        if partition.role() != Role::Leader {
            return Err(not_coordinator());
        }
        self.load_offsets_partition(index, &partition).await
    }

    /// The broker coordinating `group`: the leader of the group's
    /// `__consumer_offsets` partition (the topic is created on first use);
    /// `None` while that partition has no leader.
    pub async fn group_coordinator(
        self: &Arc<Self>,
        group: &str,
    ) -> Result<Option<NodeId>, BrokerError> {
        check_group_id(group)?;
        self.offsets_topic().await?;
        let state = self.meta.state();
        let topic = state.topic(OFFSETS_TOPIC)?;
        let index = partition_for_key(group.as_bytes(), topic.partitions.len() as u32);
        Ok(topic
            .partitions
            .get(index as usize)
            .and_then(|p| p.leader)
            .filter(|leader| state.brokers.get(leader).is_some_and(|b| !b.fenced)))
    }

    /// Loads every `__consumer_offsets` partition this broker leads (for
    /// listing and expiring groups).
    pub(super) async fn groups_loaded(self: &Arc<Self>) -> Result<(), BrokerError> {
        let Ok(topic) = self.topics.get(OFFSETS_TOPIC) else {
            return Ok(());
        };
        for (index, p) in topic.partitions.iter().enumerate() {
            if let Some(p) = p
                && p.role() == Role::Leader
            {
                self.load_offsets_partition(index as u32, p).await?;
            }
        }
        Ok(())
    }

    /// Loads one partition's groups unless they are loaded for its
    /// current leader epoch.
    async fn load_offsets_partition(
        self: &Arc<Self>,
        index: u32,
        partition: &Arc<Partition>,
    ) -> Result<(), BrokerError> {
        let epoch = partition.leader_epoch();
        if self.groups.loaded.lock().get(&index) == Some(&epoch) {
            return Ok(());
        }
        // Loads and writes of one partition are ordered by its write lock.
        let lock = self.groups.write_locks[index as usize % self.groups.write_locks.len()].clone();
        let _guard = lock.lock().await;
        if self.groups.loaded.lock().get(&index) == Some(&epoch) {
            return Ok(());
        }
        let (this, p) = (self.clone(), partition.clone());
        blocking(move || this.load_offsets(index, &p, epoch)).await
    }

    /// Forgets the groups of `__consumer_offsets` partitions this broker
    /// no longer leads (or leads in a newer epoch, to be loaded afresh):
    /// their members find the new coordinator.
    pub(super) fn release_lost_offsets_partitions(&self) {
        let Ok(topic) = self.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        let count = topic.partition_count();
        // `groups` then `loaded`, as a load takes them: a load's groups
        // are forgotten whole or not at all.
        let mut groups = self.groups.groups.lock();
        let mut loaded = self.groups.loaded.lock();
        let lost: Vec<u32> = loaded
            .iter()
            .filter(|(index, epoch)| {
                topic
                    .partitions
                    .get(**index as usize)
                    .and_then(Option::as_ref)
                    .is_none_or(|p| p.role() != Role::Leader || p.leader_epoch() != **epoch)
            })
            .map(|(index, _)| *index)
            .collect();
        for index in lost {
            loaded.remove(&index);
            self.forget_partition_groups(&mut groups, index, count);
            tracing::info!(
                partition = index,
                "no longer coordinating the groups of {OFFSETS_TOPIC}-{index}"
            );
        }
    }

    /// Drops from memory every group kept in partition `index` (`groups`
    /// is the locked group table).
    fn forget_partition_groups(&self, groups: &mut HashMap<String, Group>, index: u32, count: u32) {
        let mine = |id: &String| partition_for_key(id.as_bytes(), count) == index;
        groups.retain(|id, _| !mine(id));
        self.groups.offsets.lock().retain(|id, _| !mine(id));
        self.groups.persisted.lock().retain(|id, _| !mine(id));
    }

    /// Creates `__consumer_offsets` on first use.
    pub(super) async fn offsets_topic(self: &Arc<Self>) -> Result<(), BrokerError> {
        let topic = InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: self.groups.config.offsets_topic_partitions,
            configs: BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), (100u64 << 20).to_string()),
                ("retention.ms".to_string(), "-1".to_string()),
            ]),
        };
        self.ensure_internal_topic(&topic).await?;
        Ok(())
    }

    /// Reads one `__consumer_offsets` partition into the cache, replacing
    /// what was there for its groups, and marks it loaded for `epoch`.
    fn load_offsets(
        &self,
        index: u32,
        partition: &Partition,
        epoch: LeaderEpoch,
    ) -> Result<(), BrokerError> {
        let count = self.topics.get(OFFSETS_TOPIC)?.partition_count();
        let mut offsets: HashMap<String, BTreeMap<Tp, Committed>> = HashMap::new();
        let mut generations: HashMap<String, Option<GroupValue>> = HashMap::new();
        for r in crate::internal::scan(partition, OFFSETS_TOPIC)? {
            apply_record(
                &mut offsets,
                &mut generations,
                r.key.as_deref(),
                r.value.as_deref(),
            );
        }
        // Installed and marked loaded under the locks a release takes
        // (`groups`, then `loaded`), so that the ticker forgetting the
        // previous epoch's groups cannot land between the two and leave
        // this epoch marked loaded with its groups gone.
        let mut groups = self.groups.groups.lock();
        let mut loaded = self.groups.loaded.lock();
        self.forget_partition_groups(&mut groups, index, count);
        let now_ms = self.now_ms();
        let mut persisted = self.groups.persisted.lock();
        for (id, value) in generations {
            if let Some(v) = value {
                persisted.insert(id.clone(), v.generation);
                let g = groups.entry(id).or_insert_with(|| Group::new(now_ms));
                g.generation = v.generation;
                g.strategy = v.assignor;
            }
        }
        drop(persisted);
        // Every group with offsets is known, so that it expires; it has been
        // empty since its last commit (members would have committed since).
        for (id, committed) in &offsets {
            let last = committed.values().map(|c| c.commit_ms).max();
            let g = groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(now_ms));
            if let Some(last) = last {
                g.empty_since_ms = Some(last.min(now_ms));
            }
        }
        tracing::info!(
            partition = index,
            groups = offsets.len(),
            "loaded committed offsets"
        );
        self.groups.offsets.lock().extend(offsets);
        loaded.insert(index, epoch);
        Ok(())
    }

    pub async fn commit_offsets(self: &Arc<Self>, req: CommitOffsets) -> Result<(), BrokerError> {
        check_group_id(&req.group_id)?;
        if req.offsets.is_empty() {
            return Ok(());
        }
        let meta = self.meta.state();
        for o in &req.offsets {
            let tp = &o.partition;
            let count = meta.topic(&tp.topic)?.partitions.len() as u32;
            if tp.partition.0 >= count {
                return Err(BrokerError::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    count,
                });
            }
        }
        self.offsets_topic().await?;
        self.coordinate(&req.group_id).await?;
        // Taken before the generation check and held until the cache is
        // updated: nothing can come between the check and the write.
        let writer = self.offsets_writer(&req.group_id).await?;
        let now_ms = writer.now_ms;
        {
            let mut groups = self.groups.groups.lock();
            match groups.get_mut(&req.group_id) {
                Some(g) if req.member_id.is_empty() && !g.members.is_empty() => {
                    return Err(BrokerError::GroupNotEmpty(req.group_id.clone()));
                }
                Some(g) if !req.member_id.is_empty() => {
                    if !g.members.contains_key(&req.member_id) {
                        return Err(BrokerError::UnknownMember {
                            group: req.group_id.clone(),
                            member: req.member_id.clone(),
                        });
                    }
                    if g.generation != req.generation {
                        return Err(BrokerError::IllegalGeneration {
                            group: req.group_id.clone(),
                            sent: req.generation,
                            current: g.generation,
                        });
                    }
                }
                None if !req.member_id.is_empty() => {
                    return Err(BrokerError::UnknownMember {
                        group: req.group_id.clone(),
                        member: req.member_id.clone(),
                    });
                }
                Some(g) => {
                    // An admin commit to an empty group: its retention restarts.
                    g.empty_since_ms = Some(now_ms);
                }
                None => {
                    // An admin commit creates the group (empty), so it expires too.
                    self.group_or_new(&mut groups, &req.group_id)?;
                }
            }
        }
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = req
            .offsets
            .iter()
            .map(|o| {
                let key = Key::Offset {
                    group: req.group_id.clone(),
                    topic: o.partition.topic.clone(),
                    partition: o.partition.partition.0,
                };
                let value = OffsetValue {
                    offset: o.offset.0,
                    commit_ms: now_ms,
                    metadata: o.metadata.to_vec(),
                };
                (key.encode(), Some(value.encode()))
            })
            .collect();
        writer.append(records).await?;
        let mut cache = self.groups.offsets.lock();
        let entry = cache.entry(req.group_id.clone()).or_default();
        for o in req.offsets {
            entry.insert(
                (o.partition.topic, o.partition.partition.0),
                Committed {
                    offset: o.offset,
                    metadata: o.metadata,
                    commit_ms: now_ms,
                },
            );
        }
        Ok(())
    }

    /// Appends records to the group's partition of `__consumer_offsets`.
    /// Holds the write lock of the `__consumer_offsets` partition that
    /// keeps `group`: every write there, and every read of the group's
    /// committed offsets, happens in the order the lock is taken, so a
    /// commit checked against a generation lands before anything that
    /// follows it, and a reader sees every commit accepted before it.
    pub(super) async fn offsets_writer(
        self: &Arc<Self>,
        group: &str,
    ) -> Result<Writer, BrokerError> {
        self.check_lease()?;
        let topic = self.topics.get(OFFSETS_TOPIC)?;
        let index = partition_for_key(group.as_bytes(), topic.partition_count());
        let partition = topic.partition(PartitionId(index))?.clone();
        let lock = self.groups.write_locks[index as usize % self.groups.write_locks.len()].clone();
        let guard = lock.lock_owned().await;
        Ok(Writer {
            _guard: guard,
            partition,
            index,
            now_ms: self.now_ms(),
            replication_timeout: self.config.replication.ack_timeout(),
        })
    }

    /// Appends records to the group's partition of `__consumer_offsets`.
    pub(super) async fn write_offsets(
        self: &Arc<Self>,
        group: &str,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), BrokerError> {
        self.offsets_writer(group).await?.append(records).await
    }

    /// The offsets `group` committed: for `partitions`, or every one if
    /// that is empty.
    pub async fn fetch_offsets(
        self: &Arc<Self>,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Committed)>, BrokerError> {
        check_group_id(group)?;
        self.coordinate(group).await?;
        // Waits for commits being written: a new owner of a partition sees
        // every commit accepted before it asked.
        let _writer = match self.topics.get(OFFSETS_TOPIC) {
            Ok(_) => Some(self.offsets_writer(group).await?),
            Err(_) => None,
        };
        let cache = self.groups.offsets.lock();
        let Some(committed) = cache.get(group) else {
            return Ok(Vec::new());
        };
        let wanted: Option<BTreeSet<Tp>> =
            (!partitions.is_empty()).then(|| super::from_api(partitions).into_iter().collect());
        Ok(committed
            .iter()
            .filter(|(tp, _)| wanted.as_ref().is_none_or(|w| w.contains(*tp)))
            .map(|((topic, partition), c)| {
                (
                    TopicPartition::new(topic.clone(), PartitionId(*partition)),
                    c.clone(),
                )
            })
            .collect())
    }

    /// Drops a group's committed offsets and generation from the cache and
    /// writes their tombstones.
    pub(super) async fn forget_offsets(self: &Arc<Self>, id: &str) -> Result<(), BrokerError> {
        self.groups.persisted.lock().remove(id);
        let keys: Vec<Vec<u8>> = {
            let mut cache = self.groups.offsets.lock();
            let tps = cache.remove(id).unwrap_or_default();
            tps.into_keys()
                .map(|(topic, partition)| {
                    Key::Offset {
                        group: id.to_string(),
                        topic,
                        partition,
                    }
                    .encode()
                })
                .chain(std::iter::once(
                    Key::Group {
                        group: id.to_string(),
                    }
                    .encode(),
                ))
                .collect()
        };
        let records = keys.into_iter().map(|k| (k, None)).collect();
        self.write_offsets(id, records).await
    }

    /// Deletes a group that has no members, with its committed offsets.
    pub async fn delete_group(self: &Arc<Self>, id: &str) -> Result<(), BrokerError> {
        check_group_id(id)?;
        self.coordinate(id).await?;
        {
            let mut groups = self.groups.groups.lock();
            let known = groups.contains_key(id) || self.groups.offsets.lock().contains_key(id);
            if !known {
                return Err(BrokerError::UnknownGroup(id.to_string()));
            }
            if groups.get(id).is_some_and(|g| !g.members.is_empty()) {
                return Err(BrokerError::GroupNotEmpty(id.to_string()));
            }
            groups.remove(id);
        }
        if self.meta.state().topics.contains_key(OFFSETS_TOPIC) {
            self.forget_offsets(id).await?;
        }
        tracing::info!(group = %id, "deleted group and its offsets");
        Ok(())
    }
}

fn apply_record(
    offsets: &mut HashMap<String, BTreeMap<Tp, Committed>>,
    generations: &mut HashMap<String, Option<GroupValue>>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let Some(key) = key.and_then(Key::decode) else {
        tracing::warn!("skipping an unreadable {OFFSETS_TOPIC} record");
        return;
    };
    match key {
        Key::Offset {
            group,
            topic,
            partition,
        } => match value.map(OffsetValue::decode) {
            Some(Some(v)) => {
                offsets.entry(group).or_default().insert(
                    (topic, partition),
                    Committed {
                        offset: eddy_log::Offset(v.offset),
                        metadata: Bytes::from(v.metadata),
                        commit_ms: v.commit_ms,
                    },
                );
            }
            Some(None) => tracing::warn!(%group, "skipping an unreadable committed offset"),
            None => {
                if let Some(g) = offsets.get_mut(&group) {
                    g.remove(&(topic, partition));
                    if g.is_empty() {
                        offsets.remove(&group);
                    }
                }
            }
        },
        Key::Group { group } => {
            generations.insert(group, value.and_then(GroupValue::decode));
        }
    }
}

/// The write lock of one `__consumer_offsets` partition, held, and the
/// partition to append to.
pub(super) struct Writer {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    partition: Arc<Partition>,
    index: u32,
    /// The broker's clock when the lock was taken.
    pub(super) now_ms: i64,
    /// Longest a write waits for the ISR.
    replication_timeout: std::time::Duration,
}

impl Writer {
    /// Appends `records` (key, value; `None` is a tombstone) as one batch.
    pub(super) async fn append(
        &self,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), BrokerError> {
        let (partition, index, now) = (self.partition.clone(), self.index, self.now_ms);
        let end = blocking(move || {
            let Some(batch) = key_value_batch(&records, now, OFFSETS_TOPIC, PartitionId(index))?
            else {
                return Ok(None);
            };
            partition.append(&batch)?;
            Ok(Some(partition.log_end()))
        })
        .await?;
        // A commit holds once the ISR has it: a new coordinator reads it
        // back after a failover.
        match end {
            Some(end) => {
                self.partition
                    .wait_replicated(end, self.replication_timeout)
                    .await
            }
            None => Ok(()),
        }
    }
}
