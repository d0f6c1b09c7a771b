//! The per-process engines: a wasmtime `Engine` with the pooling
//! allocator for components that fit its slots and one allocating on
//! demand for those that do not, each with its linker holding the host's
//! imports and its compile cache, and the epoch timer that enforces time
//! budgets.

use std::fmt;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings;
use crate::cache::ArtifactCache;
use crate::config::{Config, EPOCH_TICK_MS};
use crate::error::{Error, Result};
use crate::instance::Processor;
use crate::state::State;
use crate::validate;

/// Core wasm instances, memories and tables one component may use from
/// the pool, and what the pool holds per instance slot. A Rust component
/// has a few core instances (its module plus the glue `wit-component`
/// adds) and one memory; componentize-py's and componentize-js's have a
/// dozen or so, and componentize-py's with `--stub-wasi` about forty. A
/// component needing more than a slot's maximum is allocated on demand
/// instead (see [`Runtime::compile`]).
#[derive(Debug, Clone, Copy)]
struct SlotLimits {
    core_instances_max: u32,
    core_instances_mean: u32,
    memories_max: u32,
    memories_mean: u32,
    tables_max: u32,
    tables_mean: u32,
}

const SLOT_LIMITS: SlotLimits = SlotLimits {
    core_instances_max: 64,
    core_instances_mean: 16,
    memories_max: 4,
    memories_mean: 2,
    tables_max: 32,
    tables_mean: 8,
};

/// Elements of one table in the pool (CPython's function table holds a
/// few thousand); the store's limiter allows the same.
pub(crate) const TABLE_ELEMENTS_MAX: usize = 100_000;

/// The sha256 of a component's bytes: its identity in caches and uploads.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Runs processors. Create one per process and share it (it is cheap to
/// clone): it owns the compiled code, the instance pool and a timer thread.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Instances from a pool reserved up front, made in microseconds:
    /// every component that fits a slot runs here.
    pooled: Engines,
    /// Instances allocated when made, for the components that do not fit
    /// a slot (more core instances, memories or tables).
    on_demand: Engines,
    pub(crate) config: Config,
    _ticker: Ticker,
}

/// An engine with its linker and its compile cache.
struct Engines {
    engine: Engine,
    linker: Linker<State>,
    cache: Option<ArtifactCache>,
}

impl Engines {
    fn new(config: &Config, pool: Option<SlotLimits>) -> Result<Engines> {
        let engine = Engine::new(&engine_config(config, pool)).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        bindings::Processor::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |state| state,
        )
        .map_err(engine_error)?;
        crate::wasi::add_to_linker(&mut linker).map_err(engine_error)?;
        let tag = if pool.is_some() {
            "pooled"
        } else {
            "on-demand"
        };
        let cache = match &config.cache_dir {
            Some(dir) => Some(ArtifactCache::open(dir, &engine, tag)?),
            None => None,
        };
        Ok(Engines {
            engine,
            linker,
            cache,
        })
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Sets up the engines for `config`. Reserves virtual memory for
    /// `instances_max` pooled instances up front.
    pub fn new(config: Config) -> Result<Runtime> {
        Runtime::with_slots(config, SLOT_LIMITS)
    }

    fn with_slots(config: Config, slots: SlotLimits) -> Result<Runtime> {
        config.validate()?;
        let pooled = Engines::new(&config, Some(slots))?;
        let on_demand = Engines::new(&config, None)?;
        let ticker = Ticker::start(vec![pooled.engine.clone(), on_demand.engine.clone()])?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                pooled,
                on_demand,
                config,
                _ticker: ticker,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Validates and compiles a component (or loads its compilation from
    /// the cache). Refuses components that are too large, are not
    /// components, import anything beyond what the host offers, or do not
    /// export the processor world, naming the problem. A component that
    /// does not fit a slot of the instance pool is compiled for on-demand
    /// allocation instead: its instances take longer to make, under the
    /// same limits. Compiling takes seconds of CPU for a large component
    /// (tens of megabytes for Python or JavaScript): call it where
    /// blocking is fine.
    pub fn compile(&self, bytes: &[u8]) -> Result<Processor> {
        let limit = self.inner.config.component_bytes_max;
        if bytes.len() > limit {
            return Err(Error::TooLarge {
                bytes: bytes.len(),
                limit,
            });
        }
        let digest = Digest::of(bytes);
        match self.compile_with(&self.inner.pooled, bytes, digest) {
            Err(Error::PoolSlot(detail)) => {
                tracing::info!(
                    processor = %digest,
                    "the processor does not fit a slot of the instance pool ({detail}); its instances are allocated on demand"
                );
                self.compile_with(&self.inner.on_demand, bytes, digest)
            }
            other => other,
        }
    }

    fn compile_with(&self, engines: &Engines, bytes: &[u8], digest: Digest) -> Result<Processor> {
        let engine = &engines.engine;
        let cached = engines.cache.as_ref().and_then(|c| c.load(engine, &digest));
        let fresh = cached.is_none();
        let component = match cached {
            Some(component) => component,
            None => Component::from_binary(engine, bytes).map_err(|e| {
                let detail = chain(&e);
                // Valid wasm, but asking for more than the pool offers: more
                // memory at start than any instance may have (no allocator
                // helps), or more instances, memories or tables than a slot.
                if let Some(at) = detail.find("memory has a minimum byte size") {
                    Error::MemoryLimit {
                        limit_bytes: self.inner.config.memory_bytes_max,
                        detail: detail[at..].to_owned(),
                    }
                } else if detail.contains("pooling allocator") {
                    Error::PoolSlot(detail)
                } else {
                    Error::Invalid(detail)
                }
            })?,
        };
        validate::check(engine, &component)?;
        // The refused WASI interfaces are defined as this component
        // imports them, whichever 0.2.x it was built against.
        let mut linker = engines.linker.clone();
        crate::wasi::link_denied(&mut linker, engine, &component).map_err(engine_error)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(bindings::ProcessorPre::new)
            .map_err(|e| Error::WrongWorld { detail: chain(&e) })?;
        // Only a component that will run is worth keeping.
        if fresh
            && let Some(cache) = &engines.cache
            && let Err(e) = cache.store(&digest, &component)
        {
            tracing::warn!(error = %e, "could not save the compiled processor; it will be recompiled next time");
        }
        Ok(Processor::new(self.clone(), pre, digest))
    }
}

fn engine_config(config: &Config, pool: Option<SlotLimits>) -> wasmtime::Config {
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.stack_bytes_max)
        // Determinism: the same input gives the same bits on every machine.
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true);
    if let Some(slot) = pool {
        let n = config.instances_max;
        // The totals hold at least one component of each slot maximum.
        let total = |mean: u32, max: u32| n.saturating_mul(mean).max(max);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(total(slot.core_instances_mean, slot.core_instances_max))
            .total_memories(total(slot.memories_mean, slot.memories_max))
            .total_tables(total(slot.tables_mean, slot.tables_max))
            .max_core_instances_per_component(slot.core_instances_max)
            .max_memories_per_component(slot.memories_max)
            .max_tables_per_component(slot.tables_max)
            .table_elements(TABLE_ELEMENTS_MAX)
            .max_memory_size(config.memory_bytes_max);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    wasm
}

fn engine_error(e: wasmtime::Error) -> Error {
    Error::Engine(chain(&e))
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        text.push_str(": ");
        text.push_str(&cause.to_string());
    }
    text
}

/// Advances the engines' epochs every [`EPOCH_TICK_MS`]; stops when dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engines: Vec<Engine>) -> Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eddy-wasm-epoch".into())
            .spawn(move || {
                let tick = Duration::from_millis(EPOCH_TICK_MS);
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engines.iter().for_each(Engine::increment_epoch);
                }
            })
            .map_err(|e| Error::Engine(format!("starting the epoch timer thread: {e}")))?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{InputRecord, Offset, Timestamp};

    #[test]
    fn a_component_too_big_for_a_pool_slot_runs_from_on_demand_allocation() {
        let slots = SlotLimits {
            core_instances_max: 1,
            ..SLOT_LIMITS
        };
        let config = Config {
            instances_max: 2,
            ..Config::default()
        };
        let rt = Runtime::with_slots(config, slots).unwrap();
        let bytes = eddy_test_plugins::read(eddy_test_plugins::PASSTHROUGH).unwrap();
        let processor = rt.compile(&bytes).unwrap();
        // More instances than the pool has slots: on demand, none is pooled.
        let mut instances: Vec<_> = (0..3)
            .map(|_| processor.instantiate(&[]).unwrap())
            .collect();
        let record = InputRecord {
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Vec::new(),
            timestamp: Timestamp(1),
            topic: std::sync::Arc::from("t"),
            partition: 0,
            offset: Offset(0),
        };
        let out = instances[2].process(std::slice::from_ref(&record)).unwrap();
        assert_eq!(out[0].value.as_deref(), Some(&b"v"[..]));
    }
}
