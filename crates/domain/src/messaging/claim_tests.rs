//! A client ID is held by one owner, in one group, at every instant: registrations by two
//! owners, moves between groups, expiries and crashes interleaved one store call at a time
//! never leave two live member records of one client, nor a live record its claim does not
//! name. And after a crash, the ID is usable again (no registration is refused for good).

use super::members::{self, ClaimState, Lookup, Registration, lookup, read_claim};
use super::testing::ObjectStore;
use super::*;
use crate::env::testing::FakeEnv;
use crate::interleave::{self, Choice, SteppedStore, Task};
use crate::store::{KvStore, MemoryStore};

const T0: u64 = 1_800_000_000_000;
const GROUPS: [&str; 2] = ["g1", "g2"];

fn settings() -> Settings {
    super::testing::short_settings(1_000)
}

/// The invariant, read straight from the backing store (no scheduling point).
fn check(store: &MemoryStore, seed: u64) {
    pollster::block_on(async {
        let mut live = Vec::new();
        for g in GROUPS {
            if let Lookup::Live(_, r) = lookup(store, g, "c").await.unwrap() {
                live.push((g, r.owner));
            }
        }
        assert!(live.len() <= 1, "seed {seed}: live in two groups: {live:?}");
        if let Some((g, owner)) = live.first() {
            match read_claim(store, "c").await.unwrap() {
                ClaimState::Held(_, claim) => assert_eq!(
                    (claim.owner.as_str(), claim.group_id.as_str()),
                    (owner.as_str(), *g),
                    "seed {seed}: the claim names another place than the live record"
                ),
                other => panic!("seed {seed}: live in {g} without a claim: {other:?}"),
            }
        }
    });
}

#[test]
fn one_owner_one_group_under_registrations_moves_expiries_and_crashes() {
    for seed in 0..1000u64 {
        interleaved(seed, false);
    }
}

/// The same where each group is its own storage and cleans itself up (Workers' objects):
/// no global index, the groups' own cleanup instead of the scheduled pass.
#[test]
fn one_owner_one_group_where_each_group_cleans_itself_up() {
    for seed in 0..1000u64 {
        interleaved(seed, true);
    }
}

fn interleaved(seed: u64, group_local: bool) {
    let (backing, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let views: Vec<ObjectStore<'_>> = GROUPS
        .iter()
        .map(|g| ObjectStore::group(&backing, g))
        .collect();
    let global = SteppedStore::new(&backing);
    let local: Vec<SteppedStore<'_>> = views.iter().map(|v| SteppedStore::new(v)).collect();
    // The store a request for group `g` runs over.
    let store_for = |g: &str| -> &dyn KvStore {
        match GROUPS.iter().position(|x| *x == g) {
            Some(i) if group_local => &local[i],
            _ => &global,
        }
    };
    let env_ref = &env;
    let registrar = |owner: &'static str, groups: &'static [&'static str]| {
        let store_for = &store_for;
        let task: Task<'_, ()> = Box::pin(async move {
            for g in groups {
                let m = Messaging::new(store_for(g), env_ref).with_cleanup_index(1_000, 1_000);
                // Refusals (owned by the other, expiring, contention) are allowed; the
                // invariant is what is checked.
                let _ = m.register(owner, "c", g).await;
            }
        });
        task
    };
    let (backing_ref, global_ref) = (&backing, &global);
    let watcher: Task<'_, ()> = Box::pin(async move {
        for _ in 0..400 {
            check(backing_ref, seed);
            let _ = global_ref.get("watch").await;
        }
    });
    let store_for_cleanup = &store_for;
    let cleanup: Task<'_, ()> = Box::pin(async move {
        for _ in 0..3 {
            if group_local {
                for g in GROUPS {
                    let _ = Cleanup::new(store_for_cleanup(g), env_ref, settings())
                        .group(g)
                        .await;
                }
            } else {
                let _ = Cleanup::new(global_ref, env_ref, settings()).run().await;
            }
        }
    });
    let tasks: Vec<(Task<'_, ()>, bool)> = vec![
        (registrar("w", &["g1", "g2", "g1", "g2"]), true),
        (registrar("x", &["g2", "g1", "g2"]), true),
        (cleanup, true),
        (watcher, false),
    ];
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut choices = std::iter::from_fn(|| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (state >> 33) as usize;
        Some(match pick % 40 {
            0 => Choice::Crash(pick / 40),
            1..=3 => Choice::Wait(2_000),
            _ => Choice::Run(pick / 40),
        })
    })
    .take(3_000);
    interleave::run(tasks, &mut choices, |ms| env.advance(ms));
    check(&backing, seed);

    // Whatever crashed where, once timeouts have passed, a cleanup has run and its marks'
    // leases have passed too, someone else registers the ID and it works.
    let settle = async |views: &[ObjectStore<'_>]| {
        if group_local {
            for (g, view) in GROUPS.iter().zip(views) {
                Cleanup::new(view, &env, settings()).group(g).await.unwrap();
            }
        } else {
            Cleanup::new(&backing, &env, settings())
                .run()
                .await
                .unwrap();
        }
    };
    env.advance(members::EXPIRY_LEASE_MS + 10_000);
    pollster::block_on(async {
        settle(&views).await;
        env.advance(members::EXPIRY_LEASE_MS);
        settle(&views).await;
        let m = Messaging::new(&views[0], &env).with_cleanup_index(1_000, 1_000);
        let m = if group_local {
            m
        } else {
            Messaging::new(&backing, &env).with_cleanup_index(1_000, 1_000)
        };
        let again = m.register("y", "c", "g1").await;
        assert!(
            matches!(again, Ok(Registration::Created(_))),
            "seed {seed} (group-local: {group_local}): {again:?}"
        );
        m.send_value("y", "c", "g1", serde_json::json!("hi"))
            .await
            .unwrap();
    });
    check(&backing, seed);
}

/// A record written by a release before member records (the whole record at `client/{c}`)
/// keeps working: its owner sends and receives from its cursor, others are refused, and it
/// expires like any other, freeing the ID.
#[pollster::test]
async fn a_record_of_the_old_layout_is_moved_to_its_group_and_keeps_its_cursor() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = Messaging::new(&store, &env).with_cleanup_index(1_000, 1_000);
    m.register("w", "s", "g").await.unwrap();
    for i in 0..3 {
        m.send_value("w", "s", "g", serde_json::json!(i))
            .await
            .unwrap();
    }
    // `old` joined at 0 and acknowledged the first message, in the old layout.
    let old = ClientRecord {
        owner: "w".into(),
        group_id: "g".into(),
        joined_after: 0,
        cursor: 1,
        registered_at_ms: T0,
        last_heartbeat_ms: T0,
        hb_bucket: T0 / 1_000,
    };
    store.set(&client_key("old"), &encode(&old)).await.unwrap();
    crate::index::HEARTBEATS
        .add(&store, T0 / 1_000, "old")
        .await
        .unwrap();

    let err = m.poll("x", "old", "g", None, 10).await.unwrap_err();
    assert_eq!(err.code, "client_owned_by_other");
    let got = m.poll("w", "old", "g", None, 10).await.unwrap();
    assert_eq!(
        got.messages.iter().map(|x| x.value()).collect::<Vec<_>>(),
        vec![serde_json::json!(1), serde_json::json!(2)]
    );
    let Lookup::Live(_, moved) = lookup(&store, "g", "old").await.unwrap() else {
        panic!("moved to its group")
    };
    assert_eq!(moved.cursor, 3);
    match read_claim(&store, "old").await.unwrap() {
        ClaimState::Held(_, claim) => {
            assert_eq!((claim.owner.as_str(), claim.group_id.as_str()), ("w", "g"))
        }
        other => panic!("{other:?}"),
    }

    // Silent past the timeout: expired like any member, and the ID is free.
    env.advance(10_000);
    m.register("w", "s", "g").await.unwrap();
    let report = Cleanup::new(&store, &env, settings()).run().await.unwrap();
    assert_eq!(report.clients_removed, 1);
    assert!(matches!(
        read_claim(&store, "old").await.unwrap(),
        ClaimState::Free(None)
    ));
    assert!(matches!(
        m.register("x", "old", "g").await,
        Ok(Registration::Created(_))
    ));
}

/// A registration that claimed an ID and died before writing its record holds it only for
/// a while: the cleanup frees it, or, should it not have run, the next registrant does.
#[pollster::test]
async fn an_abandoned_claim_is_freed() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = Messaging::new(&store, &env).with_cleanup_index(1_000, 1_000);
    let abandoned = members::Claim {
        owner: "w".into(),
        group_id: "g".into(),
        at_ms: T0,
    };
    store
        .set(&client_key("c"), &encode(&abandoned))
        .await
        .unwrap();
    // Within the grace it may be a registration under way.
    let err = m.register("x", "c", "g2").await.unwrap_err();
    assert_eq!(err.code, "client_owned_by_other");
    env.advance(members::JOIN_GRACE_MS);
    assert!(matches!(
        m.register("x", "c", "g").await,
        Ok(Registration::Created(_))
    ));
    m.send_value("x", "c", "g", serde_json::json!("mine"))
        .await
        .unwrap();
    // The registration that died cannot come back to it: its owner is refused.
    let err = m.register("w", "c", "g").await.unwrap_err();
    assert_eq!(err.code, "client_owned_by_other");
}
