//! The message stream on the `mcp-edge` runtime (`GET /mcp/stream`, Server-Sent Events): the
//! real components over HTTP, read as an EventSource reads them. Messages arrive in order, one
//! event each, with keepalive comments between; the stream ends after its lifetime; a
//! reconnect with `Last-Event-ID` resumes with nothing lost and nothing repeated, across a
//! SIGKILL of the server and across a switch between two replicas on one Redis; a shutdown
//! ends open streams; streams count against the waiting caps.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, EventStream, RedisServer, Server, server, server_in};

/// A server whose streams send a keepalive every second and last `lifetime` seconds.
fn start(lifetime: u64, args: &[&str]) -> Server {
    start_in(None, lifetime, args)
}

fn start_in(
    dir: Option<std::sync::Arc<tempfile::TempDir>>,
    lifetime: u64,
    args: &[&str],
) -> Server {
    let mut builder = match dir {
        Some(dir) => server_in("spin.toml", dir),
        None => server("spin.toml"),
    }
    .arg("--cleanup-schedule")
    .arg("off")
    .env("SPIN_VARIABLE_STREAM_KEEPALIVE_SECONDS", "1")
    .env(
        "SPIN_VARIABLE_STREAM_LIFETIME_SECONDS",
        &lifetime.to_string(),
    );
    for arg in args {
        builder = builder.arg(arg);
    }
    builder.start()
}

/// `client`'s stream in group `g`, from `after` or resuming after `last_event_id`.
fn open(
    c: &Client,
    token: &str,
    client: &str,
    after: Option<u64>,
    last: Option<u64>,
) -> EventStream {
    let mut path = format!("/mcp/stream?client_id={client}&group_id=g");
    if let Some(a) = after {
        path.push_str(&format!("&after={a}"));
    }
    let auth = format!("Bearer {token}");
    let last = last.map(|l| l.to_string());
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("accept", "text/event-stream"),
    ];
    if let Some(l) = &last {
        headers.push(("last-event-id", l.as_str()));
    }
    let stream = c.open(&path, &headers);
    let status = stream.status;
    if status != 200 {
        panic!("{status}: {}", stream.rest());
    }
    stream
}

/// The next message event's id and payload.
fn message(stream: &mut EventStream) -> (u64, Value) {
    let e = stream.next_named("message").expect("a message event");
    (e.id.expect("an id"), e.json()["payload"].clone())
}

fn members(s: &Server) -> (String, String) {
    let (wendy, will) = (s.token("wendy"), s.token("will"));
    assert!(s.register(&wendy, "a", "g").status < 300);
    assert!(s.register(&will, "b", "g").status < 300);
    (wendy, will)
}

#[test]
fn a_stream_delivers_in_order_keeps_alive_and_ends_after_its_lifetime() {
    let s = start(6, &[]);
    let (wendy, will) = members(&s);
    assert_eq!(s.send(&wendy, "a", "g", json!("before")).status, 202);
    let opened = Instant::now();
    let mut stream = open(&s, &will, "b", Some(0), None);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("mcp-edge-park"), None);
    let first = stream.next().expect("the opening");
    assert_eq!(first.retry, Some(1000));
    assert_eq!(message(&mut stream), (1, json!("before")));
    // Sent while the stream is open: each arrives, in order.
    for n in 0..5 {
        assert_eq!(s.send(&wendy, "a", "g", json!(n)).status, 202);
    }
    let got: Vec<_> = (0..5).map(|_| message(&mut stream)).collect();
    let expected: Vec<_> = (0..5).map(|n| (n as u64 + 2, json!(n))).collect();
    assert_eq!(got, expected);
    // Idle: a comment each keepalive interval.
    let comment = stream.next().expect("a keepalive");
    assert_eq!(comment.event, "comment", "{comment:?}");
    // The lifetime is over: the body ends, with nothing else in it.
    let rest = stream.rest();
    assert!(!rest.contains("event: message"), "{rest}");
    let lived = opened.elapsed();
    assert!(
        lived >= Duration::from_secs(6) && lived < Duration::from_secs(30),
        "{lived:?}"
    );
}

#[test]
fn a_stream_resumes_after_the_last_event_id_across_a_sigkill() {
    let first = start(300, &[]);
    let (wendy, will) = members(&first);
    let mut stream = open(&first, &will, "b", Some(0), None);
    for n in 1..=5 {
        assert_eq!(first.send(&wendy, "a", "g", json!(n)).status, 202);
    }
    // The client handles 1 to 4 (5 may be in its buffer, unhandled) and the server dies.
    let handled: Vec<_> = (0..4).map(|_| message(&mut stream)).collect();
    assert_eq!(handled.last(), Some(&(4, json!(4))));
    let dir = first.dir();
    first.stop("KILL");
    drop(stream);

    let second = start_in(Some(dir), 300, &[]);
    assert_eq!(second.send(&wendy, "a", "g", json!(6)).status, 202);
    // Reconnected as an EventSource does: 5 and 6, once each.
    let mut stream = open(&second, &will, "b", Some(0), Some(4));
    assert_eq!(message(&mut stream), (5, json!(5)));
    assert_eq!(message(&mut stream), (6, json!(6)));
    assert_eq!(second.send(&wendy, "a", "g", json!(7)).status, 202);
    assert_eq!(message(&mut stream), (7, json!(7)));
}

#[test]
fn a_stream_resumes_across_a_switch_between_replicas_on_one_redis() {
    let redis = RedisServer::start();
    let (one, two) = (
        start(300, &["--kv", &redis.url()]),
        start(300, &["--kv", &redis.url()]),
    );
    let (wendy, will) = members(&one);
    // Streaming from one replica, sent through the other.
    let mut stream = open(&one, &will, "b", Some(0), None);
    for n in 1..=3 {
        assert_eq!(two.send(&wendy, "a", "g", json!(n)).status, 202);
    }
    let got: Vec<_> = (0..3).map(|_| message(&mut stream)).collect();
    assert_eq!(got, [(1, json!(1)), (2, json!(2)), (3, json!(3))]);
    drop(stream);
    // Meanwhile sent through the first; the client moves to the second replica.
    assert_eq!(one.send(&wendy, "a", "g", json!(4)).status, 202);
    let mut stream = open(&two, &will, "b", Some(0), Some(3));
    assert_eq!(message(&mut stream), (4, json!(4)));
    assert_eq!(one.send(&wendy, "a", "g", json!(5)).status, 202);
    assert_eq!(message(&mut stream), (5, json!(5)));
}

#[test]
fn shutdown_ends_open_streams_and_streams_are_capped_as_waits() {
    let s = start(300, &["--max-waiting-per-client", "1"]);
    let (wendy, will) = members(&s);
    let mut stream = open(&s, &will, "b", Some(0), None);
    assert_eq!(stream.next().expect("the opening").retry, Some(1000));
    // A second stream of the same member is over its cap.
    let auth = format!("Bearer {will}");
    let refused = s.open(
        "/mcp/stream?client_id=b&group_id=g",
        &[("authorization", &auth)],
    );
    assert_eq!(refused.status, 429);
    assert!(refused.rest().contains("too_many_waiting"));
    assert_eq!(s.send(&wendy, "a", "g", json!("last")).status, 202);
    assert_eq!(message(&mut stream), (1, json!("last")));

    let reader = std::thread::spawn(move || {
        let began = Instant::now();
        let rest = stream.rest();
        (rest, began.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let status = s.stop("TERM");
    let (rest, took) = reader.join().expect("reader");
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_secs(10),
        "the stream ended {took:?} after"
    );
    assert!(!rest.contains("event: error"), "{rest}");
}
