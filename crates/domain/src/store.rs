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

#[async_trait::async_trait(?Send)]
pub trait KvStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes every key in `keys` (absent ones are skipped). Not atomic as a whole: each
    /// key is deleted or not, and a failure may leave some deleted.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }
    /// Values for `keys`, in the same order.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Atomically adds `delta` to the counter at `key` (absent counts as 0) and returns the
    /// new value. `delta == 0` reads the counter.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Atomically writes `new` if the value at `key` still equals `expected` (`None`: absent).
    /// Returns whether the write happened.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError>;

    /// The group whose own storage this store is, if it is one (a Durable Object's rows):
    /// such a store cleans the group up itself (`messaging::Cleanup::group`, on an alarm),
    /// so the domain lists nothing of the group in the global cleanup indexes there.
    fn group_local(&self) -> Option<&str> {
        None
    }

    /// Asks the store to have `key` looked at by the cleanup at `at_ms` by itself (the alarm
    /// of the Durable Object that holds it): `true` if it will, and the key then needs no
    /// listing in a cleanup index. The look is `api::expire_key`.
    async fn schedule_cleanup(&self, key: &str, at_ms: u64) -> Result<bool, StoreError> {
        let _ = (key, at_ms);
        Ok(false)
    }

    /// The keys under `prefix`. Only a group-local store is asked, for its group's keys;
    /// other backends cannot list cheaply (Spin's `list-keys` returns every key).
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Err(StoreError::Other(format!(
            "this store does not list keys (asked for {prefix}…)"
        )))
    }
}

/// A store whose first read of each of a few keys is answered from one batch read made up
/// front (`get_many`), to save round trips where a request reads several keys it knows in
/// advance. Every other call, and any later read of those keys, goes to the store; a write to
/// a key drops what was read ahead for it. A value read ahead is only earlier than the read
/// it stands for, never newer.
pub struct ReadAhead<'a> {
    store: &'a dyn KvStore,
    ahead: Mutex<HashMap<String, Option<Vec<u8>>>>,
}

impl<'a> ReadAhead<'a> {
    pub async fn new(store: &'a dyn KvStore, keys: &[String]) -> Result<Self, StoreError> {
        let values = store.get_many(keys).await?;
        Ok(Self {
            store,
            ahead: Mutex::new(keys.iter().cloned().zip(values).collect()),
        })
    }

    fn take(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for ReadAhead<'_> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.take(key) {
            Some(value) => Ok(value),
            None => self.store.get(key).await,
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.take(key);
        self.store.set(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.take(key);
        self.store.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.take(key);
        }
        self.store.delete_many(keys).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        for key in keys {
            self.take(key);
        }
        self.store.get_many(keys).await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.take(key);
        self.store.increment(key, delta).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.take(key);
        self.store.compare_and_swap(key, expected, new).await
    }

    fn group_local(&self) -> Option<&str> {
        self.store.group_local()
    }

    async fn schedule_cleanup(&self, key: &str, at_ms: u64) -> Result<bool, StoreError> {
        self.store.schedule_cleanup(key, at_ms).await
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.store.keys_with_prefix(prefix).await
    }
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

    /// Every key holding a value or a counter, sorted: for tests asserting that nothing
    /// leaks. (The domain itself never lists keys.)
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock_entries().keys().cloned().collect();
        keys.extend(
            self.counters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, _)| k.clone()),
        );
        keys.sort();
        keys
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        // A poisoned map is still a consistent map: every mutation is a single insert/remove.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock_entries().get(key).cloned())
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock_entries().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock_entries().remove(key);
        // Counters are keys too: deleting one resets it, as on every backend.
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        Ok(())
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let entries = self.lock_entries();
        Ok(keys.iter().map(|k| entries.get(k).cloned()).collect())
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let value = counters.entry(key.to_owned()).or_insert(0);
        *value = value
            .checked_add(delta)
            .ok_or_else(|| StoreError::Other(format!("counter {key} overflowed")))?;
        Ok(*value)
    }

    async fn compare_and_swap(
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

    #[pollster::test]
    async fn compare_and_swap_creates_only_when_absent() {
        let store = MemoryStore::new();
        assert!(store.compare_and_swap("k", None, b"1").await.unwrap());
        assert!(!store.compare_and_swap("k", None, b"2").await.unwrap());
        assert!(!store.compare_and_swap("k", Some(b"2"), b"3").await.unwrap());
        assert!(store.compare_and_swap("k", Some(b"1"), b"3").await.unwrap());
        assert_eq!(store.get("k").await.unwrap().unwrap(), b"3");
    }

    #[pollster::test]
    async fn read_ahead_answers_each_key_once_and_forgets_on_write() {
        let store = MemoryStore::new();
        store.set("a", b"1").await.unwrap();
        let keys = ["a".to_string(), "b".to_string()];
        let ahead = ReadAhead::new(&store, &keys).await.unwrap();
        store.set("a", b"2").await.unwrap();
        // The first read is the one made ahead; the next goes to the store.
        assert_eq!(ahead.get("a").await.unwrap().unwrap(), b"1");
        assert_eq!(ahead.get("a").await.unwrap().unwrap(), b"2");
        store.set("b", b"x").await.unwrap();
        ahead.set("b", b"y").await.unwrap();
        assert_eq!(ahead.get("b").await.unwrap().unwrap(), b"y");
    }

    #[pollster::test]
    async fn increment_by_zero_reads() {
        let store = MemoryStore::new();
        assert_eq!(store.increment("c", 0).await.unwrap(), 0);
        assert_eq!(store.increment("c", 2).await.unwrap(), 2);
        assert_eq!(store.increment("c", 0).await.unwrap(), 2);
    }
}
