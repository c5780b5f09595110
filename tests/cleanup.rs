//! Scheduled cleanup end to end: with short settings, stale clients and expired messages
//! disappear on the schedule while live clients and recent messages stay.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{binary, root, server};

fn short_settings(b: support::ServerBuilder) -> support::ServerBuilder {
    b.env("SPIN_VARIABLE_CLIENT_TIMEOUT_SECONDS", "2")
        .env("SPIN_VARIABLE_MESSAGE_RETENTION_SECONDS", "3")
        .env("SPIN_VARIABLE_CLEANUP_BUCKET_SECONDS", "1")
}

#[test]
fn the_schedule_expires_stale_clients_and_old_messages_but_nothing_live() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let s = short_settings(server("spin.toml"))
        .arg("--cleanup-schedule")
        .arg("* * * * * *")
        .arg("--audit-log")
        .arg(audit.to_str().unwrap())
        .start();
    assert!(
        s.printed.iter().any(|l| l.starts_with("Cleanup scheduled")),
        "{:?}",
        s.printed
    );
    let t = s.token("wendy");
    for c in ["stale", "live", "sender"] {
        assert_eq!(s.register(&t, c, "g").status, 201);
    }
    for i in 0..3 {
        assert_eq!(s.send(&t, "sender", "g", json!({"old": i})).status, 202);
    }
    // keep `live` and `sender` heartbeating past the timeout and the retention
    let deadline = Instant::now() + Duration::from_secs(7);
    let mut live_cursor = 0;
    while Instant::now() < deadline {
        let r = s.receive(&t, "live", "g", Some(live_cursor));
        assert_eq!(r.status, 200);
        live_cursor = r.json()["next_after"].as_u64().unwrap();
        s.register(&t, "sender", "g");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        live_cursor, 3,
        "the live client got the old messages while they lived"
    );
    let fresh = s.send(&t, "sender", "g", json!("fresh"));
    assert_eq!(fresh.status, 202);
    // The live client gets it (asked at once: with a 3 s retention, a slow machine could see
    // it trimmed before the stale client is gone).
    let live = s.receive(&t, "live", "g", Some(live_cursor)).json();
    assert_eq!(live["messages"][0]["payload"], "fresh", "{live}");
    live_cursor = live["next_after"].as_u64().unwrap();

    // wait (bounded) for a scheduled run to remove the stale client
    let deadline = Instant::now() + Duration::from_secs(15);
    let gone = loop {
        let r = s.receive(&t, "stale", "g", Some(0));
        if matches!(r.status, 404 | 410) || Instant::now() > deadline {
            break r;
        }
        s.receive(&t, "live", "g", Some(live_cursor));
        std::thread::sleep(Duration::from_millis(200));
    };
    // Expired (410), or, past the retention too, forgotten (404): either way not live.
    assert!(
        matches!(
            (gone.status, gone.error_code().as_str()),
            (410, "client_expired") | (404, "client_not_found")
        ),
        "{}",
        gone.text()
    );
    // the live client is untouched; old messages are gone for anyone who asks from the
    // start (the fresh one too, once past the retention)
    let live = s.receive(&t, "live", "g", Some(live_cursor));
    assert_eq!(live.status, 200, "{}", live.text());
    assert_eq!(s.register(&t, "late", "g").status, 201);
    let from_start = s.receive(&t, "live", "g", Some(0)).json();
    let payloads: Vec<_> = from_start["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].clone())
        .collect();
    assert!(
        payloads.iter().all(|p| p == &json!("fresh")),
        "expired messages were deleted: {payloads:?}"
    );

    let lines = std::fs::read_to_string(&audit).unwrap();
    let cleanup_runs: Vec<serde_json::Value> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["audit"] == "cleanup")
        .collect();
    assert!(cleanup_runs.len() >= 2, "runs are audited");
    let removed: u64 = cleanup_runs
        .iter()
        .map(|r| r["clients_removed"].as_u64().unwrap())
        .sum();
    assert_eq!(removed, 1, "only the stale client was removed");
    let messages: u64 = cleanup_runs
        .iter()
        .map(|r| r["messages_removed"].as_u64().unwrap())
        .sum();
    assert_eq!(messages, 3);
    let admin = format!("Bearer {}", s.token("admin"));
    let metrics = s.get("/metrics", &[("authorization", &admin)]).text();
    assert!(
        metrics.contains("mcp_edge_cleanup_runs_total{outcome=\"ok\"}"),
        "{metrics}"
    );
}

#[test]
fn the_admin_route_runs_cleanup_on_demand_for_admins_only() {
    let s = short_settings(server("spin.toml"))
        .arg("--kv")
        .arg("memory")
        .arg("--cleanup-schedule")
        .arg("off")
        .start();
    let (admin, writer) = (s.token("admin"), s.token("wendy"));
    s.register(&writer, "idle", "g");
    std::thread::sleep(Duration::from_millis(3_500));
    let denied = s.post_json("/admin/cleanup", Some(&writer), &json!({}));
    assert_eq!(
        (denied.status, denied.error_code().as_str()),
        (403, "insufficient_role")
    );
    assert_eq!(s.post_json("/admin/cleanup", None, &json!({})).status, 401);
    let ran = s.post_json("/admin/cleanup", Some(&admin), &json!({}));
    assert_eq!(ran.status, 200, "{}", ran.text());
    assert_eq!(ran.json()["clients_removed"], 1);
    assert_eq!(ran.json()["complete"], true);
    let gone = s.receive(&writer, "idle", "g", None);
    assert_eq!(
        (gone.status, gone.error_code().as_str()),
        (410, "client_expired")
    );
}

#[test]
fn mcp_edge_cleanup_runs_one_pass_by_hand() {
    let s = short_settings(server("spin.toml"))
        .arg("--cleanup-schedule")
        .arg("off")
        .start();
    let t = s.token("wendy");
    s.register(&t, "idle", "g");
    let dir = s.dir();
    s.stop("TERM");
    std::thread::sleep(Duration::from_millis(3_500));
    let out = std::process::Command::new(binary())
        .current_dir(root())
        .args([
            "cleanup",
            "--no-build",
            "--manifest",
            "spin.toml",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("SPIN_VARIABLE_JWT_SECRET", support::SECRET)
        .env("SPIN_VARIABLE_USERS", support::users_json())
        .env("SPIN_VARIABLE_CLIENT_TIMEOUT_SECONDS", "2")
        .env("SPIN_VARIABLE_CLEANUP_BUCKET_SECONDS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (report["audit"].as_str(), report["clients_removed"].as_u64()),
        (Some("cleanup"), Some(1))
    );
}
