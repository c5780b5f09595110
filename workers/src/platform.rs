//! Time, randomness and the audit trail on Workers: `Date.now()`, the Web Crypto API (through
//! `getrandom`), and `console.log`, which Workers Logs and `wrangler tail` collect.

use mcp_edge_domain::ApiError;
use mcp_edge_domain::audit::{AuditRecord, AuditSink};
use std::rc::Rc;

use mcp_edge_domain::env::{Env, SystemEnv};
use mcp_edge_domain::park::KeyWaiter;
use mcp_edge_domain::ratelimit::{PlatformLimiter, Scope, platform_refusal};

use crate::shard::Calls;
use crate::waiters::Waiters;

/// The Rate Limiting binding that counts request budgets (`[[ratelimits]]` in wrangler.toml).
pub const REQUESTS_BINDING: &str = "REQUESTS";

/// Its `simple.period`, in seconds: the longest a refused client waits (`Retry-After`).
pub const REQUESTS_WINDOW_SECONDS: u64 = 60;

/// Time and randomness on Workers, and the platform's limiter for request budgets.
pub struct WorkerEnv {
    requests: Option<BindingLimiter>,
    /// A group's object's waiters ([`crate::waiters`]): how a receive waits there.
    waiters: Option<Rc<Waiters>>,
}

impl WorkerEnv {
    /// With the request budgets counted by [`REQUESTS_BINDING`] when the Worker has it (else
    /// in the store, as on the other runtimes).
    pub fn new(env: &worker::Env) -> Self {
        Self {
            requests: env.rate_limiter(REQUESTS_BINDING).ok().map(BindingLimiter),
            waiters: None,
        }
    }

    /// Waiting requests wait on `waiters` (inside a group's object).
    pub fn waking(mut self, waiters: Rc<Waiters>) -> Self {
        self.waiters = Some(waiters);
        self
    }
}

impl Env for WorkerEnv {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn random_id(&self) -> String {
        // getrandom reaches the Web Crypto API here.
        SystemEnv.random_id()
    }

    fn platform_limiter(&self) -> Option<&dyn PlatformLimiter> {
        self.requests.as_ref().map(|l| l as &dyn PlatformLimiter)
    }

    fn waiter(&self) -> Option<&dyn KeyWaiter> {
        self.waiters.as_deref().map(|w| w as &dyn KeyWaiter)
    }
}

/// Request budgets on Cloudflare's Rate Limiting binding: a call beside the Worker, not to a
/// Durable Object. Counts are per Cloudflare location and eventually consistent
/// (docs/architecture.md).
struct BindingLimiter(worker::RateLimiter);

#[async_trait::async_trait(?Send)]
impl PlatformLimiter for BindingLimiter {
    async fn take(&self, buckets: &[(Scope, &str)]) -> Result<(), ApiError> {
        for (scope, id) in buckets {
            match self.0.limit(format!("{}:{id}", scope.name())).await {
                Ok(outcome) if outcome.success => {}
                Ok(_) => return Err(platform_refusal(*scope, REQUESTS_WINDOW_SECONDS)),
                // A limiter that cannot answer never locks clients out.
                Err(e) => worker::console_log!("rate limiter unavailable: {e}"),
            }
        }
        Ok(())
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
            "global_do_writes": calls.global_writes,
            "onward_do_calls": onward.all,
            "onward_global_do_calls": onward.global,
            "onward_global_do_writes": onward.global_writes,
        })
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requests_binding_is_declared_with_the_window_the_worker_assumes() {
        let config: toml::Value =
            toml::from_str(include_str!("../../wrangler.toml")).expect("wrangler.toml parses");
        let binding = config["ratelimits"]
            .as_array()
            .expect("[[ratelimits]]")
            .iter()
            .find(|b| b["name"].as_str() == Some(REQUESTS_BINDING))
            .expect("the REQUESTS binding");
        assert_eq!(
            binding["simple"]["period"].as_integer(),
            Some(REQUESTS_WINDOW_SECONDS as i64)
        );
        assert!(binding["simple"]["limit"].as_integer().unwrap_or(0) > 0);
    }
}
