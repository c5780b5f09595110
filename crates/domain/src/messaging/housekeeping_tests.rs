//! A group that is its own storage: its requests list nothing globally, and its own cleanup
//! does what the scheduled pass does for it.

use serde_json::json;

use super::members::{ClaimState, Lookup, Registration, lookup, read_claim};
use super::testing::{ObjectStore, raw};
use super::*;
use crate::env::testing::FakeEnv;
use crate::store::MemoryStore;

const T0: u64 = 1_800_000_000_000;
const CAP: u64 = 5;

fn settings() -> Settings {
    super::testing::short_settings(CAP)
}

fn messaging<'a>(store: &'a ObjectStore<'a>, env: &'a FakeEnv) -> Messaging<'a> {
    Messaging::new(store, env).with_cleanup_index(1_000, CAP)
}

#[pollster::test]
async fn a_groups_requests_write_only_its_own_keys_and_the_ids_claims() {
    let (backing, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let g = ObjectStore::group(&backing, "g");
    let m = messaging(&g, &env);
    for c in ["a", "b"] {
        m.register("w", c, "g").await.unwrap();
    }
    for i in 0..(CAP + 1) {
        env.advance(1_000); // a new bucket for every request
        let key = format!("k{i}");
        m.send("w", "a", "g", raw(json!(i)), Some(&key))
            .await
            .unwrap();
        m.poll("w", "b", "g", None, 100).await.unwrap();
        m.register("w", "a", "g").await.unwrap();
    }
    let outside: Vec<String> = backing
        .keys()
        .into_iter()
        .filter(|k| !k.starts_with("group/g/") && !k.starts_with("client/"))
        .collect();
    assert_eq!(outside, Vec::<String>::new());
    // Moving a client to another group touches the old group's keys and the claim only.
    let other = ObjectStore::group(&backing, "h");
    messaging(&other, &env)
        .register("w", "b", "h")
        .await
        .unwrap();
    assert!(
        backing
            .keys()
            .iter()
            .all(|k| k.starts_with("group/") || k.starts_with("client/")),
        "{:?}",
        backing.keys()
    );
}

#[pollster::test]
async fn the_groups_own_cleanup_expires_trims_and_forgets_and_says_when_it_is_next_due() {
    let (backing, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let g = ObjectStore::group(&backing, "g");
    let m = messaging(&g, &env);
    let clean = || Cleanup::new(&g, &env, settings());
    assert_eq!(clean().group("g").await.unwrap().next_due_ms, None);

    m.register("w", "stale", "g").await.unwrap();
    m.register("w", "live", "g").await.unwrap();
    for i in 0..(CAP + 1) {
        m.send("w", "live", "g", raw(json!(i)), Some(&format!("k{i}")))
            .await
            .unwrap();
    }
    // Over the cap at once; the stale member is due at its timeout.
    let first = clean().group("g").await.unwrap();
    assert_eq!(first.report.messages_removed, 1);
    assert_eq!(tail(&g, "g").await.unwrap(), 1);
    assert_eq!(first.next_due_ms, Some(T0 + 5_000));

    env.advance(6_000);
    m.poll("w", "live", "g", None, 100).await.unwrap(); // a heartbeat
    let second = clean().group("g").await.unwrap();
    assert_eq!(second.report.clients_removed, 1);
    assert!(matches!(
        lookup(&g, "g", "stale").await.unwrap(),
        Lookup::Absent
    ));
    assert!(matches!(
        read_claim(&g, "stale").await.unwrap(),
        ClaimState::Free(None)
    ));
    assert!(g.get(&away_key("g", "stale")).await.unwrap().is_some());
    // Next: the live member's timeout.
    assert_eq!(second.next_due_ms, Some(T0 + 6_000 + 5_000));

    // Past the retention, silent: the messages, the member, its away record and the
    // idempotency claims all go, and then nothing is due.
    env.advance(25_000);
    let third = clean().group("g").await.unwrap();
    assert_eq!(third.report.clients_removed, 1);
    assert_eq!(third.report.messages_removed, CAP);
    assert_eq!(third.report.records_forgotten, CAP + 1 + 1);
    env.advance(25_000);
    let last = clean().group("g").await.unwrap();
    assert_eq!(
        last.report.records_forgotten, 1,
        "the live member's away record"
    );
    assert_eq!(last.next_due_ms, None);
    assert!(
        backing
            .keys()
            .iter()
            .all(|k| !k.contains("/away/") && !k.contains("/idem/")),
        "{:?}",
        backing.keys()
    );
    // The expired member comes back and is told what it missed.
    assert!(matches!(
        m.register("w", "stale", "g").await.unwrap(),
        Registration::Created(_)
    ));
}

#[pollster::test]
async fn a_list_entry_whose_registration_died_is_dropped_and_its_claim_freed() {
    let (backing, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let g = ObjectStore::group(&backing, "g");
    let m = messaging(&g, &env);
    m.register("w", "c", "g").await.unwrap();
    // As if the registration had died between its claim and its record.
    g.delete(&member_key("g", "c")).await.unwrap();
    let soon = Cleanup::new(&g, &env, settings()).group("g").await.unwrap();
    assert!(soon.next_due_ms.is_some());
    env.advance(members::JOIN_GRACE_MS);
    Cleanup::new(&g, &env, settings()).group("g").await.unwrap();
    assert!(matches!(
        read_claim(&g, "c").await.unwrap(),
        ClaimState::Free(Some(_))
    ));
    env.advance(members::EXPIRY_LEASE_MS);
    let done = Cleanup::new(&g, &env, settings()).group("g").await.unwrap();
    assert_eq!(done.next_due_ms, None, "{done:?}");
    assert!(g.get(&members_key("g")).await.unwrap().is_some());
    assert!(matches!(
        m.register("x", "c", "g").await.unwrap(),
        Registration::Created(_)
    ));
}
