//! The headers every response carries, and CORS: off by default, exact when configured.

use crate::support;

/// Method, path and request headers of one probe.
type Probe<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

#[test]
fn every_response_has_nosniff_and_names_no_server_software() {
    let server = support::app();
    let token = server.token("wendy");
    let auth = format!("Bearer {token}");
    let cases: Vec<Probe> = vec![
        ("GET", "/health", vec![]),
        ("GET", "/health/ready", vec![]),
        ("GET", "/docs", vec![]),
        ("GET", "/docs/v1/index.md", vec![]),
        ("GET", "/docs/v1/nope.md", vec![]),
        ("GET", "/nowhere", vec![]),
        ("POST", "/login", vec![]),
        (
            "GET",
            "/mcp/receive?client_id=x&group_id=y",
            vec![("authorization", auth.as_str())],
        ),
        ("DELETE", "/mcp/send", vec![]),
        (
            "OPTIONS",
            "/mcp/send",
            vec![
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
        ),
    ];
    for (method, path, headers) in cases {
        let reply = server.request(method, path, &headers, None);
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{method} {path}"
        );
        assert!(
            reply.header("server").is_none() && reply.header("x-powered-by").is_none(),
            "{method} {path}"
        );
        assert!(
            reply.header("access-control-allow-origin").is_none(),
            "{method} {path}: CORS is off by default"
        );
        let text = reply.text().to_lowercase();
        for leak in ["hyper", "wasmtime", "rustc", "panicked"] {
            assert!(
                !text.contains(leak),
                "{method} {path} mentions {leak}: {text}"
            );
        }
    }
    let html = server.get("/docs/v1/", &[]);
    assert!(
        html.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let csp = html
        .header("content-security-policy")
        .expect("CSP on docs HTML");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
}

#[test]
fn cors_answers_listed_origins_only() {
    let server = support::server("spin.toml")
        .env("SPIN_VARIABLE_CORS_ALLOWED_ORIGINS", "https://app.example")
        .start();
    let preflight = |origin: &str| {
        server.request(
            "OPTIONS",
            "/mcp/send",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
            None,
        )
    };
    let ok = preflight("https://app.example");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(ok.header("access-control-allow-methods"), Some("POST"));
    assert!(
        ok.header("access-control-allow-headers")
            .unwrap_or_default()
            .contains("authorization")
    );
    let evil = preflight("https://evil.example");
    assert_eq!(evil.status, 405);
    assert!(evil.header("access-control-allow-origin").is_none());

    let from_app = server.request(
        "GET",
        "/docs/v1/index.md",
        &[("origin", "https://app.example")],
        None,
    );
    assert_eq!(from_app.status, 200);
    assert_eq!(
        from_app.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        from_app
            .header("vary")
            .unwrap_or_default()
            .to_lowercase()
            .contains("origin")
    );
    let login = server.request(
        "POST",
        "/login",
        &[
            ("origin", "https://evil.example"),
            ("content-type", "application/json"),
        ],
        Some(br#"{"username":"wendy","password":"wendy-pw"}"#),
    );
    assert_eq!(login.status, 200);
    assert!(login.header("access-control-allow-origin").is_none());
}
