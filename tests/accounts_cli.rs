//! `mcp-edge user …` and `mcp-edge api-key …` against a data directory, beside a running
//! `mcp-edge up` on the same SQLite store: what the CLI changes, the server sees on its next
//! request.

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use serde_json::json;
use support::{binary, server_in};

/// Runs the CLI on `dir` with `stdin`; its output.
fn cli(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("SPIN_VARIABLE_USERS")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcp-edge");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn users_and_api_keys_managed_from_the_cli_take_effect_on_the_running_server() {
    support::ensure_built("spin.toml");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let path = dir.path().to_owned();
    let added = cli(
        &path,
        &["user", "add", "carl", "--role", "writer"],
        "carl-pass-1\n",
    );
    ok(&added);
    // Every change is an audit record.
    let audit = String::from_utf8_lossy(&added.stderr);
    assert!(
        audit.contains(r#""audit":"user_add""#) && audit.contains(r#""target":"carl""#),
        "{audit}"
    );
    let short = cli(&path, &["user", "add", "dan"], "short\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("invalid_password"));

    let server = server_in("spin.toml", dir.clone()).start();
    let carl = server.login("carl", "carl-pass-1");
    assert_eq!(server.register(&carl, "cli-1", "g").status, 201);
    let list = ok(&cli(&path, &["user", "list"], ""));
    assert!(
        list.lines().any(|l| l.starts_with("carl\twriter\tactive")),
        "{list}"
    );

    let created = cli(
        &path,
        &[
            "api-key", "create", "--name", "bot", "--user", "carl", "--role", "writer",
        ],
        "",
    );
    let key = ok(&created).trim().to_owned();
    assert!(key.starts_with("mcpe_"), "{key}");
    assert_eq!(server.register(&key, "cli-2", "g").status, 201);
    let keys = ok(&cli(&path, &["api-key", "list"], ""));
    assert!(
        !keys.contains(&key[22..]),
        "secrets are never listed: {keys}"
    );
    let id = keys
        .lines()
        .find(|l| l.contains("\tbot\tcarl\twriter\tactive"))
        .and_then(|l| l.split('\t').next())
        .expect("the key is listed")
        .to_owned();
    ok(&cli(&path, &["api-key", "revoke", &id], ""));
    let revoked = server.register(&key, "cli-3", "g");
    assert_eq!(
        (revoked.status, revoked.error_code().as_str()),
        (401, "invalid_api_key")
    );

    ok(&cli(&path, &["user", "passwd", "carl"], "carl-pass-2\n"));
    let old = server.post_json(
        "/login",
        None,
        &json!({"username": "carl", "password": "carl-pass-1"}),
    );
    assert_eq!(old.status, 401);
    server.login("carl", "carl-pass-2");
    ok(&cli(&path, &["user", "remove", "carl"], ""));
    let gone = server.post_json(
        "/login",
        None,
        &json!({"username": "carl", "password": "carl-pass-2"}),
    );
    assert_eq!(gone.status, 401);
    let unknown = cli(&path, &["user", "remove", "carl"], "");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user carl"));
}
