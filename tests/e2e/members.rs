//! A member that falls behind keeps what it is owed, or is told what it missed: a quiet
//! spell past the client timeout, a trim by the cap, and a return after the retention.
//! Short timeouts and 1 s buckets stand in for the defaults of 300 s and 60 s; cleanup runs
//! when the test calls it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::deployment::{Deployment, Kind, eventually};

fn payloads(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .map(|m| m.iter().map(|m| m["payload"].clone()).collect())
        .unwrap_or_default()
}

/// Keeps `clients` heartbeating (by registering again) for `how_long`.
fn heartbeat(s: &Deployment, token: &str, clients: &[&str], group: &str, how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        for c in clients {
            assert_eq!(s.register(token, c, group).status, 200);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Runs the group's cleanup, keeping `keep_alive` heartbeating, until `silent` has expired
/// (on Workers the group's alarm may get there first). Whether it has is asked by another
/// user: a live client answers them 403 without a heartbeat, an expired one 404.
fn expire_the_silent_one(
    s: &Deployment,
    token: &str,
    group: &str,
    silent: &str,
    keep_alive: &[&str],
) {
    let stranger = s.token("will");
    let expired = eventually(Duration::from_secs(20), || {
        for c in keep_alive {
            assert_eq!(s.register(token, c, group).status, 200);
        }
        s.cleanup_group(group);
        let asked = s.receive(&stranger, silent, group, None);
        assert!(matches!(asked.status, 403 | 404), "{}", asked.text());
        asked.status == 404
    });
    assert!(expired, "the silent client never expired");
}

pub fn a_member_back_from_a_quiet_spell_gets_what_was_sent_meanwhile(kind: Kind) {
    let s = Deployment::start(
        kind,
        &[
            ("client_timeout_seconds", "2"),
            ("cleanup_bucket_seconds", "1"),
        ],
    );
    let t = s.token("wendy");
    assert_eq!(s.register(&t, "a", "g").status, 201);
    assert_eq!(s.register(&t, "b", "g").status, 201);
    assert_eq!(s.send(&t, "a", "g", json!("one")).status, 202);
    // b says nothing for longer than the client timeout; a keeps heartbeating.
    expire_the_silent_one(&s, &t, "g", "b", &["a"]);
    assert_eq!(s.send(&t, "a", "g", json!("two")).status, 202);

    let told = s.receive(&t, "b", "g", None);
    assert_eq!(
        (told.status, told.error_code().as_str()),
        (410, "client_expired"),
        "an expired member is told so: {}",
        told.text()
    );
    assert!(told.text().contains("register"), "{}", told.text());
    let stranger = s.receive(&t, "nobody", "g", None);
    assert_eq!(
        (stranger.status, stranger.error_code().as_str()),
        (404, "client_not_found")
    );
    let sent = s.send(&t, "b", "g", json!("from b"));
    assert_eq!(sent.error_code(), "client_expired");

    let back = s.register(&t, "b", "g");
    assert_eq!(back.status, 201, "{}", back.text());
    assert_eq!(back.json()["resumed"], true);
    let got = s.receive(&t, "b", "g", Some(0)).json();
    assert_eq!(payloads(&got), vec![json!("one"), json!("two")], "{got}");
    assert_eq!(got.get("missed"), None);
}

pub fn a_trim_by_the_cap_is_reported_as_missed(kind: Kind) {
    let s = Deployment::start(kind, &[("max_messages_per_group", "20")]);
    let t = s.token("wendy");
    assert_eq!(s.register(&t, "a", "g").status, 201);
    assert_eq!(s.register(&t, "b", "g").status, 201);
    for i in 1..=22 {
        assert_eq!(s.send(&t, "a", "g", json!(i)).status, 202);
    }
    assert_eq!(s.cleanup_group("g")["messages_removed"], 2);
    let got = s.receive(&t, "b", "g", Some(0)).json();
    assert_eq!(
        payloads(&got),
        (3..=22).map(|i| json!(i)).collect::<Vec<_>>()
    );
    assert_eq!(got["next_after"], 22);
    assert_eq!(
        got["missed"],
        json!({"first_seq": 1, "last_seq": 2, "count": 2, "first_held_seq": 3})
    );
    // Acknowledged past the gap, it is not reported again.
    let next = s.receive(&t, "b", "g", Some(22)).json();
    assert_eq!(next.get("missed"), None, "{next}");
}

pub fn a_return_after_the_retention_reports_everything_missed(kind: Kind) {
    let s = Deployment::start(
        kind,
        &[
            ("client_timeout_seconds", "2"),
            ("message_retention_seconds", "6"),
            ("cleanup_bucket_seconds", "1"),
        ],
    );
    let t = s.token("wendy");
    for c in ["a", "b", "watcher"] {
        assert_eq!(s.register(&t, c, "g").status, 201);
    }
    assert_eq!(s.send(&t, "a", "g", json!("one")).status, 202);
    assert_eq!(s.send(&t, "a", "g", json!("two")).status, 202);
    // b stays a member (without reading) for a while, then goes quiet and expires.
    heartbeat(&s, &t, &["a", "b", "watcher"], "g", Duration::from_secs(3));
    expire_the_silent_one(&s, &t, "g", "b", &["a", "watcher"]);
    // The messages pass their retention while b is away.
    let trimmed = eventually(Duration::from_secs(20), || {
        s.cleanup_group("g");
        s.register(&t, "a", "g");
        let seen = s.receive(&t, "watcher", "g", Some(0)).json();
        seen.get("missed").is_some()
    });
    assert!(trimmed, "the messages were never trimmed");
    let back = s.register(&t, "b", "g");
    assert_eq!(back.status, 201, "{}", back.text());
    assert_eq!(back.json()["resumed"], true, "{}", back.text());
    let got = s.receive(&t, "b", "g", None).json();
    assert_eq!(payloads(&got), Vec::<Value>::new());
    assert_eq!(
        got["missed"],
        json!({"first_seq": 1, "last_seq": 2, "count": 2, "first_held_seq": 3}),
        "{got}"
    );
}
