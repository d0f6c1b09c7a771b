//! Produce: check the whole request, then write it.
//!
//! Checking first (topics, partitions, every batch's size, CRC and record
//! structure) means a bad request writes nothing. Encoded batches from the
//! request are written as received (`Bytes` from the gRPC buffer, never
//! copied or re-encoded); structured records are encoded into one batch per
//! partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use eddy_log::{
    AppendInfo, CheckedBatch, Offset, ProducerEpoch, ProducerId, Sequence, check_batch,
    partitioner::partition_for_key,
};
use eddy_meta::PartitionId;

use crate::api::{Acks, ProduceRequest, ProduceResponse, Produced, ProducedTopic, Record};
use crate::broker::{Broker, blocking};
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::records;
use crate::topics::TopicState;

/// One batch ready to be written.
struct Planned {
    topic_index: usize,
    partition: Arc<Partition>,
    batch: CheckedBatch<Bytes>,
}

/// Where one batch went.
struct Landed {
    topic_index: usize,
    partition: Arc<Partition>,
    info: AppendInfo,
    log_start: Offset,
    /// The log end right after the write: acks=all waits for the ISR to
    /// reach it (for a duplicate too, which may not be replicated yet).
    end: Offset,
}

impl Broker {
    /// Handles one produce request; see the `Produce` service docs.
    pub async fn produce(
        self: &Arc<Self>,
        req: ProduceRequest,
    ) -> Result<ProduceResponse, BrokerError> {
        let acks = req.acks;
        let permit = self
            .produce_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BrokerError::ShuttingDown)?;
        if *self.shutdown_signal().borrow() {
            return Err(BrokerError::ShuttingDown);
        }
        if acks != Acks::None {
            self.check_lease()?;
        }
        let topic_names: Vec<String> = req.topics.iter().map(|t| t.topic.clone()).collect();
        let this = self.clone();
        // One hop to the blocking pool: check everything, then write. acks=0
        // writes before answering too, so that the requests of one stream
        // land in the order they were sent; it only leaves out the offsets.
        let written = blocking(move || {
            let plan = this.plan(&req)?;
            if acks == Acks::All {
                this.check_isr(&plan)?;
            }
            write(plan)
        })
        .await?;
        drop(permit);
        if acks == Acks::All {
            let timeout = self.config.replication.ack_timeout();
            for w in &written {
                w.partition.wait_replicated(w.end, timeout).await?;
            }
        }
        if acks == Acks::None {
            return Ok(ProduceResponse::default());
        }
        Ok(response(topic_names, written))
    }

    /// Checks everything in the request and turns it into batches.
    fn plan(&self, req: &ProduceRequest) -> Result<Vec<Planned>, BrokerError> {
        let now = self.now_ms();
        let mut plan = Vec::new();
        for (topic_index, t) in req.topics.iter().enumerate() {
            let topic = self.topics.get(&t.topic)?;
            let mut add = |partition: PartitionId, bytes: Bytes| -> Result<(), BrokerError> {
                let p = topic.partition(partition)?.clone();
                let batch = check_batch(bytes, topic.config.log.batch_bytes_max)
                    .map_err(BrokerError::log(&t.topic, partition))?;
                plan.push(Planned {
                    topic_index,
                    partition: p,
                    batch,
                });
                Ok(())
            };
            for pd in &t.partitions {
                if pd.batches.is_empty() && pd.records.is_empty() {
                    return Err(BrokerError::InvalidRequest(format!(
                        "{}-{}: no batch and no records to write",
                        t.topic, pd.partition
                    )));
                }
                if !pd.batches.is_empty() {
                    add(pd.partition, pd.batches.clone())?;
                }
                if !pd.records.is_empty() {
                    let refs: Vec<&Record> = pd.records.iter().collect();
                    add(pd.partition, Bytes::from(records::encode(&refs, now)))?;
                }
            }
            for (partition, recs) in place(&topic, &t.unplaced) {
                add(partition, Bytes::from(records::encode(&recs, now)))?;
            }
        }
        if plan.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "the produce request holds no records".into(),
            ));
        }
        Ok(plan)
    }

    /// What each of `partitions` knows of `producer` (`None`: nothing).
    pub fn describe_producer(
        &self,
        producer: ProducerId,
        partitions: &[(String, PartitionId)],
    ) -> Vec<Result<Option<(ProducerEpoch, Sequence)>, BrokerError>> {
        partitions
            .iter()
            .map(|(topic, partition)| {
                // A leader cut off from the controller may have been replaced.
                self.check_lease()?;
                let t = self.topics.get(topic)?;
                t.partition(*partition)?.leader_producer(producer)
            })
            .collect()
    }

    /// acks=all needs min.insync.replicas in-sync replicas.
    fn check_isr(&self, plan: &[Planned]) -> Result<(), BrokerError> {
        for p in plan {
            let topic = self.topics.get(&p.partition.topic)?;
            let min = topic.config.min_insync_replicas;
            if p.partition.isr_size() < min as usize {
                return Err(BrokerError::NotEnoughReplicas {
                    topic: p.partition.topic.to_string(),
                    partition: p.partition.id,
                    isr: p.partition.isr_size(),
                    min,
                });
            }
        }
        Ok(())
    }
}

/// Places records sent without a partition: keyed ones by murmur2, keyless
/// ones together on the topic's next sticky partition.
fn place<'a>(topic: &TopicState, recs: &'a [Record]) -> BTreeMap<PartitionId, Vec<&'a Record>> {
    let mut placed: BTreeMap<PartitionId, Vec<&Record>> = BTreeMap::new();
    let mut sticky = None;
    let n = topic.partition_count();
    for r in recs {
        let p = match &r.key {
            Some(key) => PartitionId(partition_for_key(key, n)),
            None => *sticky.get_or_insert_with(|| topic.next_sticky_partition()),
        };
        placed.entry(p).or_default().push(r);
    }
    placed
}

/// Writes the planned batches in order. One that fails (a full disk, a
/// leadership lost meanwhile) fails the whole request, though the batches
/// before it stay written: an idempotent producer's retry finds those to be
/// duplicates and gets their offsets; a producer without idempotence
/// writes them again. (Per-partition results would spare that; the
/// response has no per-partition error yet.)
fn write(plan: Vec<Planned>) -> Result<Vec<Landed>, BrokerError> {
    let mut written = Vec::with_capacity(plan.len());
    for p in plan {
        let info = p.partition.append(&p.batch)?;
        let offsets = p.partition.offsets();
        written.push(Landed {
            topic_index: p.topic_index,
            partition: p.partition,
            info,
            log_start: offsets.log_start,
            end: offsets.log_end,
        });
    }
    Ok(written)
}

fn response(topics: Vec<String>, written: Vec<Landed>) -> ProduceResponse {
    let mut results: Vec<ProducedTopic> = topics
        .into_iter()
        .map(|topic| ProducedTopic {
            topic,
            partitions: Vec::new(),
        })
        .collect();
    for w in written {
        results[w.topic_index].partitions.push(Produced {
            partition: w.partition.id,
            base_offset: w.info.base_offset,
            last_offset: w.info.last_offset,
            record_count: w.info.record_count,
            log_start: w.log_start,
            written: w.info.written,
        });
    }
    ProduceResponse { topics: results }
}
