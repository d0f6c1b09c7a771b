//! What a worker counts for each pipeline, reported to the brokers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use eddy_proto::v1 as pb;
use parking_lot::Mutex;

/// Counters of one pipeline on one worker, since the worker started.
#[derive(Debug, Default)]
pub struct Stats {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub skipped: AtomicU64,
    processor: Mutex<BTreeMap<String, u64>>,
    last_error: Mutex<Option<pb::PipelineError>>,
    /// Keyed state per running task, by input partition, with the id of
    /// the task that reports it (a task taking a partition over may start
    /// before the one it replaces has ended).
    state: Mutex<BTreeMap<u32, (u64, TaskStateStats)>>,
    task_ids: AtomicU64,
}

/// One stateful task's state, as last reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskStateStats {
    pub keys: u64,
    pub bytes: u64,
    pub on_disk: bool,
    pub restoring: bool,
    pub restored_records: u64,
    pub restore_ms: u64,
    /// The task's watermark (`None` before its first record).
    pub watermark: Option<i64>,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_processor_counters(&self, grown: &BTreeMap<String, u64>) {
        if grown.is_empty() {
            return;
        }
        let mut counters = self.processor.lock();
        for (name, n) in grown {
            *counters.entry(name.clone()).or_insert(0) += n;
        }
    }

    /// A new task's id, for [`Stats::update_state`].
    pub fn task_id(&self) -> u64 {
        self.task_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Updates the state figures task `task` reports for `partition`.
    pub fn update_state(&self, partition: u32, task: u64, f: impl FnOnce(&mut TaskStateStats)) {
        let mut state = self.state.lock();
        let entry = state.entry(partition).or_default();
        if entry.0 != task {
            *entry = (task, TaskStateStats::default());
        }
        f(&mut entry.1);
    }

    /// Forgets what task `task` reported: it ended here.
    pub fn clear_state(&self, partition: u32, task: u64) {
        let mut state = self.state.lock();
        if state.get(&partition).is_some_and(|(t, _)| *t == task) {
            state.remove(&partition);
        }
    }

    pub fn set_last_error(&self, error: pb::PipelineError) {
        *self.last_error.lock() = Some(error);
    }

    pub fn counters(&self) -> pb::PipelineCounters {
        let state = self.state.lock();
        pb::PipelineCounters {
            state_keys: state.values().map(|(_, s)| s.keys).sum(),
            state_bytes: state.values().map(|(_, s)| s.bytes).sum(),
            state_restoring: state.values().filter(|(_, s)| s.restoring).count() as u64,
            state_restored_records: state.values().map(|(_, s)| s.restored_records).sum(),
            state_restore_ms: state.values().map(|(_, s)| s.restore_ms).max().unwrap_or(0),
            state_tasks_on_disk: state.values().filter(|(_, s)| s.on_disk).count() as u64,
            watermark_low: state.values().filter_map(|(_, s)| s.watermark).min(),
            watermark_high: state.values().filter_map(|(_, s)| s.watermark).max(),
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            processor: self
                .processor
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }
    }

    pub fn last_error(&self) -> Option<pb::PipelineError> {
        self.last_error.lock().clone()
    }
}
