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
