//! Messages pushed, on every runtime: a long-poll receive wakes on a send and runs out empty
//! when nothing comes, and the event stream delivers in order, resuming after `Last-Event-ID`.
//! On `mcp-edge` a waiting request is parked by the host; on Workers it waits inside the
//! group's Durable Object, woken by the send's write there.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::deployment::{Deployment, Kind};
use crate::support::EventStream;

fn payloads(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .map(|m| m.iter().map(|m| m["payload"].clone()).collect())
        .unwrap_or_default()
}

/// A long-poll receive of `b` in `group`: its reply and how long it took.
fn wait(s: &Deployment, token: &str, group: &str, after: u64, seconds: u64) -> (Value, Duration) {
    let auth = format!("Bearer {token}");
    let began = Instant::now();
    let path = format!("/mcp/receive?client_id=b&group_id={group}&after={after}&wait={seconds}");
    let reply = s.get(&path, &[("authorization", &auth)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    (reply.json(), began.elapsed())
}

fn open(s: &Deployment, token: &str, group: &str, last: Option<u64>) -> EventStream {
    let auth = format!("Bearer {token}");
    let last = last.map(|l| l.to_string());
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(l) = &last {
        headers.push(("last-event-id", l.as_str()));
    }
    let stream = s.open(
        &format!("/mcp/stream?client_id=b&group_id={group}"),
        &headers,
    );
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    stream
}

pub fn a_wait_wakes_on_a_send_and_the_stream_delivers_in_order(kind: Kind) {
    let s = Deployment::start(
        kind,
        &[
            ("stream_keepalive_seconds", "2"),
            ("stream_lifetime_seconds", "20"),
        ],
    );
    let (wendy, will) = (s.token("wendy"), s.token("will"));
    assert!(s.register(&wendy, "a", "push").status < 300);
    assert!(s.register(&will, "b", "push").status < 300);

    // A wait wakes on a send, long before it would run out.
    let ((reply, took), sent_at) = thread::scope(|scope| {
        let waiter = scope.spawn(|| wait(&s, &will, "push", 0, 20));
        thread::sleep(Duration::from_millis(500));
        let sent_at = Instant::now();
        assert_eq!(s.send(&wendy, "a", "push", json!("wake")).status, 202);
        (waiter.join().expect("waiter"), sent_at)
    });
    assert_eq!(payloads(&reply), [json!("wake")], "{reply}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(sent_at.elapsed() < Duration::from_secs(10));
    let next = reply["next_after"].as_u64().expect("next_after");
    // Nothing comes: it runs out, empty, after its wait.
    let (reply, took) = wait(&s, &will, "push", next, 1);
    assert_eq!(reply["messages"], json!([]));
    assert!(took >= Duration::from_secs(1), "took {took:?}");

    // The stream: everything after the last event id, in order, then what is sent while it
    // is open. Where an answer ends after its events (Workers), the client reconnects with
    // the last id it got, as an EventSource does.
    for n in 1..=3 {
        assert_eq!(s.send(&wendy, "a", "push", json!(n)).status, 202);
    }
    let mut got = Vec::new();
    let mut last = Some(next);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent_more = false;
    while got.len() < 6 && Instant::now() < deadline {
        let mut stream = open(&s, &will, "push", last);
        while let Some(event) = stream.next() {
            if event.event != "message" {
                if got.len() == 3 && !sent_more {
                    sent_more = true;
                    for n in 4..=6 {
                        assert_eq!(s.send(&wendy, "a", "push", json!(n)).status, 202);
                    }
                }
                continue;
            }
            last = event.id;
            got.push(event.json()["payload"].clone());
            if got.len() == 6 {
                break;
            }
        }
    }
    assert_eq!(got, (1..=6).map(|n| json!(n)).collect::<Vec<_>>());
}
