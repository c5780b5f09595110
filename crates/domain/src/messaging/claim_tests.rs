//! A client ID is held by one owner, in one group, at every instant: registrations by two
//! owners, moves between groups, expiries and crashes interleaved one store call at a time
//! never leave two live member records of one client, nor a live record its claim does not
//! name. And after a crash, the ID is usable again (no registration is refused for good).

use super::members::{self, ClaimState, Lookup, Registration, lookup, read_claim};
use super::*;
use crate::env::testing::FakeEnv;
use crate::interleave::{self, Choice, SteppedStore, Task};
use crate::store::MemoryStore;

const T0: u64 = 1_800_000_000_000;
const GROUPS: [&str; 2] = ["g1", "g2"];

fn settings() -> Settings {
    Settings {
        client_timeout_ms: 5_000,
        retention_ms: 20_000,
        max_messages_per_group: 1_000,
        bucket_ms: 1_000,
        budget: 1_000,
        limits: crate::ratelimit::Limits {
            requests: crate::ratelimit::DEFAULT_REQUESTS,
            login_failures: crate::ratelimit::DEFAULT_LOGIN_FAILURES,
            user_login_failures: crate::ratelimit::DEFAULT_USER_LOGIN_FAILURES,
        },
    }
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
    for seed in 0..300u64 {
        let (backing, env) = (MemoryStore::new(), FakeEnv::at(T0));
        let store = SteppedStore::new(&backing);
        let m = Messaging::new(&store, &env).with_cleanup_index(1_000, 1_000);
        let registrar = |owner: &'static str, groups: &'static [&'static str]| {
            let m = &m;
            let task: Task<'_, ()> = Box::pin(async move {
                for g in groups {
                    // Refusals (owned by the other, expiring, contention) are allowed;
                    // the invariant is what is checked.
                    let _ = m.register(owner, "c", g).await;
                }
            });
            task
        };
        let (backing_ref, store_ref, env_ref) = (&backing, &store, &env);
        let watcher: Task<'_, ()> = Box::pin(async move {
            for _ in 0..400 {
                check(backing_ref, seed);
                let _ = store_ref.get("watch").await;
            }
        });
        let cleanup: Task<'_, ()> = Box::pin(async move {
            for _ in 0..3 {
                let _ = Cleanup::new(store_ref, env_ref, settings()).run().await;
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

        // Whatever crashed where, once leases and timeouts have passed and a cleanup has
        // run, someone registers the ID again and it works.
        env.advance(members::EXPIRY_LEASE_MS + 10_000);
        pollster::block_on(async {
            Cleanup::new(&backing, &env, settings())
                .run()
                .await
                .unwrap();
            let m = Messaging::new(&backing, &env).with_cleanup_index(1_000, 1_000);
            let again = m.register("y", "c", "g1").await;
            if again.is_err() {
                for k in backing.keys() {
                    {
                        let v = backing.get(&k).await.unwrap();
                        eprintln!(
                            "{k} = {:?}",
                            v.map(|b| String::from_utf8_lossy(&b).into_owned())
                        );
                    }
                }
            }
            assert!(
                matches!(again, Ok(Registration::Created(_))),
                "seed {seed}: {again:?}"
            );
            m.send_value("y", "c", "g1", serde_json::json!("hi"))
                .await
                .unwrap();
        });
        check(&backing, seed);
    }
}
