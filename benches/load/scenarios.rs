//! The scenarios, each run the same way against each target.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::generator::{Conn, MakeReq, Req, Sample, closed_loop};
use crate::push::{Delivery, round_trip};
use crate::targets::Target;

pub const PASSWORD: &str = "bench-password";
pub const MIXED_CLIENTS: usize = 1000;
pub const MIXED_GROUPS: usize = 10;
pub const SENDERS: usize = 64;
pub const BOUNDARY_GROUPS: usize = 256;
/// Names of the scenarios with set-up of their own (the simple ones are named in the list).
const SEND: &str = "send 1 KiB, 64 senders";
const SEND_BOUNDARY: &str = "send: 256 groups across a bucket boundary";
const MIXED: &str = "mixed: 1000 clients, 20% send / 80% poll";

pub struct Plan {
    pub warmup: Duration,
    pub duration: Duration,
}

/// What one scenario measured on one target.
pub struct Outcome {
    pub scenario: &'static str,
    pub target: &'static str,
    pub sample: Sample,
    pub peak_rss_mib: f64,
}

impl Outcome {
    /// Adds a later window of the same scenario on the same target.
    pub fn append(&mut self, later: Outcome) {
        self.sample.elapsed += later.sample.elapsed;
        self.sample.merge(later.sample);
        self.peak_rss_mib = self.peak_rss_mib.max(later.peak_rss_mib);
    }
}

async fn call(addr: SocketAddr, req: Req) -> Result<(u16, Value)> {
    let answer = Conn::new(addr).send(&req).await?;
    let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    Ok((answer.status, body))
}

pub async fn token(addr: SocketAddr, user: &str) -> Result<String> {
    let (status, body) = call(
        addr,
        Req::post_json("/login", &json!({"username": user, "password": PASSWORD})),
    )
    .await?;
    if status != 200 {
        bail!("login as {user}: {status} {body}");
    }
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token")
}

pub async fn register(addr: SocketAddr, token: &str, client: &str, group: &str) -> Result<()> {
    let (status, body) = call(
        addr,
        Req::post_json(
            "/mcp/register",
            &json!({"client_id": client, "group_id": group}),
        )
        .bearer(token),
    )
    .await?;
    if status != 201 && status != 200 {
        bail!("register {client}: {status} {body}");
    }
    Ok(())
}

pub fn send_req(token: &str, sender: &str, group: &str, payload: Value) -> Req {
    Req::post_json(
        "/mcp/send",
        &json!({"sender_id": sender, "group_id": group, "payload": payload}),
    )
    .bearer(token)
}

pub fn receive_req(token: &str, client: &str, group: &str, after: Option<u64>) -> Req {
    let mut path = format!("/mcp/receive?client_id={client}&group_id={group}");
    if let Some(a) = after {
        path.push_str(&format!("&after={a}"));
    }
    Req::get(path).bearer(token)
}

/// A 2026-07-28 MCP request with its mirrored headers.
fn mcp_req(method: &'static str, name: &str, mut params: Value) -> Req {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    Req::post_json(
        "/mcp",
        &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )
    .header("mcp-protocol-version", "2026-07-28")
    .header("mcp-method", method)
    .header("mcp-name", name.to_owned())
}

/// Runs every scenario against `target`.
pub async fn run_all(target: &Target, plan: &Plan, only: &[String]) -> Result<Vec<Outcome>> {
    let addr = target.addr;
    let writer = token(addr, "bench").await?;
    let mut out = Vec::new();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.starts_with(o.as_str()));

    let simple: Vec<(&'static str, usize, &'static [u16], MakeReq)> = {
        let etag = etag_of(addr, "/docs/v1/api").await?;
        let big_page = crate::docs_tree::page_url(7, 31);
        let big_etag = etag_of(addr, &big_page).await?;
        vec![
            ("health", 16, &[200], Arc::new(|_, _| Req::get("/health"))),
            (
                "docs: HTML page",
                16,
                &[200],
                Arc::new(|_, _| Req::get("/docs/v1/errors.html")),
            ),
            (
                "docs: rendered Markdown",
                16,
                &[200],
                Arc::new(|_, _| Req::get("/docs/v1/api")),
            ),
            (
                "docs: 304 revalidation",
                16,
                &[304],
                Arc::new(move |_, _| {
                    Req::get("/docs/v1/api").header("if-none-match", etag.clone())
                }),
            ),
            (
                "docs: page of a 1000-page tree",
                16,
                &[200],
                Arc::new({
                    let big_page = big_page.clone();
                    move |_, _| Req::get(&big_page)
                }),
            ),
            (
                "docs: 1000-page tree, 304",
                16,
                &[304],
                Arc::new(move |_, _| Req::get(&big_page).header("if-none-match", big_etag.clone())),
            ),
            (
                "mcp: search_docs",
                16,
                &[200],
                Arc::new(|_, _| {
                    mcp_req(
                        "tools/call",
                        "search_docs",
                        json!({"name": "search_docs", "arguments": {
                            "query": "troubleshooting examples in detail", "version": "v2"}}),
                    )
                }),
            ),
            (
                "mcp: resources/read",
                16,
                &[200],
                Arc::new(|_, _| {
                    let uri = "docs://v2/section-07/page-31";
                    mcp_req("resources/read", uri, json!({ "uri": uri }))
                }),
            ),
            (
                "login",
                2,
                &[200],
                Arc::new(|_, _| {
                    Req::post_json(
                        "/login",
                        &json!({"username": "bench", "password": PASSWORD}),
                    )
                }),
            ),
            (
                "login: wrong password",
                2,
                &[401],
                Arc::new(|_, _| {
                    Req::post_json(
                        "/login",
                        &json!({"username": "bench", "password": "not-the-password"}),
                    )
                }),
            ),
            (
                "login: unknown user",
                2,
                &[401],
                Arc::new(|_, _| {
                    Req::post_json(
                        "/login",
                        &json!({"username": "nobody", "password": PASSWORD}),
                    )
                }),
            ),
        ]
    };
    for (scenario, concurrency, expect, make) in simple {
        if !wanted(scenario) {
            continue;
        }
        target.settle().await;
        target.reset_peak_rss();
        let sample = closed_loop(
            &target.addrs,
            concurrency,
            plan.warmup,
            plan.duration,
            expect,
            make,
        )
        .await;
        out.push(Outcome {
            scenario,
            target: target.name,
            sample,
            peak_rss_mib: target.peak_rss_mib(),
        });
    }

    if wanted(SEND) {
        for s in 0..SENDERS {
            register(addr, &writer, &format!("sender-{s}"), "send-bench").await?;
        }
        let payload = json!("x".repeat(1024 - 2));
        let token = writer.clone();
        target.settle().await;
        target.reset_peak_rss();
        let sample = closed_loop(
            &target.addrs,
            SENDERS,
            plan.warmup,
            plan.duration,
            &[202],
            Arc::new(move |worker, _| {
                send_req(
                    &token,
                    &format!("sender-{worker}"),
                    "send-bench",
                    payload.clone(),
                )
            }),
        )
        .await;
        out.push(Outcome {
            scenario: SEND,
            target: target.name,
            sample,
            peak_rss_mib: target.peak_rss_mib(),
        });
    }

    if wanted(SEND_BOUNDARY) {
        for g in 0..BOUNDARY_GROUPS {
            register(addr, &writer, &format!("edge-{g}"), &format!("edge-{g}")).await?;
        }
        target.settle().await;
        // Start so that the measured window opens just before a cleanup-bucket boundary (a
        // minute, the default): every group's first send after it lists the group anew.
        let bucket = Duration::from_secs(60);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let into = Duration::from_millis((now.as_millis() % bucket.as_millis()) as u64);
        let lead = plan.warmup + Duration::from_millis(200);
        let wait = (bucket - into).saturating_sub(lead);
        eprintln!(
            "  {}: waiting {:.0} s for a bucket boundary",
            target.name,
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
        let token = writer.clone();
        target.reset_peak_rss();
        let sample = closed_loop(
            &target.addrs,
            BOUNDARY_GROUPS,
            plan.warmup,
            plan.duration,
            &[202],
            Arc::new(move |worker, i| {
                let id = format!("edge-{worker}");
                send_req(&token, &id, &id, json!({"n": i}))
            }),
        )
        .await;
        out.push(Outcome {
            scenario: SEND_BOUNDARY,
            target: target.name,
            sample,
            peak_rss_mib: target.peak_rss_mib(),
        });
    }

    // The native baseline has no host to park a waiting request: only polling is compared.
    let deliveries: &[Delivery] = if target.name == "native" {
        &[Delivery::Poll]
    } else {
        &[Delivery::Poll, Delivery::LongPoll, Delivery::Stream]
    };
    for &delivery in deliveries {
        if !wanted(delivery.scenario()) {
            continue;
        }
        target.settle().await;
        target.reset_peak_rss();
        let sample = round_trip(addr, &writer, plan, delivery).await?;
        out.push(Outcome {
            scenario: delivery.scenario(),
            target: target.name,
            sample,
            peak_rss_mib: target.peak_rss_mib(),
        });
    }

    if wanted(MIXED) {
        if target.first_run_of(MIXED) {
            let started = Instant::now();
            register_mixed(addr, &writer).await?;
            eprintln!(
                "  {}: registered {MIXED_CLIENTS} clients in {:.1} s",
                target.name,
                started.elapsed().as_secs_f64()
            );
        }
        let token = writer.clone();
        target.settle().await;
        target.reset_peak_rss();
        let sample = closed_loop(
            &target.addrs,
            32,
            plan.warmup,
            plan.duration,
            &[200, 202],
            Arc::new(move |worker, i| {
                // Spread the clients over the workers; every fifth client is a sender.
                let client = (worker * 7919 + i as usize * 104_729) % MIXED_CLIENTS;
                let group = format!("mixed-{}", client % MIXED_GROUPS);
                let id = format!("mixed-{client}");
                if client.is_multiple_of(5) {
                    send_req(&token, &id, &group, json!({"n": i}))
                } else {
                    receive_req(&token, &id, &group, None)
                }
            }),
        )
        .await;
        out.push(Outcome {
            scenario: MIXED,
            target: target.name,
            sample,
            peak_rss_mib: target.peak_rss_mib(),
        });
    }
    Ok(out)
}

/// The strong validator the server gives a document.
async fn etag_of(addr: SocketAddr, path: &str) -> Result<String> {
    let answer = Conn::new(addr).send(&Req::get(path)).await?;
    if answer.status != 200 {
        bail!("{path}: {}", answer.status);
    }
    answer
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("docs answer without ETag")
}

async fn register_mixed(addr: SocketAddr, token: &str) -> Result<()> {
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            for client in (worker..MIXED_CLIENTS).step_by(4) {
                let group = format!("mixed-{}", client % MIXED_GROUPS);
                register(addr, &token, &format!("mixed-{client}"), &group).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
