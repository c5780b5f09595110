//! Results as a Markdown table (stdout) and JSON (a file), with the wasm/native ratios.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::scenarios::Outcome;

pub struct Row {
    pub scenario: &'static str,
    pub target: &'static str,
    pub requests: usize,
    pub rps: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub errors: u64,
    pub peak_rss_mib: f64,
}

impl From<Outcome> for Row {
    fn from(mut o: Outcome) -> Self {
        Row {
            scenario: o.scenario,
            target: o.target,
            requests: o.sample.latencies_us.len(),
            rps: o.sample.rate(),
            p50: o.sample.percentile_ms(50.0),
            p90: o.sample.percentile_ms(90.0),
            p99: o.sample.percentile_ms(99.0),
            p999: o.sample.percentile_ms(99.9),
            errors: o.sample.errors,
            peak_rss_mib: o.peak_rss_mib,
        }
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// Per scenario: wasm throughput / native throughput and wasm p50 / native p50.
fn ratios(rows: &[Row]) -> BTreeMap<&'static str, (Option<f64>, Option<f64>)> {
    let mut out = BTreeMap::new();
    for wasm in rows.iter().filter(|r| r.target == "wasm") {
        if let Some(native) = rows
            .iter()
            .find(|r| r.target == "native" && r.scenario == wasm.scenario)
        {
            out.insert(
                wasm.scenario,
                (ratio(wasm.rps, native.rps), ratio(wasm.p50, native.p50)),
            );
        }
    }
    out
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into())
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | target | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | peak RSS MiB |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.0} |\n",
            r.scenario, r.target, r.rps, r.p50, r.p90, r.p99, r.p999, r.errors, r.peak_rss_mib
        ));
    }
    let ratios = ratios(rows);
    if !ratios.is_empty() {
        out.push_str("\n| scenario | wasm/native req/s | wasm/native p50 |\n|---|---:|---:|\n");
        for (scenario, (rps, p50)) in ratios {
            out.push_str(&format!(
                "| {scenario} | {} | {} |\n",
                fmt_ratio(rps),
                fmt_ratio(p50)
            ));
        }
    }
    out
}

pub fn json(rows: &[Row], mode: &str) -> Value {
    let ratios = ratios(rows);
    json!({
        "mode": mode,
        "results": rows.iter().map(|r| json!({
            "scenario": r.scenario,
            "target": r.target,
            "requests": r.requests,
            "requests_per_second": r.rps,
            "latency_ms": {"p50": r.p50, "p90": r.p90, "p99": r.p99, "p99_9": r.p999},
            "errors": r.errors,
            "peak_rss_mib": r.peak_rss_mib,
        })).collect::<Vec<_>>(),
        "wasm_native_ratio": ratios.iter().map(|(s, (rps, p50))| json!({
            "scenario": s,
            "throughput": rps,
            "p50_latency": p50,
        })).collect::<Vec<_>>(),
    })
}
