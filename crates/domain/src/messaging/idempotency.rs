//! Idempotent sends: a sender names a send with a key (the `Idempotency-Key` header), and a
//! retry with the same key within the retention window answers what the first attempt
//! answered, storing nothing new, as SQS deduplication IDs and Stripe's idempotency keys do.
//!
//! The claim `group/{g}/idem/{sender}/{key}` records the number the send took, written by
//! compare-and-swap *before* the slot (so a retry always finds it). A retry reads the slot:
//! its message answers the retry; a tombstone means the first attempt gave up and the retry
//! takes the claim over; an unwritten slot means the first attempt is still in flight (409).

use serde::{Deserialize, Serialize};

use super::log::{Sent, seal, settled};
use super::{
    GAP_GRACE_MS, Messaging, Slot, StoredMessage, encode, head, message_key, read_json, tail,
};
use crate::error::ApiError;
use crate::ids::is_valid_id;
use crate::store::KvStore;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub message_id: String,
    /// The number the send took; 0 once it was refused (nothing stored).
    pub seq: u64,
    pub timestamp_ms: u64,
}

/// What an earlier send with the same key left.
pub(crate) enum Prior {
    /// No earlier send.
    None,
    /// It was stored: answer what it answered.
    Replay(Sent),
    /// It gave up: claim the key anew (from these bytes).
    TakeOver(Vec<u8>),
}

pub fn key(group_id: &str, sender_id: &str, idempotency_key: &str) -> String {
    format!("group/{group_id}/idem/{sender_id}/{idempotency_key}")
}

pub fn validate(key: &str) -> Result<(), ApiError> {
    if is_valid_id(key) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-128 characters of [A-Za-z0-9._:-] (a UUID will do)",
        ))
    }
}

pub(crate) fn in_use() -> ApiError {
    ApiError::new(
        409,
        "idempotency_key_in_use",
        "a send with this Idempotency-Key is still in progress; retry shortly",
    )
    .with_header("retry-after", "1")
}

fn replay(claim: &Claim) -> Prior {
    Prior::Replay(Sent {
        message_id: claim.message_id.clone(),
        seq: claim.seq,
        timestamp_ms: claim.timestamp_ms,
        replayed: true,
    })
}

/// Looks up the claim at `claim_key` and decides what this send does with it.
pub(crate) async fn prior(
    m: &Messaging<'_>,
    group_id: &str,
    claim_key: &str,
) -> Result<Prior, ApiError> {
    let Some((bytes, claim)) = read_json::<Claim>(m.store, claim_key).await? else {
        return Ok(Prior::None);
    };
    if claim.seq == 0 {
        return Ok(Prior::TakeOver(bytes));
    }
    if claim.seq <= tail(m.store, group_id).await? {
        // Trimmed since. A claim whose slot was sealed or given up is released (seq 0) before
        // the slot can be trimmed, so this one was stored and answered.
        return Ok(replay(&claim));
    }
    let key = message_key(group_id, claim.seq);
    let current = m.store.get(&key).await?;
    let slot = match current
        .as_deref()
        .map(|b| Slot::decode(&key, b))
        .transpose()?
    {
        Some(slot) if !slot.is_pending() => Some(slot),
        // The claim was written right after the number was taken, and a sender gives its
        // number up after half the grace: past the whole grace the number is abandoned,
        // even if no later message shows it.
        _ if claim.timestamp_ms + GAP_GRACE_MS <= m.env.now_ms() => {
            seal(m.store, group_id, claim.seq, current.as_deref()).await?
        }
        _ => {
            let head = head(m.store, group_id).await?;
            settled(m.store, m.env, group_id, claim.seq, head, current).await?
        }
    };
    match slot {
        Some(Slot::Message(msg)) if msg.message_id == claim.message_id => Ok(replay(&claim)),
        Some(Slot::Reserved { .. }) | None => Err(in_use()),
        // A tombstone (or another's message): the earlier send gave up.
        Some(_) => {
            // Sealing may have released it: take over from what the claim holds now.
            match m.store.get(claim_key).await? {
                Some(now) => Ok(Prior::TakeOver(now)),
                None => Ok(Prior::None),
            }
        }
    }
}

/// Claims the key for `message` (replacing `expected`); the new claim's bytes, or `None` if
/// another send with the same key got there first.
pub(crate) async fn claim(
    store: &dyn KvStore,
    claim_key: &str,
    expected: Option<&[u8]>,
    message: &StoredMessage,
) -> Result<Option<Vec<u8>>, ApiError> {
    let bytes = encode(&Claim {
        message_id: message.message_id.clone(),
        seq: message.seq,
        timestamp_ms: message.timestamp_ms,
    });
    Ok(store
        .compare_and_swap(claim_key, expected, &bytes)
        .await?
        .then_some(bytes))
}

/// Marks a claim whose send was refused, so that a retry sends anew. Best effort: left as
/// it is, the claim points at a tombstone, which a retry takes over just the same.
pub(crate) async fn release(store: &dyn KvStore, claim_key: &str, claimed: &[u8]) {
    if let Ok(mut claim) = serde_json::from_slice::<Claim>(claimed) {
        claim.seq = 0;
        let _ = store
            .compare_and_swap(claim_key, Some(claimed), &encode(&claim))
            .await;
    }
}

/// Releases the claim at `claim_key` if it still points at `seq` (whose slot was sealed):
/// done before a sealed slot can be trimmed, so that a trimmed claim always means "stored".
pub(crate) async fn release_seq(
    store: &dyn KvStore,
    claim_key: &str,
    seq: u64,
) -> Result<(), ApiError> {
    if let Some((bytes, claim)) = read_json::<Claim>(store, claim_key).await?
        && claim.seq == seq
    {
        let released = Claim { seq: 0, ..claim };
        store
            .compare_and_swap(claim_key, Some(&bytes), &encode(&released))
            .await?;
    }
    Ok(())
}
