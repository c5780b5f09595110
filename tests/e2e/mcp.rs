//! An official MCP client (the TypeScript SDK, tests/mcp/client.mjs) against the deployment's
//! `/mcp`, in each protocol era it speaks: pinned to 2026-07-28, with the `initialize`
//! handshake of earlier revisions, and negotiating on its own. It lists the tools, finds the
//! expected page first for several queries, fetches a page in two chunks, reads a resource,
//! is refused the message tools without a token, and with a writer token sends a message
//! that a REST receiver gets exactly once.

use std::process::Command;

use serde_json::{Value, json};

use crate::deployment::{Deployment, Kind};
use crate::support::{self, root};

fn run_client(base: &str, token: &str, mode: &str) -> Value {
    let out = Command::new("node")
        .arg("tests/mcp/client.mjs")
        .args([base, token, mode])
        .current_dir(root())
        .output()
        .expect("run node tests/mcp/client.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

pub fn an_mcp_client_searches_reads_and_sends_exactly_once(kind: Kind) {
    support::ensure_mcp_packages();
    let s = Deployment::start(kind, &[]);
    let writer = s.token("wendy");
    let quickstart = std::fs::read_to_string(root().join("static/docs/v1/quickstart.md")).unwrap();
    for (i, mode) in ["2026-07-28", "legacy", "auto"].into_iter().enumerate() {
        let seen = run_client(&s.base, &writer, mode);
        assert!(seen.get("failure").is_none(), "{mode}: {seen:#}");
        let era = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(seen["protocol_version"], era, "{seen:#}");
        assert_eq!(seen["server"], "mcp-edge");
        assert_eq!(
            seen["tools"],
            json!([
                "search_docs",
                "fetch_doc",
                "list_doc_versions",
                "register_client",
                "send_message",
                "receive_messages"
            ])
        );
        for (query, first) in [
            ("quickstart register two clients", "docs://v1/quickstart"),
            ("idempotency key retries", "docs://v1/api"),
            ("messages between clients in groups", "docs://v1/"),
        ] {
            assert_eq!(seen["searches"][query][0], first, "{query}: {seen:#}");
        }
        assert_eq!(seen["fetched"]["first_next"], 200);
        assert_eq!(seen["fetched"]["rest_next"], Value::Null);
        assert_eq!(seen["fetched"]["text"], quickstart.as_str());
        let resources: Vec<&str> = seen["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for uri in [
            "docs://v1/",
            "docs://v1/quickstart",
            "docs://v1/api",
            "docs://v0/api",
        ] {
            assert!(resources.contains(&uri), "{uri}: {resources:?}");
        }
        assert_eq!(seen["read"]["mime"], "text/markdown");
        assert!(
            seen["read"]["starts"]
                .as_str()
                .unwrap()
                .contains("API reference"),
            "{seen:#}"
        );
        assert_eq!(seen["missing"], -32602, "{seen:#}");
        let refused = seen["without_token"].as_str().unwrap();
        assert!(refused.contains("Authorization"), "{refused}");

        // What the MCP client sent, a REST receiver gets once.
        let seq = seen["sent"]["seq"].as_u64().expect("a sequence number");
        assert_eq!(seq, i as u64 + 1, "{seen:#}");
        let got = s.receive(&writer, "mcp-b", "mcp-g", Some(seq - 1));
        assert_eq!(got.status, 200, "{}", got.text());
        let body = got.json();
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{body:#}");
        assert_eq!(messages[0]["payload"], json!({"from": "mcp", "n": 1}));
        assert_eq!(messages[0]["sender_id"], "mcp-a");
        let again = s.receive(&writer, "mcp-b", "mcp-g", body["next_after"].as_u64());
        assert_eq!(again.json()["messages"], json!([]), "{}", again.text());
    }
}
