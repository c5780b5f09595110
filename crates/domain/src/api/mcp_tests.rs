//! `POST /mcp` end to end in the domain: the transport's checks, discovery, the docs tools
//! and resources over a built site, and the message tools over the REST handlers.

use serde_json::{Value, json};

use super::*;
use crate::config::keys;
use crate::docs::MemoryDocs;
use crate::docs::site::{self, Site};
use crate::mcp::wire::LATEST;

/// The REST tests' deployment, with a built docs site.
struct World {
    base: super::tests::World,
    site: Site,
}

fn docs() -> Vec<(String, String)> {
    let mut files = vec![
        (
            "v1/index.md".to_owned(),
            "---\ntitle: Welcome\n---\n# Welcome\n\nStart with [installing](install).\n".to_owned(),
        ),
        (
            "v1/install.md".to_owned(),
            "# Installing mcp-edge\n\nDownload the binary, then run the installer. \
             Installation takes a minute.\n\n## Requirements\n\nA Linux machine.\n"
                .to_owned(),
        ),
        (
            "v1/api.md".to_owned(),
            "# API reference\n\nPOST /mcp/send appends a message to a group. \
             GET /mcp/receive polls the group.\n"
                .to_owned(),
        ),
        (
            "v1/guide/groups.md".to_owned(),
            "# Message groups\n\nA group holds clients; a message sent to a group reaches \
             every member once.\n"
                .to_owned(),
        ),
        (
            "v0/index.md".to_owned(),
            "# Old docs\n\nInstall the old way.\n".to_owned(),
        ),
    ];
    for i in 0..120 {
        files.push((
            format!("v1/many/page-{i:03}.md"),
            format!("# Filler page {i}\n\nNothing of note, page {i}.\n"),
        ));
    }
    files
}

impl World {
    fn new() -> Self {
        let files = docs();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let site = site::build(
            &MemoryDocs::new(&refs),
            &site::Options {
                base_url: "http://localhost/docs/".into(),
            },
        );
        Self {
            base: super::tests::World::new(),
            site,
        }
    }

    async fn post(&self, req: Request) -> Response {
        mcp(&req, &self.site, &self.base.ctx()).await
    }

    /// A 2026-07-28 request, with its headers as a conforming client sends them.
    async fn rpc(&self, method: &str, params: Value, token: Option<&str>) -> (u16, Value) {
        let resp = self.post(request(method, params, token)).await;
        (resp.status, body(&resp))
    }

    async fn tool(&self, name: &str, arguments: Value, token: Option<&str>) -> Value {
        let (status, v) = self
            .rpc(
                "tools/call",
                json!({"name": name, "arguments": arguments}),
                token,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["result"].clone()
    }
}

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": LATEST,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
    })
}

fn request(method: &str, mut params: Value, token: Option<&str>) -> Request {
    params["_meta"] = meta();
    let mut req = Request {
        method: "POST".into(),
        body: json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
            .to_string()
            .into_bytes(),
        ..Default::default()
    };
    let name = params
        .get("name")
        .or(params.get("uri"))
        .and_then(Value::as_str);
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("host", "127.0.0.1:3000".to_owned()),
        ("mcp-protocol-version", LATEST.to_owned()),
        ("mcp-method", method.to_owned()),
    ];
    if let Some(name) = name {
        headers.push(("mcp-name", name.to_owned()));
    }
    if let Some(t) = token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    req.headers = headers
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.into_bytes()))
        .collect();
    req
}

fn body(resp: &Response) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or(Value::Null)
}

#[pollster::test]
async fn discovery_names_versions_capabilities_and_the_server() {
    let w = World::new();
    let (status, v) = w.rpc("server/discover", json!({}), None).await;
    assert_eq!(status, 200, "{v}");
    let r = &v["result"];
    assert_eq!(v["id"], 7);
    assert_eq!(r["supportedVersions"][0], LATEST);
    assert!(r["capabilities"]["tools"].is_object() && r["capabilities"]["resources"].is_object());
    assert!(r["capabilities"].get("prompts").is_none());
    assert_eq!(r["resultType"], "complete");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-edge"
    );
    let (_, tools) = w.rpc("tools/list", json!({}), None).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "search_docs",
            "fetch_doc",
            "list_doc_versions",
            "register_client",
            "send_message",
            "receive_messages"
        ]
    );
    assert_eq!(tools["result"]["cacheScope"], "public");
    assert!(tools["result"]["ttlMs"].as_u64().unwrap() > 0);
    // removed and unknown methods
    for gone in ["initialize", "ping", "prompts/list", "no/such"] {
        let (status, v) = w.rpc(gone, json!({}), None).await;
        assert_eq!(
            (status, v["error"]["code"].as_i64()),
            (404, Some(-32601)),
            "{gone}"
        );
    }
}

#[pollster::test]
async fn the_transport_refuses_what_does_not_conform() {
    let w = World::new();
    let mut get = request("tools/list", json!({}), None);
    get.method = "GET".into();
    let resp = w.post(get).await;
    assert_eq!((resp.status, resp.header("allow")), (405, Some("POST")));

    let mut evil = request("tools/list", json!({}), None);
    evil.headers.retain(|(n, _)| n != "host");
    evil.headers.push(("host".into(), b"evil.example".to_vec()));
    evil.headers
        .push(("origin".into(), b"http://evil.example".to_vec()));
    assert_eq!(w.post(evil).await.status, 403);

    let mut mismatch = request("tools/call", json!({"name": "search_docs"}), None);
    mismatch.headers.retain(|(n, _)| n != "mcp-name");
    mismatch
        .headers
        .push(("mcp-name".into(), b"fetch_doc".to_vec()));
    let resp = w.post(mismatch).await;
    assert_eq!(
        (resp.status, body(&resp)["error"]["code"].as_i64()),
        (400, Some(-32020))
    );

    let mut no_meta = request("tools/list", json!({}), None);
    no_meta.body = br#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{}}"#.to_vec();
    let resp = w.post(no_meta).await;
    let v = body(&resp);
    assert_eq!(
        (resp.status, v["error"]["code"].as_i64(), v["id"].as_i64()),
        (400, Some(-32602), Some(3))
    );

    let mut garbage = request("tools/list", json!({}), None);
    garbage.body = b"{not json".to_vec();
    let resp = w.post(garbage).await;
    assert_eq!(
        (resp.status, body(&resp)["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
}

#[pollster::test]
async fn earlier_revisions_initialize_then_call_without_meta() {
    let w = World::new();
    let mut init = Request {
        method: "POST".into(),
        body: json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "old", "version": "1"}}})
        .to_string()
        .into_bytes(),
        ..Default::default()
    };
    init.headers.push(("host".into(), b"localhost".to_vec()));
    let resp = w.post(init.clone()).await;
    let v = body(&resp);
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18", "{v}");
    assert_eq!(v["result"]["serverInfo"]["name"], "mcp-edge");

    let mut note = init.clone();
    note.body = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec();
    let resp = w.post(note).await;
    assert_eq!((resp.status, resp.body.len()), (202, 0));

    let mut list = init;
    list.headers
        .push(("mcp-protocol-version".into(), b"2025-06-18".to_vec()));
    list.body = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.to_vec();
    let v = body(&w.post(list.clone()).await);
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 6, "{v}");
    list.body = br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#.to_vec();
    assert_eq!(body(&w.post(list).await)["result"], json!({}));
}

#[pollster::test]
async fn search_ranks_the_page_about_the_query_first() {
    let w = World::new();
    for (query, first) in [
        ("install", "docs://v1/install"),
        ("installing requirements", "docs://v1/install"),
        ("message groups", "docs://v1/guide/groups"),
        ("receive polls", "docs://v1/api"),
    ] {
        let r = w
            .tool(
                "search_docs",
                json!({"query": query, "version": "v1"}),
                None,
            )
            .await;
        let results = &r["structuredContent"]["results"];
        assert_eq!(results[0]["uri"], first, "{query}: {r}");
        assert_eq!(results[0]["version"], "v1");
        assert!(results[0]["snippet"].as_str().unwrap().len() > 10);
    }
    let r = w
        .tool("search_docs", json!({"query": "install", "limit": 2}), None)
        .await;
    assert_eq!(
        r["structuredContent"]["results"].as_array().unwrap().len(),
        2
    );
    let old = w
        .tool(
            "search_docs",
            json!({"query": "install", "version": "v0"}),
            None,
        )
        .await;
    assert_eq!(old["structuredContent"]["results"][0]["uri"], "docs://v0/");
    let none = w.tool("search_docs", json!({"query": "zebra"}), None).await;
    assert_eq!(none["structuredContent"]["results"], json!([]));
    let bad = w.tool("search_docs", json!({"limit": 3}), None).await;
    assert_eq!(bad["isError"], true);
}

#[pollster::test]
async fn fetch_doc_pages_through_a_page_and_list_doc_versions_lists() {
    let w = World::new();
    let source = docs()
        .into_iter()
        .find(|(p, _)| p == "v1/install.md")
        .unwrap()
        .1;
    let first = w
        .tool(
            "fetch_doc",
            json!({"uri": "docs://v1/install", "max_chars": 40}),
            None,
        )
        .await;
    let s = &first["structuredContent"];
    assert_eq!(
        (s["offset"].as_u64(), s["next_offset"].as_u64()),
        (Some(0), Some(40))
    );
    let rest = w
        .tool(
            "fetch_doc",
            json!({"version": "latest", "path": "install.md", "offset": 40, "max_chars": 100000}),
            None,
        )
        .await;
    let r = &rest["structuredContent"];
    assert_eq!(r["next_offset"], Value::Null);
    let joined = format!(
        "{}{}",
        s["text"].as_str().unwrap(),
        r["text"].as_str().unwrap()
    );
    assert_eq!(joined, source);
    let missing = w
        .tool("fetch_doc", json!({"uri": "docs://v1/nope"}), None)
        .await;
    assert_eq!(missing["isError"], true);
    let versions = w.tool("list_doc_versions", json!({}), None).await;
    assert_eq!(
        versions["structuredContent"],
        json!({"latest": "v1", "versions": ["v1", "v0"]})
    );
}

#[pollster::test]
async fn every_page_is_a_resource_listed_in_pages_and_read_as_markdown() {
    let w = World::new();
    let (_, first) = w.rpc("resources/list", json!({}), None).await;
    let page = &first["result"];
    assert_eq!(page["resources"].as_array().unwrap().len(), 100);
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let (_, second) = w
        .rpc("resources/list", json!({"cursor": cursor}), None)
        .await;
    let total = 100 + second["result"]["resources"].as_array().unwrap().len();
    assert_eq!(total, docs().len());
    assert!(second["result"].get("nextCursor").is_none());
    assert_eq!(second["result"]["cacheScope"], "public");

    let (_, templates) = w.rpc("resources/templates/list", json!({}), None).await;
    assert_eq!(
        templates["result"]["resourceTemplates"][0]["uriTemplate"],
        "docs://{version}/{+path}"
    );
    let (status, read) = w
        .rpc("resources/read", json!({"uri": "docs://v1/api"}), None)
        .await;
    assert_eq!(status, 200);
    let c = &read["result"]["contents"][0];
    assert_eq!(c["mimeType"], "text/markdown");
    assert!(c["text"].as_str().unwrap().starts_with("# API reference"));
    assert!(c["_meta"]["etag"].as_str().unwrap().starts_with('"'));
    assert!(read["result"]["ttlMs"].as_u64().is_some());
    let (_, missing) = w
        .rpc("resources/read", json!({"uri": "docs://v1/nope"}), None)
        .await;
    assert_eq!(missing["error"]["code"], -32602);
    assert_eq!(missing["error"]["data"]["uri"], "docs://v1/nope");
}

#[pollster::test]
async fn message_tools_are_the_rest_operations_with_their_rules() {
    let w = World::new();
    let writer = w.base.token("wendy");
    let reader = w.base.token("rita");
    // no credential: the HTTP request is refused with a challenge
    let resp = w
        .post(request(
            "tools/call",
            json!({"name": "register_client", "arguments": {"client_id": "a", "group_id": "g"}}),
            None,
        ))
        .await;
    assert_eq!(resp.status, 401);
    assert!(
        resp.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let resp = w
        .post(request(
            "tools/call",
            json!({"name": "send_message", "arguments": {"sender_id": "a", "group_id": "g", "payload": 1}}),
            Some(&reader),
        ))
        .await;
    assert_eq!(resp.status, 403);

    for client in ["a", "b"] {
        let r = w
            .tool(
                "register_client",
                json!({"client_id": client, "group_id": "g"}),
                Some(&writer),
            )
            .await;
        assert_eq!(r["structuredContent"]["group_id"], "g", "{r}");
    }
    let sent = w
        .tool(
            "send_message",
            json!({"sender_id": "a", "group_id": "g", "payload": {"hello": [1, 2]}, "idempotency_key": "k1"}),
            Some(&writer),
        )
        .await;
    let seq = sent["structuredContent"]["seq"].as_u64().unwrap();
    let again = w
        .tool(
            "send_message",
            json!({"sender_id": "a", "group_id": "g", "payload": {"hello": [1, 2]}, "idempotency_key": "k1"}),
            Some(&writer),
        )
        .await;
    assert_eq!(again["structuredContent"]["seq"].as_u64(), Some(seq));
    let got = w
        .tool(
            "receive_messages",
            json!({"client_id": "b", "group_id": "g", "after": 0}),
            Some(&writer),
        )
        .await;
    let s = &got["structuredContent"];
    assert_eq!(s["messages"].as_array().unwrap().len(), 1, "{got}");
    assert_eq!(s["messages"][0]["payload"], json!({"hello": [1, 2]}));
    let next = s["next_after"].as_u64().unwrap();
    let empty = w
        .tool(
            "receive_messages",
            json!({"client_id": "b", "group_id": "g", "after": next}),
            Some(&writer),
        )
        .await;
    assert_eq!(empty["structuredContent"]["messages"], json!([]));
    // a REST error is a tool error the model can read
    let stranger = w
        .tool(
            "send_message",
            json!({"sender_id": "zed", "group_id": "g", "payload": 1}),
            Some(&writer),
        )
        .await;
    assert_eq!(stranger["isError"], true, "{stranger}");
    // the REST handlers left their audit records, and the MCP request its own
    let audits: Vec<&str> = w.base.audit.records().iter().map(|r| r.audit).collect();
    assert!(
        audits.contains(&"send") && audits.contains(&"mcp"),
        "{audits:?}"
    );
}

#[pollster::test]
async fn reader_only_docs_need_a_token_for_everything() {
    let mut w = World::new();
    w.base
        .config
        .insert(keys::DOCS_ACCESS.to_string(), "reader".to_string());
    let (status, _) = w.rpc("tools/list", json!({}), None).await;
    assert_eq!(status, 401);
    let token = w.base.token("rita");
    let (status, v) = w.rpc("tools/list", json!({}), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["result"]["cacheScope"], "private");
}

#[pollster::test]
async fn a_waiting_receive_messages_is_parked_as_a_whole_request() {
    let w = World::new();
    let writer = w.base.token("wendy");
    for client in ["a", "b"] {
        w.tool(
            "register_client",
            json!({"client_id": client, "group_id": "g"}),
            Some(&writer),
        )
        .await;
    }
    let waiting = |waited_ms: u64| {
        let mut req = request(
            "tools/call",
            json!({"name": "receive_messages", "arguments": {"client_id": "b", "group_id": "g", "after": 0, "wait": 5}}),
            Some(&writer),
        );
        req.headers.push((
            crate::park::PARK_HEADER.into(),
            waited_ms.to_string().into_bytes(),
        ));
        req
    };
    let audited = w.base.audit.records().len();

    // Nothing there: the HTTP answer is the receive's park, with no JSON-RPC body and no record.
    let resp = w.post(waiting(0)).await;
    assert_eq!(resp.status, 204);
    let park = crate::park::Park::parse(resp.header(crate::park::PARK_HEADER).unwrap()).unwrap();
    assert_eq!(
        (park.wait_ms, park.key.as_str()),
        (5000, crate::messaging::message_key("g", 1).as_str())
    );
    assert!(resp.body.is_empty());
    assert_eq!(w.base.audit.records().len(), audited);

    w.tool(
        "send_message",
        json!({"sender_id": "a", "group_id": "g", "payload": "late"}),
        Some(&writer),
    )
    .await;
    // Dispatched again once the key is written: the tool's result.
    let resp = w.post(waiting(800)).await;
    assert_eq!(resp.status, 200);
    let got = &body(&resp)["result"]["structuredContent"];
    assert_eq!(got["messages"][0]["payload"], "late", "{got}");
    let audits: Vec<&str> = w.base.audit.records().iter().map(|r| r.audit).collect();
    assert_eq!(audits[audits.len() - 2..], ["receive", "mcp"]);

    // A wait beyond the deployment's maximum is a tool error the model can read.
    let r = w
        .tool(
            "receive_messages",
            json!({"client_id": "b", "group_id": "g", "wait": 31}),
            Some(&writer),
        )
        .await;
    assert_eq!(r["isError"], true, "{r}");
}
