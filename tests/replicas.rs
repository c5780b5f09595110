//! Beyond one machine: three `mcp-edge up --kv redis://…` replicas share one throwaway
//! redis-server on loopback, and requests go round-robin across them, as behind a load
//! balancer. The scenarios: the full flow; eight senders and two receivers on different
//! replicas (exactly once, in per-sender order); cleanup on every replica at once; a group's
//! member limit under contention across processes; a replica killed mid-load; Redis itself
//! killed and restarted mid-load (with `appendfsync always`, nothing acknowledged is lost).

// Indexes pair replicas, groups and cursors up (group g on replica g): clearer as numbers.
#![allow(clippy::needless_range_loop)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, RedisServer, Reply, Server, server};

/// `n` replicas on `redis`, each with its own data directory, the same secrets and users.
fn replicas(redis: &RedisServer, n: usize, envs: &[(&str, &str)]) -> Vec<Server> {
    (0..n)
        .map(|_| {
            let mut b = server("spin.toml")
                .arg("--kv")
                .arg(&redis.url())
                .arg("--cleanup-schedule")
                .arg("off");
            for (k, v) in envs {
                b = b.env(k, v);
            }
            b.start()
        })
        .collect()
}

/// Clients of the replicas' addresses (they outlive a replica that is killed).
fn clients(servers: &[Server]) -> Vec<Client> {
    servers
        .iter()
        .map(|s| Client::new(s.base.clone()))
        .collect()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `POST /mcp/send` of `payload` under `Idempotency-Key: key`.
fn send_once(
    c: &Client,
    token: &str,
    sender: &str,
    group: &str,
    payload: &Value,
    key: &str,
) -> Result<Reply, String> {
    let auth = bearer(token);
    let body = json!({"sender_id": sender, "group_id": group, "payload": payload}).to_string();
    c.try_request(
        "POST",
        "/mcp/send",
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("idempotency-key", key),
        ],
        Some(body.as_bytes()),
    )
}

/// Receives through replicas in turn (skipping any that is gone) until `want` messages have
/// arrived or the deadline passes; returns the payloads in the order they came.
fn drain(
    cs: &[Client],
    token: &str,
    client: &str,
    group: &str,
    want: usize,
    stop: Option<&AtomicBool>,
) -> Vec<Value> {
    let auth = bearer(token);
    let mut after = 0u64;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut turn = 0;
    while got.len() < want && Instant::now() < deadline {
        turn += 1;
        let c = &cs[turn % cs.len()];
        let path = format!("/mcp/receive?client_id={client}&group_id={group}&after={after}");
        let Ok(r) = c.try_request("GET", &path, &[("authorization", &auth)], None) else {
            continue;
        };
        if r.status != 200 {
            // 503 while the store is away is fine; anything else is not.
            assert_eq!(r.status, 503, "receive: {}", r.text());
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let body = r.json();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) && want == usize::MAX {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        got.extend(messages.into_iter().map(|m| m["payload"].clone()));
        after = body["next_after"].as_u64().expect("next_after");
    }
    got
}

/// Each sender's messages, exactly once and in the order sent.
fn assert_exactly_once_in_order(got: &[Value], senders: usize, per_sender: u64) {
    let mut seen = HashSet::new();
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for p in got {
        let (s, i) = (
            p[0].as_u64().expect("sender"),
            p[1].as_u64().expect("index"),
        );
        assert!(seen.insert((s, i)), "delivered twice: {p}");
        if let Some(prev) = last.insert(s, i) {
            assert!(prev < i, "sender {s}: {i} came after {prev}");
        }
    }
    assert_eq!(
        seen.len() as u64,
        senders as u64 * per_sender,
        "every message, once"
    );
}

#[test]
fn the_flow_works_through_any_replica() {
    let redis = RedisServer::start();
    let rs = replicas(&redis, 3, &[]);
    let login = rs[0].post_json(
        "/login",
        None,
        &json!({"username": "wendy", "password": "wendy-pw"}),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["access_token"].as_str().unwrap().to_owned();
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(rs[1].register(&token, "a", "g").status, 201);
    assert_eq!(rs[2].register(&token, "b", "g").status, 201);
    assert_eq!(
        rs[0].send(&token, "a", "g", json!("hello from 0")).status,
        202
    );
    assert_eq!(
        rs[1].send(&token, "a", "g", json!("hello from 1")).status,
        202
    );
    let got = rs[2].receive(&token, "b", "g", Some(0)).json();
    let payloads: Vec<&Value> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["payload"])
        .collect();
    assert_eq!(payloads, [&json!("hello from 0"), &json!("hello from 1")]);
    // Acknowledged through one replica, the cursor is where the others go on.
    let acked = rs[1].receive(&token, "b", "g", Some(2)).json();
    assert_eq!(acked["messages"], json!([]), "{acked}");
    assert_eq!(rs[2].send(&token, "a", "g", json!("third")).status, 202);
    let next = rs[0].receive(&token, "b", "g", None).json();
    let payloads: Vec<&Value> = next["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["payload"])
        .collect();
    assert_eq!(payloads, [&json!("third")], "{next}");
    // A refresh token issued by one replica is rotated by another, and only once.
    let rotated = rs[1].post_json("/token/refresh", None, &json!({"refresh_token": refresh}));
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let again = rs[2].post_json("/token/refresh", None, &json!({"refresh_token": refresh}));
    assert_eq!(
        again.status, 401,
        "a rotated refresh token is spent everywhere"
    );
    for r in &rs {
        assert_eq!(r.get("/health/ready", &[]).status, 200);
    }
}

#[test]
fn eight_senders_and_two_receivers_on_different_replicas_get_every_message_once_in_order() {
    const SENDERS: usize = 8;
    const PER_SENDER: u64 = 200;
    let redis = RedisServer::start();
    let rs = replicas(&redis, 3, &[]);
    let cs = clients(&rs);
    let token = rs[0].token("wendy");
    for r in 0..2 {
        assert_eq!(
            rs[r].register(&token, &format!("r{r}"), "crowd").status,
            201
        );
    }
    for s in 0..SENDERS {
        assert_eq!(
            rs[s % 3].register(&token, &format!("s{s}"), "crowd").status,
            201
        );
    }
    std::thread::scope(|scope| {
        for s in 0..SENDERS {
            let (cs, token) = (&cs, &token);
            scope.spawn(move || {
                for i in 0..PER_SENDER {
                    // Each message through the next replica.
                    let c = &cs[(s + i as usize) % 3];
                    let r = send_once(
                        c,
                        token,
                        &format!("s{s}"),
                        "crowd",
                        &json!([s, i]),
                        &format!("{s}-{i}"),
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(r.status, 202, "{}", r.text());
                }
            });
        }
        let receivers: Vec<_> = (0..2)
            .map(|r| {
                let (cs, token) = (&cs, &token);
                scope.spawn(move || {
                    // Receiver r polls through the replicas the senders use least at that
                    // moment: all of them, in a different rotation.
                    let order: Vec<Client> = (0..3)
                        .map(|k| Client::new(cs[(k + r + 1) % 3].base.clone()))
                        .collect();
                    drain(
                        &order,
                        token,
                        &format!("r{r}"),
                        "crowd",
                        SENDERS * PER_SENDER as usize,
                        None,
                    )
                })
            })
            .collect();
        for receiver in receivers {
            let got = receiver.join().expect("receiver");
            assert_exactly_once_in_order(&got, SENDERS, PER_SENDER);
        }
    });
}

#[test]
fn cleanup_on_every_replica_at_once_removes_each_item_once_and_nothing_live() {
    const STALE: usize = 12;
    const OLD: usize = 20;
    let redis = RedisServer::start();
    let short = [
        // Margins for a loaded machine: a live member's heartbeat comes well within its
        // timeout, and the rounds end long before a fresh message expires.
        ("SPIN_VARIABLE_CLIENT_TIMEOUT_SECONDS", "4"),
        ("SPIN_VARIABLE_MESSAGE_RETENTION_SECONDS", "9"),
        ("SPIN_VARIABLE_CLEANUP_BUCKET_SECONDS", "1"),
    ];
    let rs = replicas(&redis, 3, &short);
    let token = rs[0].token("wendy");
    let admin = rs[0].token("admin");
    for c in 0..STALE {
        assert_eq!(
            rs[c % 3]
                .register(&token, &format!("stale{c}"), &format!("g{}", c % 3))
                .status,
            201
        );
    }
    for g in 0..3 {
        let group = format!("g{g}");
        assert_eq!(
            rs[g].register(&token, &format!("live{g}"), &group).status,
            201
        );
    }
    for i in 0..OLD {
        let g = i % 3;
        assert_eq!(
            rs[i % 3]
                .send(
                    &token,
                    &format!("live{g}"),
                    &format!("g{g}"),
                    json!({"old": i})
                )
                .status,
            202
        );
    }
    // Past the client timeout and the retention; the live members keep their heartbeat.
    // Cleanup takes a message only once the whole index bucket it was listed under (the
    // one of its send) lies beyond the retention, and a run takes only buckets before the
    // current one: up to two buckets past the retention.
    let mut cursors = [0u64; 3];
    let until = Instant::now() + Duration::from_millis(9_000 + 2 * 1_000 + 700);
    while Instant::now() < until {
        for g in 0..3 {
            let r = rs[g].receive(
                &token,
                &format!("live{g}"),
                &format!("g{g}"),
                Some(cursors[g]),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            cursors[g] = r.json()["next_after"].as_u64().unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for g in 0..3 {
        assert_eq!(
            rs[g]
                .send(
                    &token,
                    &format!("live{g}"),
                    &format!("g{g}"),
                    json!({"fresh": g})
                )
                .status,
            202
        );
    }
    // Cleanup runs on all three replicas at once, round after round, until a round finds
    // nothing left.
    // The fresh messages have nine seconds to live: the rounds end well before.
    let totals = Mutex::new((0u64, 0u64));
    for _round in 0..4 {
        std::thread::scope(|scope| {
            for r in &rs {
                let (admin, totals) = (&admin, &totals);
                scope.spawn(move || {
                    let ran = r.post_json("/admin/cleanup", Some(admin), &json!({}));
                    assert_eq!(ran.status, 200, "{}", ran.text());
                    let body = ran.json();
                    let mut t = totals.lock().unwrap();
                    t.0 += body["clients_removed"].as_u64().unwrap();
                    t.1 += body["messages_removed"].as_u64().unwrap();
                });
            }
        });
        for g in 0..3 {
            let r = rs[(g + 1) % 3].receive(
                &token,
                &format!("live{g}"),
                &format!("g{g}"),
                Some(cursors[g]),
            );
            assert_eq!(r.status, 200, "a live member is kept: {}", r.text());
        }
    }
    let (clients, messages) = *totals.lock().unwrap();
    assert_eq!(
        clients, STALE as u64,
        "each stale client removed once, no live one"
    );
    // The fresh messages (three more) are not among them.
    assert_eq!(
        messages, OLD as u64,
        "each expired message removed once, no live one"
    );
    for c in 0..STALE {
        let gone = rs[0].receive(
            &token,
            &format!("stale{c}"),
            &format!("g{}", c % 3),
            Some(0),
        );
        assert!(
            matches!(gone.status, 404 | 410),
            "stale{c}: {}",
            gone.text()
        );
    }
}

#[test]
fn a_groups_member_limit_holds_under_contention_across_replicas() {
    const LIMIT: usize = 10;
    const TRIES: usize = 36;
    let redis = RedisServer::start();
    let rs = replicas(&redis, 3, &[("SPIN_VARIABLE_MAX_CLIENTS_PER_GROUP", "10")]);
    let cs = clients(&rs);
    let token = rs[0].token("wendy");
    let joined = Mutex::new(Vec::new());
    let start = std::sync::Barrier::new(TRIES);
    std::thread::scope(|scope| {
        for c in 0..TRIES {
            let (cs, token, joined, start) = (&cs, &token, &joined, &start);
            scope.spawn(move || {
                let client = format!("c{c}");
                start.wait();
                let r = cs[c % 3]
                    .try_request(
                        "POST",
                        "/mcp/register",
                        &[
                            ("content-type", "application/json"),
                            ("authorization", &bearer(token)),
                        ],
                        Some(
                            json!({"client_id": client, "group_id": "small"})
                                .to_string()
                                .as_bytes(),
                        ),
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                if r.status == 201 {
                    joined.lock().unwrap().push(client);
                } else {
                    assert_eq!(
                        (r.status, r.error_code().as_str()),
                        (409, "group_full"),
                        "{client}"
                    );
                }
            });
        }
    });
    let joined = joined.into_inner().unwrap();
    assert_eq!(joined.len(), LIMIT, "exactly the limit joined: {joined:?}");
    // Every member that was told it joined is one: each can send, and each receives all.
    for (i, c) in joined.iter().enumerate() {
        assert_eq!(rs[i % 3].send(&token, c, "small", json!(c)).status, 202);
    }
    // Members get each other's messages, not their own.
    for (i, c) in joined.iter().enumerate() {
        let got = rs[(i + 1) % 3].receive(&token, c, "small", Some(0)).json();
        let from: HashSet<&str> = got["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["sender_id"].as_str().unwrap())
            .collect();
        let others: HashSet<&str> = joined
            .iter()
            .map(String::as_str)
            .filter(|o| o != c)
            .collect();
        assert_eq!(from, others, "{c}: {got}");
    }
}

/// Sends `per_sender` messages from each of `senders` senders, each message through the next
/// replica; a message whose answer is not 202 (a replica gone, the store away) is sent again
/// under the same idempotency key, through the next replica, until it is acknowledged.
/// `during(i)` runs on the first sender's thread before its message `i`.
fn send_through_failures(
    cs: &[Client],
    token: &str,
    senders: usize,
    per_sender: u64,
    during: impl Fn(u64) + Sync,
) -> usize {
    let retries = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for s in 0..senders {
            let (retries, during) = (&retries, &during);
            scope.spawn(move || {
                let mut turn = s;
                for i in 0..per_sender {
                    if s == 0 {
                        during(i);
                    }
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        turn += 1;
                        let c = &cs[turn % cs.len()];
                        let sent = Instant::now();
                        let answer = send_once(
                            c,
                            token,
                            &format!("s{s}"),
                            "load",
                            &json!([s, i]),
                            &format!("{s}-{i}"),
                        );
                        match answer {
                            Ok(r) if r.status == 202 => break,
                            // A try cut off before its message was written: the retry
                            // waits until that try is given up, then takes its number over.
                            Ok(r)
                                if r.status == 409
                                    && r.error_code() == "idempotency_key_in_use" =>
                            {
                                std::thread::sleep(Duration::from_millis(500));
                            }
                            Ok(r) => {
                                // Refused, never failed: the store's outage is a 503, fast.
                                assert_eq!(
                                    (r.status, r.error_code().as_str()),
                                    (503, "store_unavailable"),
                                    "{}",
                                    r.text()
                                );
                                assert!(
                                    sent.elapsed() < Duration::from_secs(10),
                                    "a refusal took {:?}",
                                    sent.elapsed()
                                );
                            }
                            Err(_) => {}
                        }
                        retries.fetch_add(1, Ordering::SeqCst);
                        assert!(
                            Instant::now() < deadline,
                            "s{s} message {i} never acknowledged"
                        );
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
    });
    retries.into_inner()
}

#[test]
fn a_replica_killed_mid_load_loses_and_duplicates_nothing() {
    const SENDERS: usize = 4;
    const PER_SENDER: u64 = 120;
    let redis = RedisServer::start();
    let mut rs = replicas(&redis, 3, &[]);
    let cs = clients(&rs);
    let token = rs[0].token("wendy");
    assert_eq!(rs[0].register(&token, "reader", "load").status, 201);
    for s in 0..SENDERS {
        assert_eq!(rs[1].register(&token, &format!("s{s}"), "load").status, 201);
    }
    let victim = Mutex::new(Some(rs.remove(1)));
    let retries = send_through_failures(&cs, &token, SENDERS, PER_SENDER, |i| {
        if i == PER_SENDER / 3
            && let Some(v) = victim.lock().unwrap().take()
        {
            v.stop("KILL");
        }
    });
    assert!(victim.lock().unwrap().is_none(), "the replica was killed");
    // The others carry on: everything is there, once, through the two that are left.
    let survivors = clients(&rs);
    let got = drain(
        &survivors,
        &token,
        "reader",
        "load",
        SENDERS * PER_SENDER as usize,
        None,
    );
    assert_exactly_once_in_order(&got, SENDERS, PER_SENDER);
    eprintln!("sends retried after the kill: {retries}");
}

#[test]
fn redis_restarted_mid_load_refuses_fast_then_recovers_and_loses_nothing_acknowledged() {
    const SENDERS: usize = 3;
    const PER_SENDER: u64 = 90;
    let data = tempfile::tempdir().unwrap();
    let redis = Arc::new(Mutex::new(RedisServer::durable(data.path())));
    let rs = replicas(&redis.lock().unwrap(), 3, &[]);
    let cs = clients(&rs);
    let token = rs[0].token("wendy");
    assert_eq!(rs[0].register(&token, "reader", "load").status, 201);
    for s in 0..SENDERS {
        assert_eq!(rs[2].register(&token, &format!("s{s}"), "load").status, 201);
    }
    let outage = Mutex::new(None);
    send_through_failures(&cs, &token, SENDERS, PER_SENDER, |i| {
        if i != PER_SENDER / 3 {
            return;
        }
        redis.lock().unwrap().kill();
        // While it is away: not ready, on every replica, and every request refused with
        // 503 store_unavailable (the senders check theirs).
        for r in &cs {
            let ready = r.get("/health/ready", &[]);
            assert_eq!(
                (ready.status, ready.error_code().as_str()),
                (503, "not_ready")
            );
            assert_eq!(
                r.get("/health", &[]).status,
                200,
                "liveness does not need the store"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        redis.lock().unwrap().restart();
        let back = Instant::now();
        for r in &cs {
            let deadline = Instant::now() + Duration::from_secs(20);
            while r.get("/health/ready", &[]).status != 200 {
                assert!(Instant::now() < deadline, "readiness did not recover");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        *outage.lock().unwrap() = Some(back.elapsed());
    });
    assert!(outage.lock().unwrap().is_some(), "Redis was restarted");
    // Once the store is back, no request fails: each replica answers at once.
    for (i, r) in cs.iter().enumerate() {
        let sent = r.send(&token, "s0", "load", json!(["after", i]));
        assert_eq!(
            sent.status,
            202,
            "replica {i} after the recovery: {}",
            sent.text()
        );
    }
    let mut got = drain(
        &cs,
        &token,
        "reader",
        "load",
        SENDERS * PER_SENDER as usize + 3,
        None,
    );
    let after: Vec<Value> = got.iter().filter(|p| p[0] == "after").cloned().collect();
    assert_eq!(after.len(), 3, "{after:?}");
    got.retain(|p| p[0] != "after");
    assert_exactly_once_in_order(&got, SENDERS, PER_SENDER);
}
