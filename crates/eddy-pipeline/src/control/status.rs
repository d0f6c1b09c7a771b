//! What `pipeline list` and `pipeline describe` show: the stored state,
//! the consumer group's positions and lag, and the workers' reports.

use std::collections::BTreeMap;

use eddy_broker::{BrokerError, Role};
use eddy_meta::{PartitionId, PipelineMeta, PipelineRunState};
use eddy_proto::v1 as pb;

use super::{Control, REPORT_FRESH, run_state, stored_manifest};
use crate::error::Result;
use crate::worker::group_id;

impl Control {
    pub async fn list(&self) -> Result<Vec<pb::PipelineSummary>> {
        let state = self.broker.meta.state();
        let mut out = Vec::with_capacity(state.pipelines.len());
        for p in state.pipelines.values() {
            let partitions = self.partitions(p).await?;
            out.push(self.summary_of(p, &partitions));
        }
        Ok(out)
    }

    pub async fn summary(&self, name: &str) -> Result<pb::PipelineSummary> {
        let state = self.broker.meta.state();
        let p = state.pipeline(name)?;
        let partitions = self.partitions(p).await?;
        Ok(self.summary_of(p, &partitions))
    }

    pub async fn describe(&self, name: &str) -> Result<pb::PipelineDescription> {
        let state = self.broker.meta.state();
        let p = state.pipeline(name)?;
        let partitions = self.partitions(p).await?;
        let summary = self.summary_of(p, &partitions);
        let reports = self.fresh_reports(p);
        let mut counters = pb::PipelineCounters::default();
        let mut last_error: Option<pb::PipelineError> = None;
        for (_, r) in &reports {
            if let Some(c) = &r.counters {
                counters.records_in += c.records_in;
                counters.records_out += c.records_out;
                counters.dead_lettered += c.dead_lettered;
                counters.skipped += c.skipped;
                counters.state_keys += c.state_keys;
                counters.state_bytes += c.state_bytes;
                counters.state_restoring += c.state_restoring;
                counters.state_restored_records += c.state_restored_records;
                counters.state_restore_ms = counters.state_restore_ms.max(c.state_restore_ms);
                counters.state_tasks_on_disk += c.state_tasks_on_disk;
                counters.watermark_low = match (counters.watermark_low, c.watermark_low) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                counters.watermark_high = counters.watermark_high.max(c.watermark_high);
                for (k, v) in &c.processor {
                    *counters.processor.entry(k.clone()).or_insert(0) += v;
                }
            }
            if let Some(e) = &r.last_error
                && last_error.as_ref().is_none_or(|l| l.at_ms < e.at_ms)
            {
                last_error = Some(e.clone());
            }
        }
        Ok(pb::PipelineDescription {
            summary: Some(summary),
            partitions,
            counters: Some(counters),
            last_error,
            workers: reports.into_iter().map(|(w, _)| w).collect(),
            group: group_id(&p.name),
        })
    }

    fn summary_of(
        &self,
        p: &PipelineMeta,
        partitions: &[pb::PipelinePartition],
    ) -> pb::PipelineSummary {
        let mut state = run_state(&p.state);
        if state == pb::PipelineState::Running && self.fresh_reports(p).is_empty() {
            state = pb::PipelineState::Starting;
        }
        let delivery = stored_manifest(p).map_or_else(
            |_| "unknown".to_string(),
            |m| {
                serde_json::to_value(m.spec.delivery)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            },
        );
        pb::PipelineSummary {
            name: p.name.clone(),
            state: state as i32,
            processor: p.processor.clone(),
            processor_version: p.processor_version,
            delivery,
            lag: partitions.iter().map(|x| x.lag).sum(),
            failure: match &p.state {
                PipelineRunState::Failed(f) => Some(pb::PipelineError {
                    topic: f.topic.clone(),
                    partition: f.partition,
                    offset: f.offset,
                    kind: f.kind.clone(),
                    message: f.message.clone(),
                    at_ms: f.at_ms,
                }),
                _ => None,
            },
            owner: p.owner.clone().unwrap_or_default(),
        }
    }

    /// Reports of workers that run this incarnation, newest per worker.
    fn fresh_reports(&self, p: &PipelineMeta) -> Vec<(String, pb::WorkerPipelineReport)> {
        let id = p.id.to_string();
        self.reports
            .lock()
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < REPORT_FRESH)
            .filter_map(|(worker, (_, r))| {
                let mine = r
                    .pipelines
                    .iter()
                    .find(|x| x.name == p.name && x.id == id)?;
                Some((worker.clone(), mine.clone()))
            })
            .collect()
    }

    /// Every input partition with its owner, committed offset and lag.
    async fn partitions(&self, p: &PipelineMeta) -> Result<Vec<pb::PipelinePartition>> {
        let group = self.group(&group_id(&p.name)).await?;
        let owners: BTreeMap<&str, &str> = group
            .iter()
            .flat_map(|g| &g.members)
            .map(|m| (m.member_id.as_str(), m.client_id.as_str()))
            .collect();
        let known: BTreeMap<(&str, u32), &pb::PartitionLag> = group
            .iter()
            .flat_map(|g| &g.partitions)
            .map(|l| ((l.topic.as_str(), l.partition), l))
            .collect();
        let mut out = Vec::new();
        for topic in &p.inputs {
            let Some(ends) = self.log_ends(topic).await? else {
                continue;
            };
            for (partition, (log_start, log_end)) in ends.into_iter().enumerate() {
                let partition = partition as u32;
                let lag = known.get(&(topic.as_str(), partition));
                let committed = lag.and_then(|l| l.committed);
                out.push(pb::PipelinePartition {
                    topic: topic.clone(),
                    partition,
                    owner: lag
                        .map(|l| owners.get(l.owner.as_str()).copied().unwrap_or(&l.owner))
                        .unwrap_or_default()
                        .to_string(),
                    committed,
                    log_end,
                    lag: log_end.saturating_sub(committed.unwrap_or(log_start).max(log_start)),
                });
            }
        }
        Ok(out)
    }

    /// The pipeline's consumer group as its coordinator describes it, or
    /// `None` before it exists.
    async fn group(&self, group: &str) -> Result<Option<pb::DescribeGroupResponse>> {
        match self.broker.describe_group(group).await {
            Ok(g) => return Ok(Some(eddy_broker::group_description(g))),
            Err(BrokerError::UnknownGroup(_)) => return Ok(None),
            Err(BrokerError::NotCoordinator { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let admin = eddy_client::Admin::new(self.client().await?.clone());
        match admin.describe_group(group).await {
            Ok(g) => Ok(Some(g)),
            Err(eddy_client::ClientError::Broker {
                grpc: tonic::Code::NotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Log start and high watermark of each partition of `topic`, from
    /// each partition's leader (this broker's own figures when it leads
    /// them all); `None` if the topic is gone.
    async fn log_ends(&self, topic: &str) -> Result<Option<Vec<(u64, u64)>>> {
        let Ok(t) = self.broker.topics.get(topic) else {
            return Ok(None);
        };
        let local: Option<Vec<(u64, u64)>> = (0..t.partition_count())
            .map(|i| {
                let p = t.partition(PartitionId(i)).ok()?;
                (p.role() == Role::Leader).then(|| {
                    let o = p.offsets();
                    (o.log_start.0, o.high_watermark.0)
                })
            })
            .collect();
        if let Some(local) = local {
            return Ok(Some(local));
        }
        let admin = eddy_client::Admin::new(self.client().await?.clone());
        let described = admin.describe_topic(topic).await?;
        Ok(Some(
            described
                .partitions
                .iter()
                .map(|p| (p.log_start_offset, p.high_watermark))
                .collect(),
        ))
    }
}
