//! The API end to end: the full flow, the error and auth tables, the body limit, docs with
//! ETag/304, health and the headers every answer carries.

use serde_json::json;

use crate::deployment::{Deployment, Kind};

pub fn full_flow_two_clients_exchange_messages_and_acknowledge(kind: Kind) {
    let s = Deployment::start(kind, &[]);
    let (wendy, will) = (s.token("wendy"), s.token("will"));

    assert_eq!(s.register(&wendy, "alice", "team").status, 201);
    assert_eq!(s.register(&will, "bob", "team").status, 201);
    let again = s.register(&wendy, "alice", "team");
    assert_eq!(again.status, 200, "repeat registration is idempotent");

    let from_alice = s.send(&wendy, "alice", "team", json!({"text": "hi bob"}));
    assert_eq!(from_alice.status, 202, "{}", from_alice.text());
    let sent = from_alice.json();
    assert!(sent["message_id"].as_str().is_some_and(|id| id.len() == 32));
    assert_eq!(s.send(&will, "bob", "team", json!("hi alice")).status, 202);

    let for_bob = s.receive(&will, "bob", "team", Some(0));
    assert_eq!(for_bob.status, 200);
    let body = for_bob.json();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        1,
        "bob does not get his own message: {body}"
    );
    assert_eq!(messages[0]["payload"], json!({"text": "hi bob"}));
    assert_eq!(messages[0]["sender_id"], "alice");
    assert_eq!(messages[0]["message_id"], sent["message_id"]);
    let next = body["next_after"].as_u64().unwrap();

    let for_alice = s.receive(&wendy, "alice", "team", None).json();
    assert_eq!(for_alice["messages"][0]["payload"], "hi alice");
    // alice's simple poll advanced her stored cursor
    assert_eq!(
        s.receive(&wendy, "alice", "team", None).json()["messages"],
        json!([])
    );

    // bob acknowledges with `after`; nothing is redelivered
    let acked = s.receive(&will, "bob", "team", Some(next)).json();
    assert_eq!(acked["messages"], json!([]));
    assert_eq!(acked["next_after"], next);
    assert_eq!(
        s.receive(&will, "bob", "team", None).json()["messages"],
        json!([])
    );
}

pub fn auth_errors_are_401_and_403_with_json_bodies(kind: Kind) {
    let s = Deployment::start(kind, &[]);
    let (wendy, rita, will) = (s.token("wendy"), s.token("rita"), s.token("will"));
    s.register(&wendy, "w1", "g");
    let body = json!({"client_id": "x1", "group_id": "g"}).to_string();
    let cases: Vec<(Vec<(&str, String)>, u16)> = vec![
        (vec![], 401),
        (vec![("authorization", "Bearer".into())], 401),
        (
            vec![("authorization", "Basic d2VuZHk6d2VuZHktcHc=".into())],
            401,
        ),
        (vec![("authorization", "Bearer not.a.token".into())], 401),
        (vec![("authorization", format!("Bearer {wendy}x"))], 401),
        (vec![("authorization", format!("Bearer {rita}"))], 403),
    ];
    for (headers, status) in cases {
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.push(("content-type", "application/json"));
        let r = s.request("POST", "/mcp/register", &h, Some(body.as_bytes()));
        assert_eq!(r.status, status, "{headers:?}: {}", r.text());
        r.error_code();
        if status == 401 {
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    // a reader may receive but not send
    assert_eq!(s.send(&rita, "w1", "g", json!(1)).status, 403);
    // another subject cannot use wendy's client
    let stolen = s.send(&will, "w1", "g", json!(1));
    assert_eq!(
        (stolen.status, stolen.error_code().as_str()),
        (403, "client_owned_by_other")
    );
    assert_eq!(s.receive(&will, "w1", "g", None).status, 403);
    assert_eq!(s.register(&will, "w1", "g").status, 403);
    // a member of group g cannot read group h
    assert_eq!(
        s.receive(&wendy, "w1", "h", None).error_code(),
        "not_in_group"
    );
    // wrong password and unknown user look the same
    let wrong = s.post_json(
        "/login",
        None,
        &json!({"username": "wendy", "password": "nope"}),
    );
    let unknown = s.post_json(
        "/login",
        None,
        &json!({"username": "nobody", "password": "wendy-pw"}),
    );
    assert_eq!(
        (wrong.status, wrong.text()),
        (unknown.status, unknown.text())
    );
    assert_eq!(wrong.status, 401);
}

pub fn validation_errors_are_4xx_never_5xx(kind: Kind) {
    let s = Deployment::start(kind, &[]);
    let t = s.token("wendy");
    s.register(&t, "c1", "g");
    let auth = format!("Bearer {t}");
    let json_headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("POST", "/mcp/register", "{", 400, "invalid_json"),
        ("POST", "/mcp/register", "", 400, "empty_body"),
        (
            "POST",
            "/mcp/register",
            r#"{"client_id":"a b","group_id":"g"}"#,
            400,
            "invalid_id",
        ),
        (
            "POST",
            "/mcp/register",
            r#"{"client_id":5,"group_id":"g"}"#,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/mcp/send",
            r#"{"sender_id":"c1","group_id":"g"}"#,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/mcp/send",
            r#"{"sender_id":"ghost","group_id":"g","payload":1}"#,
            404,
            "client_not_found",
        ),
        ("GET", "/mcp/receive?client_id=c1", "", 400, "invalid_query"),
        (
            "GET",
            "/mcp/receive?client_id=c1&group_id=g&limit=0",
            "",
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/mcp/receive?client_id=c1&group_id=g&after=-3",
            "",
            400,
            "invalid_query",
        ),
        ("DELETE", "/mcp/send", "", 405, "method_not_allowed"),
        ("GET", "/login", "", 405, "method_not_allowed"),
        ("GET", "/nowhere", "", 404, "route_not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let body = (!body.is_empty()).then_some(body.as_bytes());
        let r = s.request(method, path, &json_headers, body);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (*status, *code),
            "{method} {path}"
        );
    }
    let form = s.request(
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"a=b"),
    );
    assert_eq!(
        (form.status, form.error_code().as_str()),
        (415, "unsupported_media_type")
    );
    let big_payload = "x".repeat(70 * 1024);
    let r = s.send(&t, "c1", "g", json!(big_payload));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "payload_too_large")
    );
}

pub fn bodies_over_the_cap_get_413(kind: Kind) {
    let s = Deployment::start(kind, &[]);
    let t = s.token("wendy");
    // With a length: refused as JSON (the runtime answers from the headers and may close
    // before the body is written, so this goes on a raw connection that ignores that).
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(1100 * 1024));
    let mut request = format!(
        "POST /mcp/send HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {t}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        big.len()
    )
    .into_bytes();
    request.extend_from_slice(big.as_bytes());
    let r = s.exchange(&request);
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (413, Some("payload_too_large"))
    );
    // Streamed without a length: cut off once it passes the cap.
    let mut chunked =
        b"POST /mcp/send HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = s.raw(&chunked);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("payload_too_large"), "{reply}");
    // Never finished: answered once the cap is passed, not when the body ends (it does not).
    let unfinished = &chunked[..chunked.len() - b"0\r\n\r\n".len()];
    let reply = s.raw(unfinished);
    assert!(
        reply.starts_with("HTTP/1.1 413"),
        "unfinished body: {reply}"
    );
}

pub fn docs_are_versioned_cacheable_and_confined(kind: Kind) {
    let s = Deployment::start(kind, &[]);
    let list = s.get("/docs", &[]).json();
    let latest = list["latest"].as_str().unwrap().to_owned();
    assert!(list["versions"].as_array().unwrap().len() >= 2, "{list}");

    let page = s.get("/docs/v1/", &[("accept", "text/html")]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text().contains("<h1"));
    assert!(page.header("cache-control").unwrap().starts_with("public"));
    let etag = page.header("etag").unwrap().to_owned();
    let revalidated = s.get(
        "/docs/v1/",
        &[("accept", "text/html"), ("if-none-match", &etag)],
    );
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());

    let raw = s.get("/docs/v1/index.md", &[("accept", "text/markdown")]);
    assert_eq!(
        raw.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    assert!(
        raw.text().starts_with("---\ntitle: mcp-edge\n"),
        "{}",
        raw.text()
    );
    assert_eq!(
        s.get(&format!("/docs/{latest}/"), &[]).text(),
        s.get("/docs/latest/", &[]).text()
    );

    for attack in [
        "/docs/v1/../../Cargo.toml",
        "/docs/v1/%2e%2e/%2e%2e/Cargo.toml",
        "/docs/v1/..%2f..%2fCargo.toml",
        "/docs/v1/%252e%252e/x",
        "/docs/v1/..%5c..%5cCargo.toml",
        "/docs//etc/passwd",
        "/docs/v1/x%00.md",
        "/docs/nope/index.md",
    ] {
        let r = s.get(attack, &[]);
        // Workers parses request URLs by the URL standard, which removes `..` and `%2e%2e`
        // segments before any code runs (as Cloudflare's edge does): those paths arrive
        // outside /docs there. Either way: 404, JSON, nothing served.
        let resolved_away =
            kind == Kind::Workers && (attack.contains("/../") || attack.contains("/%2e%2e/"));
        let expected = if resolved_away {
            "route_not_found"
        } else {
            "doc_not_found"
        };
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, expected),
            "{attack}"
        );
    }
}

pub fn health_request_ids_and_security_headers(kind: Kind) {
    let s = Deployment::start(kind, &[]);
    let live = s.get("/health", &[]);
    assert_eq!(
        (live.status, live.json()["status"].as_str()),
        (200, Some("ok"))
    );
    assert_eq!(s.get("/health/ready", &[]).status, 200);
    assert!(live.header("x-request-id").is_some_and(|id| !id.is_empty()));
    assert_eq!(live.header("x-content-type-options"), Some("nosniff"));
    let traced = s.get("/health", &[("x-request-id", "trace-123")]);
    assert_eq!(traced.header("x-request-id"), Some("trace-123"));
    assert!(
        s.get("/health", &[]).header("server").is_none(),
        "no server version leak"
    );
}
