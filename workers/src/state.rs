//! The Durable Object that holds the key-value state (clients, group logs, cursors, rate-limit
//! buckets, the cleanup index) in its SQLite storage and runs the stateful endpoints on it.
//!
//! Each request runs the domain handler synchronously from start to end, so it is one atomic
//! step of a single-threaded object: the strong consistency the message log needs, which
//! Workers KV (eventually consistent, one write per second per key) cannot give.

use mcp_edge_domain::api::{self, Ctx};
use mcp_edge_domain::error::ApiError;
use mcp_edge_domain::http::respond;
use serde_json::json;
use worker::{DurableObject, Env, Request, Response, Result, State, durable_object};

use crate::config::WorkerConfig;
use crate::http::{self, Route};
use crate::platform::{ConsoleAudit, WorkerEnv};
use crate::store::SqlKv;

/// The binding of the object's namespace (`[[durable_objects.bindings]]` in wrangler.toml).
pub const BINDING: &str = "MCP_STATE";
/// The one object of the namespace that holds the state.
pub const OBJECT_NAME: &str = "state";
/// Header carrying the client's method: the Worker always forwards with POST, as `fetch`
/// refuses bodies on GET and some methods altogether.
pub const METHOD_HEADER: &str = "x-mcp-edge-method";
/// Internal paths, reachable only through the namespace binding.
pub const READY_PATH: &str = "/__mcp_edge/ready";
pub const CLEANUP_PATH: &str = "/__mcp_edge/cleanup";

#[durable_object]
pub struct McpState {
    state: State,
    env: Env,
}

impl DurableObject for McpState {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let store = match SqlKv::open(self.state.storage().sql()) {
            Ok(store) => store,
            Err(e) => {
                return http::error(ApiError::new(503, "store_unavailable", e.to_string()));
            }
        };
        let path = req.path();
        if path == READY_PATH {
            return http::to_worker(respond(
                api::store_round_trip(&store)
                    .map(|()| mcp_edge_domain::http::Response::new(204))
                    .map_err(|e| ApiError::new(503, "not_ready", e.to_string())),
            ));
        }
        let config = WorkerConfig(&self.env);
        let ctx = Ctx {
            store: &store,
            config: &config,
            env: &WorkerEnv,
            audit: &ConsoleAudit,
        };
        if path == CLEANUP_PATH {
            let result = api::run_cleanup(&ctx);
            return http::to_worker(respond(
                result.map(|report| mcp_edge_domain::http::Response::json(200, &json!(report))),
            ));
        }
        let method = req
            .headers()
            .get(METHOD_HEADER)
            .ok()
            .flatten()
            .unwrap_or_else(|| "POST".into());
        let route = Route::of(&path);
        let body = match http::body(&mut req).await {
            Ok(body) => body,
            Err(e) => return http::error(e),
        };
        let api_req = http::to_api(&req, method, route.path_info(), body);
        let resp = match route {
            Route::Login => api::login(&api_req, &ctx),
            Route::Register => api::register(&api_req, &ctx),
            Route::Send => api::send(&api_req, &ctx),
            Route::Receive => api::receive(&api_req, &ctx),
            Route::Cleanup => api::cleanup(&api_req, &ctx),
            _ => respond(Err(ApiError::not_found(
                "route_not_found",
                "no route matches this path",
            ))),
        };
        http::to_worker(resp)
    }
}
