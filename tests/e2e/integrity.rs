//! The message log's guarantees at its edges, each reproduced as a user first met its
//! violation: large batches, many groups at a bucket boundary, a full group under
//! concurrent sends and cleanup, and retried sends.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::deployment::{Deployment, Kind};
use crate::support::Reply;

fn payloads(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .map(|m| m.iter().map(|m| m["payload"].clone()).collect())
        .unwrap_or_default()
}

fn send_keyed(s: &Deployment, token: &str, key: &str, payload: Value) -> Reply {
    let auth = format!("Bearer {token}");
    let body = json!({"sender_id": "a", "group_id": "g", "payload": payload}).to_string();
    s.request(
        "POST",
        "/mcp/send",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        Some(body.as_bytes()),
    )
}

/// 100 payloads of about 64 KB of small JSON numbers: every receive answers 200, in pages
/// bounded by bytes, and the receiver gets each message exactly once.
pub fn a_large_backlog_is_received_in_pages_exactly_once(kind: Kind) {
    let s = Deployment::start(kind, &[]);
    let t = s.token("wendy");
    assert_eq!(s.register(&t, "sender", "big").status, 201);
    assert_eq!(s.register(&t, "receiver", "big").status, 201);
    for i in 0..100u64 {
        let mut numbers = vec![0u64; 32_000];
        numbers[0] = i;
        let r = s.send(&t, "sender", "big", json!(numbers));
        assert_eq!(r.status, 202, "send {i}: {}", r.text());
    }
    let mut got = Vec::new();
    let mut pages = 0;
    for _ in 0..100 {
        // Plain polls: the cursor moves only past what an answer held.
        let r = s.receive(&t, "receiver", "big", None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.body.len() <= 4 * 1024 * 1024 + 64 * 1024,
            "{} bytes",
            r.body.len()
        );
        let body = r.json();
        let batch = payloads(&body);
        if batch.is_empty() {
            break;
        }
        pages += 1;
        got.extend(batch.iter().map(|p| p[0].as_u64().unwrap_or(u64::MAX)));
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>(), "all 100, once, in order");
    assert!(pages > 1, "a 6 MB backlog takes more than one 4 MiB page");
}

/// Waits until just after a whole second, so that every send below starts a cleanup bucket.
fn just_after_a_second_boundary() {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    std::thread::sleep(Duration::from_millis(1000 - ms % 1000 + 5));
}

/// Sender `s{g}`'s send `i` to `g{g}`, under an Idempotency-Key. On Workers a connection the
/// dev server's proxy reset, or its own 503 (plain text, not our error body: it reloads the
/// Worker when starved of CPU), is retried with the same key, as a client would: the key keeps
/// the retry from storing the message twice, which the receive below checks.
fn send_retried(s: &Deployment, kind: Kind, token: &str, g: usize, i: u64) -> Reply {
    let auth = format!("Bearer {token}");
    let key = format!("g{g}-{i}");
    let body =
        json!({"sender_id": format!("s{g}"), "group_id": format!("g{g}"), "payload": [g, i]})
            .to_string();
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
    ];
    let mut attempts = 0;
    loop {
        attempts += 1;
        let answer = s.try_request("POST", "/mcp/send", &headers, Some(body.as_bytes()));
        let proxy_failure = match &answer {
            Err(_) => true,
            Ok(r) => r.status == 503 && !r.text().starts_with("{\"error\""),
        };
        if kind != Kind::Workers || !proxy_failure || attempts == 5 {
            return answer.unwrap_or_else(|e| panic!("{e}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// 64 groups sending at once just after a cleanup-bucket boundary: every send is accepted,
/// and what was refused (nothing, here) would never be delivered.
pub fn many_groups_at_a_bucket_boundary_are_all_accepted_once(kind: Kind) {
    const GROUPS: usize = 64;
    const PER_GROUP: u64 = 6;
    let s = Deployment::start(kind, &[("cleanup_bucket_seconds", "1")]);
    let t = s.token("wendy");
    for g in 0..GROUPS {
        assert_eq!(
            s.register(&t, &format!("s{g}"), &format!("g{g}")).status,
            201
        );
        assert_eq!(
            s.register(&t, &format!("r{g}"), &format!("g{g}")).status,
            201
        );
    }
    // A connection per group; wrangler dev's local proxy resets connections beyond a few
    // dozen at once, so there each connection sends for four groups in turn.
    let lanes = if kind == Kind::Workers { 16 } else { GROUPS };
    just_after_a_second_boundary();
    let mut answers: Vec<Vec<u16>> = vec![Vec::new(); GROUPS];
    let mut refusals: Vec<Vec<String>> = vec![Vec::new(); GROUPS];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..lanes)
            .map(|lane| {
                let (s, t) = (&s, &t);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..PER_GROUP {
                        for g in (lane..GROUPS).step_by(lanes) {
                            let r = send_retried(s, kind, t, g, i);
                            // A refusal's body says why, for the assertion below.
                            let why = (r.status != 202).then(|| r.text());
                            out.push((g, r.status, why));
                        }
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            for (g, status, why) in h.join().unwrap() {
                answers[g].push(status);
                refusals[g].extend(why);
            }
        }
    });
    for (g, statuses) in answers.iter().enumerate() {
        let accepted: Vec<u64> = (0..PER_GROUP)
            .filter(|&i| statuses[i as usize] == 202)
            .collect();
        let r = s.receive(&t, &format!("r{g}"), &format!("g{g}"), Some(0));
        assert_eq!(r.status, 200, "{}", r.text());
        let delivered: Vec<u64> = payloads(&r.json())
            .iter()
            .map(|p| p[1].as_u64().unwrap_or(u64::MAX))
            .collect();
        assert_eq!(
            delivered, accepted,
            "group {g}: refused sends must not be stored"
        );
        assert_eq!(
            *statuses,
            vec![202; PER_GROUP as usize],
            "group {g}: {:?}",
            refusals[g]
        );
    }
}

/// A group filled to its limit, then 8 concurrent send loops while cleanup runs: the group
/// never stays refused after a complete cleanup, and every accepted message is delivered
/// or reported missed.
pub fn a_full_group_under_concurrent_sends_and_cleanup_never_wedges(kind: Kind) {
    let s = Deployment::start(
        kind,
        &[("max_messages_per_group", "20"), ("rate_limit_burst", "0")],
    );
    let t = s.token("wendy");
    assert_eq!(s.register(&t, "reader", "full").status, 201);
    for w in 0..8 {
        assert_eq!(s.register(&t, &format!("w{w}"), "full").status, 201);
    }
    let mut accepted: HashMap<(u64, u64), u64> = HashMap::new();
    let mut refused = BTreeSet::new();
    for i in 0..100u64 {
        let r = s.send(&t, "w0", "full", json!([0, i]));
        if r.status == 429 {
            assert_eq!(r.error_code(), "group_backlog_full");
            refused.insert((0, i));
            break;
        }
        assert_eq!(r.status, 202, "{}", r.text());
        accepted.insert((0, i), r.json()["seq"].as_u64().unwrap_or(0));
    }
    assert!(!refused.is_empty(), "the group filled up");
    let (more, denied): (Vec<_>, Vec<_>) = std::thread::scope(|scope| {
        let loops: Vec<_> = (0..8u64)
            .map(|w| {
                let (s, t) = (&s, &t);
                scope.spawn(move || {
                    let mut ok = Vec::new();
                    let mut no = Vec::new();
                    for i in 1_000..1_040u64 {
                        let r = s.send(t, &format!("w{w}"), "full", json!([w, i]));
                        match r.status {
                            202 => ok.push(((w, i), r.json()["seq"].as_u64().unwrap_or(0))),
                            429 => no.push((w, i)),
                            other => panic!("send answered {other}: {}", r.text()),
                        }
                    }
                    (ok, no)
                })
            })
            .collect();
        for _ in 0..10 {
            s.cleanup_group("full");
        }
        let mut ok = Vec::new();
        let mut no = Vec::new();
        for l in loops {
            let (a, b) = l.join().unwrap();
            ok.extend(a);
            no.extend(b);
        }
        (ok, no)
    });
    accepted.extend(more);
    refused.extend(denied);
    s.cleanup_until_complete("full");
    let after = s.send(&t, "w0", "full", json!([0, 9_999]));
    assert_eq!(after.status, 202, "wedged: {}", after.text());
    accepted.insert((0, 9_999), after.json()["seq"].as_u64().unwrap_or(0));

    // The reader never read: everything it is owed is delivered or reported missed.
    let mut delivered = BTreeSet::new();
    let mut missed: Vec<(u64, u64)> = Vec::new();
    let mut cursor = 0;
    for _ in 0..100 {
        let body = s.receive(&t, "reader", "full", Some(cursor)).json();
        if let Some(m) = body.get("missed") {
            missed.push((
                m["first_seq"].as_u64().unwrap(),
                m["last_seq"].as_u64().unwrap(),
            ));
        }
        let batch = payloads(&body);
        for p in &batch {
            let id = (p[0].as_u64().unwrap(), p[1].as_u64().unwrap());
            assert!(!refused.contains(&id), "refused {id:?} was delivered");
            assert!(delivered.insert(id), "{id:?} delivered twice");
        }
        cursor = body["next_after"].as_u64().unwrap();
        if batch.is_empty() {
            break;
        }
    }
    for (id, seq) in &accepted {
        let told = missed.iter().any(|&(a, b)| (a..=b).contains(seq));
        assert!(
            delivered.contains(id) || told,
            "{id:?} (seq {seq}) lost silently"
        );
    }
}

/// A retried send with the same Idempotency-Key answers the original 202 and stores nothing.
pub fn retries_with_an_idempotency_key_store_once(kind: Kind) {
    let s = Deployment::start(kind, &[]);
    let t = s.token("wendy");
    assert_eq!(s.register(&t, "a", "g").status, 201);
    assert_eq!(s.register(&t, "b", "g").status, 201);
    let first = send_keyed(&s, &t, "order-42", json!({"n": 1}));
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = send_keyed(&s, &t, "order-42", json!({"n": 1}));
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.json()["message_id"], again.json()["message_id"]);
    assert_eq!(first.json()["seq"], again.json()["seq"]);
    let other = send_keyed(&s, &t, "order-43", json!({"n": 2}));
    assert_eq!(other.status, 202);
    let got = s.receive(&t, "b", "g", Some(0)).json();
    assert_eq!(payloads(&got), vec![json!({"n": 1}), json!({"n": 2})]);
    let bad = send_keyed(&s, &t, "not a key!", json!(1));
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "invalid_idempotency_key")
    );
}
