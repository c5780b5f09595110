//! Conveniences for the wing's tests: JSON values in and out, and a receive that returns the
//! batch it committed.

use serde_json::Value;
use serde_json::value::RawValue;

use super::log::{Received, Sent};
use super::{Messaging, Settings, StoredMessage};
use crate::error::ApiError;

pub fn raw(value: Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("a JSON value is valid JSON")
}

impl StoredMessage {
    pub fn value(&self) -> Value {
        serde_json::from_str(self.payload.get()).expect("stored payloads are JSON")
    }
}

impl Messaging<'_> {
    pub async fn send_value(
        &self,
        subject: &str,
        sender_id: &str,
        group_id: &str,
        payload: Value,
    ) -> Result<Sent, ApiError> {
        self.send(subject, sender_id, group_id, raw(payload), None)
            .await
    }

    pub async fn poll(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Received, ApiError> {
        self.receive(
            subject,
            client_id,
            group_id,
            after,
            limit,
            |r| Ok(r.clone()),
        )
        .await
    }
}

/// A view of a store as a Durable Object's own storage on Workers: one group's (the domain
/// lists nothing of that group globally, and its cleanup lists keys by prefix), or one that
/// looks at its own keys when asked (`schedule_cleanup`, recorded here).
pub struct ObjectStore<'a> {
    pub inner: &'a crate::store::MemoryStore,
    group: Option<String>,
    scheduled: Option<std::sync::Mutex<Vec<(String, u64)>>>,
}

impl<'a> ObjectStore<'a> {
    pub fn group(inner: &'a crate::store::MemoryStore, group: &str) -> Self {
        Self {
            inner,
            group: Some(group.to_owned()),
            scheduled: None,
        }
    }

    pub fn scheduling(inner: &'a crate::store::MemoryStore) -> Self {
        Self {
            inner,
            group: None,
            scheduled: Some(Default::default()),
        }
    }

    /// What was scheduled so far, in order.
    pub fn scheduled(&self) -> Vec<(String, u64)> {
        self.scheduled
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }
}

#[async_trait::async_trait(?Send)]
impl crate::store::KvStore for ObjectStore<'_> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), crate::store::StoreError> {
        self.inner.set(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<(), crate::store::StoreError> {
        self.inner.delete(key).await
    }

    async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, crate::store::StoreError> {
        self.inner.get_many(keys).await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, crate::store::StoreError> {
        self.inner.increment(key, delta).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, crate::store::StoreError> {
        self.inner.compare_and_swap(key, expected, new).await
    }

    fn group_local(&self) -> Option<&str> {
        self.group.as_deref()
    }

    async fn schedule_cleanup(
        &self,
        key: &str,
        at_ms: u64,
    ) -> Result<bool, crate::store::StoreError> {
        let Some(scheduled) = &self.scheduled else {
            return Ok(false);
        };
        scheduled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.to_owned(), at_ms));
        Ok(true)
    }

    async fn keys_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        let mut keys: Vec<String> = self
            .inner
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// The cleanup settings of the wing's tests: a 5 s client timeout, a 20 s retention, 1 s
/// buckets, `cap` messages a group.
pub fn short_settings(cap: u64) -> Settings {
    Settings {
        client_timeout_ms: 5_000,
        retention_ms: 20_000,
        max_messages_per_group: cap,
        bucket_ms: 1_000,
        budget: 1_000,
        limits: crate::ratelimit::Limits {
            requests: crate::ratelimit::DEFAULT_REQUESTS,
            login_failures: crate::ratelimit::DEFAULT_LOGIN_FAILURES,
            user_login_failures: crate::ratelimit::DEFAULT_USER_LOGIN_FAILURES,
        },
    }
}
