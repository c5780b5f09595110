//! A group's own cleanup, for a store that is the group's own storage (a Durable Object's
//! rows: [`KvStore::group_local`]). Such a store keeps no global listing of the group's
//! things: what the scheduled pass finds through the cleanup indexes, this finds in the
//! group's keys (its member list, its log from the tail, its retained records by prefix), and
//! it says when it is next due, so that the store's owner can wake it then (an alarm).
//!
//! The rules are the scheduled pass's ([`Cleanup::run`]): the same expiry of a member, the
//! same trims, the same retention of away records and idempotency claims.

use super::expiry::{Cleanup, Report, Stop, retained_since};
use super::members::{
    ClaimState, EXPIRY_LEASE_MS, JOIN_GRACE_MS, Lookup, Member, decode_record, ensure_listed,
    free_abandoned, leave_group, read_claim,
};
use super::{head, member_key, members_key, read_json, tail};
use crate::error::ApiError;
use crate::store::KvStore;

/// What a group's cleanup did, and when the group next needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    pub report: Report,
    /// The earliest time something of the group expires; `None` when nothing does (no
    /// members, messages or retained records).
    pub next_due_ms: Option<u64>,
}

/// The earliest of the times given.
#[derive(Default)]
struct Due(Option<u64>);

/// One group cleanup's budget, what it did, and when the group is next due.
struct Run {
    budget: usize,
    report: Report,
    due: Due,
}

impl Due {
    fn at(&mut self, ms: u64) {
        self.0 = Some(self.0.map_or(ms, |d| d.min(ms)));
    }
}

impl Cleanup<'_> {
    /// Cleans `group_id` up in a store that is its own (see the module's documentation).
    pub async fn group(&self, group_id: &str) -> Result<GroupReport, ApiError> {
        let mut run = Run {
            budget: self.settings.budget,
            report: Report::default(),
            due: Due::default(),
        };
        self.group_members(group_id, &mut run).await?;
        let log_done = self.group_log(group_id, &mut run).await?;
        self.group_retained(group_id, &mut run).await?;
        run.report.complete = run.budget > 0 && log_done;
        if !run.report.complete {
            run.due.at(self.env.now_ms());
        }
        Ok(GroupReport {
            report: run.report,
            next_due_ms: run.due.0,
        })
    }

    /// Expires the members silent past the client timeout (their records, found by prefix:
    /// listed or not); drops list entries whose registration never wrote a record, freeing
    /// an abandoned claim on the way.
    async fn group_members(&self, group_id: &str, run: &mut Run) -> Result<(), ApiError> {
        let now = self.env.now_ms();
        let timeout = self.settings.client_timeout_ms;
        let prefix = member_key(group_id, "");
        let keys = self.store.keys_with_prefix(&prefix).await?;
        let members: Vec<Member> = read_json(self.store, &members_key(group_id))
            .await?
            .map(|(_, m)| m)
            .unwrap_or_default();
        let records = self.store.get_many(&keys).await?;
        for (key, record) in keys.iter().zip(records) {
            if run.budget == 0 {
                return Ok(());
            }
            run.budget -= 1;
            let id = &key[prefix.len()..];
            match record.as_deref().and_then(decode_record) {
                None => {}
                Some(Lookup::Live(_, r)) if r.last_heartbeat_ms + timeout > now => {
                    run.due.at(r.last_heartbeat_ms + timeout);
                    if !members.iter().any(|m| m.id() == id) {
                        // A registration that died between its record and its listing.
                        ensure_listed(self.store, group_id, id, now).await?;
                    }
                }
                Some(Lookup::Expiring(c)) if c.at_ms + EXPIRY_LEASE_MS > now => {
                    run.due.at(c.at_ms + EXPIRY_LEASE_MS);
                }
                Some(_) => {
                    let (done, removed) = self.expire_member(id, group_id, now).await?;
                    run.report.clients_removed += u64::from(removed);
                    if !done {
                        run.due.at(now + EXPIRY_LEASE_MS);
                    }
                }
            }
        }
        for member in members
            .iter()
            .filter(|m| !keys.contains(&member_key(group_id, m.id())))
        {
            if run.budget == 0 {
                return Ok(());
            }
            run.budget -= 1;
            let id = member.id();
            if member.joined_at() + JOIN_GRACE_MS > now {
                run.due.at(member.joined_at() + JOIN_GRACE_MS);
                continue;
            }
            match read_claim(self.store, id).await? {
                ClaimState::Held(_, claim)
                    if claim.group_id == group_id && claim.at_ms + JOIN_GRACE_MS > now =>
                {
                    run.due.at(claim.at_ms + JOIN_GRACE_MS);
                }
                // Its registration died between the claim and the record: the mark left
                // is a record's key, taken away once its lease has passed.
                ClaimState::Held(bytes, claim) if claim.group_id == group_id => {
                    free_abandoned(self.store, id, &bytes, &claim, now).await?;
                    run.due.at(now + EXPIRY_LEASE_MS);
                }
                // Refused after it joined the list, or moved on (a record written meanwhile
                // keeps its entry).
                _ => leave_group(self.store, group_id, id).await?,
            }
        }
        Ok(())
    }

    /// Trims the log to its cap, then what is past the retention. Returns whether the cap
    /// holds (a send in flight can hold a trim back until its grace has passed).
    async fn group_log(&self, group_id: &str, run: &mut Run) -> Result<bool, ApiError> {
        let now = self.env.now_ms();
        let cap = self.settings.max_messages_per_group;
        let mut capped = true;
        let head = head(self.store, group_id).await?;
        if head.saturating_sub(tail(self.store, group_id).await?) > cap {
            let (removed, stop) = self
                .trim(group_id, head.saturating_sub(cap), None, &mut run.budget)
                .await?;
            run.report.messages_removed += removed;
            if stop != Stop::Target {
                run.due.at(now + self.settings.bucket_ms);
                capped = false;
            }
        }
        let retention = self.settings.retention_ms;
        let (removed, stop) = self
            .trim(group_id, u64::MAX, Some(retention), &mut run.budget)
            .await?;
        run.report.messages_removed += removed;
        match stop {
            Stop::Target => {}
            Stop::Young(ts) => run.due.at(ts + retention),
            // A send in flight (or the budget): looked at again a bucket later.
            Stop::InFlight { .. } | Stop::Budget => run.due.at(now + self.settings.bucket_ms),
        }
        Ok(capped)
    }

    /// Forgets away records and idempotency claims past the retention.
    async fn group_retained(&self, group_id: &str, run: &mut Run) -> Result<(), ApiError> {
        let now = self.env.now_ms();
        let retention = self.settings.retention_ms;
        for kind in ["away", "idem"] {
            let keys = self
                .store
                .keys_with_prefix(&format!("group/{group_id}/{kind}/"))
                .await?;
            for key in keys {
                if run.budget == 0 {
                    return Ok(());
                }
                run.budget -= 1;
                let since = retained_since(self.store, &key).await;
                match since {
                    None => {}
                    Some(at) if at + retention > now => run.due.at(at + retention),
                    Some(_) => {
                        self.store.delete(&key).await?;
                        run.report.records_forgotten += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `store` is `group_id`'s own storage, which cleans the group up itself.
pub(crate) fn is_group_local(store: &dyn KvStore, group_id: &str) -> bool {
    store.group_local() == Some(group_id)
}
