//! Runtime behaviour beyond the API: store grants, variables, logs, the CLI.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{SECRET, binary, ensure_built, root, server};

#[test]
fn a_store_the_manifest_does_not_grant_cannot_be_opened() {
    let s = server("tests/fixtures/ungranted.toml")
        .arg("--kv")
        .arg("memory")
        .start();
    assert_eq!(s.get("/health", &[]).status, 200);
    let ready = s.get("/health/ready", &[]);
    assert_eq!(
        (ready.status, ready.error_code().as_str()),
        (503, "not_ready")
    );
    assert!(ready.text().contains("access denied"), "{}", ready.text());
}

#[test]
fn a_missing_required_variable_stops_start_up_and_is_named() {
    ensure_built("spin.toml");
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .current_dir(root())
        .args([
            "up",
            "--no-build",
            "--listen",
            "127.0.0.1:0",
            "--manifest",
            "tests/fixtures/required-variable.toml",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("SPIN_VARIABLE_UPSTREAM_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "mcp-edge kept running without a required variable"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("upstream_api_key") && stderr.contains("SPIN_VARIABLE_UPSTREAM_API_KEY"),
        "{stderr}"
    );
}

#[test]
fn json_logs_carry_request_fields_and_never_the_secret() {
    let s = server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--log-format")
        .arg("json")
        .env("RUST_LOG", "info")
        .start();
    let token = s.token("wendy");
    assert_eq!(
        s.get("/health", &[("x-request-id", "log-check-1")]).status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let log = s.stderr();
        if let Some(line) = log.lines().find(|l| l.contains("log-check-1")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no request log line: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["request_id"], "log-check-1");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["component"], "health");
    assert_eq!(entry["method"], "GET");
    assert!(entry["duration_ms"].is_number());
    let log = s.stderr();
    assert!(!log.contains(SECRET), "the JWT secret leaked into the logs");
    assert!(!log.contains(&token), "a token leaked into the logs");
    assert!(!log.contains("wendy-pw"));
}

#[test]
fn the_runtime_config_file_supplies_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runtime-config.toml");
    std::fs::write(&file, "[variables]\ntoken_ttl_seconds = \"60\"\n").unwrap();
    let s = server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--runtime-config-file")
        .arg(file.to_str().unwrap())
        .start();
    let login = s.post_json(
        "/login",
        None,
        &json!({"username": "rita", "password": "rita-pw"}),
    );
    assert_eq!(login.json()["expires_in"], 60);
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    let mut child = Command::new(binary())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let users = mcp_edge_domain::accounts::parse_users(
        &json!([{"username": "u", "role": "reader", "password_hash": hash}]).to_string(),
    )
    .unwrap();
    use mcp_edge_domain::accounts::users::password_matches;
    assert!(password_matches("correct horse", &users[0].password_hash));
    assert!(!password_matches(
        "correct horse\n",
        &users[0].password_hash
    ));
}

#[test]
fn reader_only_docs_need_a_token() {
    let s = server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .env("SPIN_VARIABLE_DOCS_ACCESS", "reader")
        .start();
    let anonymous = s.get("/docs/v1/", &[]);
    assert_eq!(anonymous.status, 401);
    let auth = format!("Bearer {}", s.token("rita"));
    let ok = s.get("/docs/v1/", &[("authorization", &auth)]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("cache-control"), Some("private, no-cache"));
}

#[test]
fn a_declared_oversized_body_gets_413_from_the_headers_alone() {
    let s = server("spin.toml").arg("--kv").arg("memory").start();
    // No body follows: the answer must not wait for one.
    let head = "POST /mcp/send HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2097152\r\n\r\n";
    let reply = s.raw(head.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("payload_too_large"), "{reply}");
}
