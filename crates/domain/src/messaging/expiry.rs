//! The scheduled cleanup: expires members whose heartbeat is older than the client timeout
//! (keeping their cursor for the retention), trims groups over their message cap, deletes
//! messages older than the retention, forgets retained records (idempotency claims, expired
//! members' cursors) after the retention, and deletes rate-limit buckets that have refilled.
//!
//! A run works through the index buckets of [`crate::index`] old enough to be entirely
//! expired, touching only what is listed there, and stops after `budget` items; the index
//! cursors and per-shard progress make the next run resume where it stopped. Runs may
//! overlap: a member is expired only by whoever wins a compare-and-swap on its record, and
//! tails only move forward.
//!
//! What a run never removes: a slot whose sender may still write it (unwritten, and no later
//! message older than the grace period, nor first seen by a run longer than the grace
//! ago), and a client that heartbeated or registered after the run read it. What an
//! interrupted run leaves, the next one finishes: a trimmed range is deleted from `swept` up
//! to the tail, a claimed client is moved away from its claim.

use serde::{Deserialize, Serialize};

use super::housekeeping::is_group_local;
use super::log::{abandoned, seal, settled};
use super::members::{
    ClaimState, EXPIRY_LEASE_MS, ExpiryClaim, JOIN_GRACE_MS, Lookup, expiring, free_abandoned,
    leave_group, lookup, migrate, read_claim, vacating,
};
use super::{
    AwayRecord, ClientRecord, GAP_GRACE_MS, MAX_CAS_ATTEMPTS, Slot, advance, away_key,
    capcheck_key, capmarks_key, client_key, encode, gap_key, head, idempotency, idempotency::Claim,
    member_key, message_key, read_json, read_number, registered_clients_key, swept_key, tail,
    tail_key,
};
use crate::config::{self, ConfigSource};
use crate::env::Env;
use crate::error::ApiError;
use crate::index;
use crate::ratelimit::{Limiter, Limits};
use crate::store::KvStore;

/// Slots deleted per store call.
const DELETE_BATCH: u64 = 256;

/// An unwritten slot with nothing written after it, as a trim first met it: every slot
/// from `first` to `head` had its number handed out by `seen_ms`.
#[derive(Debug, Serialize, Deserialize)]
struct GapMark {
    first: u64,
    head: u64,
    seen_ms: u64,
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
        let secs = |key: &str, default: u64| config::positive(src, key, default);
        Ok(Self {
            client_timeout_ms: secs(config::keys::CLIENT_TIMEOUT_SECONDS, 300)? * 1000,
            retention_ms: secs(config::keys::MESSAGE_RETENTION_SECONDS, 86_400)? * 1000,
            max_messages_per_group: secs(
                config::keys::MAX_MESSAGES_PER_GROUP,
                config::DEFAULT_MAX_MESSAGES_PER_GROUP,
            )?,
            bucket_ms: config::cleanup_bucket_ms(src)?,
            budget: secs(config::keys::CLEANUP_BATCH, 1000)? as usize,
            limits: Limits::from_config(src)?,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    pub clients_removed: u64,
    pub messages_removed: u64,
    pub rate_limits_removed: u64,
    /// Idempotency claims and expired members' cursors past the retention.
    pub records_forgotten: u64,
    /// False when the budget ran out (or an in-flight send held a trim back); the next run
    /// continues.
    pub complete: bool,
}

/// Why a trim stopped where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// It reached the target.
    Target,
    /// The next message is younger than the retention (its timestamp).
    Young(u64),
    /// The next slot may still be written; whether a written slot follows it.
    InFlight { later_written: bool },
    /// The budget ran out.
    Budget,
}

pub struct Cleanup<'a> {
    pub(super) store: &'a dyn KvStore,
    pub(super) env: &'a dyn Env,
    pub(super) settings: Settings,
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
        let retained_done = self.forget_retained(&mut budget, &mut report).await?;
        let limits_done = self.expire_rate_limits(&mut budget, &mut report).await?;
        report.complete =
            clients_done && cap_done && retention_done && retained_done && limits_done;
        Ok(report)
    }

    /// The last bucket whose every entry is older than `age_ms`.
    fn last_expired_bucket(&self, age_ms: u64) -> Option<u64> {
        let horizon = self.env.now_ms().checked_sub(age_ms)?;
        (horizon / self.settings.bucket_ms).checked_sub(1)
    }

    fn bucket_of(&self, ms: u64) -> u64 {
        ms / self.settings.bucket_ms
    }

    async fn expire_clients(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let timeout = self.settings.client_timeout_ms;
        let now = self.env.now_ms();
        index::HEARTBEATS
            .walk(
                self.store,
                self.last_expired_bucket(timeout),
                budget,
                async |client_id, budget| {
                    *budget -= 1;
                    let (done, removed) = self.expire_client(client_id, now).await?;
                    report.clients_removed += u64::from(removed);
                    Ok(done)
                },
            )
            .await
    }

    /// Expires `client_id` if its heartbeat is older than the client timeout. Returns
    /// whether the entry is dealt with (`false`: another run holds it, keep it listed) and
    /// whether this call removed a live client.
    async fn expire_client(&self, client_id: &str, now: u64) -> Result<(bool, bool), ApiError> {
        let client = client_key(client_id);
        let (claim_bytes, claim) = match read_claim(self.store, client_id).await? {
            ClaimState::Free(_) => return Ok((true, false)),
            ClaimState::Held(bytes, claim) => (bytes, claim),
            ClaimState::Legacy(bytes, old) => {
                if let Lookup::Expiring(ExpiryClaim { record: None, .. }) = old {
                    // An older release's bare marker names no group: only the key is left.
                    self.store.delete(&client).await?;
                    return Ok((true, false));
                }
                migrate(self.store, client_id, &bytes, &old).await?;
                return Box::pin(self.expire_client(client_id, now)).await;
            }
        };
        let group_id = claim.group_id.clone();
        if lookup(self.store, &group_id, client_id).await? == Lookup::Absent {
            // A registration claimed the ID and died before writing the record. A live one
            // renews the claim or writes the record first, and then lists the client anew
            // itself.
            if claim.at_ms + JOIN_GRACE_MS <= now {
                free_abandoned(self.store, client_id, &claim_bytes, &claim, now).await?;
            } else {
                // Too recent to tell: looked at again in a later run.
                index::HEARTBEATS
                    .add(self.store, self.bucket_of(now), client_id)
                    .await?;
            }
            return Ok((true, false));
        }
        self.expire_member(client_id, &group_id, now).await
    }

    /// Expires the member `client_id` of `group_id` if its heartbeat is older than the client
    /// timeout, or takes over an expiry whose run died. Returns whether it is dealt with
    /// (`false`: another run holds it) and whether this call removed a live client.
    pub(super) async fn expire_member(
        &self,
        client_id: &str,
        group_id: &str,
        now: u64,
    ) -> Result<(bool, bool), ApiError> {
        let timeout = self.settings.client_timeout_ms;
        let key = member_key(group_id, client_id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let claim = match lookup(self.store, group_id, client_id).await? {
                Lookup::Absent => return Ok((true, false)),
                Lookup::Live(_, record) if record.last_heartbeat_ms + timeout > now => {
                    return Ok((true, false)); // alive: listed again in a later bucket
                }
                Lookup::Live(bytes, record) => (bytes, Some(record), true),
                // Another run's claim: it finishes, unless it died holding it.
                Lookup::Expiring(c) if c.at_ms + EXPIRY_LEASE_MS > now => {
                    return Ok((false, false));
                }
                Lookup::Expiring(c) => (c.bytes, c.record, false),
            };
            let (bytes, record, fresh) = claim;
            // Claim the record (or take a dead run's claim over), so that exactly one
            // run at a time moves it away, and only a fresh claim counts it.
            let claimed = match &record {
                Some(r) => expiring(r, now),
                None => vacating(now, false),
            };
            if !self
                .store
                .compare_and_swap(&key, Some(&bytes), &claimed)
                .await?
            {
                continue; // changed meanwhile: look again
            }
            if fresh && !is_group_local(self.store, group_id) {
                self.store
                    .increment(&registered_clients_key(client_id), -1)
                    .await?;
            }
            if let Some(record) = &record {
                self.move_away(client_id, group_id, record).await?;
            }
            // The ID is free again, unless a move re-pointed it elsewhere (a registration
            // waits while the record is claimed, so the claim cannot change in between).
            // A mark without a record frees nothing: a registration may hold the claim.
            if let (Some(record), ClaimState::Held(_, held)) =
                (&record, read_claim(self.store, client_id).await?)
                && held.group_id == group_id
                && held.owner == record.owner
            {
                self.store.delete(&client_key(client_id)).await?;
            }
            // Nobody else writes a claimed key (registration waits, other runs respect the
            // lease), so this deletes nothing newer.
            self.store.delete(&key).await?;
            // Last, so that a run that dies before it leaves the entry that leads the next
            // run (a group's own cleanup walks its member list) to what is left.
            leave_group(self.store, group_id, client_id).await?;
            return Ok((true, fresh));
        }
        Ok((false, false))
    }

    /// The rest of an expiry, once claimed: the group keeps the member's cursor.
    async fn move_away(
        &self,
        client_id: &str,
        group_id: &str,
        record: &ClientRecord,
    ) -> Result<(), ApiError> {
        let now = self.env.now_ms();
        let key = away_key(group_id, client_id);
        let away = AwayRecord {
            owner: record.owner.clone(),
            joined_after: record.joined_after,
            cursor: record.cursor,
            registered_at_ms: record.registered_at_ms,
            expired_at_ms: now,
        };
        if !is_group_local(self.store, group_id) {
            index::RETAINED
                .add(self.store, self.bucket_of(now), &key)
                .await?;
        }
        self.store.set(&key, &encode(&away)).await?;
        Ok(())
    }

    /// Deletes the rate-limit buckets listed as full by now; lists the others again.
    async fn expire_rate_limits(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let limiter = Limiter::new(self.store, self.env.now_ms(), self.settings.bucket_ms);
        index::RATE_LIMITS
            .walk(
                self.store,
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

    /// Forgets idempotency claims and away records older than the retention.
    async fn forget_retained(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let retention = self.settings.retention_ms;
        let now = self.env.now_ms();
        index::RETAINED
            .walk(
                self.store,
                self.last_expired_bucket(retention),
                budget,
                async |key, budget| {
                    *budget -= 1;
                    match retained_since(self.store, key).await {
                        None => {}
                        Some(at) if at + retention <= now => {
                            self.store.delete(key).await?;
                            report.records_forgotten += 1;
                        }
                        // Renewed since it was listed: listed again under its new time.
                        Some(at) => {
                            index::RETAINED
                                .add(self.store, self.bucket_of(at), key)
                                .await?
                        }
                    }
                    Ok(true)
                },
            )
            .await
    }

    /// Trims `group_id` from its tail towards `target`, a slot at a time, spending budget;
    /// with `retention`, only messages at least that old. Unwritten slots are passed only
    /// once sealed as abandoned. The tail moves first, then the slots are deleted (and
    /// whatever an interrupted run left below the tail). Returns the slots trimmed and why
    /// it stopped.
    pub(super) async fn trim(
        &self,
        group_id: &str,
        target: u64,
        retention: Option<u64>,
        budget: &mut usize,
    ) -> Result<(u64, Stop), ApiError> {
        let now = self.env.now_ms();
        let from = tail(self.store, group_id).await?;
        let head = head(self.store, group_id).await?;
        let target = target.min(head);
        let mut new_tail = from;
        let mut sealed_through = None;
        let stop = 'scan: loop {
            if new_tail >= target {
                break Stop::Target;
            }
            let end = target.min(new_tail + (*budget as u64).min(DELETE_BATCH));
            if end == new_tail {
                break Stop::Budget;
            }
            let keys: Vec<String> = (new_tail + 1..=end)
                .map(|s| message_key(group_id, s))
                .collect();
            for value in self.store.get_many(&keys).await? {
                let seq = new_tail + 1;
                let slot = match settled(self.store, self.env, group_id, seq, head, value).await? {
                    Some(slot) => slot,
                    None => {
                        // An overlapping run trimmed past this slot while we looked (and deleted
                        // it): go on from where it left the tail.
                        let moved = tail(self.store, group_id).await?;
                        if moved >= seq {
                            new_tail = new_tail.max(moved);
                            continue 'scan;
                        }
                        if abandoned(self.store, self.env, group_id, seq, head)
                            .await?
                            .is_some()
                        {
                            break 'scan Stop::InFlight {
                                later_written: true,
                            };
                        }
                        match self.seal_unfollowed(group_id, seq, head).await? {
                            Some((slot, mark_head)) => {
                                sealed_through = Some(mark_head);
                                slot
                            }
                            None => {
                                break 'scan Stop::InFlight {
                                    later_written: false,
                                };
                            }
                        }
                    }
                };
                match (&slot, retention) {
                    (Slot::Message(m), Some(age)) if m.timestamp_ms + age > now => {
                        break 'scan Stop::Young(m.timestamp_ms);
                    }
                    // A sealed reservation's claim is released before the slot goes, so that
                    // a retry with its key sends anew.
                    (Slot::Tombstone { claim: Some(claim) }, _) => {
                        idempotency::release_seq(self.store, claim, seq).await?;
                    }
                    _ => {}
                }
                new_tail = seq;
                *budget -= 1;
            }
        };
        // Runs overlapping on one group both see its old tail; each counts only what its own
        // move of the tail covered, so every slot is counted once.
        let trimmed = match new_tail > from {
            true => advance(self.store, &tail_key(group_id), new_tail)
                .await?
                .map_or(0, |moved_from| new_tail - moved_from),
            false => 0,
        };
        if sealed_through.is_some_and(|h| new_tail >= h) {
            self.store.delete(&gap_key(group_id)).await?;
        }
        self.sweep(group_id).await?;
        Ok((trimmed, stop))
    }

    /// For an unwritten slot `seq` with no written slot after it up to `head`: the readers'
    /// rule (a later message past the grace) cannot tell an abandoned number from a send in
    /// flight, and at the backlog limit no later message is ever written. So the first trim
    /// to meet the gap notes when, and one that meets it again past the grace seals it (a
    /// sender still holding the number loses the race and takes another). Returns the
    /// slot's contents then and the last slot the note covers; `None` while it must wait.
    async fn seal_unfollowed(
        &self,
        group_id: &str,
        seq: u64,
        head: u64,
    ) -> Result<Option<(Slot, u64)>, ApiError> {
        let key = gap_key(group_id);
        let now = self.env.now_ms();
        let mark_head = match read_json::<GapMark>(self.store, &key).await? {
            Some((_, mark)) if (mark.first..=mark.head).contains(&seq) => {
                if mark.seen_ms + GAP_GRACE_MS > now {
                    return Ok(None);
                }
                mark.head
            }
            // Met for the first time (or a different gap): noted, sealed on a later run.
            _ => {
                let mark = GapMark {
                    first: seq,
                    head,
                    seen_ms: now,
                };
                self.store.set(&key, &encode(&mark)).await?;
                return Ok(None);
            }
        };
        let slot_key = message_key(group_id, seq);
        let current = self.store.get(&slot_key).await?;
        if let Some(bytes) = &current {
            match Slot::decode(&slot_key, bytes)? {
                Slot::Reserved { .. } => {}
                written => return Ok(Some((written, mark_head))),
            }
        }
        Ok(seal(self.store, group_id, seq, current.as_deref())
            .await?
            .map(|slot| (slot, mark_head)))
    }

    /// Deletes the slots from `swept` up to the tail, then moves `swept`.
    async fn sweep(&self, group_id: &str) -> Result<(), ApiError> {
        let swept_at = swept_key(group_id);
        let swept = read_number(self.store, &swept_at).await?;
        let tail = tail(self.store, group_id).await?;
        if swept >= tail {
            return Ok(());
        }
        let mut from = swept + 1;
        while from <= tail {
            let to = tail.min(from + DELETE_BATCH - 1);
            let keys: Vec<String> = (from..=to).map(|s| message_key(group_id, s)).collect();
            self.store.delete_many(&keys).await?;
            from = to + 1;
        }
        advance(self.store, &swept_at, tail).await?;
        Ok(())
    }

    /// Brings every flagged group back to its cap. A group stays flagged until a pass has
    /// trimmed it to its cap *and* nobody flagged it again meanwhile (the mark counter).
    async fn enforce_caps(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let cap = self.settings.max_messages_per_group;
        let mut complete = true;
        for shard in 0..index::SHARDS {
            let key = capcheck_key(shard);
            let Some((_, groups)) = read_json::<Vec<String>>(self.store, &key).await? else {
                continue;
            };
            let mut finished = Vec::new();
            for group_id in &groups {
                if *budget == 0 {
                    complete = false;
                    break;
                }
                let marks = self.store.increment(&capmarks_key(group_id), 0).await?;
                let head = head(self.store, group_id).await?;
                let (removed, stop) = self
                    .trim(group_id, head.saturating_sub(cap), None, budget)
                    .await?;
                report.messages_removed += removed;
                if stop == Stop::Target {
                    finished.push((group_id.clone(), marks));
                } else {
                    complete = false;
                }
            }
            if finished.is_empty() {
                continue;
            }
            let names: Vec<&String> = finished.iter().map(|(g, _)| g).collect();
            self.remove_from_list(&key, &names).await?;
            for (group_id, marks) in &finished {
                // Flagged again while we trimmed: keep it for the next pass.
                if self.store.increment(&capmarks_key(group_id), 0).await? != *marks {
                    super::log::add_to_list(self.store, &key, group_id).await?;
                }
            }
        }
        Ok(complete)
    }

    async fn remove_from_list(&self, key: &str, ids: &[&String]) -> Result<(), ApiError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((bytes, current)) = read_json::<Vec<String>>(self.store, key).await? else {
                return Ok(());
            };
            let left: Vec<String> = current.into_iter().filter(|g| !ids.contains(&g)).collect();
            // Emptied, not deleted: only a compare-and-swap keeps a racing flag.
            if self
                .store
                .compare_and_swap(key, Some(&bytes), &encode(&left))
                .await?
            {
                return Ok(());
            }
        }
        Err(ApiError::contention(key))
    }

    async fn enforce_retention(
        &self,
        budget: &mut usize,
        report: &mut Report,
    ) -> Result<bool, ApiError> {
        let retention = self.settings.retention_ms;
        let last = self.last_expired_bucket(retention);
        // Re-listing goes beyond what this run walks: an overlapping run may be emptying
        // the buckets up to `last`.
        let next = last.map_or(0, |l| l + 1);
        index::MESSAGES
            .walk(self.store, last, budget, async |group_id, budget| {
                let (removed, stop) = self
                    .trim(group_id, u64::MAX, Some(retention), budget)
                    .await?;
                report.messages_removed += removed;
                // Messages left that this bucket's listing no longer covers are listed again,
                // under the bucket in which they expire.
                let relist = match stop {
                    Stop::Target
                    | Stop::InFlight {
                        later_written: false,
                    } => None,
                    Stop::Budget => return Ok(false),
                    Stop::Young(ts) => Some(self.bucket_of(ts).max(next)),
                    Stop::InFlight {
                        later_written: true,
                    } => Some(next),
                };
                if let Some(at) = relist {
                    index::MESSAGES.add(self.store, at, group_id).await?;
                }
                Ok(true)
            })
            .await
    }
}

/// Since when a retained record (an away record or an idempotency claim, by its key) has
/// been kept; `None` if it is gone or unreadable.
pub(super) async fn retained_since(store: &dyn KvStore, key: &str) -> Option<u64> {
    if key.contains("/away/") {
        read_json::<AwayRecord>(store, key)
            .await
            .ok()
            .flatten()
            .map(|(_, a)| a.expired_at_ms)
    } else {
        read_json::<Claim>(store, key)
            .await
            .ok()
            .flatten()
            .map(|(_, c)| c.timestamp_ms)
    }
}
