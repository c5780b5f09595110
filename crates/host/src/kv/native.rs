//! The domain's [`KvStore`] directly over a [`Backend`], for code that runs the domain natively
//! beside the runtime (the benchmark's native baseline) on the very same store.

use mcp_edge_domain::store::{KvStore, StoreError};

use super::{KvError, SharedBackend};

pub struct BackendStore {
    backend: SharedBackend,
    label: String,
}

impl BackendStore {
    pub fn new(backend: SharedBackend, label: &str) -> Self {
        Self {
            backend,
            label: label.to_owned(),
        }
    }
}

fn other(err: KvError) -> StoreError {
    StoreError::Other(err.to_string())
}

#[async_trait::async_trait(?Send)]
impl KvStore for BackendStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(&self.label, key).map_err(other)
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.backend.set(&self.label, key, value).map_err(other)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.backend.delete(&self.label, key).map_err(other)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut found: std::collections::HashMap<String, Vec<u8>> = self
            .backend
            .get_many(&self.label, keys)
            .map_err(other)?
            .into_iter()
            .collect();
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.backend
            .increment(&self.label, key, delta)
            .map_err(other)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.backend
            .swap_if(&self.label, key, expected, new)
            .map_err(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[pollster::test]
    async fn the_domain_store_contract_holds_over_a_backend() {
        let store = BackendStore::new(
            Arc::new(super::super::memory::MemoryBackend::new()),
            "default",
        );
        assert!(store.compare_and_swap("k", None, b"1").await.unwrap());
        assert!(!store.compare_and_swap("k", None, b"2").await.unwrap());
        assert_eq!(store.increment("c", 2).await.unwrap(), 2);
        assert_eq!(
            store.get_many(&["x".into(), "k".into()]).await.unwrap(),
            vec![None, Some(b"1".to_vec())]
        );
        store.delete("k").await.unwrap();
        assert_eq!(store.get("k").await.unwrap(), None);
    }
}
