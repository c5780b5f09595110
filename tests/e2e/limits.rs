//! Abuse limits over HTTP: rate limits with `Retry-After`, failed-login limits, and the size
//! limits of groups and messages, each a clear 4xx, the same on every runtime (the Worker
//! limits by `CF-Connecting-IP` where the runtime uses the connection's address).

use std::time::Duration;

use serde_json::json;

use crate::deployment::{Deployment, Kind};

pub fn an_address_over_its_budget_gets_429_with_retry_after(kind: Kind) {
    let server = Deployment::start(
        kind,
        &[("rate_limit_burst", "8"), ("rate_limit_refill_ms", "60000")],
    );
    if kind == Kind::Workers {
        // Workers count request budgets in fixed one-minute windows (the Rate Limiting
        // binding): these requests must all fall in one of them.
        clear_of_a_window_edge(Duration::from_secs(60), Duration::from_secs(10));
    }
    let mut answers = Vec::new();
    for i in 0..10 {
        // Unauthenticated: floods of bad tokens count against the address too. A spoofed
        // platform header does not change the address: the runtime sets it.
        let spoofed = format!("10.0.0.{i}:1");
        let reply = server.get(
            "/mcp/receive?client_id=c&group_id=g",
            &[("spin-client-addr", spoofed.as_str())],
        );
        answers.push(reply.status);
        if reply.status == 429 {
            assert_eq!(reply.error_code(), "rate_limited");
            let retry: u64 = reply
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .expect("numeric Retry-After");
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
        }
    }
    assert_eq!(answers, [vec![401; 8], vec![429; 2]].concat());
    // Login shares the address budget; probes and docs are not limited.
    let login = server.post_json(
        "/login",
        None,
        &json!({"username": "wendy", "password": "wendy-pw"}),
    );
    assert_eq!(
        (login.status, login.error_code().as_str()),
        (429, "rate_limited")
    );
    assert_eq!(server.get("/health", &[]).status, 200);
    assert_eq!(server.get("/docs/v1/index.md", &[]).status, 200);
}

/// Failed logins are limited per (user name, address) and per user name overall: a stranger
/// at one address locks a user out only there, and guessing spread over addresses runs into
/// the user's larger budget (8 here). Both refill at one an hour, so that a slow machine
/// never earns a failure back during the test. Each request comes from its own loopback address.
pub fn failed_logins_lock_out_one_address_and_spread_guessing_but_never_the_user_elsewhere(
    kind: Kind,
) {
    let server = Deployment::start(
        kind,
        &[
            ("login_failure_refill_ms", "3600000"),
            ("login_user_failure_burst", "8"),
            ("login_user_failure_refill_ms", "3600000"),
        ],
    );
    let attempt = |from: &str, user: &str, password: &str| {
        server.post_json_from(
            from,
            "/login",
            &json!({"username": user, "password": password}),
        )
    };
    for _ in 0..5 {
        let r = attempt("127.0.0.2", "wendy", "guess");
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (401, Some("invalid_credentials")),
            "{}",
            r.raw
        );
    }
    let locked = attempt("127.0.0.2", "wendy", "wendy-pw");
    assert_eq!(
        (locked.status, locked.error_code().as_deref()),
        (429, Some("too_many_login_failures")),
        "{}",
        locked.raw
    );
    let retry: u64 = locked
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=3600).contains(&retry), "{retry}");
    // The right password from another address works, again and again: successes spend
    // neither budget.
    for _ in 0..6 {
        let ok = attempt("127.0.0.3", "wendy", "wendy-pw");
        assert_eq!(ok.status, 200, "{}", ok.raw);
    }
    // Other users at the stranger's address are not affected.
    assert_eq!(attempt("127.0.0.2", "rita", "rita-pw").status, 200);
    // Three more failures, one from each of three more addresses, spend the user's budget.
    for from in ["127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        assert_eq!(attempt(from, "wendy", "guess").status, 401);
    }
    let spread = attempt("127.0.0.7", "wendy", "wendy-pw");
    assert_eq!(
        (spread.status, spread.error_code().as_deref()),
        (429, Some("too_many_login_failures")),
        "{}",
        spread.raw
    );
    assert!(spread.body.contains("for this user;"), "{}", spread.body);
}

pub fn group_size_message_size_and_backlog_limits_are_clear_4xx(kind: Kind) {
    let server = Deployment::start(
        kind,
        &[
            ("max_clients_per_group", "2"),
            ("max_messages_per_group", "10"),
            ("max_payload_bytes", "1024"),
        ],
    );
    let wendy = server.token("wendy");
    assert_eq!(server.register(&wendy, "a", "small").status, 201);
    assert_eq!(server.register(&wendy, "b", "small").status, 201);
    let full = server.register(&wendy, "c", "small");
    assert_eq!(
        (full.status, full.error_code().as_str()),
        (409, "group_full")
    );
    // A member re-registering is not a new member.
    assert_eq!(server.register(&wendy, "a", "small").status, 200);

    let big = server.send(&wendy, "a", "small", json!("x".repeat(2000)));
    assert_eq!(
        (big.status, big.error_code().as_str()),
        (413, "payload_too_large")
    );

    for i in 0..11 {
        assert_eq!(server.send(&wendy, "a", "small", json!(i)).status, 202);
    }
    let refused = server.send(&wendy, "a", "small", json!("one too many"));
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (429, "group_backlog_full"),
        "{}",
        refused.text()
    );
    assert!(refused.header("retry-after").is_some());
    // Nothing accepted was lost, and nothing refused was stored.
    let got = server.receive(&wendy, "b", "small", None).json();
    let payloads: Vec<_> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].clone())
        .collect();
    assert_eq!(payloads, (0..11).map(|i| json!(i)).collect::<Vec<_>>());
    // A cleanup pass trims the group to its cap and sends are accepted again.
    assert_eq!(server.cleanup_group("small")["messages_removed"], 1);
    assert_eq!(
        server
            .send(&wendy, "a", "small", json!("room again"))
            .status,
        202
    );
}

/// Waits until the wall clock is at least `margin` past the start of a `window` (windows
/// start at multiples of it since the epoch) and as far from its end.
fn clear_of_a_window_edge(window: Duration, margin: Duration) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let into = Duration::from_millis((now.as_millis() % window.as_millis()) as u64);
        if into >= margin && into + margin <= window {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A group of 1000 members, full: the next client is refused with 409 (on Workers the
/// members' records are the group object's own rows, so the check costs no call per member),
/// and a member's heartbeat still works.
pub fn a_group_of_a_thousand_is_full_at_a_thousand(kind: Kind) {
    const LIMIT: usize = 1000;
    let server = Deployment::start(
        kind,
        &[("max_clients_per_group", "1000"), ("rate_limit_burst", "0")],
    );
    let wendy = server.token("wendy");
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (server, wendy) = (&server, &wendy);
            scope.spawn(move || {
                for i in (t..LIMIT).step_by(8) {
                    let r = server.register(wendy, &format!("m{i}"), "crowd");
                    assert_eq!(r.status, 201, "m{i}: {}", r.text());
                }
            });
        }
    });
    let full = server.register(&wendy, "one-more", "crowd");
    assert_eq!(
        (full.status, full.error_code().as_str()),
        (409, "group_full"),
        "{}",
        full.text()
    );
    assert_eq!(server.register(&wendy, "m0", "crowd").status, 200);
    assert_eq!(server.register(&wendy, "one-more", "elsewhere").status, 201);
}
