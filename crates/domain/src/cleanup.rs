//! Scheduled cleanup: expires clients whose heartbeat is older than the timeout, deletes
//! messages older than the retention or beyond the per-group cap, and deletes rate-limit
//! buckets that have refilled (see [`crate::ratelimit`]).
//!
//! The store has no TTL and no prefix listing, so cleanup keeps its own time-bucketed index
//! keys, written on the hot path at most once per client (or group) per bucket:
//!
//! | key | value |
//! |---|---|
//! | `index/heartbeat/{bucket}` | JSON list of client IDs that heartbeated in that bucket |
//! | `index/heartbeat/cursor` | the oldest heartbeat bucket not yet processed |
//! | `index/messages/{bucket}` | JSON list of groups that received messages in that bucket |
//! | `index/messages/cursor` | the oldest message bucket not yet processed |
//! | `index/capcheck` | JSON list of groups that may be over the message cap |
//! | `group/{group_id}/tail` | every slot up to here has been deleted (readers start after it) |
//! | `group/{group_id}/indexed` | the last message bucket the group was indexed in |
//!
//! A run works through buckets old enough to be entirely expired, touching only the clients
//! and messages listed there, and stops after `budget` items; the cursors make the next run
//! resume where it stopped. Runs may overlap: a client is removed only by whoever wins a
//! compare-and-swap on its record, and tails only move forward.

use serde::{Serialize, de::DeserializeOwned};

use crate::config::{self, ConfigSource};
use crate::env::Env;
use crate::error::ApiError;
use crate::messaging::{
    ClientRecord, REGISTERED_CLIENTS_KEY, Slot, client_key, head_key, leave_group, message_key,
};
use crate::ratelimit::{self, Limiter, Limits};
use crate::store::KvStore;

pub const HEARTBEAT_CURSOR: &str = "index/heartbeat/cursor";
pub const MESSAGES_CURSOR: &str = "index/messages/cursor";
pub const CAPCHECK: &str = "index/capcheck";
const MAX_CAS_ATTEMPTS: usize = 16;
/// Marks a client record claimed for removal by one cleanup run.
pub(crate) const EXPIRED_MARKER: &[u8] = b"{\"expired\":true}";

pub fn heartbeat_bucket_key(bucket: u64) -> String {
    format!("index/heartbeat/{bucket}")
}

pub fn messages_bucket_key(bucket: u64) -> String {
    format!("index/messages/{bucket}")
}

pub fn tail_key(group_id: &str) -> String {
    format!("group/{group_id}/tail")
}

pub fn indexed_key(group_id: &str) -> String {
    format!("group/{group_id}/indexed")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub client_timeout_ms: u64,
    pub retention_ms: u64,
    pub max_messages_per_group: u64,
    /// Width of an index bucket.
    pub bucket_ms: u64,
    /// Items one run may touch.
    pub budget: usize,
    /// The rate-limit policies, to tell when a bucket is full again.
    pub limits: Limits,
}

impl Settings {
    pub fn from_config(src: &dyn ConfigSource) -> Result<Self, ApiError> {
        let secs = |key: &str, default: u64| -> Result<u64, ApiError> {
            let v = config::number(src, key, default)?;
            if v == 0 {
                return Err(ApiError::misconfigured(format!(
                    "configuration variable {key} must be positive"
                )));
            }
            Ok(v)
        };
        Ok(Self {
            client_timeout_ms: secs(config::keys::CLIENT_TIMEOUT_SECONDS, 300)? * 1000,
            retention_ms: secs(config::keys::MESSAGE_RETENTION_SECONDS, 86_400)? * 1000,
            max_messages_per_group: secs(
                config::keys::MAX_MESSAGES_PER_GROUP,
                config::DEFAULT_MAX_MESSAGES_PER_GROUP,
            )?,
            bucket_ms: bucket_ms(src)?,
            budget: secs(config::keys::CLEANUP_BATCH, 1000)? as usize,
            limits: Limits::from_config(src)?,
        })
    }
}

/// The index bucket width, shared by the endpoints that index and the cleanup that reads.
pub fn bucket_ms(src: &dyn ConfigSource) -> Result<u64, ApiError> {
    let secs = config::number(src, config::keys::CLEANUP_BUCKET_SECONDS, 60)?;
    if secs == 0 {
        return Err(ApiError::misconfigured(
            "configuration variable cleanup_bucket_seconds must be positive",
        ));
    }
    Ok(secs * 1000)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub clients_removed: u64,
    pub messages_removed: u64,
    pub rate_limits_removed: u64,
    /// False when the budget ran out; the next run continues.
    pub complete: bool,
}

async fn read_json<T: DeserializeOwned>(
    store: &dyn KvStore,
    key: &str,
) -> Result<Option<(Vec<u8>, T)>, ApiError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some((bytes, v))),
            Err(e) => Err(ApiError::new(
                500,
                "corrupt_record",
                format!("stored value at {key} is unreadable: {e}"),
            )),
        },
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Adds `id` to the list at `key` (idempotent). If `cursor_key` is absent, it is created
/// pointing at `bucket`, so that cleanup knows where the index starts.
pub async fn add_to_index(
    store: &dyn KvStore,
    key: &str,
    cursor_key: Option<(&str, u64)>,
    id: &str,
) -> Result<(), ApiError> {
    if let Some((cursor, bucket)) = cursor_key
        && store.get(cursor).await?.is_none()
    {
        store
            .compare_and_swap(cursor, None, &to_json(&bucket))
            .await?;
    }
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current: Option<(Vec<u8>, Vec<String>)> = read_json(store, key).await?;
        let (expected, mut ids) = match current {
            Some((bytes, ids)) => (Some(bytes), ids),
            None => (None, Vec::new()),
        };
        if ids.iter().any(|x| x == id) {
            return Ok(());
        }
        ids.push(id.to_owned());
        if store
            .compare_and_swap(key, expected.as_deref(), &to_json(&ids))
            .await?
        {
            return Ok(());
        }
    }
    Err(ApiError::contention(key))
}

/// Moves the number at `key` forward to at least `value`.
async fn advance(store: &dyn KvStore, key: &str, value: u64) -> Result<u64, ApiError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current: Option<(Vec<u8>, u64)> = read_json(store, key).await?;
        let (expected, old) = match current {
            Some((bytes, v)) => (Some(bytes), v),
            None => (None, 0),
        };
        if old >= value {
            return Ok(old);
        }
        if store
            .compare_and_swap(key, expected.as_deref(), &to_json(&value))
            .await?
        {
            return Ok(value);
        }
    }
    Err(ApiError::contention(key))
}

/// The group's tail: slots up to it are deleted.
pub async fn tail(store: &dyn KvStore, group_id: &str) -> Result<u64, ApiError> {
    Ok(read_json::<u64>(store, &tail_key(group_id))
        .await?
        .map(|(_, v)| v)
        .unwrap_or(0))
}

pub struct Cleanup<'a> {
    store: &'a dyn KvStore,
    env: &'a dyn Env,
    settings: Settings,
}

impl<'a> Cleanup<'a> {
    pub fn new(store: &'a dyn KvStore, env: &'a dyn Env, settings: Settings) -> Self {
        Self {
            store,
            env,
            settings,
        }
    }

    /// One bounded pass.
    pub async fn run(&self) -> Result<Report, ApiError> {
        let mut report = Report::default();
        let mut budget = self.settings.budget;
        let clients_done = self.expire_clients(&mut budget, &mut report).await?;
        let cap_done = self.enforce_caps(&mut budget, &mut report).await?;
        let retention_done = self.enforce_retention(&mut budget, &mut report).await?;
        let limits_done = self.expire_rate_limits(&mut budget, &mut report).await?;
        report.complete = clients_done && cap_done && retention_done && limits_done;
        Ok(report)
    }

    /// The last bucket whose every entry is older than `age_ms`.
    fn last_expired_bucket(&self, age_ms: u64) -> Option<u64> {
        let horizon = self.env.now_ms().checked_sub(age_ms)?;
        (horizon / self.settings.bucket_ms).checked_sub(1)
    }

    /// Walks the buckets of an index from its cursor up to `last`, calling `visit` on every
    /// listed ID (which may spend budget); a bucket is deleted once all its IDs are done.
    async fn walk(
        &self,
        cursor_key: &str,
        bucket_key: fn(u64) -> String,
        last: Option<u64>,
        budget: &mut usize,
        mut visit: impl AsyncFnMut(&str, &mut usize) -> Result<bool, ApiError>,
    ) -> Result<bool, ApiError> {
        let (Some(last), Some((_, mut cursor))) =
            (last, read_json::<u64>(self.store, cursor_key).await?)
        else {
            return Ok(true);
        };
        while cursor <= last {
            let key = bucket_key(cursor);
            let ids: Vec<String> = read_json(self.store, &key)
                .await?
                .map(|(_, ids)| ids)
                .unwrap_or_default();
            let mut done = 0;
            for id in &ids {
                if *budget == 0 || !visit(id, budget).await? {
                    break;
                }
                done += 1;
            }
            if done < ids.len() {
                // Out of budget: keep what is left of this bucket for the next run.
                self.store
                    .set(&key, &to_json(&ids[done..].to_vec()))
                    .await?;
                return Ok(false);
            }
            self.store.delete(&key).await?;
            cursor = advance(self.store, cursor_key, cursor + 1).await?;
        }
        Ok(true)
    }

    async fn expire_clients(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let timeout = self.settings.client_timeout_ms;
        let last = self.last_expired_bucket(timeout);
        let now = self.env.now_ms();
        self.walk(
            HEARTBEAT_CURSOR,
            heartbeat_bucket_key,
            last,
            budget,
            async |client_id, budget| {
                *budget -= 1;
                let key = client_key(client_id);
                let Some(bytes) = self.store.get(&key).await? else {
                    return Ok(true);
                };
                let Ok(record) = serde_json::from_slice::<ClientRecord>(&bytes) else {
                    return Ok(true);
                };
                if record.last_heartbeat_ms + timeout > now {
                    return Ok(true); // alive: indexed again in a later bucket
                }
                // Claim the record so that exactly one run removes it and counts it.
                if self
                    .store
                    .compare_and_swap(&key, Some(&bytes), EXPIRED_MARKER)
                    .await?
                {
                    self.store.delete(&key).await?;
                    self.store.increment(REGISTERED_CLIENTS_KEY, -1).await?;
                    leave_group(self.store, &record.group_id, client_id).await?;
                    report.clients_removed += 1;
                }
                Ok(true)
            },
        )
        .await
    }

    /// Deletes the rate-limit buckets listed as full by now; lists the others again.
    async fn expire_rate_limits(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let limiter = Limiter::new(self.store, self.env.now_ms(), self.settings.bucket_ms);
        self.walk(
            ratelimit::CURSOR,
            ratelimit::index_bucket_key,
            self.last_expired_bucket(0),
            budget,
            async |key, budget| {
                *budget -= 1;
                if limiter.expire(key, &self.settings.limits).await? {
                    report.rate_limits_removed += 1;
                }
                Ok(true)
            },
        )
        .await
    }

    /// Deletes slots `tail+1 ..= new_tail` after moving the tail, so readers stop looking at
    /// them first. Returns how many were deleted.
    async fn truncate(&self, group_id: &str, from: u64, new_tail: u64) -> Result<u64, ApiError> {
        if new_tail <= from {
            return Ok(0);
        }
        advance(self.store, &tail_key(group_id), new_tail).await?;
        for seq in from + 1..=new_tail {
            self.store.delete(&message_key(group_id, seq)).await?;
        }
        Ok(new_tail - from)
    }

    async fn enforce_caps(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let Some((_, groups)) = read_json::<Vec<String>>(self.store, CAPCHECK).await? else {
            return Ok(true);
        };
        let cap = self.settings.max_messages_per_group;
        let mut finished = Vec::new();
        for group_id in &groups {
            if *budget == 0 {
                break;
            }
            let head =
                u64::try_from(self.store.increment(&head_key(group_id), 0).await?).unwrap_or(0);
            let from = tail(self.store, group_id).await?;
            let target = head.saturating_sub(cap);
            let new_tail = target.min(from + *budget as u64);
            let removed = self.truncate(group_id, from, new_tail).await?;
            *budget -= removed as usize;
            report.messages_removed += removed;
            if new_tail >= target {
                finished.push(group_id.clone());
            }
        }
        // Drop the groups now within their cap (others may have been added meanwhile).
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((bytes, current)) = read_json::<Vec<String>>(self.store, CAPCHECK).await?
            else {
                break;
            };
            let left: Vec<String> = current
                .into_iter()
                .filter(|g| !finished.contains(g))
                .collect();
            if self
                .store
                .compare_and_swap(CAPCHECK, Some(&bytes), &to_json(&left))
                .await?
            {
                return Ok(left.is_empty() || *budget > 0);
            }
        }
        Ok(false)
    }

    async fn enforce_retention(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let retention = self.settings.retention_ms;
        let last = self.last_expired_bucket(retention);
        let now = self.env.now_ms();
        self.walk(
            MESSAGES_CURSOR,
            messages_bucket_key,
            last,
            budget,
            async |group_id, budget| {
                let head =
                    u64::try_from(self.store.increment(&head_key(group_id), 0).await?).unwrap_or(0);
                let from = tail(self.store, group_id).await?;
                let mut new_tail = from;
                while new_tail < head && *budget > 0 {
                    let key = message_key(group_id, new_tail + 1);
                    let old = match self.store.get(&key).await? {
                        Some(bytes) => match serde_json::from_slice::<Slot>(&bytes) {
                            Ok(Slot::Message(m)) => m.timestamp_ms + retention <= now,
                            _ => true,
                        },
                        // Unwritten hours after it was handed out: never will be.
                        None => true,
                    };
                    if !old {
                        break;
                    }
                    new_tail += 1;
                    *budget -= 1;
                }
                report.messages_removed += self.truncate(group_id, from, new_tail).await?;
                // Done with this group for this bucket unless the budget ran out mid-way.
                Ok(*budget > 0 || new_tail >= head)
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests;
