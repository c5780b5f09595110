//! The cron trigger for `mcp-edge`: calls a component's `handle-cron-event` export (the
//! interface of Spin's `trigger-cron` plugin) on a cron schedule. Runs of one schedule never
//! overlap: the next run is planned only after the previous one finished, and missed ticks
//! are skipped.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::bindings::cron::fermyon::spin_cron::cron_types::Metadata;
use crate::metrics;
use crate::server::{App, new_store};

/// Parses a cron expression: six fields with seconds (`0 * * * * *`: every minute), or the
/// classic five (a `0` seconds field is prepended).
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expr}")
    } else {
        expr.to_owned()
    };
    cron::Schedule::from_str(&full).with_context(|| format!("invalid cron expression {expr:?}"))
}

/// Runs the component's cron handler once; returns the audit records it wrote.
pub async fn run_once(app: &App, component_id: &str) -> Result<Vec<Value>> {
    let component = app
        .component(component_id)
        .with_context(|| format!("no component {component_id} is loaded"))?;
    let Some(cron) = component.cron.clone() else {
        bail!("component {component_id} does not export handle-cron-event");
    };
    // A scheduled run takes an instance slot like a request: the pool holds as many instances
    // as there are slots, so under full load a request never fails to instantiate.
    let _slot = app
        .shared
        .slot()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stdout = MemoryOutputPipe::new(64 * 1024);
    let mut store = new_store(
        &app.shared.engine,
        &app.shared.limits,
        component,
        stdout.clone(),
        None,
    )?;
    let started = Instant::now();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let outcome = async {
        let instance = cron.instantiate_async(&mut store).await?;
        instance
            .call_handle_cron_event(&mut store, Metadata { timestamp })
            .await
    }
    .await;
    drop(store);
    let request_id = format!("cron-{timestamp}");
    let records = app
        .shared
        .audit
        .ingest(&request_id, component_id, &stdout.contents());
    let ok = matches!(outcome, Ok(Ok(())));
    metrics::cleanup_run(ok, &records);
    match outcome {
        Ok(Ok(())) => {
            let count = |field: &str| {
                records
                    .iter()
                    .filter_map(|r| r[field].as_u64())
                    .sum::<u64>()
            };
            tracing::info!(
                component = component_id,
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                clients_removed = count("clients_removed"),
                messages_removed = count("messages_removed"),
                "scheduled run finished"
            );
            Ok(records)
        }
        Ok(Err(e)) => bail!("component {component_id} reported: {e:?}"),
        Err(e) => Err(anyhow::Error::from(e).context(format!("component {component_id} failed"))),
    }
}

/// Calls `component_id` on `schedule` until `stop` resolves.
pub async fn run_schedule(
    app: Arc<App>,
    component_id: String,
    schedule: cron::Schedule,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let Some(next) = schedule.upcoming(chrono::Utc).next() else {
            return;
        };
        let wait = (next - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut stop => return,
        }
        if let Err(e) = run_once(&app, &component_id).await {
            tracing::warn!(component = %component_id, error = format!("{e:#}"), "scheduled run failed");
        }
    }
}
