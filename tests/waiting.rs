//! Long-poll receives on the `mcp-edge` runtime (`GET /mcp/receive?…&wait=SECONDS`): a
//! waiting receive is parked by the host, holding no instance, and answered as soon as a
//! message arrives, or with an empty list when its wait runs out; on SQLite and on Redis,
//! where a replica's waits also wake on sends through another replica.
//! The cursor rules are the receive's own; waits are capped; shutdown answers them.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, RedisServer, Server, server};

fn start(args: &[&str]) -> Server {
    let mut builder = server("spin.toml").arg("--cleanup-schedule").arg("off");
    for arg in args {
        builder = builder.arg(arg);
    }
    builder.start()
}

/// `wait`s for `client`'s messages in `group`: the reply and how long it took.
fn wait(
    c: &Client,
    token: &str,
    client: &str,
    group: &str,
    after: Option<u64>,
    seconds: u64,
) -> (support::Reply, Duration) {
    let mut path = format!("/mcp/receive?client_id={client}&group_id={group}&wait={seconds}");
    if let Some(a) = after {
        path.push_str(&format!("&after={a}"));
    }
    let auth = format!("Bearer {token}");
    let began = Instant::now();
    let reply = c.get(&path, &[("authorization", &auth)]);
    (reply, began.elapsed())
}

fn payloads(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .map(|m| m.iter().map(|m| m["payload"].clone()).collect())
        .unwrap_or_default()
}

/// Gives waiting receives time to look and be parked, so that what follows exercises the
/// wake (a send before they park would still be caught: the host checks for writes since
/// the receive began).
fn settle() {
    thread::sleep(Duration::from_millis(300));
}

fn wakes_on_a_send_and_runs_out_empty(s: &Server) {
    let (wendy, will) = (s.token("wendy"), s.token("will"));
    assert_eq!(s.register(&wendy, "a", "g").status, 201);
    assert_eq!(s.register(&will, "b", "g").status, 201);

    let (reply, took) = thread::scope(|scope| {
        let waiter = scope.spawn(|| wait(s, &will, "b", "g", None, 20));
        settle();
        assert_eq!(s.send(&wendy, "a", "g", json!("wake up")).status, 202);
        waiter.join().expect("waiter")
    });
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(payloads(&reply.json()), [json!("wake up")]);
    // Answered on the send, long before the 20 s wait ran out.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let next = reply.json()["next_after"].as_u64().expect("next_after");

    // Acknowledged with `after`: nothing new, so the wait runs out with an empty list.
    let (reply, took) = wait(s, &will, "b", "g", Some(next), 1);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["messages"], json!([]));
    assert!(took >= Duration::from_secs(1), "took {took:?}");

    // The member's own message does not end its wait; another's does, exactly once.
    let (reply, _) = thread::scope(|scope| {
        let waiter = scope.spawn(|| wait(s, &will, "b", "g", Some(next), 20));
        settle();
        assert_eq!(s.send(&will, "b", "g", json!("mine")).status, 202);
        settle();
        assert_eq!(s.send(&wendy, "a", "g", json!("second")).status, 202);
        waiter.join().expect("waiter")
    });
    assert_eq!(payloads(&reply.json()), [json!("second")]);
    let last = reply.json()["next_after"].as_u64().expect("next_after");
    let (reply, _) = wait(s, &will, "b", "g", Some(last), 1);
    assert_eq!(reply.json()["messages"], json!([]));
}

#[test]
fn a_wait_wakes_on_a_send_and_runs_out_empty_on_sqlite() {
    wakes_on_a_send_and_runs_out_empty(&start(&[]));
}

#[test]
fn a_wait_wakes_on_a_send_and_runs_out_empty_on_redis() {
    let redis = RedisServer::start();
    wakes_on_a_send_and_runs_out_empty(&start(&["--kv", &redis.url()]));
}

#[test]
fn a_wait_on_one_replica_wakes_on_a_send_through_another() {
    let redis = RedisServer::start();
    let (one, two) = (
        start(&["--kv", &redis.url()]),
        start(&["--kv", &redis.url()]),
    );
    let (wendy, will) = (one.token("wendy"), one.token("will"));
    assert_eq!(one.register(&wendy, "a", "g").status, 201);
    assert_eq!(one.register(&will, "b", "g").status, 201);
    let mut after = None;
    for n in 0..3 {
        // Waiting on each replica in turn, sent through the other.
        let (waiting, sending) = if n % 2 == 0 {
            (&two, &one)
        } else {
            (&one, &two)
        };
        let (reply, took) = thread::scope(|scope| {
            let waiter = scope.spawn(|| wait(waiting, &will, "b", "g", after, 20));
            settle();
            assert_eq!(sending.send(&wendy, "a", "g", json!(n)).status, 202);
            waiter.join().expect("waiter")
        });
        assert_eq!(payloads(&reply.json()), [json!(n)], "{}", reply.text());
        assert!(took < Duration::from_secs(15), "took {took:?}");
        after = reply.json()["next_after"].as_u64();
    }
}

#[test]
fn waiting_receives_hold_no_instance() {
    // One instance for the whole server: if a wait held it, nothing else could run.
    let s = start(&["--max-instances", "1"]);
    let (wendy, will) = (s.token("wendy"), s.token("will"));
    assert_eq!(s.register(&wendy, "a", "g").status, 201);
    let members = ["b1", "b2", "b3"];
    for m in members {
        assert_eq!(s.register(&will, m, "g").status, 201);
    }
    let replies: Vec<_> = thread::scope(|scope| {
        let waiters: Vec<_> = members
            .iter()
            .map(|m| scope.spawn(|| wait(&s, &will, m, "g", None, 20)))
            .collect();
        settle();
        assert_eq!(s.get("/health", &[]).status, 200);
        assert_eq!(s.send(&wendy, "a", "g", json!("all")).status, 202);
        waiters
            .into_iter()
            .map(|w| w.join().expect("waiter"))
            .collect()
    });
    for (reply, took) in replies {
        assert_eq!(payloads(&reply.json()), [json!("all")], "{}", reply.text());
        assert!(took < Duration::from_secs(15), "took {took:?}");
    }
}

/// The MCP tool `receive_messages` with `wait` in group `g`, as an MCP client calls it: the
/// tool's result.
fn mcp_wait(c: &Client, token: &str, client: &str, after: u64, seconds: u64) -> (Value, Duration) {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "receive_messages",
            "arguments": {"client_id": client, "group_id": "g", "after": after, "wait": seconds},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}
            }
        }
    });
    let auth = format!("Bearer {token}");
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("authorization", auth.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "receive_messages"),
    ];
    let began = Instant::now();
    let reply = c.request("POST", "/mcp", &headers, Some(body.to_string().as_bytes()));
    assert_eq!(reply.status, 200, "{}", reply.text());
    (reply.json()["result"].clone(), began.elapsed())
}

#[test]
fn the_mcp_tool_waits_as_the_endpoint_does() {
    // One instance: the waiting tool call must not hold it, or the send could not run.
    let s = start(&["--max-instances", "1"]);
    let (wendy, will) = (s.token("wendy"), s.token("will"));
    assert_eq!(s.register(&wendy, "a", "g").status, 201);
    assert_eq!(s.register(&will, "b", "g").status, 201);
    let (result, took) = thread::scope(|scope| {
        let waiter = scope.spawn(|| mcp_wait(&s, &will, "b", 0, 20));
        settle();
        assert_eq!(s.send(&wendy, "a", "g", json!("to the model")).status, 202);
        waiter.join().expect("waiter")
    });
    assert_ne!(result["isError"], true, "{result}");
    assert_eq!(
        payloads(&result["structuredContent"]),
        [json!("to the model")],
        "{result}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // Nothing after it: the tool's wait runs out with an empty list.
    let next = result["structuredContent"]["next_after"]
        .as_u64()
        .expect("next_after");
    let (result, took) = mcp_wait(&s, &will, "b", next, 1);
    assert_eq!(
        result["structuredContent"]["messages"],
        json!([]),
        "{result}"
    );
    assert!(took >= Duration::from_secs(1), "took {took:?}");
}

#[test]
fn waits_are_capped_per_client_and_overall_with_clear_errors() {
    let s = start(&["--max-waiting-per-client", "1", "--max-waiting", "2"]);
    let will = s.token("will");
    for m in ["b1", "b2", "b3"] {
        assert_eq!(s.register(&will, m, "g").status, 201);
    }
    thread::scope(|scope| {
        let first = scope.spawn(|| wait(&s, &will, "b1", "g", None, 6));
        // The refusals below need the earlier waits parked: a generous margin on a busy
        // machine, well inside their 6 s.
        thread::sleep(Duration::from_secs(1));
        let (again, _) = wait(&s, &will, "b1", "g", None, 6);
        assert_eq!(again.status, 429, "{}", again.text());
        assert_eq!(again.error_code(), "too_many_waiting");
        let second = scope.spawn(|| wait(&s, &will, "b2", "g", None, 6));
        // The refusals below need the earlier waits parked: a generous margin on a busy
        // machine, well inside their 6 s.
        thread::sleep(Duration::from_secs(1));
        let (third, _) = wait(&s, &will, "b3", "g", None, 6);
        assert_eq!(third.status, 503, "{}", third.text());
        assert_eq!(third.error_code(), "too_many_waiting");
        for w in [first, second] {
            let (reply, _) = w.join().expect("waiter");
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    });
    // A wait beyond the maximum is refused before anything waits.
    let (reply, _) = wait(&s, &will, "b1", "g", None, 31);
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code(), "invalid_query");
}

#[test]
fn a_client_cannot_pose_as_the_host_and_shutdown_answers_the_waiting() {
    let s = start(&[]);
    let (wendy, will) = (s.token("wendy"), s.token("will"));
    assert_eq!(s.register(&wendy, "a", "g").status, 201);
    assert_eq!(s.register(&will, "b", "g").status, 201);
    // A client's own park header is replaced: the wait is the client's, and it is answered.
    let auth = format!("Bearer {will}");
    let began = Instant::now();
    let reply = s.get(
        "/mcp/receive?client_id=b&group_id=g&wait=1",
        &[("authorization", &auth), ("mcp-edge-park", "999999")],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("mcp-edge-park").is_none());
    assert!(began.elapsed() >= Duration::from_secs(1));

    // SIGTERM with a receive waiting: it is answered (empty) and the server exits cleanly.
    let base = s.url("");
    let (reply, status) = thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let c = Client::new(base.trim_end_matches('/').to_owned());
            wait(&c, &will, "b", "g", None, 30)
        });
        settle();
        let status = s.stop("TERM");
        (waiter.join().expect("waiter"), status)
    });
    assert!(status.success(), "{status:?}");
    assert_eq!(reply.0.status, 200, "{}", reply.0.text());
    assert_eq!(reply.0.json()["messages"], json!([]));
    assert!(reply.1 < Duration::from_secs(20), "took {:?}", reply.1);
}
