//! On Workers every request logs one line with the Durable Object calls it made
//! (`{"request": route, "status", "do_calls", "global_do_calls", "onward_do_calls",
//! "onward_global_do_calls"}`). Public docs make none; a message route (or an MCP message
//! tool's call) makes one, to its group's object, which answers it and reports the calls it
//! made in turn: none but, for a new client, the one that claims its ID. No request calls a
//! global object, directly or onward (the group's cleanup is its object's alarm).

use serde_json::{Value, json};

use crate::wrangler::WranglerDev;

/// The request lines of `log`, in order.
fn lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| l.find("{\"").map(|at| &l[at..]))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("do_calls").is_some())
        .collect()
}

/// The line a request added to the log after `before` lines.
fn last(dev: &WranglerDev, before: usize, route: &str) -> Value {
    for _ in 0..100 {
        let found = lines(&dev.log())
            .into_iter()
            .skip(before)
            .find(|l| l["request"] == route);
        if let Some(line) = found {
            return line;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no request line for {route}:\n{}", dev.log());
}

#[test]
fn every_worker_request_logs_its_durable_object_calls() {
    let dev = WranglerDev::start(&[]);
    let mut seen = Vec::new();
    let mut measure = |route: &str, request: &dyn Fn() -> u16| {
        let before = lines(&dev.log()).len();
        let status = request();
        let line = last(&dev, before, route);
        assert_eq!(line["status"], status, "{line}");
        seen.push((route.to_owned(), line));
    };
    let token = dev.token("wendy");
    measure("docs", &|| dev.get("/docs/v1/", &[]).status);
    measure("health", &|| dev.get("/health/ready", &[]).status);
    measure("register", &|| dev.register(&token, "oc-a", "oc-g").status);
    measure("register", &|| dev.register(&token, "oc-b", "oc-g").status);
    // A member's heartbeat (a register of a registered client).
    measure("register", &|| dev.register(&token, "oc-a", "oc-g").status);
    measure("send", &|| {
        dev.send(&token, "oc-a", "oc-g", json!("hi")).status
    });
    measure("receive", &|| {
        dev.receive(&token, "oc-b", "oc-g", Some(0)).status
    });
    // The MCP endpoint's message tools are the same routes: answered in the group's object.
    measure("mcp", &|| {
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {
                "name": "send_message",
                "arguments": {"sender_id": "oc-a", "group_id": "oc-g", "payload": "via mcp"},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}
                }
            }
        });
        let auth = format!("Bearer {token}");
        let reply = dev.request(
            "POST",
            "/mcp",
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("authorization", &auth),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "send_message"),
            ],
            Some(body.to_string().as_bytes()),
        );
        let answer = reply.json();
        assert_ne!(answer["result"]["isError"], true, "{answer}");
        assert!(answer["result"].is_object(), "{answer}");
        reply.status
    });
    let sent = dev.receive(&token, "oc-b", "oc-g", None);
    assert!(sent.text().contains("via mcp"), "{}", sent.text());
    let login = |password: &str| {
        let body = json!({"username": "wendy", "password": password}).to_string();
        dev.request(
            "POST",
            "/login",
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        )
        .status
    };
    measure("login", &|| login("wendy-pw"));
    measure("login", &|| login("a wrong one"));
    let (seen, logins) = seen.split_at(seen.len() - 2);
    for (route, line) in seen.iter().chain(logins) {
        println!("{route}: {line}");
    }
    // A login's credentials and a failure's budget are objects of their own, each cleaned
    // up by its own alarm: nothing is listed in a global object. (It reads the accounts
    // object, where users added by the admin API live.)
    for (route, line) in logins {
        assert!(
            line["global_do_writes"].as_u64() == Some(0),
            "{route}: {line}"
        );
    }
    let docs = &seen[0].1;
    assert_eq!(
        (docs["do_calls"].as_u64(), docs["global_do_calls"].as_u64()),
        (Some(0), Some(0))
    );
    // Readiness reads one of many probe objects: never a global one.
    let ready = &seen[1].1;
    assert_eq!(
        (
            ready["do_calls"].as_u64(),
            ready["global_do_calls"].as_u64()
        ),
        (Some(1), Some(0)),
        "{ready}"
    );
    // A message route: one call from the Worker, to the group's object, which is no global
    // object; what that object called in turn is in the onward counts.
    for (route, line) in &seen[2..] {
        assert_eq!(
            (line["do_calls"].as_u64(), line["global_do_calls"].as_u64()),
            (Some(1), Some(0)),
            "{route}: {line}"
        );
        assert!(
            line["onward_do_calls"].as_u64().is_some(),
            "{route}: {line}"
        );
    }
    // All of them: request budgets on the Rate Limiting binding, members in their group's
    // object, the group's cleanup by its alarm. Before: 14, 9 and 6 onward calls.
    let onward = |line: &Value| {
        (
            line["onward_do_calls"].as_u64(),
            line["onward_global_do_calls"].as_u64(),
        )
    };
    assert_eq!(
        onward(&seen[2].1),
        (Some(1), Some(0)),
        "a new client: its claim"
    );
    assert_eq!(
        onward(&seen[3].1),
        (Some(1), Some(0)),
        "a new client: its claim"
    );
    assert_eq!(seen[4].1["status"], 200, "a heartbeat");
    for (route, line) in &seen[4..] {
        assert_eq!(onward(line), (Some(0), Some(0)), "{route}: {line}");
    }
}
