//! Group membership: registering a client into a group, its heartbeat, and the lifecycle of a
//! member (see docs/architecture.md, "Member lifecycle"):
//!
//! - **live**: `client/{c}` holds its [`ClientRecord`]; it is listed in `group/{g}/members`.
//! - **expiring**: a cleanup run has claimed the record (`{"expired": record, "at": ms}`)
//!   and is moving it away; every request for the client answers `client_expired` (or, to
//!   `register`, a 503 to retry), and nothing but that run writes the key. The claim is a
//!   lease: should the run die, another takes it over once [`EXPIRY_LEASE_MS`] have passed.
//! - **expired**: the record is gone; the group keeps an [`AwayRecord`] with its cursor for
//!   the retention window. It no longer counts toward the group's size.
//! - **returned**: the same owner registers it into the same group again and it resumes from
//!   its cursor, told of whatever was trimmed meanwhile.
//! - **forgotten**: after the retention the away record is deleted; the ID is free.

use serde::{Deserialize, Serialize};

use super::{
    AwayRecord, ClientRecord, EXPIRED_MARKER, MAX_CAS_ATTEMPTS, Messaging, away_key, client_key,
    corrupt, encode, head, members_key, read_json, registered_clients_key, tail,
};
use crate::error::ApiError;
use crate::ids::validate_id;
use crate::index;
use crate::store::KvStore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Created(ClientRecord),
    /// An expired member came back and continues from its cursor.
    Resumed(ClientRecord),
    Refreshed(ClientRecord),
}

/// How long a new entry of a group's member list counts as a member before its client's
/// record says so: a registration lists the client first and writes its record after, and a
/// concurrent registration that prunes the full list must not drop it in between (the group
/// would end up over its limit). A registration that died in between holds its place this
/// long.
pub const JOIN_GRACE_MS: u64 = 10_000;

/// An entry of `group/{g}/members`: the client and when it joined. Lists written before the
/// join time was kept hold bare IDs (joined long ago).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Member {
    Joined { id: String, at: u64 },
    Bare(String),
}

impl Member {
    pub(crate) fn id(&self) -> &str {
        match self {
            Member::Joined { id, .. } | Member::Bare(id) => id,
        }
    }

    fn joined_at(&self) -> u64 {
        match self {
            Member::Joined { at, .. } => *at,
            Member::Bare(_) => 0,
        }
    }
}

/// How long a cleanup run's claim on an expiring client holds before another run may take
/// the expiry over (the claiming run died). Moving a client away takes a few store calls.
pub const EXPIRY_LEASE_MS: u64 = 60_000;

/// What `client/{c}` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Absent,
    /// Claimed by a cleanup run.
    Expiring(ExpiryClaim),
    Live(Vec<u8>, ClientRecord),
}

/// A cleanup run's claim on a client it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpiryClaim {
    /// The record it claimed (`None` if written by an older release).
    pub record: Option<ClientRecord>,
    pub at_ms: u64,
    pub bytes: Vec<u8>,
}

#[derive(Deserialize)]
struct Claimed {
    expired: ClientRecord,
    #[serde(default)]
    at: u64,
}

/// The bytes a cleanup run writes to claim `record` for expiry at `at_ms`.
pub(crate) fn expiring(record: &ClientRecord, at_ms: u64) -> Vec<u8> {
    encode(&serde_json::json!({ "expired": record, "at": at_ms }))
}

pub(crate) async fn lookup(store: &dyn KvStore, client_id: &str) -> Result<Lookup, ApiError> {
    let key = client_key(client_id);
    let Some(bytes) = store.get(&key).await? else {
        return Ok(Lookup::Absent);
    };
    if bytes == EXPIRED_MARKER {
        return Ok(Lookup::Expiring(ExpiryClaim {
            record: None,
            at_ms: 0,
            bytes,
        }));
    }
    if let Ok(claimed) = serde_json::from_slice::<Claimed>(&bytes) {
        return Ok(Lookup::Expiring(ExpiryClaim {
            record: Some(claimed.expired),
            at_ms: claimed.at,
            bytes,
        }));
    }
    let record = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
    Ok(Lookup::Live(bytes, record))
}

pub(crate) fn client_expired(client_id: &str) -> ApiError {
    ApiError::new(
        410,
        "client_expired",
        format!(
            "client {client_id} expired after a silence longer than the client timeout; \
             register it again to resume from its cursor"
        ),
    )
}

fn not_registered(client_id: &str) -> ApiError {
    ApiError::not_found(
        "client_not_found",
        format!("client {client_id} is not registered"),
    )
}

fn owned_by_other(client_id: &str) -> ApiError {
    ApiError::forbidden(
        "client_owned_by_other",
        format!("client {client_id} belongs to another user"),
    )
}

impl Messaging<'_> {
    /// The client's record, checked to belong to `subject` and to be in `group_id`; an
    /// expired member of the group is told so (410), anyone else gets 404.
    pub(crate) async fn owned_member(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
    ) -> Result<(Vec<u8>, ClientRecord), ApiError> {
        let (bytes, record) = match lookup(self.store, client_id).await? {
            Lookup::Live(bytes, record) => (bytes, record),
            Lookup::Expiring(ExpiryClaim {
                record: Some(r), ..
            }) if r.owner == subject && r.group_id == group_id => {
                return Err(client_expired(client_id));
            }
            Lookup::Expiring(_) => return Err(not_registered(client_id)),
            Lookup::Absent => {
                let away: Option<(Vec<u8>, AwayRecord)> =
                    read_json(self.store, &away_key(group_id, client_id)).await?;
                return Err(match away {
                    Some((_, a)) if a.owner == subject => client_expired(client_id),
                    _ => not_registered(client_id),
                });
            }
        };
        if record.owner != subject {
            return Err(owned_by_other(client_id));
        }
        if record.group_id != group_id {
            return Err(ApiError::forbidden(
                "not_in_group",
                format!("client {client_id} is not a member of group {group_id}"),
            ));
        }
        Ok((bytes, record))
    }

    /// Where a client joining `group_id` now starts: after everything handed out or trimmed.
    async fn join_point(&self, group_id: &str) -> Result<u64, ApiError> {
        Ok(head(self.store, group_id)
            .await?
            .max(tail(self.store, group_id).await?))
    }

    /// Records a heartbeat at `now` in `record` (to be written by the caller), listing the
    /// client in the heartbeat index first.
    pub(crate) async fn heartbeat(
        &self,
        client_id: &str,
        record: &mut ClientRecord,
        now: u64,
    ) -> Result<(), ApiError> {
        record.last_heartbeat_ms = now.max(record.last_heartbeat_ms);
        record.hb_bucket = self
            .index_heartbeat(client_id, Some(record.hb_bucket), now)
            .await?;
        Ok(())
    }

    /// Lists the client in the heartbeat bucket of `now` unless it already is there;
    /// returns the bucket to record.
    pub(crate) async fn index_heartbeat(
        &self,
        client_id: &str,
        listed_in: Option<u64>,
        now: u64,
    ) -> Result<u64, ApiError> {
        let bucket = now / self.limits.bucket_ms;
        if listed_in != Some(bucket) {
            index::HEARTBEATS.add(self.store, bucket, client_id).await?;
        }
        Ok(bucket)
    }

    /// Registers `client_id` in `group_id` for `subject`, or refreshes its heartbeat. A
    /// registration into another group moves the client (it then sees only messages sent
    /// after the move); an expired member registering again resumes from its cursor.
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
            match lookup(self.store, client_id).await? {
                Lookup::Expiring(_) => {
                    return Err(ApiError::new(
                        503,
                        "client_expiring",
                        format!("client {client_id} is being expired by a cleanup run; retry"),
                    )
                    .with_header("retry-after", "1"));
                }
                Lookup::Absent => {
                    let away_at = away_key(group_id, client_id);
                    let away: Option<AwayRecord> = read_json(self.store, &away_at)
                        .await?
                        .map(|(_, a)| a)
                        .filter(|a: &AwayRecord| a.owner == subject);
                    let start = self.join_point(group_id).await?;
                    let record = ClientRecord {
                        owner: subject.to_owned(),
                        group_id: group_id.to_owned(),
                        joined_after: away.as_ref().map_or(start, |a| a.joined_after),
                        cursor: away.as_ref().map_or(start, |a| a.cursor),
                        registered_at_ms: away.as_ref().map_or(now, |a| a.registered_at_ms),
                        last_heartbeat_ms: now,
                        hb_bucket: self.index_heartbeat(client_id, None, now).await?,
                    };
                    self.join(group_id, client_id).await?;
                    if self
                        .store
                        .compare_and_swap(&key, None, &encode(&record))
                        .await?
                    {
                        // The record is stored: what follows only keeps counts and tidies, and
                        // must not turn the registration into a failure.
                        let _ = self
                            .store
                            .increment(&registered_clients_key(client_id), 1)
                            .await;
                        let _ = self.store.delete(&away_at).await;
                        return Ok(if away.is_some() {
                            Registration::Resumed(record)
                        } else {
                            Registration::Created(record)
                        });
                    }
                }
                Lookup::Live(bytes, mut record) => {
                    if record.owner != subject {
                        return Err(owned_by_other(client_id));
                    }
                    let left = (record.group_id != group_id).then(|| record.group_id.clone());
                    if left.is_some() {
                        self.join(group_id, client_id).await?;
                        let start = self.join_point(group_id).await?;
                        record.group_id = group_id.to_owned();
                        record.joined_after = start;
                        record.cursor = start;
                    }
                    self.heartbeat(client_id, &mut record, now).await?;
                    if self
                        .store
                        .compare_and_swap(&key, Some(&bytes), &encode(&record))
                        .await?
                    {
                        if let Some(old) = left {
                            // A leftover entry is dropped when the old group's list fills up.
                            let _ = leave_group(self.store, &old, client_id).await;
                        }
                        return Ok(Registration::Refreshed(record));
                    }
                }
            }
        }
        Err(ApiError::contention(&format!("client {client_id}")))
    }

    /// Adds `client_id` to `group_id`'s member list, refusing with 409 when the group is
    /// full of live members.
    async fn join(&self, group_id: &str, client_id: &str) -> Result<(), ApiError> {
        let key = members_key(group_id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let raw = self.store.get(&key).await?;
            let mut members: Vec<Member> = match &raw {
                Some(bytes) => serde_json::from_slice(bytes).map_err(|e| corrupt(&key, e))?,
                None => Vec::new(),
            };
            if members.iter().any(|m| m.id() == client_id) {
                return Ok(());
            }
            if members.len() as u64 >= self.limits.max_clients {
                members = self.live_members(group_id, members).await?;
                if members.len() as u64 >= self.limits.max_clients {
                    return Err(ApiError::new(
                        409,
                        "group_full",
                        format!(
                            "group {group_id} has {} clients, its limit",
                            self.limits.max_clients
                        ),
                    ));
                }
            }
            members.push(Member::Joined {
                id: client_id.to_owned(),
                at: self.env.now_ms(),
            });
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

    /// The listed members whose record still places them in the group, and those that joined
    /// too recently for their record to say so yet ([`JOIN_GRACE_MS`]).
    async fn live_members(
        &self,
        group_id: &str,
        members: Vec<Member>,
    ) -> Result<Vec<Member>, ApiError> {
        let now = self.env.now_ms();
        let keys: Vec<String> = members.iter().map(|m| client_key(m.id())).collect();
        let records = self.store.get_many(&keys).await?;
        Ok(members
            .into_iter()
            .zip(records)
            .filter(|(member, record)| {
                member.joined_at() + JOIN_GRACE_MS > now
                    || record
                        .as_deref()
                        .and_then(|b| serde_json::from_slice::<ClientRecord>(b).ok())
                        .is_some_and(|r| r.group_id == group_id)
            })
            .map(|(m, _)| m)
            .collect())
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
        let mut members: Vec<Member> =
            serde_json::from_slice(&raw).map_err(|e| corrupt(&key, e))?;
        let before = members.len();
        members.retain(|m| m.id() != client_id);
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
