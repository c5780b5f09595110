//! The wasmtime engine: pooling allocation, epoch-based deadlines, and components compiled
//! once and cached on disk, keyed by the component's bytes and the engine's configuration.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; deadlines are measured in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each pooled memory slot kept resident between instances (a Rust component's
/// memory starts at about a megabyte).
const KEEP_RESIDENT_BYTES: usize = 0;
/// Slots returned to the kernel together. With instances reused, few are freed, and a batch
/// of 8 held up to seven freed memories (each up to the 19 MiB of an Argon2 login) resident
/// until the eighth came: the sends after the login benchmark started 100 MiB higher.
const DECOMMIT_BATCH: usize = 1;

pub struct EngineOptions {
    /// Largest linear memory one instance may grow to.
    pub memory_limit_bytes: usize,
    /// Instances alive at once (the pool's size).
    pub max_instances: u32,
}

fn config(opts: &EngineOptions, pooling: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .parallel_compilation(true);
    if pooling {
        let n = opts.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(opts.memory_limit_bytes)
            // Measured (docs/performance.md): returning a slot's pages to the kernel after
            // every request costs page faults and TLB-shootdown IPIs on every core. Keep the
            // first pages of each slot resident (reset with memset instead) and return the
            // rest in batches.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES / 16)
            .async_stack_keep_resident(KEEP_RESIDENT_BYTES / 4)
            .decommit_batch_size(DECOMMIT_BATCH);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// An engine with the pooling allocator, or on-demand allocation where the platform refuses
/// the pool's address-space reservation.
pub fn new_engine(opts: &EngineOptions) -> Result<Engine> {
    match Engine::new(&config(opts, true)) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
            Ok(Engine::new(&config(opts, false))?)
        }
    }
}

/// Advances the engine's epoch forever on a background thread.
pub fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .ok();
}

/// Returns the heap the compiler used to the kernel. Compiling the components (on a first
/// start, or after a change) leaves about 70 MiB freed but resident in glibc's per-thread
/// arenas, which the server would otherwise carry for its whole life (docs/performance.md).
pub fn release_compiler_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; it has no
    // preconditions and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let mut hasher = Sha256::new();
    hasher.update(wasm);
    hasher.update(compat.finish().to_le_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// Where compiled components are cached by default.
pub fn default_cache_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("cache")
}

/// Compiles the component at `path`, or loads its compiled form from `cache_dir`.
pub fn load_component(engine: &Engine, path: &Path, cache_dir: &Path) -> Result<Component> {
    let wasm =
        std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
    let cached = cache_dir.join(format!("{}.cwasm", cache_key(engine, &wasm)));
    if cached.is_file() {
        // SAFETY: the cache directory is written only by this program, from components it
        // compiled itself with an engine of the same configuration (part of the file name).
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "ignoring unusable compiled artifact")
            }
        }
    }
    let component = Component::new(engine, &wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot compile {}", path.display()))?;
    if let Err(e) = store_artifact(&component, &cached) {
        tracing::warn!(path = %cached.display(), error = %e, "could not cache compiled component");
        return Ok(component);
    }
    // Serve the artifact from the file just written, as every later start does: its code is
    // then mapped from the page cache, not held in the heap (about 45 MiB less resident).
    // SAFETY: as above; this program wrote the file a moment ago.
    match unsafe { Component::deserialize_file(engine, &cached) } {
        Ok(mapped) => Ok(mapped),
        Err(_) => Ok(component),
    }
}

fn store_artifact(component: &Component, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
