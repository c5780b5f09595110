use serde_json::json;

use super::members::{self, Lookup, Registration, lookup};
use super::*;
use crate::config;
use crate::env::testing::FakeEnv;
use crate::messaging::Messaging;
use crate::store::MemoryStore;

const T0: u64 = 1_800_000_000_000;
const BUCKET: u64 = 1_000;

fn settings() -> Settings {
    super::testing::short_settings(1_000)
}

fn messaging<'a>(store: &'a MemoryStore, env: &'a FakeEnv, cap: u64) -> Messaging<'a> {
    Messaging::new(store, env).with_cleanup_index(BUCKET, cap)
}

async fn registered(store: &MemoryStore) -> i64 {
    registered_clients(store).await.unwrap()
}

#[pollster::test]
async fn stale_clients_are_removed_and_live_ones_kept() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = messaging(&store, &env, 1_000);
    m.register("w", "stale", "g").await.unwrap();
    m.register("w", "live", "g").await.unwrap();
    assert_eq!(registered(&store).await, 2);
    for _ in 0..10 {
        env.advance(1_000);
        m.poll("w", "live", "g", None, 10).await.unwrap(); // heartbeats
    }
    let report = Cleanup::new(&store, &env, settings()).run().await.unwrap();
    assert_eq!(report.clients_removed, 1);
    assert!(report.complete);
    assert!(store.get(&client_key("stale")).await.unwrap().is_none());
    assert!(
        store
            .get(&member_key("g", "stale"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get(&client_key("live")).await.unwrap().is_some());
    assert!(store.get(&member_key("g", "live")).await.unwrap().is_some());
    assert_eq!(registered(&store).await, 1);
    // idempotent: a second run finds nothing more
    assert_eq!(
        Cleanup::new(&store, &env, settings()).run().await.unwrap(),
        Report {
            complete: true,
            ..Report::default()
        }
    );
    // the expired member is told so, distinct from a stranger
    let err = m.poll("w", "stale", "g", None, 10).await.unwrap_err();
    assert_eq!((err.status, err.code), (410, "client_expired"));
    let err = m.poll("w", "never", "g", None, 10).await.unwrap_err();
    assert_eq!((err.status, err.code), (404, "client_not_found"));
    // and resumes when it registers again
    assert!(matches!(
        m.register("w", "stale", "g").await,
        Ok(Registration::Resumed(_))
    ));
    assert!(store.get(&away_key("g", "stale")).await.unwrap().is_none());
}

/// A keyed send stored before its sender expired is not denied afterwards: while the
/// sender's re-registration is under way (or died after taking the ID), the retry is told
/// the sender expired (retry after registering), and after that it is the original answer.
#[pollster::test]
async fn an_expired_sender_whose_return_is_under_way_is_told_it_expired() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = messaging(&store, &env, 1_000);
    m.register("w", "s", "g").await.unwrap();
    let payload = || serde_json::value::to_raw_value(&json!("once")).unwrap();
    let sent = m.send("w", "s", "g", payload(), Some("k1")).await.unwrap();
    // Past the client timeout (5 s), within the retention (20 s).
    env.advance(6_000);
    let report = Cleanup::new(&store, &env, settings()).run().await.unwrap();
    assert_eq!(report.clients_removed, 1);
    // A registration takes the ID for the group, then dies before writing the record.
    let claim = members::Claim {
        owner: "w".into(),
        group_id: "g".into(),
        at_ms: env.now_ms(),
    };
    store.set(&client_key("s"), &encode(&claim)).await.unwrap();
    let err = m
        .send("w", "s", "g", payload(), Some("k1"))
        .await
        .unwrap_err();
    assert_eq!((err.status, err.code), (410, "client_expired"));
    // Someone else's client in the same state is still a stranger.
    let err = m
        .send("x", "s", "g", payload(), Some("k1"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "client_owned_by_other");
    env.advance(members::JOIN_GRACE_MS);
    assert!(matches!(
        m.register("w", "s", "g").await,
        Ok(Registration::Resumed(_))
    ));
    let again = m.send("w", "s", "g", payload(), Some("k1")).await.unwrap();
    assert_eq!(again.seq, sent.seq, "the retry answers the stored send");
}

#[pollster::test]
async fn work_is_bounded_and_resumes() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = messaging(&store, &env, 1_000);
    for i in 0..25 {
        m.register("w", &format!("c{i}"), "g").await.unwrap();
    }
    env.advance(10_000);
    let small = Settings {
        budget: 10,
        ..settings()
    };
    let mut removed = 0;
    let mut runs = 0;
    loop {
        let report = Cleanup::new(&store, &env, small).run().await.unwrap();
        removed += report.clients_removed;
        runs += 1;
        if report.complete {
            break;
        }
        assert!(runs < 10, "cleanup must make progress");
    }
    // 25 clients and a bucket or two of budget each run
    assert_eq!(removed, 25);
    assert!((3..=4).contains(&runs), "{runs} runs");
    assert_eq!(registered(&store).await, 0);
}

#[pollster::test]
async fn overlapping_runs_remove_each_client_once() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = messaging(&store, &env, 1_000);
    for i in 0..40 {
        m.register("w", &format!("c{i}"), "g").await.unwrap();
    }
    env.advance(10_000);
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    pollster::block_on(
                        Cleanup::new(
                            &store,
                            &env,
                            Settings {
                                budget: 7,
                                ..settings()
                            },
                        )
                        .run(),
                    )
                    .unwrap()
                    .clients_removed
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let mut rest = 0;
    for _ in 0..10 {
        rest += Cleanup::new(&store, &env, settings())
            .run()
            .await
            .unwrap()
            .clients_removed;
    }
    assert_eq!(total + rest, 40);
    assert_eq!(registered(&store).await, 0);
}

/// Runs that overlap on one group all see its old tail; under every interleaving tried, the
/// messages they report removed add up to the messages that expired, once each.
#[test]
fn overlapping_runs_count_each_expired_message_once() {
    use crate::interleave::{self, Choice, Ended, SteppedStore, Task};
    for seed in 0..200u64 {
        let (backing, env) = (MemoryStore::new(), FakeEnv::at(T0));
        let m = messaging(&backing, &env, 1_000);
        pollster::block_on(async {
            m.register("w", "s", "g").await.unwrap();
            for i in 0..9 {
                m.send_value("w", "s", "g", json!(i)).await.unwrap();
            }
        });
        env.advance(25_000);
        let store = SteppedStore::new(&backing);
        let runs: Vec<(Task<'_, Report>, bool)> = (0..3)
            .map(|_| {
                let (store, env) = (&store, &env);
                let run: Task<'_, Report> = Box::pin(async move {
                    let budget = Settings {
                        budget: 4,
                        ..settings()
                    };
                    Cleanup::new(store, env, budget).run().await.unwrap()
                });
                (run, false)
            })
            .collect();
        // A replayable pseudo-random order of steps, from the seed.
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut choices = std::iter::from_fn(|| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Some(Choice::Run((state >> 33) as usize))
        })
        .take(5_000);
        let mut removed: u64 = interleave::run(runs, &mut choices, |_| {})
            .into_iter()
            .map(|ended| match ended {
                Ended::Done(report) => report.messages_removed,
                Ended::Crashed => unreachable!("no run may crash here"),
            })
            .sum();
        // Whatever the budgets left, later runs finish.
        for _ in 0..5 {
            removed += pollster::block_on(Cleanup::new(&backing, &env, settings()).run())
                .unwrap()
                .messages_removed;
        }
        assert_eq!(
            pollster::block_on(tail(&backing, "g")).unwrap(),
            9,
            "seed {seed}: the tail"
        );
        assert_eq!(removed, 9, "seed {seed}: each expired message counted once");
        assert_eq!(pollster::block_on(tail(&backing, "g")).unwrap(), 9);
    }
}

#[pollster::test]
async fn retention_deletes_old_messages_and_readers_skip_them() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = messaging(&store, &env, 1_000);
    m.register("w", "s", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    for i in 0..5 {
        m.send_value("w", "s", "g", json!(i)).await.unwrap();
    }
    env.advance(25_000);
    m.register("w", "s", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    m.send_value("w", "s", "g", json!("fresh")).await.unwrap();
    let report = Cleanup::new(&store, &env, settings()).run().await.unwrap();
    assert_eq!(report.messages_removed, 5);
    assert_eq!(tail(&store, "g").await.unwrap(), 5);
    for seq in 1..=5 {
        assert!(store.get(&message_key("g", seq)).await.unwrap().is_none());
    }
    let got = m.poll("w", "r", "g", Some(0), 100).await.unwrap();
    assert_eq!(
        got.messages.iter().map(|x| x.value()).collect::<Vec<_>>(),
        vec![json!("fresh")]
    );
    // nothing was resurrected as a tombstone below the tail
    for seq in 1..=5 {
        assert!(store.get(&message_key("g", seq)).await.unwrap().is_none());
    }
}

#[pollster::test]
async fn a_full_backlog_refuses_sends_until_cleanup_trims_to_the_cap() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = messaging(&store, &env, 10);
    m.register("w", "s", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    // The cap plus a tenth of it are accepted...
    for i in 0..11 {
        m.send_value("w", "s", "g", json!(i)).await.unwrap();
    }
    // ...then sends are refused without taking a sequence number.
    let refused = m
        .send_value("w", "s", "g", json!("over"))
        .await
        .unwrap_err();
    assert_eq!((refused.status, refused.code), (429, "group_backlog_full"));
    assert!(refused.headers.iter().any(|(h, _)| *h == "retry-after"));
    assert_eq!(store.increment(&head_key("g"), 0).await.unwrap(), 11);
    let report = Cleanup::new(
        &store,
        &env,
        Settings {
            max_messages_per_group: 10,
            ..settings()
        },
    )
    .run()
    .await
    .unwrap();
    assert_eq!(report.messages_removed, 1);
    let got = m.poll("w", "r", "g", Some(0), 100).await.unwrap();
    assert_eq!(got.messages.first().map(|x| x.value()), Some(json!(1)));
    assert_eq!(got.messages.len(), 10);
    // Room again: the next send is accepted and delivered.
    m.send_value("w", "s", "g", json!("next")).await.unwrap();
    let got = m.poll("w", "r", "g", None, 100).await.unwrap();
    assert_eq!(got.messages.last().map(|x| x.value()), Some(json!("next")));
}

#[pollster::test]
async fn settings_come_from_configuration() {
    let src = std::collections::HashMap::from([
        (
            config::keys::CLIENT_TIMEOUT_SECONDS.to_string(),
            "2".to_string(),
        ),
        (
            config::keys::CLEANUP_BUCKET_SECONDS.to_string(),
            "1".to_string(),
        ),
    ]);
    let s = Settings::from_config(&src).unwrap();
    assert_eq!(
        (
            s.client_timeout_ms,
            s.bucket_ms,
            s.retention_ms,
            s.max_messages_per_group
        ),
        (2_000, 1_000, 86_400_000, 10_000)
    );
    let bad = std::collections::HashMap::from([(
        config::keys::CLEANUP_BATCH.to_string(),
        "0".to_string(),
    )]);
    assert_eq!(Settings::from_config(&bad).unwrap_err().status, 500);
}

#[pollster::test]
async fn a_record_claimed_by_an_interrupted_run_is_expired_and_the_next_run_finishes() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = messaging(&store, &env, 1_000);
    m.register("w", "c", "g").await.unwrap();
    let Lookup::Live(_, record) = lookup(&store, "g", "c").await.unwrap() else {
        panic!("registered")
    };
    // a run claimed the record and died before moving it away
    store
        .set(&member_key("g", "c"), &members::expiring(&record, T0))
        .await
        .unwrap();
    let err = m.poll("w", "c", "g", None, 10).await.unwrap_err();
    assert_eq!((err.status, err.code), (410, "client_expired"));
    // registration does not write over a claim: it is told to retry
    let err = m.register("w", "c", "g").await.unwrap_err();
    assert_eq!((err.status, err.code), (503, "client_expiring"));
    // another run respects the claim while its lease holds, then takes it over
    env.advance(10_000);
    Cleanup::new(&store, &env, settings()).run().await.unwrap();
    assert_eq!(
        m.register("w", "c", "g").await.unwrap_err().code,
        "client_expiring"
    );
    env.advance(members::EXPIRY_LEASE_MS);
    Cleanup::new(&store, &env, settings()).run().await.unwrap();
    assert!(store.get(&client_key("c")).await.unwrap().is_none());
    assert!(store.get(&member_key("g", "c")).await.unwrap().is_none());
    assert!(matches!(
        m.register("w", "c", "g").await,
        Ok(Registration::Resumed(_))
    ));
    assert!(m.poll("w", "c", "g", None, 10).await.is_ok());
}

#[pollster::test]
async fn refilled_rate_limit_buckets_are_deleted_and_busy_ones_kept() {
    use crate::ratelimit::{Limiter, Policy, Scope};
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let policy = Policy {
        burst: 2,
        refill_ms: 1_000,
    };
    let limits = crate::ratelimit::Limits {
        requests: policy,
        login_failures: policy,
        user_login_failures: policy,
    };
    Limiter::new(&store, T0, BUCKET)
        .take(Scope::Address, "1.1.1.1", policy)
        .await
        .unwrap();
    Limiter::new(&store, T0, BUCKET)
        .take(Scope::Subject, "wendy", policy)
        .await
        .unwrap();
    env.advance(2_500);
    // Wendy keeps going; the address goes quiet.
    Limiter::new(&store, env.now_ms(), BUCKET)
        .take(Scope::Subject, "wendy", policy)
        .await
        .unwrap();
    let run = async || {
        let with_limits = Settings {
            limits,
            ..settings()
        };
        Cleanup::new(&store, &env, with_limits)
            .run()
            .await
            .unwrap()
            .rate_limits_removed
    };
    assert_eq!(run().await, 1);
    assert!(store.get("ratelimit/addr/1.1.1.1").await.unwrap().is_none());
    assert!(store.get("ratelimit/sub/wendy").await.unwrap().is_some());
    env.advance(5_000);
    assert_eq!(run().await, 1);
    assert!(store.get("ratelimit/sub/wendy").await.unwrap().is_none());
}

#[pollster::test]
async fn retention_waits_for_a_send_in_flight_and_its_late_write_is_delivered() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let m = messaging(&store, &env, 1_000);
    m.register("w", "s", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    for i in 0..3 {
        m.send_value("w", "s", "g", json!(i)).await.unwrap();
    }
    env.advance(25_000);
    m.register("w", "s", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    // A sender has taken number 4 and not written it yet; a later message is young.
    let seq = m.allocate("g").await.unwrap();
    let fresh = m.send_value("w", "s", "g", json!("fresh")).await.unwrap();
    assert_eq!((seq, fresh.seq), (4, 5));
    let report = Cleanup::new(&store, &env, settings()).run().await.unwrap();
    assert_eq!(
        report.messages_removed, 3,
        "the old ones go, the slot in flight stays"
    );
    assert_eq!(tail(&store, "g").await.unwrap(), 3);
    let late = StoredMessage {
        message_id: "late".into(),
        seq,
        sender_id: "s".into(),
        group_id: "g".into(),
        payload: super::testing::raw(json!("late")),
        timestamp_ms: env.now_ms(),
    };
    assert!(
        m.publish(&late, None).await.unwrap(),
        "the late write lands"
    );
    let got = m.poll("w", "r", "g", Some(0), 100).await.unwrap();
    assert_eq!(
        got.messages.iter().map(|x| x.value()).collect::<Vec<_>>(),
        vec![json!("late"), json!("fresh")]
    );
    assert_eq!(got.missed.map(|x| x.last_seq), Some(3));
}

/// Senders that took every place up to the backlog limit and died before writing leave no
/// later message to date their numbers by, and every new send is refused: the cleanup dates
/// the gap itself when it first meets it and seals it once the grace has passed, so the
/// group takes sends again, and its readers get past the gap.
async fn dead_senders_at_the_backlog_limit(group_local: bool) {
    const CAP: u64 = 4;
    let (backing, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let view = super::testing::ObjectStore::group(&backing, "g");
    let store: &dyn crate::store::KvStore = if group_local { &view } else { &backing };
    let m = Messaging::new(store, &env).with_cleanup_index(BUCKET, CAP);
    let cleanup = async || {
        let cleanup = Cleanup::new(store, &env, super::testing::short_settings(CAP));
        match group_local {
            true => cleanup.group("g").await.unwrap().report,
            false => cleanup.run().await.unwrap(),
        }
    };
    m.register("w", "s", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    m.send_value("w", "s", "g", json!("before")).await.unwrap();
    // Five senders take numbers 2..=6 (the limit: cap + a tenth) and die.
    store.increment(&head_key("g"), 5).await.unwrap();
    let err = m.send_value("w", "s", "g", json!("x")).await.unwrap_err();
    assert_eq!(err.code, "group_backlog_full");
    let first = cleanup().await;
    assert!(
        !first.complete,
        "a gap met for the first time may be a send in flight"
    );
    env.advance(GAP_GRACE_MS);
    for c in ["s", "r"] {
        m.register("w", c, "g").await.unwrap();
    }
    let second = cleanup().await;
    assert!(second.complete, "{second:?}");
    if group_local {
        // Its retention pass sealed the whole gap: the note goes with it.
        assert!(store.get(&gap_key("g")).await.unwrap().is_none());
    }
    let sent = m.send_value("w", "s", "g", json!("after")).await.unwrap();
    assert_eq!(sent.seq, 7);
    // Readers seal what is left of the gap once a later message is past the grace. Slots
    // count against the cap, so "before" was trimmed, and the reader is told so.
    env.advance(GAP_GRACE_MS);
    m.register("w", "r", "g").await.unwrap();
    let got = m.poll("w", "r", "g", None, 10).await.unwrap();
    let values: Vec<_> = got.messages.iter().map(|m| m.value()).collect();
    assert_eq!(values, [json!("after")], "{got:?}");
    assert_eq!(got.missed.map(|m| m.first_seq), Some(1));
}

#[pollster::test]
async fn dead_senders_at_the_backlog_limit_do_not_wedge_the_group() {
    dead_senders_at_the_backlog_limit(false).await;
}

#[pollster::test]
async fn dead_senders_at_the_backlog_limit_do_not_wedge_a_group_that_cleans_itself_up() {
    dead_senders_at_the_backlog_limit(true).await;
}
