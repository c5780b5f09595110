//! Operations end to end: the audit trail and Prometheus metrics.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{SECRET, server};

fn wait_for_lines(path: &std::path::Path, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect();
        if lines.len() >= at_least || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_action_is_audited_with_its_request_id_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let s = server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--audit-log")
        .arg(audit.to_str().unwrap())
        .start();
    let token = s.token("wendy");
    let failed = s.post_json(
        "/login",
        None,
        &json!({"username": "wendy", "password": "not-it"}),
    );
    assert_eq!(failed.status, 401);
    s.register(&token, "a", "g");
    s.register(&token, "b", "g");
    let sent = s.send(&token, "a", "g", json!("classified payload"));
    let received = s.receive(&token, "b", "g", None);
    let docs = s.get("/docs/v1/", &[]);
    let lines = wait_for_lines(&audit, 7);
    let kinds: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| (l["audit"].as_str().unwrap(), l["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("login", 200),
            ("login", 401),
            ("register", 201),
            ("register", 201),
            ("send", 202),
            ("receive", 200),
            ("docs", 200)
        ]
    );
    for line in &lines {
        assert!(
            line["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        assert!(
            line["ts"].is_string() && line["component"].is_string(),
            "{line}"
        );
    }
    assert_eq!(lines[0]["user"], "wendy");
    assert!(
        lines[0]["client_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(lines[1]["user"], "wendy");
    assert_eq!(lines[4]["request_id"].as_str(), sent.header("x-request-id"));
    assert_eq!(lines[4]["message_id"], sent.json()["message_id"]);
    assert_eq!(
        (
            lines[5]["client_id"].as_str(),
            lines[5]["message_count"].as_u64()
        ),
        (Some("b"), Some(1))
    );
    assert_eq!(
        lines[5]["request_id"].as_str(),
        received.header("x-request-id")
    );
    assert_eq!(lines[6]["path"], "/v1/");
    assert_eq!(lines[6]["request_id"].as_str(), docs.header("x-request-id"));
    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in [
        "wendy-pw",
        "not-it",
        "classified payload",
        token.as_str(),
        SECRET,
    ] {
        assert!(!text.contains(secret), "the audit log contains {secret}");
    }
}

fn scrape(body: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus exposition")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    let s = server("spin.toml").start();
    let token = s.token("wendy");
    let admin = format!("Bearer {}", s.token("admin"));
    let scrape_as_admin = || s.get("/metrics", &[("authorization", &admin)]);
    let before = scrape_as_admin();
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let before = scrape(&before.text());
    assert_eq!(value(&before, "mcp_edge_build_info", &[]), 1.0);

    s.register(&token, "m1", "g");
    s.register(&token, "m2", "g");
    for i in 0..3 {
        assert_eq!(s.send(&token, "m1", "g", json!(i)).status, 202);
    }
    assert_eq!(
        s.receive(&token, "m2", "g", Some(0)).json()["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    s.get("/nowhere", &[]);

    // audit-derived counters are recorded when the instance finishes: allow a moment
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = scrape(&scrape_as_admin().text());
        if value(&after, "mcp_edge_messages_delivered_total", &[]) >= 3.0
            || Instant::now() > deadline
        {
            break after;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let sends = |sc: &prometheus_parse::Scrape| {
        value(
            sc,
            "mcp_edge_http_requests_total",
            &[("component", "send"), ("status_class", "2xx")],
        )
    };
    assert_eq!(sends(&after) - sends(&before), 3.0);
    assert_eq!(
        value(
            &after,
            "mcp_edge_http_requests_total",
            &[("status_class", "4xx"), ("route", "")]
        ),
        1.0
    );
    assert_eq!(value(&after, "mcp_edge_messages_sent_total", &[]), 3.0);
    assert_eq!(value(&after, "mcp_edge_messages_delivered_total", &[]), 3.0);
    assert_eq!(value(&after, "mcp_edge_registered_clients", &[]), 2.0);
    assert!(
        value(
            &after,
            "mcp_edge_kv_operations_total",
            &[("backend", "sqlite"), ("op", "increment")]
        ) >= 3.0
    );
    for histogram in [
        "mcp_edge_http_request_duration_seconds",
        "mcp_edge_instantiation_duration_seconds",
        "mcp_edge_kv_operation_duration_seconds",
    ] {
        assert!(
            after.samples.iter().any(|s| s.metric == histogram
                && matches!(s.value, prometheus_parse::Value::Histogram(_))),
            "{histogram} is a histogram"
        );
    }
}

#[test]
fn metrics_can_live_on_their_own_listener() {
    let s = server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .start();
    let line = s
        .printed
        .iter()
        .find(|l| l.starts_with("Metrics on http://"))
        .expect("metrics address printed")
        .clone();
    let url = line.trim_start_matches("Metrics on ").to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(&url).call().expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(value(&scrape(&body), "mcp_edge_build_info", &[]), 1.0);
    assert_eq!(
        s.get("/metrics", &[]).status,
        404,
        "not public on the main listener"
    );
}

/// On the main listener, metrics need an admin credential (an access token or an API key),
/// unless the operator asks for them to be public.
#[test]
fn metrics_on_the_main_listener_need_an_admin_unless_made_public() {
    let s = server("spin.toml").arg("--kv").arg("memory").start();
    let status = |auth: Option<&str>| {
        let header = auth.map(|a| format!("Bearer {a}"));
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        s.get("/metrics", &headers).status
    };
    assert_eq!(status(None), 401);
    assert_eq!(status(Some("garbage")), 401);
    assert_eq!(status(Some(&s.token("wendy"))), 403);
    assert_eq!(status(Some(&s.token("admin"))), 200);
    let admin = format!("Bearer {}", s.token("admin"));
    let created = s.request(
        "POST",
        "/admin/api-keys",
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        Some(br#"{"name":"prometheus","role":"admin"}"#),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let key = created.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(status(Some(&key)), 200);

    let public = server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--public-metrics")
        .start();
    assert_eq!(public.get("/metrics", &[]).status, 200);
}
