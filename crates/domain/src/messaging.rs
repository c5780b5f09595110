//! Client registry and group message log over a plain key-value store.
//!
//! # Key schema
//! | key | value |
//! |---|---|
//! | `client/{client_id}` | [`ClientRecord`] (JSON): owner, group, join point, cursor, heartbeat |
//! | `group/{group_id}/head` | atomic counter: the highest sequence number handed out |
//! | `group/{group_id}/msg/{seq}` | [`Slot`] (JSON): the message with that number, or a tombstone |
//! | `group/{group_id}/members` | JSON list of the client IDs in the group (bounds its size) |
//! | `stats/registered_clients` | atomic counter: clients registered and not yet expired |
//!
//! # The log algorithm
//! A send takes the next number with one atomic increment, then writes its slot with
//! create-if-absent (compare-and-swap against "absent"). Slots are immutable once written.
//! Receivers read slots in order from their cursor and stop at the first unwritten slot below
//! the head: that is a send still in flight, and skipping it would lose it. A slot stays
//! unwritten forever only if its sender died between the two steps; once a *later* message is
//! older than [`GAP_GRACE_MS`], the gap is sealed with a tombstone (again create-if-absent,
//! so a late sender loses the race, takes a new number and still delivers). Every operation
//! touches only the keys of the messages it moves: no key listing, O(messages moved).
//!
//! # Limits
//! A group holds at most `max_clients` members: a client joins the member list (one
//! compare-and-swap) before its record names the group. Members whose record has gone or
//! moved (a crash between the steps, an expiry) are dropped from the list when it is full.
//! A group holds at most `cap` messages after each cleanup pass and refuses sends once it
//! holds a tenth more than that (senders outpacing cleanup), so its storage stays bounded
//! even where no cleanup is scheduled.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cleanup;
use crate::env::Env;
use crate::error::ApiError;
use crate::ids::validate_id;
use crate::store::{KvStore, StoreError};

/// How long an allocated but unwritten slot may hold up readers once later messages exist.
pub const GAP_GRACE_MS: u64 = 10_000;
/// Later slots a reader reads per batch, and at most in all, to decide whether a gap is
/// abandoned.
const GAP_LOOKAHEAD: u64 = 16;
const GAP_LOOKAHEAD_MAX: u64 = 1024;
/// Retries of a compare-and-swap loop before answering 503.
const MAX_CAS_ATTEMPTS: usize = 16;

pub const DEFAULT_RECEIVE_LIMIT: usize = 100;
pub const MAX_RECEIVE_LIMIT: usize = 1000;

/// Counter of registered clients (for the `mcp_edge_registered_clients` gauge).
pub const REGISTERED_CLIENTS_KEY: &str = "stats/registered_clients";

pub fn client_key(client_id: &str) -> String {
    format!("client/{client_id}")
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
    /// The heartbeat index bucket this client is listed in (see [`crate::cleanup`]).
    #[serde(default)]
    pub hb_bucket: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub seq: u64,
    pub sender_id: String,
    pub group_id: String,
    pub payload: Value,
    pub timestamp_ms: u64,
}

/// What a log slot holds once written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "slot", rename_all = "lowercase")]
pub enum Slot {
    Message(StoredMessage),
    /// The sender of this number never wrote it; readers skip it.
    Tombstone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Created(ClientRecord),
    Refreshed(ClientRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: String,
    pub seq: u64,
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub messages: Vec<StoredMessage>,
    /// Pass as `after` to acknowledge this batch and get the next one.
    pub next_after: u64,
}

fn corrupt(key: &str, err: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        500,
        "corrupt_record",
        format!("stored value at {key} is unreadable: {err}"),
    )
}

fn to_u64(value: i64, key: &str) -> Result<u64, ApiError> {
    u64::try_from(value).map_err(|_| corrupt(key, "negative counter"))
}

pub struct Messaging<'a> {
    store: &'a dyn KvStore,
    env: &'a dyn Env,
    bucket_ms: u64,
    cap: u64,
    max_clients: u64,
}

impl<'a> Messaging<'a> {
    pub fn new(store: &'a dyn KvStore, env: &'a dyn Env) -> Self {
        Self {
            store,
            env,
            bucket_ms: 60_000,
            cap: crate::config::DEFAULT_MAX_MESSAGES_PER_GROUP,
            max_clients: crate::config::DEFAULT_MAX_CLIENTS_PER_GROUP,
        }
    }

    /// The most clients one group may hold.
    pub fn with_max_clients(mut self, max_clients: u64) -> Self {
        self.max_clients = max_clients.max(1);
        self
    }

    /// Messages a group may hold before sends are refused: the cap plus the tenth beyond it
    /// at which cleanup is asked to trim.
    fn backlog_limit(&self) -> u64 {
        self.cap.saturating_add((self.cap / 10).max(1))
    }

    fn backlog_full(&self, group_id: &str) -> ApiError {
        ApiError::new(
            429,
            "group_backlog_full",
            format!(
                "group {group_id} holds {} messages, its limit; retry after the next cleanup",
                self.backlog_limit()
            ),
        )
        .with_header("retry-after", (self.bucket_ms.div_ceil(1000)).to_string())
    }

    /// Adds `client_id` to `group_id`'s member list, refusing with 409 when the group is
    /// full of live members.
    async fn join(&self, group_id: &str, client_id: &str) -> Result<(), ApiError> {
        let key = members_key(group_id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let raw = self.store.get(&key).await?;
            let mut members: Vec<String> = match &raw {
                Some(bytes) => serde_json::from_slice(bytes).map_err(|e| corrupt(&key, e))?,
                None => Vec::new(),
            };
            if members.iter().any(|m| m == client_id) {
                return Ok(());
            }
            if members.len() as u64 >= self.max_clients {
                members = self.live_members(group_id, members).await?;
                if members.len() as u64 >= self.max_clients {
                    return Err(ApiError::new(
                        409,
                        "group_full",
                        format!(
                            "group {group_id} has {} clients, its limit",
                            self.max_clients
                        ),
                    ));
                }
            }
            members.push(client_id.to_owned());
            if self
                .store
                .compare_and_swap(&key, raw.as_deref(), &encode(&members))
                .await?
            {
                return Ok(());
            }
        }
        Err(ApiError::contention(&format!("group {group_id}")))
    }

    /// The listed members whose record still places them in the group.
    async fn live_members(
        &self,
        group_id: &str,
        members: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        let keys: Vec<String> = members.iter().map(|m| client_key(m)).collect();
        let records = self.store.get_many(&keys).await?;
        Ok(members
            .into_iter()
            .zip(records)
            .filter(|(_, record)| {
                record
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<ClientRecord>(b).ok())
                    .is_some_and(|r| r.group_id == group_id)
            })
            .map(|(m, _)| m)
            .collect())
    }

    /// The cleanup index's bucket width and the per-group message cap to flag groups by.
    pub fn with_cleanup_index(mut self, bucket_ms: u64, cap: u64) -> Self {
        self.bucket_ms = bucket_ms.max(1);
        self.cap = cap.max(1);
        self
    }

    /// Lists the client in the heartbeat bucket of `now` unless it already is there;
    /// returns the bucket to record.
    async fn index_heartbeat(
        &self,
        client_id: &str,
        listed_in: Option<u64>,
        now: u64,
    ) -> Result<u64, ApiError> {
        let bucket = now / self.bucket_ms;
        if listed_in != Some(bucket) {
            cleanup::add_to_index(
                self.store,
                &cleanup::heartbeat_bucket_key(bucket),
                Some((cleanup::HEARTBEAT_CURSOR, bucket)),
                client_id,
            )
            .await?;
        }
        Ok(bucket)
    }

    /// After a send: list the group in this bucket's message index (once per bucket), and
    /// flag it for the cap check every tenth of the cap beyond it.
    async fn index_message(
        &self,
        group_id: &str,
        seq: u64,
        timestamp_ms: u64,
    ) -> Result<(), ApiError> {
        let bucket = timestamp_ms / self.bucket_ms;
        let indexed = cleanup::indexed_key(group_id);
        let listed = self
            .store
            .get(&indexed)
            .await?
            .and_then(|b| serde_json::from_slice::<u64>(&b).ok());
        if listed != Some(bucket) {
            cleanup::add_to_index(
                self.store,
                &cleanup::messages_bucket_key(bucket),
                Some((cleanup::MESSAGES_CURSOR, bucket)),
                group_id,
            )
            .await?;
            self.store.set(&indexed, &encode(&bucket)).await?;
        }
        if seq > self.cap && seq.is_multiple_of((self.cap / 10).max(1)) {
            cleanup::add_to_index(self.store, cleanup::CAPCHECK, None, group_id).await?;
        }
        Ok(())
    }

    async fn head(&self, group_id: &str) -> Result<u64, ApiError> {
        let key = head_key(group_id);
        to_u64(self.store.increment(&key, 0).await?, &key)
    }

    async fn load_client(
        &self,
        client_id: &str,
    ) -> Result<Option<(Vec<u8>, ClientRecord)>, ApiError> {
        let key = client_key(client_id);
        match self.store.get(&key).await? {
            None => Ok(None),
            // Claimed by a cleanup run that has not deleted it (yet): no longer registered.
            Some(bytes) if bytes == cleanup::EXPIRED_MARKER => Ok(None),
            Some(bytes) => {
                let record = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
                Ok(Some((bytes, record)))
            }
        }
    }

    /// The client's record, checked to belong to `subject` and to be in `group_id`.
    async fn owned_member(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
    ) -> Result<(Vec<u8>, ClientRecord), ApiError> {
        let (bytes, record) = self.load_client(client_id).await?.ok_or_else(|| {
            ApiError::not_found(
                "client_not_found",
                format!("client {client_id} is not registered"),
            )
        })?;
        if record.owner != subject {
            return Err(ApiError::forbidden(
                "client_owned_by_other",
                format!("client {client_id} belongs to another user"),
            ));
        }
        if record.group_id != group_id {
            return Err(ApiError::forbidden(
                "not_in_group",
                format!("client {client_id} is not a member of group {group_id}"),
            ));
        }
        Ok((bytes, record))
    }

    /// Registers `client_id` in `group_id` for `subject`, or refreshes its heartbeat; a
    /// registration into another group moves the client (it then sees only messages sent
    /// after the move).
    pub async fn register(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
    ) -> Result<Registration, ApiError> {
        validate_id("client_id", client_id)?;
        validate_id("group_id", group_id)?;
        let key = client_key(client_id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let now = self.env.now_ms();
            match self.load_client(client_id).await? {
                None => {
                    let head = self
                        .head(group_id)
                        .await?
                        .max(cleanup::tail(self.store, group_id).await?);
                    let record = ClientRecord {
                        owner: subject.to_owned(),
                        group_id: group_id.to_owned(),
                        joined_after: head,
                        cursor: head,
                        registered_at_ms: now,
                        last_heartbeat_ms: now,
                        hb_bucket: self.index_heartbeat(client_id, None, now).await?,
                    };
                    self.join(group_id, client_id).await?;
                    let leftover = self.store.get(&key).await?;
                    let expected = leftover
                        .as_deref()
                        .filter(|b| *b == cleanup::EXPIRED_MARKER);
                    if self
                        .store
                        .compare_and_swap(&key, expected, &encode(&record))
                        .await?
                    {
                        self.store.increment(REGISTERED_CLIENTS_KEY, 1).await?;
                        return Ok(Registration::Created(record));
                    }
                }
                Some((bytes, mut record)) => {
                    if record.owner != subject {
                        return Err(ApiError::forbidden(
                            "client_owned_by_other",
                            format!("client {client_id} belongs to another user"),
                        ));
                    }
                    let left = (record.group_id != group_id).then(|| record.group_id.clone());
                    if left.is_some() {
                        self.join(group_id, client_id).await?;
                        let head = self.head(group_id).await?;
                        record.group_id = group_id.to_owned();
                        record.joined_after = head;
                        record.cursor = head;
                    }
                    record.last_heartbeat_ms = now.max(record.last_heartbeat_ms);
                    record.hb_bucket = self
                        .index_heartbeat(client_id, Some(record.hb_bucket), now)
                        .await?;
                    if self
                        .store
                        .compare_and_swap(&key, Some(&bytes), &encode(&record))
                        .await?
                    {
                        if let Some(old) = left {
                            leave_group(self.store, &old, client_id).await?;
                        }
                        return Ok(Registration::Refreshed(record));
                    }
                }
            }
        }
        Err(ApiError::contention(&format!("client {client_id}")))
    }

    /// Appends `payload` from `sender_id` to `group_id`'s log.
    pub async fn send(
        &self,
        subject: &str,
        sender_id: &str,
        group_id: &str,
        payload: Value,
    ) -> Result<Sent, ApiError> {
        validate_id("sender_id", sender_id)?;
        validate_id("group_id", group_id)?;
        self.owned_member(subject, sender_id, group_id).await?;
        let mut message = StoredMessage {
            message_id: self.env.random_id(),
            seq: 0,
            sender_id: sender_id.to_owned(),
            group_id: group_id.to_owned(),
            payload,
            timestamp_ms: 0,
        };
        let tail = cleanup::tail(self.store, group_id).await?;
        let limit = tail.saturating_add(self.backlog_limit());
        if self.head(group_id).await? >= limit {
            return Err(self.backlog_full(group_id));
        }
        for _ in 0..MAX_CAS_ATTEMPTS {
            message.seq = self.allocate(group_id).await?;
            if message.seq > limit {
                // Lost a race for the last places: give the number back as a tombstone so
                // readers need not wait for it.
                self.store
                    .compare_and_swap(
                        &message_key(group_id, message.seq),
                        None,
                        &encode(&Slot::Tombstone),
                    )
                    .await?;
                return Err(self.backlog_full(group_id));
            }
            message.timestamp_ms = self.env.now_ms();
            if self.publish(&message).await? {
                self.index_message(group_id, message.seq, message.timestamp_ms)
                    .await?;
                return Ok(Sent {
                    message_id: message.message_id,
                    seq: message.seq,
                    timestamp_ms: message.timestamp_ms,
                });
            }
        }
        Err(ApiError::contention(&format!("group {group_id}")))
    }

    /// Step one of a send: take the next sequence number.
    pub(crate) async fn allocate(&self, group_id: &str) -> Result<u64, ApiError> {
        let key = head_key(group_id);
        to_u64(self.store.increment(&key, 1).await?, &key)
    }

    /// Step two: write the slot unless a reader has sealed it meanwhile.
    pub(crate) async fn publish(&self, message: &StoredMessage) -> Result<bool, StoreError> {
        let slot = Slot::Message(message.clone());
        self.store
            .compare_and_swap(
                &message_key(&message.group_id, message.seq),
                None,
                &encode(&slot),
            )
            .await
    }

    /// Messages for `client_id` after its cursor (or after `after`, which acknowledges
    /// everything up to it), oldest first, leaving out the client's own. Counts as a heartbeat.
    pub async fn receive(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Received, ApiError> {
        validate_id("client_id", client_id)?;
        validate_id("group_id", group_id)?;
        let (mut bytes, mut record) = self.owned_member(subject, client_id, group_id).await?;
        let head = self.head(group_id).await?;
        // An acknowledgement can never reach past what has been handed out.
        let after = after.map(|a| a.min(head));
        let start = after
            .unwrap_or(record.cursor)
            .max(record.joined_after)
            .max(cleanup::tail(self.store, group_id).await?);
        let (messages, last) = self.scan(group_id, client_id, start, head, limit).await?;
        let delivered_to = after.unwrap_or(last);

        let key = client_key(client_id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let mut updated = record.clone();
            updated.cursor = updated.cursor.max(delivered_to);
            let now = self.env.now_ms();
            updated.last_heartbeat_ms = now.max(updated.last_heartbeat_ms);
            updated.hb_bucket = self
                .index_heartbeat(client_id, Some(updated.hb_bucket), now)
                .await?;
            if self
                .store
                .compare_and_swap(&key, Some(&bytes), &encode(&updated))
                .await?
            {
                break;
            }
            // Someone else updated the record: apply ours on top unless the client moved.
            match self.load_client(client_id).await? {
                Some((b, r)) if r.owner == subject && r.group_id == group_id => {
                    bytes = b;
                    record = r;
                }
                _ => break,
            }
        }
        Ok(Received {
            messages,
            next_after: last,
        })
    }

    /// Reads slots `start+1 ..= head` in order until `limit` messages for `reader` are found
    /// or an in-flight slot is reached. Returns the messages and the last slot passed.
    async fn scan(
        &self,
        group_id: &str,
        reader: &str,
        start: u64,
        head: u64,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, u64), ApiError> {
        let mut out = Vec::new();
        let mut last = start;
        while last < head && out.len() < limit {
            let batch_end = head.min(last + (limit - out.len()) as u64);
            let keys: Vec<String> = (last + 1..=batch_end)
                .map(|s| message_key(group_id, s))
                .collect();
            let values = self.store.get_many(&keys).await?;
            for (offset, value) in values.into_iter().enumerate() {
                let seq = last + 1;
                let slot = match value {
                    Some(bytes) => decode_slot(&keys[offset], &bytes)?,
                    None => match self.seal_if_abandoned(group_id, seq, head).await? {
                        Some(slot) => slot,
                        None => return Ok((out, last)),
                    },
                };
                last = seq;
                if let Slot::Message(m) = slot
                    && m.sender_id != reader
                {
                    out.push(m);
                    if out.len() == limit {
                        return Ok((out, last));
                    }
                }
            }
        }
        Ok((out, last))
    }

    /// For an unwritten slot below the head: if the first written slot after it is a
    /// tombstone, or a message older than the grace period, then this slot's number was handed
    /// out before that and its sender is long gone; seal the slot and return what it now holds.
    /// `None` while the slot may still be written.
    async fn seal_if_abandoned(
        &self,
        group_id: &str,
        seq: u64,
        head: u64,
    ) -> Result<Option<Slot>, ApiError> {
        let now = self.env.now_ms();
        let horizon = head.min(seq + GAP_LOOKAHEAD_MAX);
        let mut from = seq + 1;
        let abandoned = 'search: loop {
            if from > horizon {
                break false;
            }
            let to = horizon.min(from + GAP_LOOKAHEAD - 1);
            let keys: Vec<String> = (from..=to).map(|s| message_key(group_id, s)).collect();
            for (key, value) in keys.iter().zip(self.store.get_many(&keys).await?) {
                if let Some(bytes) = value {
                    break 'search match decode_slot(key, &bytes)? {
                        Slot::Tombstone => true,
                        Slot::Message(m) => m.timestamp_ms + GAP_GRACE_MS <= now,
                    };
                }
            }
            from = to + 1;
        };
        if !abandoned {
            return Ok(None);
        }
        let key = message_key(group_id, seq);
        if self
            .store
            .compare_and_swap(&key, None, &encode(&Slot::Tombstone))
            .await?
        {
            return Ok(Some(Slot::Tombstone));
        }
        // The sender (or another reader) won the race: use what it wrote.
        match self.store.get(&key).await? {
            Some(bytes) => decode_slot(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

/// Removes `client_id` from the member list of `group_id` (a leftover entry, should this
/// not happen, is dropped when the list fills up).
pub(crate) async fn leave_group(
    store: &dyn KvStore,
    group_id: &str,
    client_id: &str,
) -> Result<(), ApiError> {
    let key = members_key(group_id);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(raw) = store.get(&key).await? else {
            return Ok(());
        };
        let mut members: Vec<String> =
            serde_json::from_slice(&raw).map_err(|e| corrupt(&key, e))?;
        let before = members.len();
        members.retain(|m| m != client_id);
        if members.len() == before {
            return Ok(());
        }
        if store
            .compare_and_swap(&key, Some(&raw), &encode(&members))
            .await?
        {
            return Ok(());
        }
    }
    Err(ApiError::contention(&format!("group {group_id}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: all keys are strings.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode_slot(key: &str, bytes: &[u8]) -> Result<Slot, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))
}

#[cfg(test)]
mod tests;
