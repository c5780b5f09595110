//! In-memory backend (`--kv memory`): for tests and throwaway runs; nothing survives a restart.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, KeyPage, KvResult, LIST_PAGE, add, encode_counter, parse_counter};

#[derive(Default)]
pub struct MemoryBackend {
    entries: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Vec<u8>>> {
        // Every mutation is a single map operation, so a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn k(store: &str, key: &str) -> (String, String) {
    (store.to_owned(), key.to_owned())
}

impl Backend for MemoryBackend {
    fn get(&self, store: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        Ok(self.entries().get(&k(store, key)).cloned())
    }

    fn set(&self, store: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.entries().insert(k(store, key), value.to_vec());
        Ok(())
    }

    fn delete(&self, store: &str, key: &str) -> KvResult<()> {
        self.entries().remove(&k(store, key));
        Ok(())
    }

    fn exists(&self, store: &str, key: &str) -> KvResult<bool> {
        Ok(self.entries().contains_key(&k(store, key)))
    }

    fn list_keys(&self, store: &str, cursor: Option<&str>) -> KvResult<KeyPage> {
        let entries = self.entries();
        let keys: Vec<String> = entries
            .keys()
            .filter(|(s, key)| s == store && cursor.is_none_or(|c| key.as_str() > c))
            .take(LIST_PAGE + 1)
            .map(|(_, key)| key.clone())
            .collect();
        Ok(page(keys))
    }

    fn get_many(&self, store: &str, keys: &[String]) -> KvResult<Vec<(String, Vec<u8>)>> {
        let entries = self.entries();
        Ok(keys
            .iter()
            .filter_map(|key| {
                entries
                    .get(&k(store, key))
                    .map(|v| (key.clone(), v.clone()))
            })
            .collect())
    }

    fn set_many(&self, store: &str, items: &[(String, Vec<u8>)]) -> KvResult<()> {
        let mut entries = self.entries();
        for (key, value) in items {
            entries.insert(k(store, key), value.clone());
        }
        Ok(())
    }

    fn delete_many(&self, store: &str, keys: &[String]) -> KvResult<()> {
        let mut entries = self.entries();
        for key in keys {
            entries.remove(&k(store, key));
        }
        Ok(())
    }

    fn increment(&self, store: &str, key: &str, delta: i64) -> KvResult<i64> {
        let mut entries = self.entries();
        let next = add(
            parse_counter(entries.get(&k(store, key)).map(Vec::as_slice))?,
            delta,
        )?;
        entries.insert(k(store, key), encode_counter(next).to_vec());
        Ok(next)
    }

    fn swap_if(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool> {
        let mut entries = self.entries();
        if entries.get(&k(store, key)).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        entries.insert(k(store, key), new.to_vec());
        Ok(true)
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn reads_are_local(&self) -> bool {
        true
    }
}

/// Turns up to `LIST_PAGE + 1` sorted keys into a page and its continuation cursor.
pub(super) fn page(mut keys: Vec<String>) -> KeyPage {
    let cursor = if keys.len() > LIST_PAGE {
        keys.truncate(LIST_PAGE);
        keys.last().cloned()
    } else {
        None
    };
    KeyPage { keys, cursor }
}
