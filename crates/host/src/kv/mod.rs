//! The host's key-value capability: pluggable backends ([`sqlite`], [`memory`], [`redis`]) behind
//! [`Backend`], and the `wasi:keyvalue` implementation over them ([`wasi`]).

pub mod changes;
pub mod memory;
pub mod native;
pub mod redis;
pub mod relay;
pub mod sqlite;
pub mod wasi;

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("key-value backend failed: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for KvError {
    fn from(err: rusqlite::Error) -> Self {
        KvError::Backend(err.to_string())
    }
}

pub type KvResult<T> = Result<T, KvError>;

/// A page of `list-keys`.
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

/// A write, as a value: what a backend with a writer thread of its own queues
/// ([`Backend::queue_write`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Set {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    SetMany(Vec<(String, Vec<u8>)>),
    DeleteMany(Vec<String>),
    Increment {
        key: String,
        delta: i64,
    },
    SwapIf {
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

impl Write {
    /// The keys it writes (a swap that did not happen wrote nothing: see [`Written`]).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Write::Set { key, .. }
            | Write::Delete { key }
            | Write::Increment { key, .. }
            | Write::SwapIf { key, .. } => vec![key],
            Write::SetMany(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            Write::DeleteMany(keys) => keys.iter().map(String::as_str).collect(),
        }
    }
}

impl Write {
    /// Runs it through `backend`'s blocking methods.
    pub fn apply_to(self, backend: &dyn Backend, store: &str) -> KvResult<Written> {
        Ok(match self {
            Write::Set { key, value } => {
                backend.set(store, &key, &value)?;
                Written::Unit
            }
            Write::Delete { key } => {
                backend.delete(store, &key)?;
                Written::Unit
            }
            Write::SetMany(entries) => {
                backend.set_many(store, &entries)?;
                Written::Unit
            }
            Write::DeleteMany(keys) => {
                backend.delete_many(store, &keys)?;
                Written::Unit
            }
            Write::Increment { key, delta } => {
                Written::Counter(backend.increment(store, &key, delta)?)
            }
            Write::SwapIf { key, expected, new } => {
                Written::Swapped(backend.swap_if(store, &key, expected.as_deref(), &new)?)
            }
        })
    }
}

/// What a write answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Unit,
    Counter(i64),
    Swapped(bool),
}

impl Written {
    /// Whether anything was written (a swap may not have been).
    pub fn changed(self) -> bool {
        self != Written::Swapped(false)
    }
}

/// Called once a queued write is durable (or failed), on the backend's writer thread.
pub type WriteDone = Box<dyn FnOnce(KvResult<Written>) + Send>;

/// Storage shared by every component instance. `store` is the label the component opened
/// (spin.toml `key_value_stores`); labels are separate namespaces. Each call is atomic, and
/// a call that writes returns only once the write is durable (for durable backends).
pub trait Backend: Send + Sync + 'static {
    fn get(&self, store: &str, key: &str) -> KvResult<Option<Vec<u8>>>;
    fn set(&self, store: &str, key: &str, value: &[u8]) -> KvResult<()>;
    fn delete(&self, store: &str, key: &str) -> KvResult<()>;
    fn exists(&self, store: &str, key: &str) -> KvResult<bool>;
    fn list_keys(&self, store: &str, cursor: Option<&str>) -> KvResult<KeyPage>;
    /// Present keys only, with their values.
    fn get_many(&self, store: &str, keys: &[String]) -> KvResult<Vec<(String, Vec<u8>)>>;
    fn set_many(&self, store: &str, entries: &[(String, Vec<u8>)]) -> KvResult<()>;
    fn delete_many(&self, store: &str, keys: &[String]) -> KvResult<()>;
    /// Adds `delta` to the counter at `key` (absent: 0) and returns the new value.
    fn increment(&self, store: &str, key: &str, delta: i64) -> KvResult<i64>;
    /// Writes `new` if the value is still `expected` (`None`: absent); whether it did.
    fn swap_if(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool>;
    /// Which backend this is, for logs.
    fn name(&self) -> &'static str;
    /// Whether a read is answered from this process's memory or page cache without waiting
    /// on anything (SQLite's memory-mapped readers, memory): then it runs on the calling
    /// thread instead of a hop to the blocking pool. Writes (which wait for a commit) and
    /// reads over a network always take the blocking pool.
    fn reads_are_local(&self) -> bool {
        false
    }
    /// Queues `write` to the backend's own writer thread, which calls `done` once it is
    /// durable, so that the caller waits without holding a thread (SQLite's group commit).
    /// A backend without one hands the write back, and the caller runs the blocking method
    /// on a thread that may wait.
    fn queue_write(&self, store: &str, write: Write, done: WriteDone) -> Result<(), Write> {
        let _ = (store, done);
        Err(write)
    }
}

pub type SharedBackend = Arc<dyn Backend>;

/// The store label components use (Spin's default store).
pub const DEFAULT_STORE: &str = "default";

/// How many keys one `list-keys` page holds.
pub const LIST_PAGE: usize = 1000;

/// Counters are stored as 8 little-endian bytes, as Spin stores them.
fn parse_counter(value: Option<&[u8]>) -> KvResult<i64> {
    match value {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes)
            .map(i64::from_le_bytes)
            .map_err(|_| KvError::Backend("value is not a counter".into())),
    }
}

fn encode_counter(value: i64) -> [u8; 8] {
    value.to_le_bytes()
}

fn add(current: i64, delta: i64) -> KvResult<i64> {
    current
        .checked_add(delta)
        .ok_or_else(|| KvError::Backend("counter overflow".into()))
}

#[cfg(test)]
mod contract_tests;
#[cfg(test)]
mod redis_tests;
