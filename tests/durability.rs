//! State survives restarts on the embedded SQLite store, including a SIGKILL: everything
//! the runtime acknowledged is still there, and tokens signed before keep verifying.

mod support;

use serde_json::json;
use support::{server, server_in};

fn flow_survives(signal: &str) {
    // No secret or users given: the first-run bootstrap generates and persists them.
    let first = server("spin.toml").unconfigured().start();
    let password_line = first
        .printed
        .iter()
        .find(|l| l.contains("password"))
        .expect("admin password printed");
    let password = password_line.rsplit(' ').next().unwrap().to_owned();
    let token = first.login("admin", &password);
    assert_eq!(first.register(&token, "sender", "g").status, 201);
    assert_eq!(first.register(&token, "reader", "g").status, 201);
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = first.send(&token, "sender", "g", json!({"n": i}));
        assert_eq!(r.status, 202);
        ids.push(r.json()["message_id"].clone());
    }
    let dir = first.dir();
    let status = first.stop(signal);
    if signal == "TERM" {
        assert!(
            status.success(),
            "SIGTERM drains and exits cleanly: {status}"
        );
    }

    let second = server_in("spin.toml", dir).unconfigured().start();
    assert!(
        !second.printed.iter().any(|l| l.contains("password")),
        "the password is printed only once"
    );
    // the token issued before the restart still verifies: the secret was reused
    let r = second.receive(&token, "reader", "g", Some(0));
    assert_eq!(r.status, 200, "{}", r.text());
    let got: Vec<_> = r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].clone())
        .collect();
    assert_eq!(got, ids, "every acknowledged message survived, in order");
    assert_eq!(
        second.register(&token, "sender", "g").status,
        200,
        "the registration survived"
    );
    assert_eq!(second.login("admin", &password).len(), token.len());
}

#[test]
fn state_survives_a_graceful_restart() {
    flow_survives("TERM");
}

#[test]
fn state_survives_sigkill() {
    flow_survives("KILL");
}
