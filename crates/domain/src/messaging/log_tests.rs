use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;

use super::log::*;
use super::members::*;
use super::testing::raw;
use super::*;
use crate::env::testing::FakeEnv;
use crate::store::MemoryStore;
use serde_json::Value;

const T0: u64 = 1_800_000_000_000;

fn setup() -> (MemoryStore, FakeEnv) {
    (MemoryStore::new(), FakeEnv::at(T0))
}

fn payloads(r: &Received) -> Vec<Value> {
    r.messages.iter().map(|m| m.value()).collect()
}

#[pollster::test]
async fn register_creates_then_refreshes_the_heartbeat() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    assert!(matches!(
        m.register("alice", "c1", "g").await,
        Ok(Registration::Created(_))
    ));
    env.advance(5_000);
    match m.register("alice", "c1", "g").await.unwrap() {
        Registration::Refreshed(r) => {
            assert_eq!(r.last_heartbeat_ms, T0 + 5_000);
            assert_eq!(r.registered_at_ms, T0);
        }
        other => panic!("{other:?}"),
    }
}

#[pollster::test]
async fn a_client_belongs_to_its_first_registrant() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("alice", "c1", "g").await.unwrap();
    let err = m.register("bob", "c1", "g").await.unwrap_err();
    assert_eq!((err.status, err.code), (403, "client_owned_by_other"));
    let err = m
        .send_value("bob", "c1", "g", json!("x"))
        .await
        .unwrap_err();
    assert_eq!(err.status, 403);
    let err = m.poll("bob", "c1", "g", None, 10).await.unwrap_err();
    assert_eq!(err.status, 403);
}

#[pollster::test]
async fn invalid_ids_are_400() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    assert_eq!(
        m.register("a", "bad id", "g").await.unwrap_err().status,
        400
    );
    assert_eq!(
        m.register("a", "c", "g/../x").await.unwrap_err().status,
        400
    );
    assert_eq!(
        m.send_value("a", "c", "", json!(1))
            .await
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        m.poll("a", &"c".repeat(129), "g", None, 1)
            .await
            .unwrap_err()
            .status,
        400
    );
    assert!(store.is_empty());
}

#[pollster::test]
async fn send_needs_a_registered_member_of_the_group() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    let err = m
        .send_value("alice", "ghost", "g", json!("x"))
        .await
        .unwrap_err();
    assert_eq!((err.status, err.code), (404, "client_not_found"));
    m.register("alice", "c1", "a").await.unwrap();
    let err = m
        .send_value("alice", "c1", "b", json!("x"))
        .await
        .unwrap_err();
    assert_eq!((err.status, err.code), (403, "not_in_group"));
    let err = m.poll("alice", "c1", "b", None, 10).await.unwrap_err();
    assert_eq!((err.status, err.code), (403, "not_in_group"));
}

#[pollster::test]
async fn members_receive_each_others_messages_but_not_their_own() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("alice", "a", "g").await.unwrap();
    m.register("bob", "b", "g").await.unwrap();
    let sent = m
        .send_value("alice", "a", "g", json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(sent.seq, 1);
    m.send_value("bob", "b", "g", json!("from b"))
        .await
        .unwrap();

    let for_b = m.poll("bob", "b", "g", None, 100).await.unwrap();
    assert_eq!(payloads(&for_b), vec![json!({"n": 1})]);
    assert_eq!(for_b.messages[0].sender_id, "a");
    assert_eq!(for_b.next_after, 2);
    let for_a = m.poll("alice", "a", "g", None, 100).await.unwrap();
    assert_eq!(payloads(&for_a), vec![json!("from b")]);

    // simple polls advanced the stored cursors: nothing is redelivered
    assert!(
        m.poll("bob", "b", "g", None, 100)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    assert!(
        m.poll("alice", "a", "g", None, 100)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
}

#[pollster::test]
async fn a_client_sees_only_messages_sent_after_it_joined() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("alice", "a", "g").await.unwrap();
    m.send_value("alice", "a", "g", json!("early"))
        .await
        .unwrap();
    m.register("bob", "b", "g").await.unwrap();
    m.send_value("alice", "a", "g", json!("late"))
        .await
        .unwrap();
    let got = m.poll("bob", "b", "g", Some(0), 100).await.unwrap();
    assert_eq!(payloads(&got), vec![json!("late")]);
}

#[pollster::test]
async fn moving_to_another_group_starts_fresh_there() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("alice", "a", "g1").await.unwrap();
    m.register("alice", "a2", "g2").await.unwrap();
    m.send_value("alice", "a2", "g2", json!("before move"))
        .await
        .unwrap();
    assert!(matches!(
        m.register("alice", "a", "g2").await,
        Ok(Registration::Refreshed(_))
    ));
    m.send_value("alice", "a2", "g2", json!("after move"))
        .await
        .unwrap();
    assert_eq!(
        m.send_value("alice", "a", "g1", json!(1))
            .await
            .unwrap_err()
            .code,
        "not_in_group"
    );
    let got = m.poll("alice", "a", "g2", None, 10).await.unwrap();
    assert_eq!(payloads(&got), vec![json!("after move")]);
}

async fn members(store: &MemoryStore, group: &str) -> Vec<String> {
    store
        .get(&members_key(group))
        .await
        .unwrap()
        .map(|b| serde_json::from_slice::<Vec<members::Member>>(&b).unwrap())
        .unwrap_or_default()
        .iter()
        .map(|m| m.id().to_owned())
        .collect()
}

#[pollster::test]
async fn a_full_group_refuses_new_members_but_not_its_own() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env).with_max_clients(2);
    m.register("alice", "a", "g").await.unwrap();
    m.register("alice", "b", "g").await.unwrap();
    let full = m.register("alice", "c", "g").await.unwrap_err();
    assert_eq!((full.status, full.code), (409, "group_full"));
    assert!(store.get(&client_key("c")).await.unwrap().is_none());
    // Members still refresh, and other groups are unaffected.
    assert!(matches!(
        m.register("alice", "a", "g").await,
        Ok(Registration::Refreshed(_))
    ));
    m.register("alice", "c", "other").await.unwrap();
    // Moving out makes room; the list follows the move.
    m.register("alice", "b", "other").await.unwrap();
    assert_eq!(members(&store, "g").await, vec!["a"]);
    assert_eq!(members(&store, "other").await, vec!["c", "b"]);
    m.register("alice", "d", "g").await.unwrap();
    assert_eq!(members(&store, "g").await, vec!["a", "d"]);
}

#[pollster::test]
async fn a_full_member_list_drops_members_whose_record_is_gone() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env).with_max_clients(2);
    m.register("alice", "a", "g").await.unwrap();
    m.register("alice", "b", "g").await.unwrap();
    // As if a register died after joining the list, or an expiry after deleting the record.
    store.delete(&member_key("g", "a")).await.unwrap();
    // Until the grace has passed, the entry may be a registration still under way.
    let full = m.register("alice", "c", "g").await.unwrap_err();
    assert_eq!(full.code, "group_full");
    env.advance(JOIN_GRACE_MS);
    m.register("alice", "c", "g").await.unwrap();
    assert_eq!(members(&store, "g").await, vec!["b", "c"]);
}

#[pollster::test]
async fn after_acknowledges_and_survives_a_lost_response() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("w", "s", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    for i in 0..5 {
        m.send_value("w", "s", "g", json!(i)).await.unwrap();
    }
    let first = m.poll("w", "r", "g", Some(0), 2).await.unwrap();
    assert_eq!(payloads(&first), vec![json!(0), json!(1)]);
    // the response was "lost": asking again with the same `after` redelivers
    let again = m.poll("w", "r", "g", Some(0), 2).await.unwrap();
    assert_eq!(again, first);
    let next = m
        .poll("w", "r", "g", Some(first.next_after), 10)
        .await
        .unwrap();
    assert_eq!(payloads(&next), vec![json!(2), json!(3), json!(4)]);
    let done = m
        .poll("w", "r", "g", Some(next.next_after), 10)
        .await
        .unwrap();
    assert!(done.messages.is_empty());
    assert_eq!(done.next_after, 5);
    // an acknowledgement beyond the head is clamped: later messages are not skipped
    let far = m.poll("w", "r", "g", Some(1_000), 10).await.unwrap();
    assert_eq!(far.next_after, 5);
    m.send_value("w", "s", "g", json!(5)).await.unwrap();
    assert_eq!(
        payloads(&m.poll("w", "r", "g", None, 10).await.unwrap()),
        vec![json!(5)]
    );
}

#[pollster::test]
async fn limit_caps_the_batch_and_own_messages_are_acknowledged_silently() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("w", "a", "g").await.unwrap();
    m.register("w", "b", "g").await.unwrap();
    for i in 0..3 {
        m.send_value("w", "a", "g", json!(i)).await.unwrap();
        m.send_value("w", "b", "g", json!(format!("own {i}")))
            .await
            .unwrap();
    }
    let got = m.poll("w", "b", "g", Some(0), 2).await.unwrap();
    assert_eq!(payloads(&got), vec![json!(0), json!(1)]);
    assert_eq!(got.next_after, 3);
    let rest = m.poll("w", "b", "g", Some(3), 10).await.unwrap();
    assert_eq!(payloads(&rest), vec![json!(2)]);
    assert_eq!(rest.next_after, 6);
}

#[pollster::test]
async fn receiving_is_a_heartbeat() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("w", "a", "g").await.unwrap();
    env.advance(60_000);
    m.poll("w", "a", "g", None, 10).await.unwrap();
    let Lookup::Live(_, rec) = lookup(&store, "g", "a").await.unwrap() else {
        panic!("a is registered")
    };
    assert_eq!(rec.last_heartbeat_ms, T0 + 60_000);
}

#[pollster::test]
async fn an_in_flight_send_holds_back_later_messages_until_written() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("w", "s1", "g").await.unwrap();
    m.register("w", "s2", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    // s1 has taken number 1 but not written it yet; s2 completes number 2.
    let seq1 = m.allocate("g").await.unwrap();
    m.send_value("w", "s2", "g", json!("second")).await.unwrap();
    let early = m.poll("w", "r", "g", None, 10).await.unwrap();
    assert!(
        early.messages.is_empty(),
        "must not skip the in-flight slot"
    );
    assert_eq!(early.next_after, 0);
    let msg = StoredMessage {
        message_id: "m1".into(),
        seq: seq1,
        sender_id: "s1".into(),
        group_id: "g".into(),
        payload: raw(json!("first")),
        timestamp_ms: env.now_ms(),
    };
    assert!(m.publish(&msg, None).await.unwrap());
    let got = m.poll("w", "r", "g", None, 10).await.unwrap();
    assert_eq!(payloads(&got), vec![json!("first"), json!("second")]);
}

#[pollster::test]
async fn an_abandoned_slot_is_sealed_after_the_grace_period_and_a_late_sender_retries() {
    let (store, env) = setup();
    let m = Messaging::new(&store, &env);
    m.register("w", "s", "g").await.unwrap();
    m.register("w", "r", "g").await.unwrap();
    let dead = m.allocate("g").await.unwrap();
    m.send_value("w", "s", "g", json!("after the gap"))
        .await
        .unwrap();
    assert!(
        m.poll("w", "r", "g", Some(0), 10)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    env.advance(GAP_GRACE_MS);
    let got = m.poll("w", "r", "g", Some(0), 10).await.unwrap();
    assert_eq!(payloads(&got), vec![json!("after the gap")]);
    assert_eq!(got.next_after, 2);
    // the slow sender wakes up: its slot is sealed, so its write is refused...
    let late = StoredMessage {
        message_id: "late".into(),
        seq: dead,
        sender_id: "s".into(),
        group_id: "g".into(),
        payload: raw(json!("late")),
        timestamp_ms: env.now_ms(),
    };
    assert!(!m.publish(&late, None).await.unwrap());
    // ...and a full send retries on a fresh number, so nothing is lost.
    let resent = m.send_value("w", "s", "g", json!("late")).await.unwrap();
    assert_eq!(resent.seq, 3);
    assert_eq!(
        payloads(&m.poll("w", "r", "g", Some(2), 10).await.unwrap()),
        vec![json!("late")]
    );
}

#[pollster::test]
async fn concurrent_senders_deliver_every_message_exactly_once_in_sender_order() {
    const SENDERS: usize = 6;
    const PER_SENDER: usize = 150;
    const RECEIVERS: usize = 3;
    let store = Arc::new(MemoryStore::new());
    let env = Arc::new(crate::env::SystemEnv);
    let m = Messaging::new(store.as_ref(), env.as_ref());
    for r in 0..RECEIVERS {
        m.register("w", &format!("r{r}"), "g").await.unwrap();
    }
    for s in 0..SENDERS {
        m.register("w", &format!("s{s}"), "g").await.unwrap();
    }
    std::thread::scope(|scope| {
        let mut receivers = Vec::new();
        for s in 0..SENDERS {
            let (store, env) = (store.clone(), env.clone());
            scope.spawn(move || {
                let m = Messaging::new(store.as_ref(), env.as_ref());
                for i in 0..PER_SENDER {
                    pollster::block_on(m.send_value("w", &format!("s{s}"), "g", json!([s, i])))
                        .unwrap();
                }
            });
        }
        for r in 0..RECEIVERS {
            let (store, env) = (store.clone(), env.clone());
            receivers.push(scope.spawn(move || {
                let m = Messaging::new(store.as_ref(), env.as_ref());
                let mut after = 0;
                let mut got = Vec::new();
                // bounded: each round either makes progress or the senders are still running
                for _ in 0..1_000_000 {
                    let batch =
                        pollster::block_on(m.poll("w", &format!("r{r}"), "g", Some(after), 7))
                            .unwrap();
                    after = batch.next_after;
                    got.extend(batch.messages.into_iter().map(|m| m.value()));
                    if got.len() >= SENDERS * PER_SENDER {
                        break;
                    }
                    std::thread::yield_now();
                }
                got
            }));
        }
        for handle in receivers {
            let got = handle.join().unwrap();
            assert_eq!(
                got.len(),
                SENDERS * PER_SENDER,
                "exactly once: no loss, no duplicate"
            );
            let mut next_expected: HashMap<u64, u64> = HashMap::new();
            for p in got {
                let (s, i) = (p[0].as_u64().unwrap(), p[1].as_u64().unwrap());
                let expected = next_expected.entry(s).or_insert(0);
                assert_eq!(i, *expected, "sender {s} out of order");
                *expected += 1;
            }
        }
    });
}

/// One step of a randomly interleaved schedule.
#[derive(Debug, Clone)]
enum Step {
    Allocate(usize),
    Publish(usize),
    Poll(usize, usize),
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize).prop_map(Step::Allocate),
        (0..3usize).prop_map(Step::Publish),
        (0..2usize, 1..5usize).prop_map(|(r, l)| Step::Poll(r, l)),
        Just(Step::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Model check of the log: senders split into allocate/publish steps (so sends are in
    /// flight while others complete, and some never finish), receivers poll with `after`,
    /// time passes. Every published message reaches every receiver exactly once, in each
    /// sender's order, and nothing unpublished is delivered.
    #[test]
    fn interleaved_sends_and_polls_never_lose_or_duplicate(steps in prop::collection::vec(step(), 1..80)) {
        pollster::block_on(async {
        let (store, env) = setup();
        let m = Messaging::new(&store, &env);
        for r in 0..2 { m.register("w", &format!("r{r}"), "g").await.unwrap(); }
        for s in 0..3 { m.register("w", &format!("s{s}"), "g").await.unwrap(); }
        let mut pending: Vec<Option<u64>> = vec![None; 3];
        let mut counters = [0u64; 3];
        let mut published: Vec<(usize, u64)> = Vec::new();
        let mut after = [0u64; 2];
        let mut got: Vec<Vec<(usize, u64)>> = vec![Vec::new(), Vec::new()];
        let poll = async |m: &Messaging, r: usize, limit: usize, got: &mut Vec<Vec<(usize, u64)>>, after: &mut [u64; 2]| {
            let batch = m.poll("w", &format!("r{r}"), "g", Some(after[r]), limit).await.unwrap();
            after[r] = batch.next_after;
            got[r].extend(batch.messages.iter().map(|msg| (msg.value()[0].as_u64().unwrap() as usize, msg.value()[1].as_u64().unwrap())));
        };
        for step in steps {
            match step {
                Step::Allocate(s) if pending[s].is_none() => pending[s] = Some(m.allocate("g").await.unwrap()),
                Step::Allocate(_) => {}
                Step::Publish(s) => if let Some(seq) = pending[s].take() {
                    let msg = StoredMessage {
                        message_id: format!("{s}-{}", counters[s]),
                        seq,
                        sender_id: format!("s{s}"),
                        group_id: "g".into(),
                        payload: raw(json!([s, counters[s]])),
                        timestamp_ms: env.now_ms(),
                    };
                    if m.publish(&msg, None).await.unwrap() {
                        published.push((s, counters[s]));
                        counters[s] += 1;
                    }
                },
                Step::Poll(r, limit) => poll(&m, r, limit, &mut got, &mut after).await,
                Step::Tick => env.advance(GAP_GRACE_MS / 2),
            }
        }
        // Drain: abandoned slots get sealed once the grace period has passed.
        env.advance(GAP_GRACE_MS * 2);
        for r in 0..2 {
            for _ in 0..200 { poll(&m, r, 5, &mut got, &mut after).await; }
            let mut delivered = got[r].clone();
            for (s, count) in counters.iter().enumerate() {
                let from_s: Vec<u64> = delivered.iter().filter(|(x, _)| *x == s).map(|(_, i)| *i).collect();
                prop_assert_eq!(from_s, (0..*count).collect::<Vec<_>>());
            }
            delivered.sort();
            let mut expected = published.clone();
            expected.sort();
            prop_assert_eq!(delivered, expected);
        }
        Ok::<(), TestCaseError>(())
        })?;
    }
}
