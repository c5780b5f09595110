//! A group's message log: sending appends, receiving reads from a member's cursor.
//!
//! # The algorithm
//! A send takes the next number with one atomic increment, then writes its slot with
//! create-if-absent (compare-and-swap against "absent"). Slots are immutable once written.
//! Receivers read slots in order from their cursor and stop at the first unwritten slot below
//! the head: that is a send still in flight, and skipping it would lose it. A slot stays
//! unwritten forever only if its sender died between the two steps; once a *later* message is
//! older than [`GAP_GRACE_MS`], the gap is sealed with a tombstone (again create-if-absent,
//! so a late sender loses the race, takes a new number and still delivers). Message
//! timestamps are taken after the number, so a later message's age bounds the gap's age;
//! a sender that has not written within half the grace gives its number up itself.
//!
//! # Guarantees (each with the invariant that holds it, in docs/architecture.md)
//! - A send is stored and answered 202, or not stored and refused: everything that can fail
//!   (limits, index entries, the idempotency claim) comes before the slot is written, and
//!   nothing after it can fail the request.
//! - A receive never moves a cursor past what it did not return: the answer is built
//!   (bounded in bytes as well as in count) before the cursor is committed, and a failed
//!   commit fails the receive.
//! - A receive whose starting point was trimmed says so (`missed`).
//!
//! # Limits
//! A group holds at most `cap` messages after each cleanup pass and refuses sends once it
//! holds a tenth more than that (senders outpacing cleanup), so its storage stays bounded
//! even where no cleanup is scheduled. Every refusal flags the group for the next pass.

use serde_json::value::RawValue;

use super::housekeeping::is_group_local;
use super::idempotency::{self, Prior};
use super::members::{Lookup, client_expired, lookup};
use super::{
    GAP_GRACE_MS, MAX_CAS_ATTEMPTS, Messaging, Slot, StoredMessage, capcheck_key, capmarks_key,
    encode, head, head_key, indexed_key, member_key, message_key, read_json, tail, tail_key,
    to_u64,
};
use crate::env::Env;
use crate::error::ApiError;
use crate::ids::validate_id;
use crate::index;
use crate::store::{KvStore, ReadAhead, StoreError};

/// Later slots a reader reads per batch, and at most in all, to decide whether a gap is
/// abandoned.
const GAP_LOOKAHEAD: u64 = 16;
const GAP_LOOKAHEAD_MAX: u64 = 1024;
/// Slots one read asks for at most (bounds what a receive holds beyond its byte bound).
const SCAN_BATCH: u64 = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: String,
    pub seq: u64,
    pub timestamp_ms: u64,
    /// This answer repeats an earlier send with the same idempotency key.
    pub replayed: bool,
}

/// Messages a receiver could not be given because the group no longer holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    /// The first and last sequence number of the trimmed range (some may have been the
    /// receiver's own messages or never-written numbers).
    pub first_seq: u64,
    pub last_seq: u64,
}

impl Missed {
    pub fn count(&self) -> u64 {
        self.last_seq - self.first_seq + 1
    }

    /// The first sequence number the group still holds.
    pub fn first_held_seq(&self) -> u64 {
        self.last_seq + 1
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub messages: Vec<StoredMessage>,
    /// Pass as `after` to acknowledge this batch and get the next one.
    pub next_after: u64,
    pub missed: Option<Missed>,
    /// More messages were ready than this answer could hold (its limit or byte bound).
    pub full: bool,
}

impl Messaging<'_> {
    /// Messages a group may hold before sends are refused: the cap plus the tenth beyond it
    /// at which cleanup is asked to trim.
    fn backlog_limit(&self) -> u64 {
        self.limits
            .cap
            .saturating_add((self.limits.cap / 10).max(1))
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
        .with_header(
            "retry-after",
            (self.limits.bucket_ms.div_ceil(1000)).to_string(),
        )
    }

    /// Appends `payload` from `sender_id` to `group_id`'s log. With an idempotency key, a
    /// repeat of an earlier send answers what that send answered and stores nothing.
    pub async fn send(
        &self,
        subject: &str,
        sender_id: &str,
        group_id: &str,
        payload: Box<RawValue>,
        idempotency_key: Option<&str>,
    ) -> Result<Sent, ApiError> {
        validate_id("sender_id", sender_id)?;
        validate_id("group_id", group_id)?;
        if let Some(key) = idempotency_key {
            idempotency::validate(key)?;
        }
        // The sender's record, the tail and the group's index mark are read in one batch.
        // Each stands for a read made a little later; an earlier tail only makes the backlog
        // check stricter, and an earlier mark at worst lists the group again.
        let keys = [
            member_key(group_id, sender_id),
            tail_key(group_id),
            indexed_key(group_id),
        ];
        let ahead = ReadAhead::new(self.store, &keys).await?;
        let this = Messaging {
            store: &ahead,
            env: self.env,
            limits: self.limits,
        };
        this.append(subject, sender_id, group_id, payload, idempotency_key)
            .await
    }

    async fn append(
        &self,
        subject: &str,
        sender_id: &str,
        group_id: &str,
        payload: Box<RawValue>,
        idempotency_key: Option<&str>,
    ) -> Result<Sent, ApiError> {
        self.owned_member(subject, sender_id, group_id).await?;
        let claim_key = idempotency_key.map(|k| idempotency::key(group_id, sender_id, k));
        let mut claimed: Option<Vec<u8>> = None;
        if let Some(key) = &claim_key {
            match idempotency::prior(self, group_id, key).await? {
                Prior::None => {}
                Prior::Replay(sent) => return Ok(sent),
                Prior::TakeOver(bytes) => claimed = Some(bytes),
            }
        }
        let tail = tail(self.store, group_id).await?;
        let limit = tail.saturating_add(self.backlog_limit());
        let head = head(self.store, group_id).await?;
        if head >= limit {
            // Every refusal flags the group, so the next cleanup pass trims it, whatever
            // happened to earlier flags.
            self.flag_over_cap(group_id).await?;
            return Err(self.backlog_full(group_id));
        }
        // Bookkeeping that can fail comes before the point of no return. The number this
        // send expects to take is flagged before it is taken.
        let mut flagged = self.crosses_cap(tail, head + 1);
        if flagged {
            self.flag_over_cap(group_id).await?;
        }
        let now = self.env.now_ms();
        self.index_group(group_id, now).await?;
        if let Some(key) = &claim_key
            && !is_group_local(self.store, group_id)
        {
            index::RETAINED
                .add(self.store, now / self.limits.bucket_ms, key)
                .await?;
        }
        let mut message = StoredMessage {
            message_id: self.env.random_id(),
            seq: 0,
            sender_id: sender_id.to_owned(),
            group_id: group_id.to_owned(),
            payload,
            timestamp_ms: 0,
        };
        for _ in 0..MAX_CAS_ATTEMPTS {
            message.seq = self.allocate(group_id).await?;
            message.timestamp_ms = self.env.now_ms();
            // A keyed send reserves its slot before it claims the key, so that whoever seals
            // the slot can tell the claim (and release it).
            let reserved = match &claim_key {
                Some(key) => {
                    let bytes = Slot::Reserved { claim: key.clone() }.encode();
                    let at = message_key(group_id, message.seq);
                    if !self.store.compare_and_swap(&at, None, &bytes).await? {
                        continue; // sealed already: take another number
                    }
                    Some(bytes)
                }
                None => None,
            };
            let give_up = async |seq: u64| -> Result<(), ApiError> {
                let tombstone = Slot::Tombstone {
                    claim: claim_key.clone(),
                };
                self.store
                    .compare_and_swap(
                        &message_key(group_id, seq),
                        reserved.as_deref(),
                        &tombstone.encode(),
                    )
                    .await?;
                Ok(())
            };
            if message.seq > limit {
                // Lost a race for the last places: give the number back as a tombstone so
                // readers need not wait for it.
                give_up(message.seq).await?;
                if let (Some(key), Some(bytes)) = (&claim_key, &claimed) {
                    idempotency::release(self.store, key, bytes).await;
                }
                self.flag_over_cap(group_id).await?;
                return Err(self.backlog_full(group_id));
            }
            if let Some(key) = &claim_key {
                match idempotency::claim(self.store, key, claimed.as_deref(), &message).await? {
                    Some(bytes) => claimed = Some(bytes),
                    None => {
                        give_up(message.seq).await?;
                        return Err(idempotency::in_use());
                    }
                }
            }
            if !flagged && self.crosses_cap(tail, message.seq) {
                flagged = true;
                // Flagged before the message exists, so no crash can leave the group over
                // its cap unflagged.
                if let Err(e) = self.flag_over_cap(group_id).await {
                    give_up(message.seq).await?;
                    return Err(e);
                }
            }
            if self.env.now_ms() > message.timestamp_ms + GAP_GRACE_MS / 2 {
                // Too slow: readers may already treat the number as abandoned.
                give_up(message.seq).await?;
                continue;
            }
            if self.publish(&message, reserved.as_deref()).await? {
                // Stored: from here on nothing may fail the request.
                return Ok(Sent {
                    message_id: message.message_id,
                    seq: message.seq,
                    timestamp_ms: message.timestamp_ms,
                    replayed: false,
                });
            }
        }
        if let (Some(key), Some(bytes)) = (&claim_key, &claimed) {
            idempotency::release(self.store, key, bytes).await;
        }
        Err(ApiError::contention(&format!("group {group_id}")))
    }

    /// Step one of a send: take the next sequence number.
    pub(crate) async fn allocate(&self, group_id: &str) -> Result<u64, ApiError> {
        let key = head_key(group_id);
        to_u64(self.store.increment(&key, 1).await?, &key)
    }

    /// Step two: write the slot (over its reservation, if any) unless it was sealed meanwhile.
    pub(crate) async fn publish(
        &self,
        message: &StoredMessage,
        reserved: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.store
            .compare_and_swap(
                &message_key(&message.group_id, message.seq),
                reserved,
                &Slot::Message(message.clone()).encode(),
            )
            .await
    }

    /// Whether the message numbered `seq` takes the group beyond its cap (first, or again
    /// by another tenth of it) as seen from `tail`: the sends that flag it for trimming.
    fn crosses_cap(&self, tail: u64, seq: u64) -> bool {
        let step = (self.limits.cap / 10).max(1);
        match seq.checked_sub(tail.saturating_add(self.limits.cap)) {
            Some(over) if over > 0 => (over - 1).is_multiple_of(step),
            _ => false,
        }
    }

    /// Lists the group in the message index for `now`'s bucket, once per bucket.
    async fn index_group(&self, group_id: &str, now: u64) -> Result<(), ApiError> {
        if is_group_local(self.store, group_id) {
            return Ok(());
        }
        let bucket = now / self.limits.bucket_ms;
        let indexed = indexed_key(group_id);
        let listed = read_json::<u64>(self.store, &indexed)
            .await
            .ok()
            .flatten()
            .map(|(_, b)| b);
        if listed != Some(bucket) {
            index::MESSAGES.add(self.store, bucket, group_id).await?;
            self.store.set(&indexed, &encode(&bucket)).await?;
        }
        Ok(())
    }

    /// Flags the group for the cap check of the next cleanup pass. The mark counter lets a
    /// pass that races this call notice it and keep the flag.
    async fn flag_over_cap(&self, group_id: &str) -> Result<(), ApiError> {
        self.store.increment(&capmarks_key(group_id), 1).await?;
        if is_group_local(self.store, group_id) {
            return Ok(()); // its own cleanup checks the cap every time
        }
        add_to_list(
            self.store,
            &capcheck_key(index::shard_of(group_id)),
            group_id,
        )
        .await
    }

    /// Messages for `client_id` after its cursor (or after `after`, which acknowledges
    /// everything up to it), oldest first, leaving out the client's own, at most `limit` of
    /// them and about the configured bytes. Counts as a heartbeat.
    ///
    /// `render` turns the batch into the answer; only once it has, the cursor is committed,
    /// and if the commit fails the receive fails with the cursor where it was.
    pub async fn receive<T>(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
        after: Option<u64>,
        limit: usize,
        render: impl FnOnce(&Received) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        validate_id("client_id", client_id)?;
        validate_id("group_id", group_id)?;
        // The member's record and the tail are read in one batch. The tail stands for a read
        // made a little later; an earlier one only starts the scan lower, where a slot
        // trimmed meanwhile stops it as a trim during the scan does.
        let keys = [member_key(group_id, client_id), tail_key(group_id)];
        let ahead = ReadAhead::new(self.store, &keys).await?;
        let this = Messaging {
            store: &ahead,
            env: self.env,
            limits: self.limits,
        };
        let (mut bytes, mut record) = this.owned_member(subject, client_id, group_id).await?;
        let head = head(this.store, group_id).await?;
        let tail = tail(this.store, group_id).await?;
        // An acknowledgement can never reach past what has been handed out.
        let after = after.map(|a| a.min(head));
        let from = after.unwrap_or(record.cursor).max(record.joined_after);
        let missed = (from < tail).then_some(Missed {
            first_seq: from + 1,
            last_seq: tail,
        });
        let (messages, last, full) = this
            .scan(group_id, client_id, from.max(tail), head, limit.max(1))
            .await?;
        let received = Received {
            messages,
            next_after: last,
            missed,
            full,
        };
        let answer = render(&received)?;
        let delivered_to = after.unwrap_or(last);

        let key = member_key(group_id, client_id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let mut updated = record.clone();
            updated.cursor = updated.cursor.max(delivered_to);
            this.heartbeat(client_id, &mut updated, this.env.now_ms())
                .await?;
            if this
                .store
                .compare_and_swap(&key, Some(&bytes), &encode(&updated))
                .await?
            {
                return Ok(answer);
            }
            // Someone else updated the record: apply ours on top unless the client moved
            // or expired meanwhile, in which case this answer must not count as delivered.
            match lookup(this.store, group_id, client_id).await? {
                Lookup::Live(b, r) if r.owner == subject => {
                    bytes = b;
                    record = r;
                }
                Lookup::Live(..) | Lookup::Expiring(_) => return Err(client_expired(client_id)),
                Lookup::Absent => {
                    // Moved to another group (403 not_in_group) or expired (410).
                    return Err(this
                        .owned_member(subject, client_id, group_id)
                        .await
                        .err()
                        .unwrap_or_else(|| client_expired(client_id)));
                }
            }
        }
        Err(ApiError::contention(&format!("client {client_id}")))
    }

    /// Reads slots `start+1 ..= head` in order until `limit` messages for `reader` are found,
    /// the byte bound is reached, or an in-flight slot is reached. Returns the messages, the
    /// last slot passed, and whether the limit or the byte bound stopped it.
    async fn scan(
        &self,
        group_id: &str,
        reader: &str,
        start: u64,
        head: u64,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, u64, bool), ApiError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut last = start;
        while last < head && out.len() < limit {
            let want = ((limit - out.len()) as u64).min(SCAN_BATCH);
            let batch_end = head.min(last + want);
            let keys: Vec<String> = (last + 1..=batch_end)
                .map(|s| message_key(group_id, s))
                .collect();
            let values = self.store.get_many(&keys).await?;
            for value in values {
                let seq = last + 1;
                let Some(slot) = settled(self.store, self.env, group_id, seq, head, value).await?
                else {
                    return Ok((out, last, false));
                };
                if let Slot::Message(m) = slot
                    && m.sender_id != reader
                {
                    let size = m.answer_len();
                    if !out.is_empty() && bytes + size > self.limits.max_receive_bytes {
                        return Ok((out, last, true));
                    }
                    bytes += size;
                    out.push(m);
                }
                last = seq;
                if out.len() == limit {
                    return Ok((out, last, last < head));
                }
            }
        }
        Ok((out, last, false))
    }
}

/// What slot `seq` holds for a reader, given what was read there (`value`): the slot if it
/// is written, or, if its sender may still write it, the tombstone that seals it once it is
/// abandoned ([`seal_if_abandoned`]), or `None` to wait.
pub(crate) async fn settled(
    store: &dyn KvStore,
    env: &dyn Env,
    group_id: &str,
    seq: u64,
    head: u64,
    value: Option<Vec<u8>>,
) -> Result<Option<Slot>, ApiError> {
    let key = message_key(group_id, seq);
    match value {
        None => seal_if_abandoned(store, env, group_id, seq, head, None).await,
        Some(bytes) => match Slot::decode(&key, &bytes)? {
            Slot::Reserved { .. } => {
                seal_if_abandoned(store, env, group_id, seq, head, Some(&bytes)).await
            }
            slot => Ok(Some(slot)),
        },
    }
}

/// For an unwritten (or reserved: `current`) slot below the head: if the first written slot
/// after it is a tombstone, or a message older than the grace period, then this slot's number
/// was handed out before that and its sender is long gone; seal the slot and return what it
/// now holds. `None` while the slot may still be written, or when it turns out to lie below
/// the tail (trimmed while we looked: whoever reads next starts after the tail).
pub(crate) async fn seal_if_abandoned(
    store: &dyn KvStore,
    env: &dyn Env,
    group_id: &str,
    seq: u64,
    head: u64,
    current: Option<&[u8]>,
) -> Result<Option<Slot>, ApiError> {
    if abandoned(store, env, group_id, seq, head).await? != Some(true) {
        return Ok(None);
    }
    seal(store, group_id, seq, current).await
}

/// Seals slot `seq` with a tombstone if it still holds `current`, releasing the claim of a
/// reservation; returns what the slot holds then (`None`: still pending, or below the tail).
pub(crate) async fn seal(
    store: &dyn KvStore,
    group_id: &str,
    seq: u64,
    current: Option<&[u8]>,
) -> Result<Option<Slot>, ApiError> {
    let key = message_key(group_id, seq);
    let claim = match current {
        Some(bytes) => match Slot::decode(&key, bytes)? {
            Slot::Reserved { claim } => Some(claim),
            _ => None,
        },
        None => None,
    };
    let tombstone = Slot::Tombstone { claim };
    if store
        .compare_and_swap(&key, current, &tombstone.encode())
        .await?
    {
        if tail(store, group_id).await? >= seq {
            // A cleanup pass deleted this slot after trimming it: our tombstone is litter.
            store.delete(&key).await?;
            return Ok(None);
        }
        if let Slot::Tombstone { claim: Some(claim) } = &tombstone {
            idempotency::release_seq(store, claim, seq).await?;
        }
        return Ok(Some(tombstone));
    }
    // The sender (or another reader) won the race: use what it wrote.
    match store.get(&key).await? {
        Some(bytes) => match Slot::decode(&key, &bytes)? {
            Slot::Reserved { .. } => Ok(None),
            slot => Ok(Some(slot)),
        },
        None => Ok(None),
    }
}

/// Whether the unwritten slot `seq` is abandoned: `Some(true)` if so, `Some(false)` if a later
/// slot is written but too recent to tell, `None` if no later slot (up to the look-ahead) is
/// written at all.
pub(crate) async fn abandoned(
    store: &dyn KvStore,
    env: &dyn Env,
    group_id: &str,
    seq: u64,
    head: u64,
) -> Result<Option<bool>, ApiError> {
    let now = env.now_ms();
    let horizon = head.min(seq + GAP_LOOKAHEAD_MAX);
    let mut from = seq + 1;
    while from <= horizon {
        let to = horizon.min(from + GAP_LOOKAHEAD - 1);
        let keys: Vec<String> = (from..=to).map(|s| message_key(group_id, s)).collect();
        for (key, value) in keys.iter().zip(store.get_many(&keys).await?) {
            if let Some(bytes) = value {
                match Slot::decode(key, &bytes)? {
                    Slot::Reserved { .. } => {}
                    Slot::Tombstone { .. } => return Ok(Some(true)),
                    Slot::Message(m) => return Ok(Some(m.timestamp_ms + GAP_GRACE_MS <= now)),
                }
            }
        }
        from = to + 1;
    }
    Ok(None)
}

/// Adds `id` to the JSON list at `key` unless it is there.
pub(crate) async fn add_to_list(store: &dyn KvStore, key: &str, id: &str) -> Result<(), ApiError> {
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
            .compare_and_swap(key, expected.as_deref(), &encode(&ids))
            .await?
        {
            return Ok(());
        }
    }
    Err(ApiError::contention(key))
}
