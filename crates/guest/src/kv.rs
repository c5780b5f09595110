//! The domain's store trait over `wasi:keyvalue@0.2.0-draft2` (store, atomics, batch).

use std::collections::HashMap;

use mcp_edge_domain::store::{KvStore, StoreError};

use crate::bindings::wasi::keyvalue::atomics::{self, Cas, CasError};
use crate::bindings::wasi::keyvalue::batch;
use crate::bindings::wasi::keyvalue::store::{self, Bucket, Error};

fn convert(err: Error) -> StoreError {
    match err {
        Error::NoSuchStore => StoreError::AccessDenied("no such store".into()),
        Error::AccessDenied => StoreError::AccessDenied("access denied".into()),
        Error::Other(msg) => StoreError::Other(msg),
    }
}

/// An opened key-value store (a "bucket" in WASI terms).
pub struct WasiKv {
    bucket: Bucket,
}

impl WasiKv {
    /// Opens the store with this label; the host grants labels per component
    /// (`key_value_stores` in spin.toml).
    pub fn open(label: &str) -> Result<Self, StoreError> {
        store::open(label)
            .map(|bucket| Self { bucket })
            .map_err(convert)
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for WasiKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.bucket.get(key).map_err(convert)
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.bucket.set(key, value).map_err(convert)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.bucket.delete(key).map_err(convert)
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        batch::delete_many(&self.bucket, keys).map_err(convert)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Hosts may leave absent keys out or reorder: match results up by key.
        let mut found: HashMap<String, Option<Vec<u8>>> = batch::get_many(&self.bucket, keys)
            .map_err(convert)?
            .into_iter()
            .collect();
        Ok(keys.iter().map(|k| found.remove(k).flatten()).collect())
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        atomics::increment(&self.bucket, key, delta).map_err(convert)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let cas = Cas::new(&self.bucket, key).map_err(convert)?;
        if cas.current().map_err(convert)?.as_deref() != expected {
            return Ok(false);
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(true),
            Err(CasError::CasFailed(_)) => Ok(false),
            Err(CasError::StoreError(e)) => Err(convert(e)),
        }
    }
}

/// The store every stateful component uses.
pub const DEFAULT_STORE: &str = "default";

/// A store opened on first use: for an endpoint that needs it only sometimes (docs, to check
/// an API key), so that a deployment granting it no store still serves everything else.
pub struct LazyKv {
    label: &'static str,
    opened: std::cell::OnceCell<Result<WasiKv, StoreError>>,
}

impl LazyKv {
    pub fn new(label: &'static str) -> Self {
        Self {
            label,
            opened: std::cell::OnceCell::new(),
        }
    }

    fn store(&self) -> Result<&WasiKv, StoreError> {
        self.opened
            .get_or_init(|| WasiKv::open(self.label))
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for LazyKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store()?.get(key).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.store()?.set(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store()?.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.store()?.delete_many(keys).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.store()?.get_many(keys).await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.store()?.increment(key, delta).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.store()?.compare_and_swap(key, expected, new).await
    }
}
