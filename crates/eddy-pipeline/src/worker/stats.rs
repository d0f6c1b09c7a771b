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

    pub fn set_last_error(&self, error: pb::PipelineError) {
        *self.last_error.lock() = Some(error);
    }

    pub fn counters(&self) -> pb::PipelineCounters {
        pb::PipelineCounters {
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
