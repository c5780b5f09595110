//! `wasi:keyvalue@0.2.0-draft2` (store, atomics, batch) for components, over a [`Backend`].
//! A component may open only the labels its manifest grants (`key_value_stores`); anything
//! else is `access-denied`, as on Spin. Backend calls run on tokio's blocking pool so a
//! slow disk never stalls the request executor.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::{KvError, SharedBackend};
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// An opened store label.
pub struct BucketHandle {
    label: String,
}

/// A compare-and-swap handle: the value seen when it was created.
pub struct CasHandle {
    label: String,
    key: String,
    seen: Option<Vec<u8>>,
}

/// Per-component key-value grant.
#[derive(Clone)]
pub struct KvGrant {
    pub backend: SharedBackend,
    pub labels: Arc<[String]>,
}

pub struct KvView<'a> {
    pub grant: &'a KvGrant,
    pub table: &'a mut ResourceTable,
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}

type Outcome<T> = wasmtime::Result<Result<T, store::Error>>;

/// Runs a backend call off the executor; backend failures become the WIT `other` error.
async fn run<T: Send + 'static>(
    backend: SharedBackend,
    op: &'static str,
    call: impl FnOnce(&dyn super::Backend) -> Result<T, KvError> + Send + 'static,
) -> Outcome<T> {
    let started = std::time::Instant::now();
    let name = backend.name();
    let result = tokio::task::spawn_blocking(move || call(backend.as_ref())).await?;
    finish(name, op, started, result)
}

/// Runs a read: on the calling thread where the backend's reads are local, else as [`run`].
async fn read<T: Send + 'static>(
    backend: SharedBackend,
    op: &'static str,
    call: impl FnOnce(&dyn super::Backend) -> Result<T, KvError> + Send + 'static,
) -> Outcome<T> {
    if !backend.reads_are_local() {
        return run(backend, op, call).await;
    }
    let started = std::time::Instant::now();
    let result = call(backend.as_ref());
    finish(backend.name(), op, started, result)
}

fn finish<T>(
    name: &'static str,
    op: &'static str,
    started: std::time::Instant,
    result: Result<T, KvError>,
) -> Outcome<T> {
    crate::metrics::kv_operation(name, op, result.is_ok(), started.elapsed());
    Ok(result.map_err(|e| {
        tracing::warn!(error = %e, "key-value call failed");
        store::Error::Other(e.to_string())
    }))
}

impl KvView<'_> {
    /// The bucket's label and the backend, detached from `self` so the call's future is `Send`.
    fn target(&self, bucket: &Resource<BucketHandle>) -> wasmtime::Result<(String, SharedBackend)> {
        Ok((
            self.table.get(bucket)?.label.clone(),
            self.grant.backend.clone(),
        ))
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Outcome<Resource<BucketHandle>> {
        if !self.grant.labels.contains(&identifier) {
            return Ok(Err(store::Error::AccessDenied));
        }
        Ok(Ok(self.table.push(BucketHandle { label: identifier })?))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> Outcome<Option<Vec<u8>>> {
        let (label, backend) = self.target(&bucket)?;
        read(backend, "get", move |b| b.get(&label, &key)).await
    }

    async fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Outcome<()> {
        let (label, backend) = self.target(&bucket)?;
        run(backend, "set", move |b| b.set(&label, &key, &value)).await
    }

    async fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> Outcome<()> {
        let (label, backend) = self.target(&bucket)?;
        run(backend, "delete", move |b| b.delete(&label, &key)).await
    }

    async fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> Outcome<bool> {
        let (label, backend) = self.target(&bucket)?;
        read(backend, "exists", move |b| b.exists(&label, &key)).await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<String>,
    ) -> Outcome<store::KeyResponse> {
        let (label, backend) = self.target(&bucket)?;
        read(backend, "list_keys", move |b| {
            b.list_keys(&label, cursor.as_deref())
                .map(|page| store::KeyResponse {
                    keys: page.keys,
                    cursor: page.cursor,
                })
        })
        .await
    }

    async fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        delta: i64,
    ) -> Outcome<i64> {
        let (label, backend) = self.target(&bucket)?;
        let call = move |b: &dyn super::Backend| b.increment(&label, &key, delta);
        // Adding 0 reads the counter (the log's head): a read, where reads are local.
        match delta {
            0 => read(backend, "increment", call).await,
            _ => run(backend, "increment", call).await,
        }
    }

    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let handle = self.table.delete(cas)?;
        let (label, key, seen) = (handle.label.clone(), handle.key.clone(), handle.seen);
        let backend = self.grant.backend.clone();
        let swapped = run(backend, "swap", move |b| {
            if b.swap_if(&label, &key, seen.as_deref(), &value)? {
                Ok(None)
            } else {
                // Lost the race: hand back a handle refreshed to the current value.
                b.get(&label, &key).map(Some)
            }
        })
        .await?;
        match swapped {
            Ok(None) => Ok(Ok(())),
            Ok(Some(current)) => {
                let fresh = self.table.push(CasHandle {
                    label: handle.label,
                    key: handle.key,
                    seen: current,
                })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(e))),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> Outcome<Resource<CasHandle>> {
        let (label, backend) = self.target(&bucket)?;
        let (l, k) = (label.clone(), key.clone());
        match read(backend, "cas_new", move |b| b.get(&l, &k)).await? {
            Ok(seen) => Ok(Ok(self.table.push(CasHandle { label, key, seen })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn current(&mut self, cas: Resource<CasHandle>) -> Outcome<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Outcome<Vec<(String, Option<Vec<u8>>)>> {
        let (label, backend) = self.target(&bucket)?;
        read(backend, "get_many", move |b| {
            let found = b.get_many(&label, &keys)?;
            Ok(found.into_iter().map(|(k, v)| (k, Some(v))).collect())
        })
        .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Outcome<()> {
        let (label, backend) = self.target(&bucket)?;
        run(backend, "set_many", move |b| b.set_many(&label, &entries)).await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Outcome<()> {
        let (label, backend) = self.target(&bucket)?;
        run(backend, "delete_many", move |b| {
            b.delete_many(&label, &keys)
        })
        .await
    }
}
