//! The per-process engine: one wasmtime `Engine` with the pooling
//! allocator, the linker holding the host's imports, the epoch timer that
//! enforces time budgets, and the compile cache.

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

/// Core wasm instances, memories and tables one processor may use. A Rust
/// component has a few core instances (its module plus the glue
/// `wit-component` adds) and one memory.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 8;

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
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<State>,
    pub(crate) config: Config,
    cache: Option<ArtifactCache>,
    _ticker: Ticker,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Sets up the engine for `config`. Reserves virtual memory for
    /// `instances_max` instances up front.
    pub fn new(config: Config) -> Result<Runtime> {
        config.validate()?;
        let engine = Engine::new(&engine_config(&config)).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        bindings::Processor::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |state| state,
        )
        .map_err(engine_error)?;
        crate::wasi::add_to_linker(&mut linker).map_err(engine_error)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(ArtifactCache::open(dir, &engine)?),
            None => None,
        };
        let ticker = Ticker::start(engine.clone())?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                config,
                cache,
                _ticker: ticker,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Validates and compiles a component (or loads its compilation from
    /// the cache). Refuses components that are too large, are not
    /// components, import anything beyond the processor world, or do not
    /// export it, naming the problem. Compiling takes up to seconds of CPU
    /// for a large component: call it where blocking is fine.
    pub fn compile(&self, bytes: &[u8]) -> Result<Processor> {
        let limit = self.inner.config.component_bytes_max;
        if bytes.len() > limit {
            return Err(Error::TooLarge {
                bytes: bytes.len(),
                limit,
            });
        }
        let digest = Digest::of(bytes);
        let engine = &self.inner.engine;
        let cached = self
            .inner
            .cache
            .as_ref()
            .and_then(|c| c.load(engine, &digest));
        let fresh = cached.is_none();
        let component = match cached {
            Some(component) => component,
            None => Component::from_binary(engine, bytes).map_err(|e| {
                let detail = chain(&e);
                // Valid wasm, but asking for more than the pool offers.
                if detail.contains("pooling allocator") {
                    Error::Limits(detail)
                } else {
                    Error::Invalid(detail)
                }
            })?,
        };
        validate::check(engine, &component)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::ProcessorPre::new)
            .map_err(|e| Error::WrongWorld { detail: chain(&e) })?;
        // Only a component that will run is worth keeping.
        if fresh
            && let Some(cache) = &self.inner.cache
            && let Err(e) = cache.store(&digest, &component)
        {
            tracing::warn!(error = %e, "could not save the compiled processor; it will be recompiled next time");
        }
        Ok(Processor::new(self.clone(), pre, digest))
    }
}

fn engine_config(config: &Config) -> wasmtime::Config {
    let n = config.instances_max;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size(config.memory_bytes_max);
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.stack_bytes_max)
        // Determinism: the same input gives the same bits on every machine.
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
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

/// Advances the engine's epoch every [`EPOCH_TICK_MS`]; stops when dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eddy-wasm-epoch".into())
            .spawn(move || {
                let tick = Duration::from_millis(EPOCH_TICK_MS);
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
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
