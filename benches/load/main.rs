//! Load benchmark of every endpoint: `mcp-edge up` (the WebAssembly components) against a
//! native baseline (the same domain crate served without wasm), both on loopback over the
//! embedded SQLite store, driven by the same `tokio`/`hyper` load generator. Both servers run
//! side by side, and each scenario runs on one and right after on the other (a read
//! scenario in slices that alternate between them).
//!
//! `cargo bench --bench load -- --quick` (under a minute of measuring), or without `--quick`
//! for the full run (a few minutes). `--only <scenario prefix>` (repeatable) narrows it down,
//! `--target wasm|native` runs one side, `--out FILE` moves the JSON (default
//! `target/bench/load.json`), `--up-arg ARG` (repeatable) passes an option to `mcp-edge up`
//! (e.g. `--up-arg --max-instance-reuse-count --up-arg 1`). `--kv redis [--replicas N]` runs
//! the wasm target as N replicas (default 1) on one redis-server started for the run, with
//! `appendfsync always`; the load spreads over them round-robin by connection. The Markdown
//! table goes to stdout.
//! Both targets serve the same docs: `static/docs` plus a generated 1 000-page version
//! ([`docs_tree`]), whose site build time is reported too. The round trip of a message is
//! measured with polling, long-poll and the event stream ([`push`]), and on `mcp-edge` what a
//! thousand idle waiting clients cost (`--only idle`).

mod docs_tree;
mod generator;
mod native;
mod push;
mod report;
mod scenarios;
mod targets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Waiting clients in the idle scenarios.
const IDLE_CLIENTS: usize = 1000;

/// The scenarios in the order they run, each the `--only` filter of one step (a prefix may
/// cover several scenarios that share their set-up: the logins, the two sends).
const STEPS: [&str; 12] = [
    "health",
    "docs: HTML page",
    "docs: rendered Markdown",
    "docs: 304 revalidation",
    "docs: page of a 1000-page tree",
    "docs: 1000-page tree, 304",
    "mcp: search_docs",
    "mcp: resources/read",
    "login",
    "send",
    "round trip",
    "mixed",
];

/// Slices of a read scenario's window, alternating between the targets.
const SLICES: u32 = 4;

/// Whether a step is measured in alternating slices: the read scenarios (health, docs, MCP)
/// and the mixed workload, closed loops whose set-up (if any) runs once per target before
/// the first slice. The other writing steps run once per target: the 256-group send waits
/// for a bucket boundary, the round trips time single messages.
fn is_sliced(step: &[String]) -> bool {
    step.iter().all(|s| {
        ["health", "docs", "mcp", "mixed"]
            .iter()
            .any(|r| s.starts_with(r))
    })
}

/// The steps `--only` leaves, each with the filters it runs under: the whole step where an
/// `--only` prefix covers it, only the part asked for where it names less (`--only "send: 256"`
/// runs that part of the send step).
fn steps(only: &[String]) -> Vec<Vec<String>> {
    let all = [String::new()];
    let only = if only.is_empty() { &all[..] } else { only };
    STEPS
        .iter()
        .filter_map(|step| {
            let filters: Vec<String> = only
                .iter()
                .filter_map(|o| {
                    if step.starts_with(o.as_str()) {
                        Some(step.to_string())
                    } else if o.starts_with(step) {
                        Some(o.clone())
                    } else {
                        None
                    }
                })
                .collect();
            (!filters.is_empty()).then_some(filters)
        })
        .collect()
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; the harness has no use for it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("native-server") {
        return native::serve_from_args(&args[1..]);
    }
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // Every value of a repeatable option.
    let values = |name: &str| -> Vec<String> {
        args.iter()
            .enumerate()
            .filter(|(_, a)| *a == name)
            .filter_map(|(i, _)| args.get(i + 1).cloned())
            .collect()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let only = values("--only");
    let mut up_args = values("--up-arg");
    let which = value("--target").unwrap_or_else(|| "both".into());
    let store = match value("--kv").as_deref() {
        None | Some("sqlite") => targets::Store::Sqlite,
        Some("redis") => targets::Store::Redis {
            replicas: value("--replicas")
                .map(|n| n.parse())
                .transpose()
                .context("--replicas takes a number")?
                .unwrap_or(1)
                .max(1),
        },
        Some(other) => anyhow::bail!("--kv takes sqlite or redis, not {other}"),
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = value("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench/load.json"));
    let plan = if quick {
        scenarios::Plan {
            warmup: Duration::from_millis(300),
            duration: Duration::from_millis(1500),
        }
    } else {
        scenarios::Plan {
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(15),
        }
    };
    let users = serde_json::json!([{
        "username": "bench",
        "role": "writer",
        "password_hash": mcp_edge_domain::accounts::hash_password(scenarios::PASSWORD)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    }])
    .to_string();

    let started = Instant::now();
    let tree = docs_tree::generate(&root)?;
    eprintln!(
        "docs site of {} pages built in {:.0} ms",
        tree.pages,
        tree.build_time.as_secs_f64() * 1000.0
    );
    up_args.extend(["--docs".to_owned(), tree.source.display().to_string()]);
    let runtime = tokio::runtime::Runtime::new()?;
    let mut targets = Vec::new();
    for name in ["wasm", "native"] {
        if which != "both" && which != name {
            continue;
        }
        eprintln!("starting the {name} target…");
        targets.push(match name {
            "wasm" => targets::Target::wasm(&root, &users, &up_args, &store)?,
            _ => targets::Target::native(&root, &users, &tree.site)?,
        });
    }
    // Each scenario runs on one target and right after on the other, so that a ratio compares
    // runs seconds apart: on a shared machine the rates drift by a fifth over the minutes a
    // whole pass over every scenario takes, and by a tenth between two windows in a row. The
    // read scenarios and the mixed workload go further: their window is cut into slices that
    // alternate between the targets (wasm, native, native, wasm, ...), so a drift during a
    // scenario (of the CPU left to us, or of the disk's fsync latency the writes wait on)
    // weighs on both sides alike.
    let mut rows = Vec::new();
    for step in steps(&only) {
        let slices = if is_sliced(&step) { SLICES } else { 1 };
        let slice_plan = scenarios::Plan {
            warmup: plan.warmup,
            duration: plan.duration / slices,
        };
        let mut merged: Vec<scenarios::Outcome> = Vec::new();
        for slice in 0..slices {
            let mut order: Vec<&targets::Target> = targets.iter().collect();
            if slice % 2 == 1 {
                order.reverse();
            }
            for target in order {
                let outcomes = runtime.block_on(scenarios::run_all(target, &slice_plan, &step))?;
                for outcome in outcomes {
                    if slices > 1 {
                        eprintln!(
                            "  {}, {}, slice {}: {:.0} req/s",
                            outcome.scenario,
                            outcome.target,
                            slice + 1,
                            outcome.sample.rate()
                        );
                    }
                    match merged
                        .iter_mut()
                        .find(|m| m.scenario == outcome.scenario && m.target == outcome.target)
                    {
                        Some(m) => m.append(outcome),
                        None => merged.push(outcome),
                    }
                }
            }
        }
        rows.extend(merged.into_iter().map(report::Row::from));
    }
    rows.sort_by_key(|r| r.target != "wasm");
    drop(targets);
    // Only mcp-edge parks a waiting request; the baseline would hold a thread each.
    let mut idle_rows = Vec::new();
    if which != "native" && (only.is_empty() || only.iter().any(|o| o.starts_with("idle"))) {
        let window = if quick {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(10)
        };
        for delivery in [push::Delivery::LongPoll, push::Delivery::Stream] {
            // A server of its own: memory another scenario freed would hide this one's.
            let target = targets::Target::wasm(&root, &users, &up_args, &store)?;
            let idle = runtime.block_on(async {
                let token = scenarios::token(target.addr, "bench").await?;
                push::idle_waiters(&target, &token, IDLE_CLIENTS, delivery, window).await
            })?;
            idle_rows.push(idle);
        }
    }
    println!("{}", report::markdown(&rows));
    if !idle_rows.is_empty() {
        println!("\n{}", push::IDLE_HEADER);
        for idle in &idle_rows {
            println!("{}", idle.markdown());
        }
    }
    println!(
        "\nDocs site build ({} pages, the domain's build as `up --docs` runs it): {:.0} ms",
        tree.pages,
        tree.build_time.as_secs_f64() * 1000.0
    );
    let mode = if quick { "quick" } else { "full" };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut json = report::json(&rows, mode);
    json["idle"] = idle_rows.iter().map(push::Idle::json).collect();
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("write {}", out.display()))?;
    eprintln!(
        "{mode} run took {:.0} s; JSON in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
