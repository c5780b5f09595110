//! Durable Object alarms: how an object cleans up what it holds by itself, so that nothing
//! is listed in a global object for it. A group's object runs its group's cleanup
//! (`api::run_group_cleanup`); an object holding keys that asked to be looked at
//! (`KvStore::schedule_cleanup`: a failed-login budget, a refresh token, a session) runs
//! `api::expire_key` on each that is due. Each run sets the alarm again for the earliest
//! next time, or not at all when nothing is left.

use mcp_edge_domain::api;
use mcp_edge_domain::store::StoreError;
use worker::{Env, Response, State};

use crate::config::WorkerConfig;
use crate::group::{GroupKv, NAME_KEY};
use crate::shard::shard_for;
use crate::store::SqlKv;

/// How long a key whose look failed waits before the next.
const RETRY_MS: u64 = 60_000;

fn store_failed(e: StoreError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

/// Sets the object's alarm to `due` unless it is set sooner.
pub async fn arm(state: &State, now: u64, due: u64) -> worker::Result<()> {
    let storage = state.storage();
    match storage.get_alarm().await? {
        Some(at) if (at as u64) <= due => Ok(()),
        _ => {
            let offset = i64::try_from(due.saturating_sub(now)).unwrap_or(i64::MAX);
            storage.set_alarm(offset).await
        }
    }
}

/// The object's alarm.
pub async fn run(kv: &SqlKv, state: &State, env: &Env) -> worker::Result<Response> {
    let now = js_sys::Date::now() as u64;
    let mut next = None;
    if let Some(name) = kv.get(NAME_KEY).map_err(store_failed)? {
        next = group(kv, env, &String::from_utf8_lossy(&name), now).await?;
    }
    for key in kv.take_due(now).map_err(store_failed)? {
        let store = GroupKv::new(kv, shard_for(&key).to_owned(), env)?;
        let looked =
            crate::with_ctx(env, &store, async |ctx| api::expire_key(ctx, &key).await).await;
        if let Err(e) = looked {
            worker::console_error!(
                "{{\"cleanup\":\"failed\",\"key\":{:?},\"detail\":{:?}}}",
                key,
                e.message
            );
            kv.schedule(&key, now + RETRY_MS).map_err(store_failed)?;
        }
    }
    let keys_next = kv.next_due().map_err(store_failed)?;
    if let Some(due) = [next, keys_next].into_iter().flatten().min() {
        arm(state, now, due.max(now)).await?;
    }
    Response::ok("")
}

/// The group's cleanup; when it is next due.
async fn group(kv: &SqlKv, env: &Env, group: &str, now: u64) -> worker::Result<Option<u64>> {
    let store = GroupKv::new(kv, format!("group/{group}"), env)?;
    let run = crate::with_ctx(env, &store, async |ctx| {
        api::run_group_cleanup(ctx, group).await
    })
    .await;
    match run {
        Ok(run) => Ok(run.next_due_ms),
        Err(e) => {
            worker::console_error!(
                "{{\"cleanup\":\"failed\",\"group_id\":{:?},\"detail\":{:?}}}",
                group,
                e.message
            );
            // Tried again a bucket later, as the scheduled pass would be.
            api::group_cleanup_due(&WorkerConfig(env), now)
                .map(Some)
                .map_err(|e| worker::Error::RustError(e.message))
        }
    }
}
