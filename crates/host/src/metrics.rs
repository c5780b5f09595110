//! Prometheus metrics (`GET /metrics`), recorded with the `metrics` crate and rendered by
//! `metrics-exporter-prometheus`. Names follow Prometheus conventions: a unit suffix, `_total`
//! on counters.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::Value;

/// Latency buckets in seconds, from sub-millisecond guest calls to the default deadline.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder; the handle renders the exposition text.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    // The recorder keeps every histogram sample until it is folded into the buckets, which
    // only rendering or upkeep does: without a scrape the heap grew by about 30 bytes per
    // request (26 MiB over a benchmark run's docs scenarios, docs/performance.md).
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the metrics upkeep: {e}"))?;
    gauge!("mcp_edge_build_info", "version" => env!("CARGO_PKG_VERSION"), "wasmtime" => "48")
        .set(1.0);
    Ok(handle)
}

/// The request counters and latency histogram of every route (and of requests no route
/// matched), each registered at its first use and kept: registering looks the labels up in
/// the recorder's registry, which per request cost a third as much as the rest of the
/// runtime's own work on a health check.
pub struct RequestMetrics {
    /// By route index (`crate::router::RouteMatch::index`); the last is for no route.
    routes: Vec<RouteMetrics>,
}

struct RouteMetrics {
    route: String,
    component: String,
    /// By status class: `status / 100` (a status is at most 999).
    by_class: [OnceLock<Counter>; 10],
    duration: OnceLock<Histogram>,
}

impl RequestMetrics {
    pub fn new(routes: &[crate::router::Route]) -> Self {
        let entry = |route: &str, component: &str| RouteMetrics {
            route: route.to_owned(),
            component: component.to_owned(),
            by_class: Default::default(),
            duration: OnceLock::new(),
        };
        let mut all: Vec<RouteMetrics> =
            routes.iter().map(|r| entry(&r.raw, &r.component)).collect();
        all.push(entry("", ""));
        Self { routes: all }
    }

    /// Records a request of the route at `index` (`None`: no route matched).
    pub fn record(&self, index: Option<usize>, status: u16, elapsed: Duration) {
        let Some(m) = index
            .and_then(|i| self.routes.get(i))
            .or_else(|| self.routes.last())
        else {
            return;
        };
        let class = usize::from(status / 100).min(9);
        m.by_class[class]
            .get_or_init(|| {
                counter!("mcp_edge_http_requests_total", "route" => m.route.clone(), "component" => m.component.clone(), "status_class" => format!("{class}xx"))
            })
            .increment(1);
        m.duration
            .get_or_init(|| {
                histogram!("mcp_edge_http_request_duration_seconds", "route" => m.route.clone(), "component" => m.component.clone())
            })
            .record(elapsed.as_secs_f64());
    }
}

pub fn instantiation(component: &str, elapsed: Duration) {
    histogram!("mcp_edge_instantiation_duration_seconds", "component" => component.to_owned())
        .record(elapsed.as_secs_f64());
}

pub fn kv_operation(backend: &'static str, op: &'static str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    counter!("mcp_edge_kv_operations_total", "backend" => backend, "op" => op, "outcome" => outcome).increment(1);
    histogram!("mcp_edge_kv_operation_duration_seconds", "backend" => backend, "op" => op)
        .record(elapsed.as_secs_f64());
}

/// Message counters, from the components' audit records.
pub fn from_audit(record: &Value) {
    let status = record["status"].as_u64().unwrap_or(0);
    match record["audit"].as_str() {
        Some("send") if status == 202 => counter!("mcp_edge_messages_sent_total").increment(1),
        Some("receive" | "stream") if status == 200 => {
            counter!("mcp_edge_messages_delivered_total")
                .increment(record["message_count"].as_u64().unwrap_or(0));
        }
        _ => {}
    }
}

pub fn registered_clients(count: i64) {
    gauge!("mcp_edge_registered_clients").set(count as f64);
}

/// A scheduled cleanup run and what it removed (from its audit record).
pub fn cleanup_run(ok: bool, records: &[Value]) {
    counter!("mcp_edge_cleanup_runs_total", "outcome" => if ok { "ok" } else { "error" })
        .increment(1);
    for record in records.iter().filter(|r| r["audit"] == "cleanup") {
        counter!("mcp_edge_cleanup_removed_total", "kind" => "clients")
            .increment(record["clients_removed"].as_u64().unwrap_or(0));
        counter!("mcp_edge_cleanup_removed_total", "kind" => "messages")
            .increment(record["messages_removed"].as_u64().unwrap_or(0));
    }
}
