//! The messaging wing: clients join groups ([`members`]), send to a group's log and receive
//! from it ([`log`]), retry sends safely ([`idempotency`]), and the scheduled cleanup expires
//! what is stale ([`expiry`]). Everything lives in a plain key-value store ([`KvStore`]).
//!
//! # Key schema
//! | key | value |
//! |---|---|
//! | `client/{client_id}` | [`members::Claim`] (JSON): who holds the ID, and its group |
//! | `group/{g}/client/{client_id}` | [`ClientRecord`] (JSON): owner, join point, cursor, heartbeat |
//! | `group/{g}/head` | atomic counter: the highest sequence number handed out |
//! | `group/{g}/msg/{seq}` | [`Slot`] (JSON): the message with that number, or a tombstone |
//! | `group/{g}/tail` | readers start after it: slots up to it are trimmed |
//! | `group/{g}/swept` | slots up to it are deleted (trails the tail while a pass runs) |
//! | `group/{g}/members` | JSON list of the live members' client IDs (bounds the group's size) |
//! | `group/{g}/away/{client_id}` | [`AwayRecord`]: an expired member's cursor, kept for the retention |
//! | `group/{g}/idem/{sender}/{key}` | [`idempotency::Claim`]: which send answered an idempotency key |
//! | `group/{g}/indexed` | the last message-index bucket the group was listed in |
//! | `group/{g}/capmarks` | atomic counter: times the group was flagged over its cap |
//! | `index/capcheck/{shard}` | JSON list of groups that may be over their cap |
//! | `stats/registered_clients/{shard}` | atomic counters: live clients (summed for the gauge) |
//!
//! and the cleanup indexes of [`crate::index`]. Every request writes only keys of its own
//! group, its own client's claim (registration only) and its own rate-limit buckets, plus
//! index entries that cannot lose a race: there is no key that every request of the system
//! writes.

pub mod expiry;
pub mod housekeeping;
pub mod idempotency;
pub mod log;
pub mod members;

#[cfg(test)]
mod claim_tests;
#[cfg(test)]
mod expiry_tests;
#[cfg(test)]
mod housekeeping_tests;
#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
pub(crate) mod testing;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::env::Env;
use crate::error::ApiError;
use crate::index;
pub(crate) use crate::records::{corrupt, encode, read_json};
use crate::store::KvStore;

pub use expiry::{Cleanup, Report, Settings};
pub use housekeeping::GroupReport;

/// How long an allocated but unwritten slot may hold up readers once later messages exist.
/// A sender that cannot write its slot within half of it gives the number up.
pub const GAP_GRACE_MS: u64 = 10_000;
/// Retries of a compare-and-swap loop before answering 503.
pub(crate) const MAX_CAS_ATTEMPTS: usize = 16;

pub const DEFAULT_RECEIVE_LIMIT: usize = 100;
pub const MAX_RECEIVE_LIMIT: usize = 1000;
pub use crate::config::DEFAULT_MAX_RECEIVE_BYTES;

/// Marks a client record claimed for removal by one cleanup run. Registration never writes
/// over it (it answers 503 until the run has finished), so the run may delete it.
pub(crate) const EXPIRED_MARKER: &[u8] = b"{\"expired\":true}";

pub fn client_key(client_id: &str) -> String {
    format!("client/{client_id}")
}

pub fn member_key(group_id: &str, client_id: &str) -> String {
    format!("group/{group_id}/client/{client_id}")
}

pub fn head_key(group_id: &str) -> String {
    format!("group/{group_id}/head")
}

pub fn members_key(group_id: &str) -> String {
    format!("group/{group_id}/members")
}

pub fn message_key(group_id: &str, seq: u64) -> String {
    format!("group/{group_id}/msg/{seq}")
}

pub fn tail_key(group_id: &str) -> String {
    format!("group/{group_id}/tail")
}

pub fn swept_key(group_id: &str) -> String {
    format!("group/{group_id}/swept")
}

/// Where a cleanup notes a gap at the end of the log it could not yet seal.
pub fn gap_key(group_id: &str) -> String {
    format!("group/{group_id}/gap")
}

pub fn indexed_key(group_id: &str) -> String {
    format!("group/{group_id}/indexed")
}

pub fn away_key(group_id: &str, client_id: &str) -> String {
    format!("group/{group_id}/away/{client_id}")
}

pub fn capmarks_key(group_id: &str) -> String {
    format!("group/{group_id}/capmarks")
}

pub fn capcheck_key(shard: u64) -> String {
    format!("index/capcheck/{shard}")
}

/// The counters whose sum is the number of registered clients.
pub fn registered_clients_keys() -> Vec<String> {
    (0..index::SHARDS)
        .map(|s| format!("stats/registered_clients/{s}"))
        .collect()
}

fn registered_clients_key(client_id: &str) -> String {
    format!("stats/registered_clients/{}", index::shard_of(client_id))
}

/// Clients registered and not yet expired.
pub async fn registered_clients(store: &dyn KvStore) -> Result<i64, ApiError> {
    let mut total = 0i64;
    for key in registered_clients_keys() {
        total = total.saturating_add(store.increment(&key, 0).await?);
    }
    Ok(total)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The token subject that first registered this client; only it may use the client.
    pub owner: String,
    pub group_id: String,
    /// The group's head when the client joined: it sees only messages after this.
    pub joined_after: u64,
    /// Everything up to here is acknowledged (or, for simple polls, delivered).
    pub cursor: u64,
    pub registered_at_ms: u64,
    pub last_heartbeat_ms: u64,
    /// The heartbeat index bucket this client is listed in (see [`crate::index`]).
    #[serde(default)]
    pub hb_bucket: u64,
}

/// What a group keeps of a member that expired: enough to resume where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwayRecord {
    pub owner: String,
    pub joined_after: u64,
    pub cursor: u64,
    pub registered_at_ms: u64,
    pub expired_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub seq: u64,
    pub sender_id: String,
    pub group_id: String,
    /// The payload's JSON text as sent: carried, never parsed into a tree.
    #[serde(deserialize_with = "raw_payload")]
    pub payload: Box<RawValue>,
    pub timestamp_ms: u64,
}

impl PartialEq for StoredMessage {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.message_id,
            self.seq,
            &self.sender_id,
            &self.group_id,
            self.payload.get(),
            self.timestamp_ms,
        ) == (
            &other.message_id,
            other.seq,
            &other.sender_id,
            &other.group_id,
            other.payload.get(),
            other.timestamp_ms,
        )
    }
}

impl StoredMessage {
    /// About the bytes this message takes in a receive answer (the payload plus its fields).
    pub fn answer_len(&self) -> usize {
        const FIELDS: usize = 128; // names, quotes, seq and the RFC 3339 timestamp
        self.payload.get().len()
            + self.message_id.len()
            + self.sender_id.len()
            + self.group_id.len()
            + FIELDS
    }
}

/// Deserializes a payload, keeping a JSON `null` as the text `null` (not as "absent").
pub fn raw_payload<'de, D: Deserializer<'de>>(d: D) -> Result<Box<RawValue>, D::Error> {
    Box::<RawValue>::deserialize(d)
}

/// What a log slot holds once written. Stored as `{"slot":"message",…fields}`,
/// `{"slot":"reserved","claim":…}` or `{"slot":"tombstone"[,"claim":…]}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Message(StoredMessage),
    /// Taken by a send with an idempotency key (the claim's key) that has not written its
    /// message yet: readers wait for it as for an unwritten slot.
    Reserved {
        claim: String,
    },
    /// The sender of this number never wrote it (or gave it up); readers skip it. A sealed
    /// reservation keeps its claim, so that whoever trims the slot can release the claim.
    Tombstone {
        claim: Option<String>,
    },
}

#[derive(Serialize)]
struct SlotOut<'a> {
    slot: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    message: Option<&'a StoredMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claim: Option<&'a str>,
}

/// The stored shape, read field by field: a tagged enum would buffer the payload into a
/// tree, which is what raw payloads avoid.
#[derive(Deserialize)]
struct SlotIn {
    slot: String,
    message_id: Option<String>,
    seq: Option<u64>,
    sender_id: Option<String>,
    group_id: Option<String>,
    #[serde(default, deserialize_with = "some_raw")]
    payload: Option<Box<RawValue>>,
    timestamp_ms: Option<u64>,
    claim: Option<String>,
}

fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    raw_payload(d).map(Some)
}

impl Slot {
    pub fn encode(&self) -> Vec<u8> {
        let (slot, message, claim) = match self {
            Slot::Message(m) => ("message", Some(m), None),
            Slot::Reserved { claim } => ("reserved", None, Some(claim.as_str())),
            Slot::Tombstone { claim } => ("tombstone", None, claim.as_deref()),
        };
        encode(&SlotOut {
            slot,
            message,
            claim,
        })
    }

    /// Whether a sender may still write this slot (as for an absent one).
    pub fn is_pending(&self) -> bool {
        matches!(self, Slot::Reserved { .. })
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Slot, ApiError> {
        let raw: SlotIn = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
        match raw.slot.as_str() {
            "tombstone" => Ok(Slot::Tombstone { claim: raw.claim }),
            "reserved" => match raw.claim {
                Some(claim) => Ok(Slot::Reserved { claim }),
                None => Err(corrupt(key, "reservation without a claim")),
            },
            "message" => match raw {
                SlotIn {
                    message_id: Some(message_id),
                    seq: Some(seq),
                    sender_id: Some(sender_id),
                    group_id: Some(group_id),
                    payload: Some(payload),
                    timestamp_ms: Some(timestamp_ms),
                    ..
                } => Ok(Slot::Message(StoredMessage {
                    message_id,
                    seq,
                    sender_id,
                    group_id,
                    payload,
                    timestamp_ms,
                })),
                _ => Err(corrupt(key, "message slot lacks a field")),
            },
            other => Err(corrupt(key, format!("unknown slot kind {other:?}"))),
        }
    }
}

/// The log's limits and the cleanup index width, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Width of a cleanup index bucket.
    pub bucket_ms: u64,
    /// Messages a group holds after a cleanup pass.
    pub cap: u64,
    pub max_clients: u64,
    /// Bytes of messages one receive answers with (at least one message, whatever its size).
    pub max_receive_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            bucket_ms: 60_000,
            cap: crate::config::DEFAULT_MAX_MESSAGES_PER_GROUP,
            max_clients: crate::config::DEFAULT_MAX_CLIENTS_PER_GROUP,
            max_receive_bytes: DEFAULT_MAX_RECEIVE_BYTES,
        }
    }
}

/// The client registry and group logs over a store, as one request sees them.
pub struct Messaging<'a> {
    store: &'a dyn KvStore,
    env: &'a dyn Env,
    limits: LogLimits,
}

impl<'a> Messaging<'a> {
    pub fn new(store: &'a dyn KvStore, env: &'a dyn Env) -> Self {
        Self {
            store,
            env,
            limits: LogLimits::default(),
        }
    }

    pub fn with_limits(mut self, limits: LogLimits) -> Self {
        self.limits = LogLimits {
            bucket_ms: limits.bucket_ms.max(1),
            cap: limits.cap.max(1),
            max_clients: limits.max_clients.max(1),
            max_receive_bytes: limits.max_receive_bytes.max(1),
        };
        self
    }

    /// The cleanup index's bucket width and the per-group message cap.
    pub fn with_cleanup_index(self, bucket_ms: u64, cap: u64) -> Self {
        let limits = LogLimits {
            bucket_ms,
            cap,
            ..self.limits
        };
        self.with_limits(limits)
    }

    /// The most clients one group may hold.
    pub fn with_max_clients(self, max_clients: u64) -> Self {
        let limits = LogLimits {
            max_clients,
            ..self.limits
        };
        self.with_limits(limits)
    }
}

pub(crate) fn to_u64(value: i64, key: &str) -> Result<u64, ApiError> {
    u64::try_from(value).map_err(|_| corrupt(key, "negative counter"))
}

/// A JSON number at `key`, 0 when absent.
pub(crate) async fn read_number(store: &dyn KvStore, key: &str) -> Result<u64, ApiError> {
    Ok(read_json::<u64>(store, key)
        .await?
        .map(|(_, v)| v)
        .unwrap_or(0))
}

/// Moves the number at `key` forward to at least `value`. Returns the number this call moved
/// it from, or `None` when it already held `value` or more (another run got there first): so
/// of runs moving it at once, each counts only the stretch it moved.
pub(crate) async fn advance(
    store: &dyn KvStore,
    key: &str,
    value: u64,
) -> Result<Option<u64>, ApiError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current: Option<(Vec<u8>, u64)> = read_json(store, key).await?;
        let (expected, old) = match current {
            Some((bytes, v)) => (Some(bytes), v),
            None => (None, 0),
        };
        if old >= value {
            return Ok(None);
        }
        if store
            .compare_and_swap(key, expected.as_deref(), &encode(&value))
            .await?
        {
            return Ok(Some(old));
        }
    }
    Err(ApiError::contention(key))
}

/// The group's tail: readers start after it.
pub async fn tail(store: &dyn KvStore, group_id: &str) -> Result<u64, ApiError> {
    read_number(store, &tail_key(group_id)).await
}

/// The group's head: the highest number handed out.
pub(crate) async fn head(store: &dyn KvStore, group_id: &str) -> Result<u64, ApiError> {
    let key = head_key(group_id);
    to_u64(store.increment(&key, 0).await?, &key)
}
