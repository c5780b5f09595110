//! The storage seam. The domain needs only what `wasi:keyvalue` (store, atomics, batch)
//! offers: point reads and writes, batch reads, an atomic counter and compare-and-swap.
//! There is deliberately no key listing: on Spin it returns every key in the store, so the
//! schema never depends on it.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store not available to this component: {0}")]
    AccessDenied(String),
    #[error("{0}")]
    Other(String),
}

pub trait KvStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Values for `keys`, in the same order.
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Atomically adds `delta` to the counter at `key` (absent counts as 0) and returns the
    /// new value. `delta == 0` reads the counter.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Atomically writes `new` if the value at `key` still equals `expected` (`None`: absent).
    /// Returns whether the write happened.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError>;
}

/// An in-process store for unit tests and the native baseline.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Vec<u8>>>,
    counters: Mutex<HashMap<String, i64>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored values (counters excluded), for tests asserting on state.
    pub fn len(&self) -> usize {
        self.lock_entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        // A poisoned map is still a consistent map: every mutation is a single insert/remove.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KvStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock_entries().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock_entries().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock_entries().remove(key);
        Ok(())
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let entries = self.lock_entries();
        Ok(keys.iter().map(|k| entries.get(k).cloned()).collect())
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let value = counters.entry(key.to_owned()).or_insert(0);
        *value = value
            .checked_add(delta)
            .ok_or_else(|| StoreError::Other(format!("counter {key} overflowed")))?;
        Ok(*value)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let mut entries = self.lock_entries();
        if entries.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        entries.insert(key.to_owned(), new.to_vec());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_creates_only_when_absent() {
        let store = MemoryStore::new();
        assert!(store.compare_and_swap("k", None, b"1").unwrap());
        assert!(!store.compare_and_swap("k", None, b"2").unwrap());
        assert!(!store.compare_and_swap("k", Some(b"2"), b"3").unwrap());
        assert!(store.compare_and_swap("k", Some(b"1"), b"3").unwrap());
        assert_eq!(store.get("k").unwrap().unwrap(), b"3");
    }

    #[test]
    fn increment_by_zero_reads() {
        let store = MemoryStore::new();
        assert_eq!(store.increment("c", 0).unwrap(), 0);
        assert_eq!(store.increment("c", 2).unwrap(), 2);
        assert_eq!(store.increment("c", 0).unwrap(), 2);
    }
}
