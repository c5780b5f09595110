//! Time, randomness and the audit trail on Workers: `Date.now()`, the Web Crypto API (through
//! `getrandom`), and `console.log`, which Workers Logs and `wrangler tail` collect.

use mcp_edge_domain::audit::{AuditRecord, AuditSink};
use mcp_edge_domain::env::{Env, SystemEnv};

use crate::shard::Calls;

pub struct WorkerEnv;

impl Env for WorkerEnv {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn random_id(&self) -> String {
        // getrandom reaches the Web Crypto API here.
        SystemEnv.random_id()
    }
}

/// A number for spreading load, not for secrets (`Math.random()`).
pub fn random_u32() -> u32 {
    (js_sys::Math::random() * f64::from(u32::MAX)) as u32
}

/// One JSON line per audit record, as the components write them on stdout.
pub struct ConsoleAudit;

impl AuditSink for ConsoleAudit {
    fn record(&self, record: AuditRecord) {
        if let Ok(line) = serde_json::to_string(&record) {
            worker::console_log!("{line}");
        }
    }
}

/// The request's log line: its route, status and the Durable Object calls it made (all, and
/// those to an object shared by the whole deployment), then those the object it called made
/// in turn (a message route's group object, [`crate::group`]).
pub fn log_request(route: &str, status: u16, calls: Calls, onward: Calls) {
    worker::console_log!(
        "{}",
        serde_json::json!({
            "request": route,
            "status": status,
            "do_calls": calls.all,
            "global_do_calls": calls.global,
            "onward_do_calls": onward.all,
            "onward_global_do_calls": onward.global,
        })
    );
}
