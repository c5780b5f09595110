//! Group membership: registering a client into a group, its heartbeat, and the lifecycle of a
//! member (see docs/architecture.md, "Member lifecycle").
//!
//! A member's state lives with its group: `group/{g}/client/{c}` holds its [`ClientRecord`]
//! (owner, cursor, heartbeat), so a send or a receive reads and writes only keys of its
//! group. The one thing that is global is who holds a client ID and where: `client/{c}` holds
//! its [`Claim`] (owner and group), written when a client is created, moves or expires, and
//! read otherwise only to explain a refusal. A member record exists only while the claim
//! names its group (a move claims the old record before it re-points the claim).
//!
//! - **live**: the member record holds its [`ClientRecord`]; it is listed in
//!   `group/{g}/members`.
//! - **expiring**: a cleanup run (or a move to another group) has claimed the member record
//!   (`{"expired": record, "at": ms}`) and is moving it away; every request for the client
//!   answers `client_expired` (or, to `register`, a 503 to retry), and nothing but that run
//!   writes the key. The claim is a lease: should the run die, another takes it over once
//!   [`EXPIRY_LEASE_MS`] have passed.
//! - **expired**: the record and the client's claim are gone; the group keeps an
//!   [`AwayRecord`] with its cursor for the retention window. It no longer counts toward the
//!   group's size.
//! - **returned**: the same owner registers it into the same group again and it resumes from
//!   its cursor, told of whatever was trimmed meanwhile.
//! - **forgotten**: after the retention the away record is deleted; the ID is free.
//!
//! Releases before this layout kept the whole record at `client/{c}`; such a record is moved
//! to its group the first time anything reads it ([`migrate`]).

use serde::{Deserialize, Serialize};

use super::housekeeping::is_group_local;
use super::{
    AwayRecord, ClientRecord, EXPIRED_MARKER, MAX_CAS_ATTEMPTS, Messaging, away_key, client_key,
    corrupt, encode, head, member_key, members_key, read_json, registered_clients_key, tail,
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

    pub(crate) fn joined_at(&self) -> u64 {
        match self {
            Member::Joined { at, .. } => *at,
            Member::Bare(_) => 0,
        }
    }
}

/// How long a cleanup run's claim on an expiring client holds before another run may take
/// the expiry over (the claiming run died). Moving a client away takes a few store calls.
pub const EXPIRY_LEASE_MS: u64 = 60_000;

/// Who holds a client ID, and in which group its member record is: `client/{c}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub owner: String,
    pub group_id: String,
    /// When a registration last wrote it: a claim whose registration died before writing
    /// the member record is freed by the cleanup once [`JOIN_GRACE_MS`] have passed.
    #[serde(default)]
    pub at_ms: u64,
}

/// What the cleanup leaves at `client/{c}` when it frees a claim that a registration may
/// be about to touch: a compare-and-swap, unlike a delete, fails if it did.
pub(crate) const FREED_CLAIM: &[u8] = b"{\"free\":true}";

/// What `client/{c}` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimState {
    /// Nobody holds the ID (the bytes of a freed claim, if it was one).
    Free(Option<Vec<u8>>),
    Held(Vec<u8>, Claim),
    /// A whole record, as releases before the member records kept it: to be [`migrate`]d.
    Legacy(Vec<u8>, Lookup),
}

pub(crate) async fn read_claim(
    store: &dyn KvStore,
    client_id: &str,
) -> Result<ClaimState, ApiError> {
    let key = client_key(client_id);
    let Some(bytes) = store.get(&key).await? else {
        return Ok(ClaimState::Free(None));
    };
    if bytes == FREED_CLAIM {
        return Ok(ClaimState::Free(Some(bytes)));
    }
    // A whole record (live or claimed for expiry) is the old layout; a claim lacks its fields.
    if let Some(old) = decode_record(&bytes)
        && !matches!(old, Lookup::Absent)
    {
        return Ok(ClaimState::Legacy(bytes, old));
    }
    let claim = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
    Ok(ClaimState::Held(bytes, claim))
}

/// Frees `claim` (at `bytes`), whose group holds no record of the client: its registration
/// died between claiming the ID and writing the record, or stalled there for longer than
/// [`JOIN_GRACE_MS`]. The record's key is taken first and stays taken (a [`vacating`]
/// mark) for the lease, so that a registration that wakes up later cannot write a record the
/// freed claim no longer names; it is told to retry, and then claims afresh. Returns the
/// mark left when the claim was freed; `None` when the record appeared meanwhile or the
/// claim was renewed by its registration (nothing was freed).
pub(crate) async fn free_abandoned(
    store: &dyn KvStore,
    client_id: &str,
    bytes: &[u8],
    claim: &Claim,
    now: u64,
) -> Result<Option<Vec<u8>>, ApiError> {
    let key = member_key(&claim.group_id, client_id);
    let mark = vacating(now, false);
    if !store.compare_and_swap(&key, None, &mark).await? {
        return Ok(None);
    }
    if !store
        .compare_and_swap(&client_key(client_id), Some(bytes), FREED_CLAIM)
        .await?
    {
        // Renewed by its registration meanwhile: it is alive. The mark is this call's alone
        // within the lease, so removing it removes nothing newer.
        store.delete(&key).await?;
        return Ok(None);
    }
    // From now on a registration that claims the ID afresh may write its record over the
    // mark; one that claimed before cannot (it expects no record at all).
    let open = vacating(now, true);
    if store.compare_and_swap(&key, Some(&mark), &open).await? {
        return Ok(Some(open));
    }
    Ok(Some(mark))
}

/// The mark of a member key taken without a record, at `at_ms`: read as a claimed record
/// whose lease runs from then. An `open` mark (a freed abandoned claim's) may be written over
/// by a registration that holds a fresh claim.
pub(crate) fn vacating(at_ms: u64, open: bool) -> Vec<u8> {
    if open {
        encode(&serde_json::json!({ "vacating": at_ms, "open": true }))
    } else {
        encode(&serde_json::json!({ "vacating": at_ms }))
    }
}

#[derive(Deserialize)]
struct Vacating {
    vacating: u64,
    #[serde(default)]
    open: bool,
}

/// Moves a record of the old layout (`client/{c}` holding the whole record) to its group,
/// leaving the claim at `client/{c}`. The member key takes the same bytes: its format is
/// the old record's, expiry claims included. A marker without a record (older still) names
/// no group: it is left to the cleanup, which deletes it.
pub(crate) async fn migrate(
    store: &dyn KvStore,
    client_id: &str,
    bytes: &[u8],
    old: &Lookup,
) -> Result<(), ApiError> {
    let record = match old {
        Lookup::Live(_, r) => r,
        Lookup::Expiring(ExpiryClaim {
            record: Some(r), ..
        }) => r,
        _ => return Ok(()),
    };
    // Whichever of two migrations comes first writes the member; the other finds it there.
    store
        .compare_and_swap(&member_key(&record.group_id, client_id), None, bytes)
        .await?;
    let claim = Claim {
        owner: record.owner.clone(),
        group_id: record.group_id.clone(),
        at_ms: record.last_heartbeat_ms,
    };
    store
        .compare_and_swap(&client_key(client_id), Some(bytes), &encode(&claim))
        .await?;
    Ok(())
}

/// What a member record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Absent,
    /// Claimed by a cleanup run or a move.
    Expiring(ExpiryClaim),
    Live(Vec<u8>, ClientRecord),
}

/// A cleanup run's claim on a client it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpiryClaim {
    /// The record it claimed (`None` for a mark without a record, or a claim written by an
    /// older release).
    pub record: Option<ClientRecord>,
    pub at_ms: u64,
    pub bytes: Vec<u8>,
    /// A freed abandoned claim's mark: a registration holding a fresh claim may write over it.
    pub open: bool,
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

/// A record's bytes, if they are one (live or claimed); `None` for anything else.
pub(crate) fn decode_record(bytes: &[u8]) -> Option<Lookup> {
    if bytes == EXPIRED_MARKER {
        return Some(Lookup::Expiring(ExpiryClaim {
            record: None,
            at_ms: 0,
            bytes: bytes.to_vec(),
            open: false,
        }));
    }
    if let Ok(mark) = serde_json::from_slice::<Vacating>(bytes) {
        return Some(Lookup::Expiring(ExpiryClaim {
            record: None,
            at_ms: mark.vacating,
            bytes: bytes.to_vec(),
            open: mark.open,
        }));
    }
    if let Ok(claimed) = serde_json::from_slice::<Claimed>(bytes) {
        return Some(Lookup::Expiring(ExpiryClaim {
            record: Some(claimed.expired),
            at_ms: claimed.at,
            bytes: bytes.to_vec(),
            open: false,
        }));
    }
    let record = serde_json::from_slice::<ClientRecord>(bytes).ok()?;
    Some(Lookup::Live(bytes.to_vec(), record))
}

/// The member record of `client_id` in `group_id`.
pub(crate) async fn lookup(
    store: &dyn KvStore,
    group_id: &str,
    client_id: &str,
) -> Result<Lookup, ApiError> {
    let key = member_key(group_id, client_id);
    match store.get(&key).await? {
        None => Ok(Lookup::Absent),
        Some(bytes) => decode_record(&bytes).ok_or_else(|| corrupt(&key, "not a member record")),
    }
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

fn not_in_group(client_id: &str, group_id: &str) -> ApiError {
    ApiError::forbidden(
        "not_in_group",
        format!("client {client_id} is not a member of group {group_id}"),
    )
}

fn expiring_retry(client_id: &str) -> ApiError {
    ApiError::new(
        503,
        "client_expiring",
        format!("client {client_id} is being expired by a cleanup run; retry"),
    )
    .with_header("retry-after", "1")
}

/// What became of a member record that is not in the group (any more).
enum Missing {
    Refused(ApiError),
    /// An old-layout record was moved into its group: look again.
    Migrated,
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
        for _ in 0..2 {
            match lookup(self.store, group_id, client_id).await? {
                Lookup::Live(_, record) if record.owner != subject => {
                    return Err(owned_by_other(client_id));
                }
                Lookup::Live(bytes, record) => return Ok((bytes, record)),
                Lookup::Expiring(ExpiryClaim {
                    record: Some(r), ..
                }) if r.owner == subject => return Err(client_expired(client_id)),
                Lookup::Expiring(ExpiryClaim {
                    record: Some(_), ..
                }) => {
                    return Err(not_registered(client_id));
                }
                // A mark without a record (an abandoned claim being freed) is as good as
                // no record: the claim and the away record say why.
                Lookup::Expiring(ExpiryClaim { record: None, .. }) | Lookup::Absent => {
                    match self.missing(subject, client_id, group_id).await? {
                        Missing::Refused(err) => return Err(err),
                        Missing::Migrated => {}
                    }
                }
            }
        }
        Err(not_registered(client_id))
    }

    /// Why `client_id` has no member record in `group_id`, from its claim: it belongs to
    /// someone else, is in another group, or expired from this one (the group keeps its
    /// cursor), or was never registered.
    async fn missing(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
    ) -> Result<Missing, ApiError> {
        let err = match read_claim(self.store, client_id).await? {
            ClaimState::Legacy(bytes, old) => {
                migrate(self.store, client_id, &bytes, &old).await?;
                return Ok(Missing::Migrated);
            }
            ClaimState::Held(_, claim) if claim.owner != subject => owned_by_other(client_id),
            ClaimState::Held(_, claim) if claim.group_id != group_id => {
                not_in_group(client_id, group_id)
            }
            // Free, or claimed for this group by a registration that has not written the
            // record (yet): a member that expired from the group is told so until it is back,
            // so that a keyed send's retry is not told "never registered" after its first
            // try was stored.
            ClaimState::Held(..) | ClaimState::Free(_) => {
                let away: Option<(Vec<u8>, AwayRecord)> =
                    read_json(self.store, &away_key(group_id, client_id)).await?;
                match away {
                    Some((_, a)) if a.owner == subject => client_expired(client_id),
                    _ => not_registered(client_id),
                }
            }
        };
        Ok(Missing::Refused(err))
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
            .index_heartbeat(&record.group_id, client_id, Some(record.hb_bucket), now)
            .await?;
        Ok(())
    }

    /// Lists the client in the heartbeat bucket of `now` unless it already is there;
    /// returns the bucket to record. A group that cleans itself up lists nothing.
    pub(crate) async fn index_heartbeat(
        &self,
        group_id: &str,
        client_id: &str,
        listed_in: Option<u64>,
        now: u64,
    ) -> Result<u64, ApiError> {
        let bucket = now / self.limits.bucket_ms;
        if listed_in != Some(bucket) && !is_group_local(self.store, group_id) {
            index::HEARTBEATS.add(self.store, bucket, client_id).await?;
        }
        Ok(bucket)
    }

    /// Registers `client_id` in `group_id` for `subject`, or refreshes its heartbeat. A
    /// registration into another group moves the client (it then sees only messages sent
    /// after the move); an expired member registering again resumes from its cursor.
    ///
    /// A member's refresh touches only its group's keys; a new member also claims the ID
    /// (one write of `client/{c}`), and a move claims the old record, re-points the claim and
    /// then leaves the old group.
    pub async fn register(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
    ) -> Result<Registration, ApiError> {
        validate_id("client_id", client_id)?;
        validate_id("group_id", group_id)?;
        let key = member_key(group_id, client_id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let now = self.env.now_ms();
            let mut found = lookup(self.store, group_id, client_id).await?;
            // An open mark is no record, for a registration that claims the ID afresh.
            let mut open_mark = None;
            if let Lookup::Expiring(c) = &found
                && c.open
            {
                open_mark = Some(c.bytes.clone());
                found = Lookup::Absent;
            }
            match found {
                Lookup::Expiring(c) if c.at_ms + EXPIRY_LEASE_MS <= now => {
                    // A move that died after re-pointing the claim leaves its old record
                    // claimed for good: no cleanup run reaches it through the claim.
                    if self.drop_orphan(client_id, group_id, &c).await? {
                        continue;
                    }
                    return Err(expiring_retry(client_id));
                }
                Lookup::Expiring(_) => return Err(expiring_retry(client_id)),
                Lookup::Live(_, record) if record.owner != subject => {
                    return Err(owned_by_other(client_id));
                }
                Lookup::Live(bytes, mut record) => {
                    self.heartbeat(client_id, &mut record, now).await?;
                    if self
                        .store
                        .compare_and_swap(&key, Some(&bytes), &encode(&record))
                        .await?
                    {
                        return Ok(Registration::Refreshed(record));
                    }
                }
                Lookup::Absent => {
                    let away_at = away_key(group_id, client_id);
                    let away: Option<AwayRecord> = read_json(self.store, &away_at)
                        .await?
                        .map(|(_, a)| a)
                        .filter(|a: &AwayRecord| a.owner == subject);
                    let start = self.join_point(group_id).await?;
                    let mut record = ClientRecord {
                        owner: subject.to_owned(),
                        group_id: group_id.to_owned(),
                        joined_after: away.as_ref().map_or(start, |a| a.joined_after),
                        cursor: away.as_ref().map_or(start, |a| a.cursor),
                        registered_at_ms: away.as_ref().map_or(now, |a| a.registered_at_ms),
                        last_heartbeat_ms: now,
                        // Listed before the ID is claimed: the cleanup frees the claim of a
                        // registration that dies before it writes the record.
                        hb_bucket: self.index_heartbeat(group_id, client_id, None, now).await?,
                    };
                    // A full group refuses before the ID is claimed.
                    self.join(group_id, client_id).await?;
                    let (moved, over) = match self.claim(subject, client_id, group_id).await? {
                        Claiming::Claimed { moved, over } => (moved, over),
                        Claiming::Again => continue,
                    };
                    if let Some(registered_at_ms) = moved {
                        // A move starts afresh in its new group, whatever it left here before.
                        record.joined_after = start;
                        record.cursor = start;
                        record.registered_at_ms = registered_at_ms;
                    }
                    let moved = moved.is_some();
                    // The heartbeat is as of the claim: a cleanup that looked at the listing
                    // before the ID was claimed found nothing to keep it listed for.
                    let claimed_at = self.env.now_ms();
                    record.last_heartbeat_ms = claimed_at;
                    record.hb_bucket = self
                        .index_heartbeat(group_id, client_id, Some(record.hb_bucket), claimed_at)
                        .await?;
                    if self
                        .store
                        .compare_and_swap(&key, over.or(open_mark).as_deref(), &encode(&record))
                        .await?
                    {
                        // Listed (a group's cleanup may have dropped the entry while the
                        // record was not there yet).
                        ensure_listed(self.store, group_id, client_id, now).await?;
                        // The record is stored: what follows only keeps counts and tidies, and
                        // must not turn the registration into a failure.
                        // The gauge's counters are global: a group that cleans itself up
                        // (where nothing reads them) keeps none.
                        if !moved && !is_group_local(self.store, group_id) {
                            let _ = self
                                .store
                                .increment(&registered_clients_key(client_id), 1)
                                .await;
                        }
                        let _ = self.store.delete(&away_at).await;
                        return Ok(match (moved, away.is_some()) {
                            (true, _) => Registration::Refreshed(record),
                            (false, true) => Registration::Resumed(record),
                            (false, false) => Registration::Created(record),
                        });
                    }
                }
            }
        }
        Err(ApiError::contention(&format!("client {client_id}")))
    }

    /// Makes `client/{c}` name `subject` and `group_id`: a free ID is claimed, a claim of the
    /// same owner elsewhere is moved here (the old group's record claimed first, so that the
    /// old group never holds a live record the claim does not name).
    async fn claim(
        &self,
        subject: &str,
        client_id: &str,
        group_id: &str,
    ) -> Result<Claiming, ApiError> {
        let key = client_key(client_id);
        let wanted = encode(&Claim {
            owner: subject.to_owned(),
            group_id: group_id.to_owned(),
            at_ms: self.env.now_ms(),
        });
        // The common case, a new ID, in one write.
        if self.store.compare_and_swap(&key, None, &wanted).await? {
            return Ok(Claiming::Claimed {
                moved: None,
                over: None,
            });
        }
        let (bytes, held) = match read_claim(self.store, client_id).await? {
            ClaimState::Free(None) => return Ok(Claiming::Again),
            ClaimState::Free(Some(freed)) => {
                return self.swap_claim(&key, &freed, &wanted, None).await;
            }
            ClaimState::Legacy(bytes, old) => {
                migrate(self.store, client_id, &bytes, &old).await?;
                return Ok(Claiming::Again);
            }
            ClaimState::Held(bytes, held) => (bytes, held),
        };
        if held.owner != subject {
            // A claim whose registration died before writing the record is freed by whoever
            // next wants the ID, should the cleanup not have found it first.
            if held.at_ms + JOIN_GRACE_MS <= self.env.now_ms()
                && matches!(
                    lookup(self.store, &held.group_id, client_id).await?,
                    Lookup::Absent
                )
            {
                let Some(mark) =
                    free_abandoned(self.store, client_id, &bytes, &held, self.env.now_ms()).await?
                else {
                    return Ok(Claiming::Again);
                };
                // The mark is this registration's own: its record replaces it.
                let over = (held.group_id == group_id).then_some(mark);
                return self.swap_claim(&key, FREED_CLAIM, &wanted, over).await;
            }
            return Err(owned_by_other(client_id));
        }
        if held.group_id == group_id {
            // Claimed here by a registration that did not write the record: renewed, so that
            // a cleanup about to free it as abandoned fails to.
            return self.swap_claim(&key, &bytes, &wanted, None).await;
        }
        let old_group = held.group_id;
        let old_key = member_key(&old_group, client_id);
        let now = self.env.now_ms();
        let (claimed_old, registered_at_ms) =
            match lookup(self.store, &old_group, client_id).await? {
                Lookup::Expiring(_) => return Err(expiring_retry(client_id)),
                Lookup::Live(old_bytes, old) => {
                    let claimed = expiring(&old, now);
                    if !self
                        .store
                        .compare_and_swap(&old_key, Some(&old_bytes), &claimed)
                        .await?
                    {
                        return Ok(Claiming::Again);
                    }
                    (Some((old_bytes, claimed)), old.registered_at_ms)
                }
                Lookup::Absent => (None, now),
            };
        if !self
            .store
            .compare_and_swap(&key, Some(&bytes), &wanted)
            .await?
        {
            // The claim changed meanwhile (a cleanup freed it as abandoned): the old record
            // is given back as it was, and the registration looks again.
            if let Some((old_bytes, claimed)) = &claimed_old {
                self.store
                    .compare_and_swap(&old_key, Some(claimed), old_bytes)
                    .await?;
            }
            return Ok(Claiming::Again);
        }
        if claimed_old.is_some() {
            self.store.delete(&old_key).await?;
            // A leftover entry is dropped by the old group's cleanup, or when its list fills.
            let _ = leave_group(self.store, &old_group, client_id).await;
        }
        Ok(Claiming::Claimed {
            moved: Some(registered_at_ms),
            over: None,
        })
    }

    /// Swaps the claim at `key` from `expected` to `wanted`: claimed (the record then
    /// written over `over`), or changed meanwhile.
    async fn swap_claim(
        &self,
        key: &str,
        expected: &[u8],
        wanted: &[u8],
        over: Option<Vec<u8>>,
    ) -> Result<Claiming, ApiError> {
        Ok(
            if self
                .store
                .compare_and_swap(key, Some(expected), wanted)
                .await?
            {
                Claiming::Claimed { moved: None, over }
            } else {
                Claiming::Again
            },
        )
    }

    /// Deletes `group_id`'s claimed record of `client_id` when the client's claim names
    /// another group (a move died half-way). Returns whether it did.
    async fn drop_orphan(
        &self,
        client_id: &str,
        group_id: &str,
        claimed: &ExpiryClaim,
    ) -> Result<bool, ApiError> {
        let elsewhere = match read_claim(self.store, client_id).await? {
            ClaimState::Held(_, claim) => claim.group_id != group_id,
            ClaimState::Free(_) => true,
            ClaimState::Legacy(..) => false,
        };
        if !elsewhere {
            return Ok(false);
        }
        let key = member_key(group_id, client_id);
        // Nothing writes over a claimed record, so the swap only fails to a concurrent drop;
        // the mark it leaves makes any other drop wait for a lease of its own.
        if self
            .store
            .compare_and_swap(
                &key,
                Some(&claimed.bytes),
                &vacating(self.env.now_ms(), false),
            )
            .await?
        {
            self.store.delete(&key).await?;
            let _ = leave_group(self.store, group_id, client_id).await;
        }
        Ok(true)
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
            let mut pruned = Vec::new();
            if members.len() as u64 >= self.limits.max_clients {
                let live = self.live_members(group_id, members.clone()).await?;
                pruned = members
                    .into_iter()
                    .filter(|m| !live.iter().any(|l| l.id() == m.id()))
                    .collect();
                members = live;
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
                return relist_if_member(self.store, group_id, &pruned).await;
            }
        }
        Err(ApiError::contention(&format!("group {group_id}")))
    }

    /// The listed members with a live record in the group, and those that joined too
    /// recently for their record to be there yet ([`JOIN_GRACE_MS`]). The records are the
    /// group's own keys: one batch read.
    async fn live_members(
        &self,
        group_id: &str,
        members: Vec<Member>,
    ) -> Result<Vec<Member>, ApiError> {
        let now = self.env.now_ms();
        let keys: Vec<String> = members
            .iter()
            .map(|m| member_key(group_id, m.id()))
            .collect();
        let records = self.store.get_many(&keys).await?;
        Ok(members
            .into_iter()
            .zip(records)
            .filter(|(member, record)| {
                member.joined_at() + JOIN_GRACE_MS > now
                    || record
                        .as_deref()
                        .is_some_and(|b| serde_json::from_slice::<ClientRecord>(b).is_ok())
            })
            .map(|(m, _)| m)
            .collect())
    }
}

/// How a registration's claim on the ID went.
enum Claiming {
    /// With the moved client's first registration time, if it moved here, and the mark its
    /// record replaces, if it freed an abandoned claim here.
    Claimed {
        moved: Option<u64>,
        over: Option<Vec<u8>>,
    },
    /// Something changed meanwhile: start the registration over.
    Again,
}

/// Adds `client_id` to `group_id`'s member list if it is not there, whatever the group's
/// size: for a member whose record is written. A group's own cleanup drops an entry whose
/// registration seems dead; should that registration write its record after all, one of the
/// two puts the entry back (each writes its side, then checks the other's).
pub(crate) async fn ensure_listed(
    store: &dyn KvStore,
    group_id: &str,
    client_id: &str,
    at: u64,
) -> Result<(), ApiError> {
    let key = members_key(group_id);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let raw = store.get(&key).await?;
        let mut members: Vec<Member> = match &raw {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| corrupt(&key, e))?,
            None => Vec::new(),
        };
        if members.iter().any(|m| m.id() == client_id) {
            return Ok(());
        }
        members.push(Member::Joined {
            id: client_id.to_owned(),
            at,
        });
        if store
            .compare_and_swap(&key, raw.as_deref(), &encode(&members))
            .await?
        {
            return Ok(());
        }
    }
    Err(ApiError::contention(&format!("group {group_id}")))
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
        let Some(at) = members.iter().position(|m| m.id() == client_id) else {
            return Ok(());
        };
        let removed = members.remove(at);
        if store
            .compare_and_swap(&key, Some(&raw), &encode(&members))
            .await?
        {
            return relist_if_member(store, group_id, &[removed]).await;
        }
    }
    Err(ApiError::contention(&format!("group {group_id}")))
}

/// Puts back those of `removed` whose record in the group is live: a registration may have
/// written it after the remover looked (see [`ensure_listed`]).
async fn relist_if_member(
    store: &dyn KvStore,
    group_id: &str,
    removed: &[Member],
) -> Result<(), ApiError> {
    if removed.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = removed
        .iter()
        .map(|m| member_key(group_id, m.id()))
        .collect();
    for (member, record) in removed.iter().zip(store.get_many(&keys).await?) {
        if let Some(Lookup::Live(..)) = record.as_deref().and_then(decode_record) {
            ensure_listed(store, group_id, member.id(), member.joined_at()).await?;
        }
    }
    Ok(())
}
