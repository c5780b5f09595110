//! Generated malformed and adversarial requests on every route: each answer is a 2xx or a 4xx
//! with the JSON error body; never a 5xx, a hang or a crash, and memory stays bounded.
//!
//! The normal suite runs a bounded number of cases from a fixed seed. For a longer run:
//! `MCP_EDGE_FUZZ_CASES=20000 cargo test --release --test hardening hostile` (and
//! `MCP_EDGE_FUZZ_SEED=<n>` to explore other cases or replay a reported one).

use serde_json::json;

use crate::support::{self, RawReply, Server};

const DEFAULT_CASES: u64 = 1000;

/// xorshift64*: a small deterministic generator, so a failing case can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const ROUTES: &[&str] = &[
    "/login",
    "/mcp/register",
    "/mcp/send",
    "/mcp/receive",
    "/admin/cleanup",
    "/docs",
    "/docs/v1/index.md",
    "/docs/latest/api.md",
    "/docs/v1/",
    "/health",
    "/health/ready",
    "/",
    "/nope",
    "/mcp",
    "/mcp/send/extra",
    "/login/",
    "/token/refresh",
    "/logout",
    "/admin/users",
    "/admin/users/fz-user",
    "/admin/api-keys",
    "/admin/api-keys/0123456789abcdef",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO", "get",
];

struct Tokens {
    writer: String,
    reader: String,
}

fn query(rng: &mut Rng) -> String {
    let long = "x".repeat(5000);
    let pieces = [
        "client_id=fz-w&group_id=fz-g".to_owned(),
        "client_id=fz-other&group_id=fz-g".to_owned(),
        "client_id=fz-w&group_id=other".to_owned(),
        format!("client_id={long}&group_id=g"),
        "after=-1".to_owned(),
        "after=99999999999999999999999".to_owned(),
        "limit=0".to_owned(),
        "limit=abc".to_owned(),
        "limit=100000".to_owned(),
        "client_id=a&client_id=b".to_owned(),
        "%zz=%".to_owned(),
        "client_id=%ff%fe&group_id=%00".to_owned(),
        "group_id=../../x".to_owned(),
        "=&&=&".to_owned(),
        format!("{}={}", "k".repeat(2000), "v".repeat(2000)),
    ];
    let n = 1 + rng.below(3);
    (0..n)
        .map(|_| rng.pick(&pieces).clone())
        .collect::<Vec<_>>()
        .join("&")
}

fn body(rng: &mut Rng, route: &str) -> Vec<u8> {
    let good = match route {
        "/login" => json!({"username": "wendy", "password": "not-the-password"}),
        "/mcp/register" => json!({"client_id": "fz-w", "group_id": "fz-g"}),
        "/mcp/send" => json!({"sender_id": "fz-w", "group_id": "fz-g", "payload": "hi"}),
        "/mcp" => json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "search_docs", "arguments": {"query": "send"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}}}}),
        _ => json!({}),
    };
    match rng.below(22) {
        0 => Vec::new(),
        1 | 2 => good.to_string().into_bytes(),
        3 => json!({"client_id": 5, "group_id": [], "sender_id": null, "payload": {}})
            .to_string()
            .into_bytes(),
        4 => "[".repeat(100_000).into_bytes(),
        5 => format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000)).into_bytes(),
        6 => vec![b'a'; 2 * 1024 * 1024 + 1],
        7 => b"\xff\xfe\xfd{\"client_id\":\"\xc0\xae\"}".to_vec(),
        8 => {
            let n = 1 + rng.below(4096);
            rng.bytes(n)
        }
        9 => b"null".to_vec(),
        10 => b"[]".to_vec(),
        11 => b"\"just a string\"".to_vec(),
        12 => json!({"client_id": "a".repeat(200), "group_id": "g", "username": "u".repeat(10_000), "password": "p"})
            .to_string()
            .into_bytes(),
        13 => json!({"client_id": "\u{fc}ber", "group_id": "a\u{0}b", "sender_id": "../x", "username": "a b", "password": ""})
            .to_string()
            .into_bytes(),
        14 => br#"{"client_id":"a","client_id":"b","group_id":"g"}"#.to_vec(),
        15 => br#"{"sender_id":"fz-w","group_id":"fz-g","payload":1e400}"#.to_vec(),
        16 => json!({"sender_id": "fz-w", "group_id": "fz-g", "payload": "p".repeat(70_000)})
            .to_string()
            .into_bytes(),
        17 => json!({"sender_id": "fz-other", "group_id": "fz-g", "payload": 1})
            .to_string()
            .into_bytes(),
        18 => json!({"username": "wendy", "password": "p".repeat(5000)})
            .to_string()
            .into_bytes(),
        19 => br#"{"sender_id":"fz-w","group_id":"fz-g"}"#.to_vec(),
        20 => b"{\"client_id\": \"fz-w\", \"group_id\": \"fz-g\"".to_vec(),
        _ => {
            let mut v = good.to_string().into_bytes();
            let cut = rng.below(v.len().max(1));
            v.truncate(cut);
            v
        }
    }
}

fn request(rng: &mut Rng, tokens: &Tokens) -> (String, Vec<u8>) {
    let route = *rng.pick(ROUTES);
    // Mostly the route's own method, so that cases get past method checks into parsing.
    let method = if rng.chance(70) {
        match route {
            "/login" | "/mcp/register" | "/mcp/send" | "/admin/cleanup" | "/mcp" => "POST",
            _ => "GET",
        }
    } else {
        *rng.pick(METHODS)
    };
    let mut target = route.to_owned();
    if rng.chance(40) {
        target.push('?');
        target.push_str(&query(rng));
    }
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let auth = match rng.below(9) {
        0 | 1 => None,
        2 | 3 => Some(format!("Bearer {}", tokens.writer)),
        4 => Some(format!("Bearer {}", tokens.reader)),
        5 => Some("Bearer garbage.garbage.garbage".to_owned()),
        6 => Some("Basic d2VuZHk6d2VuZHktcHc=".to_owned()),
        7 => Some(format!("Bearer {}", "A".repeat(8000))),
        _ => Some(format!(
            "Bearer {}\r\nAuthorization: Bearer {}",
            tokens.writer, tokens.reader
        )),
    };
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    let content_type = match rng.below(8) {
        0 | 1 => None,
        2 | 3 => Some("application/json"),
        4 => Some("text/plain"),
        5 => Some("application/json; charset=utf-8"),
        6 => Some("application/json\r\nContent-Type: text/html"),
        _ => Some("multipart/form-data; boundary=x"),
    };
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if rng.chance(15) {
        head.push_str(
            "X-Odd: \u{80}\u{ff}\r\nSpin-Client-Addr: 6.6.6.6:1\r\nSpin-Path-Info: /../../etc\r\n",
        );
    }
    if rng.chance(10) {
        for i in 0..60 {
            head.push_str(&format!("X-Many-{i}: {i}\r\n"));
        }
    }
    if rng.chance(10) {
        head.push_str(&format!("If-None-Match: \"{}\"\r\n", "e".repeat(3000)));
    }
    if rng.chance(10) {
        head.push_str("X-Request-Id: bad id with spaces and \u{e9}\r\n");
    }
    let body = if rng.chance(70) {
        body(rng, route)
    } else {
        Vec::new()
    };
    if !body.is_empty() || rng.chance(50) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.clone().into_bytes();
    bytes.extend_from_slice(&body);
    (
        format!("{method} {target:.120} (body {} bytes)", body.len()),
        bytes,
    )
}

/// A JSON-RPC error response (integer code, message): how the MCP endpoint, whose clients
/// speak JSON-RPC, reports every error (docs/mcp.md).
fn is_jsonrpc_error(reply: &RawReply) -> bool {
    serde_json::from_str::<serde_json::Value>(&reply.body).is_ok_and(|v| {
        v["jsonrpc"] == "2.0" && v["error"]["code"].is_i64() && v["error"]["message"].is_string()
    })
}

/// What every answer must be: a 2xx/3xx, or a 4xx carrying the JSON error body (a JSON-RPC
/// error on the MCP endpoint).
fn check(reply: &RawReply, method: &str, target: &str, what: &str) {
    let mcp = target.split('?').next() == Some("/mcp");
    assert!(
        (200..500).contains(&reply.status),
        "{what}: status {} (a 5xx, or no answer)\n{:.600}",
        reply.status,
        reply.raw
    );
    if reply.status >= 400 && method != "HEAD" {
        assert!(
            reply.error_code().is_some() || (mcp && is_jsonrpc_error(reply)),
            "{what}: {} without the JSON error body\n{:.600}",
            reply.status,
            reply.raw
        );
    }
}

fn setup(server: &Server) -> Tokens {
    let writer = server.token("wendy");
    let reader = server.token("rita");
    let other = server.token("will");
    assert_eq!(server.register(&writer, "fz-w", "fz-g").status, 201);
    assert_eq!(server.register(&other, "fz-other", "fz-g").status, 201);
    Tokens { writer, reader }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn hostile_requests_on_every_route_get_4xx_json_never_5xx() {
    let server = support::app();
    let tokens = setup(&server);
    let cases = env_number("MCP_EDGE_FUZZ_CASES", DEFAULT_CASES);
    let seed = env_number("MCP_EDGE_FUZZ_SEED", 0x6d63_702d_6564_6765);
    let mut rng = Rng(seed | 1);
    // Warm every component before measuring memory.
    for route in ROUTES {
        server.exchange(
            format!("GET {route} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
    }
    let rss_before = server.rss_kib();
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for case in 0..cases {
        let (what, bytes) = request(&mut rng, &tokens);
        let method = what.split(' ').next().unwrap_or_default().to_owned();
        let target = what.split(' ').nth(1).unwrap_or_default().to_owned();
        let reply = server.exchange(&bytes);
        check(
            &reply,
            &method,
            &target,
            &format!("case {case} (seed {seed}): {what}"),
        );
        *statuses.entry(reply.status).or_default() += 1;
    }
    // Still serving, state intact, memory bounded.
    let health = server.get("/health", &[]);
    assert_eq!(health.status, 200);
    let rss_after = server.rss_kib();
    assert!(
        rss_after < rss_before + 256 * 1024,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB over {cases} cases"
    );
    let got = server.receive(&tokens.writer, "fz-w", "fz-g", None);
    assert_eq!(got.status, 200, "{}", got.text());
    // The generator must reach past the front door: some cases succeed, many are refused.
    assert!(
        statuses.keys().any(|s| *s < 300) && statuses.keys().filter(|s| **s >= 400).count() >= 5,
        "too narrow a spread of answers: {statuses:?}"
    );
    println!("{cases} cases, seed {seed}: {statuses:?}");
}

/// Bytes that are not a well-formed HTTP/1.1 request never reach a component; the HTTP layer
/// refuses them with a 4xx (or closes the connection) and the server carries on.
#[test]
fn malformed_http_is_refused_at_the_door_and_the_server_carries_on() {
    let server = support::app();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "conflicting content-length",
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
                .to_vec(),
        ),
        (
            "NUL in a header",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_vec(),
        ),
        (
            "request line of 100 KB",
            format!("GET /docs/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        ),
        (
            "200 headers",
            format!(
                "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..200).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
        ),
        (
            "bad chunk size",
            b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "HTTP/2 preface on the HTTP/1 port",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("HTTP/0.9", b"GET /health\r\n".to_vec()),
        (
            "unknown version",
            b"GET /health HTTP/7.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let reply = server.exchange(&bytes);
        assert!(
            reply.status == 0 || (400..500).contains(&reply.status),
            "{what}: {}\n{:.400}",
            reply.status,
            reply.raw
        );
        // The HTTP layer's own refusals (400, 414, 431) close the connection with no body:
        // there is no request to answer. Anything it lets through answers in JSON.
        if ![0, 400, 414, 431].contains(&reply.status) {
            assert!(reply.error_code().is_some(), "{what}: {:.400}", reply.raw);
        }
    }
    assert_eq!(server.get("/health", &[]).status, 200);
}
