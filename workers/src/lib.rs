//! mcp-edge on Cloudflare Workers: the HTTP API of the WASI components, answered by the same
//! domain crate. The Worker routes as `spin.toml` does and calls the domain's handlers with
//! a key-value store spread over Durable Objects ([`shard`]: the group logs in an object per
//! group, which answers the group's message routes itself, [`group`]), docs and the MCP
//! endpoint's catalog and search index from static assets ([`docs`]), and configuration from
//! vars and secrets; the Cron Trigger runs the same cleanup pass.
//!
//! Compiled for `wasm32-unknown-unknown` by `worker-build` (see `workers/tools/`).

mod alarm;
mod config;
mod docs;
mod group;
mod http;
mod platform;
mod shard;
mod store;
mod waiters;

use mcp_edge_domain::api::{self, Ctx};
use mcp_edge_domain::error::ApiError;
use mcp_edge_domain::http::{Request as ApiRequest, Response as ApiResponse};
use mcp_edge_domain::store::KvStore;
use worker::{Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

use config::WorkerConfig;
use http::Route;
use platform::{ConsoleAudit, WorkerEnv};
use shard::ShardedKv;

/// Runs `f` with what an endpoint is given: the request's store, the configuration, the clock
/// and randomness, and the audit trail.
pub(crate) async fn with_ctx<T>(
    env: &Env,
    store: &dyn KvStore,
    f: impl AsyncFnOnce(&Ctx<'_>) -> T,
) -> T {
    with_platform(WorkerEnv::new(env), env, store, f).await
}

/// As [`with_ctx`], with the platform given (a group's object adds its waiters).
pub(crate) async fn with_platform<T>(
    platform: WorkerEnv,
    env: &Env,
    store: &dyn KvStore,
    f: impl AsyncFnOnce(&Ctx<'_>) -> T,
) -> T {
    let config = WorkerConfig(env);
    let ctx = Ctx {
        store,
        config: &config,
        env: &platform,
        audit: &ConsoleAudit,
    };
    f(&ctx).await
}

/// As [`with_ctx`], on a store of its own (the Cron Trigger's).
async fn with_context<T>(
    env: &Env,
    f: impl AsyncFnOnce(&Ctx<'_>) -> T,
) -> std::result::Result<T, ApiError> {
    let store = ShardedKv::open(env).map_err(|e| ApiError::store_unavailable(&e))?;
    Ok(with_ctx(env, &store, f).await)
}

/// A stateful endpoint's answer, over this request's store.
async fn stateful(
    env: &Env,
    store: &ShardedKv,
    req: &ApiRequest,
    handler: impl AsyncFnOnce(&ApiRequest, &Ctx<'_>) -> ApiResponse,
) -> ApiResponse {
    with_ctx(env, store, async |ctx| handler(req, ctx).await).await
}

/// The caller's address for the rate limits, as the runtime passes it: `spin-client-addr`
/// (`ip:port`, an IPv6 address in brackets), here from `CF-Connecting-IP`; a client's own
/// `spin-*` headers are dropped, as there.
fn with_client_addr(mut req: ApiRequest, client_ip: Option<String>) -> ApiRequest {
    req.headers.retain(|(name, _)| !name.starts_with("spin-"));
    if let Some(ip) = client_ip.and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok()) {
        let addr = std::net::SocketAddr::new(ip, 0).to_string();
        req.headers
            .push(("spin-client-addr".into(), addr.into_bytes()));
    }
    req
}

/// A request the Worker answers itself, over its own store.
async fn answer_here(
    route: &Route,
    env: &Env,
    store: &ShardedKv,
    api_req: &ApiRequest,
) -> ApiResponse {
    match route {
        Route::Login => stateful(env, store, api_req, api::login).await,
        Route::Refresh => stateful(env, store, api_req, api::refresh).await,
        Route::Logout => stateful(env, store, api_req, api::logout).await,
        Route::Admin(_) => stateful(env, store, api_req, api::admin).await,
        Route::Register => stateful(env, store, api_req, api::register).await,
        Route::Send => stateful(env, store, api_req, api::send).await,
        Route::Receive => stateful(env, store, api_req, api::receive).await,
        Route::Stream => stateful(env, store, api_req, api::stream).await,
        Route::Cleanup => stateful(env, store, api_req, api::cleanup).await,
        Route::Docs(_) => docs::serve(api_req, env, store).await,
        Route::OpenApi => docs::openapi(api_req, env, store).await,
        Route::Mcp => docs::mcp(api_req, env, store).await,
        Route::Health(_) => {
            // A probe of one of many objects, picked at random: readiness checks that the
            // objects answer without sending every check to one of them.
            let key = shard::probe_key(platform::random_u32());
            api::health(api_req, async || store.get(&key).await.map(drop)).await
        }
        Route::NotFound => unreachable!("handle answers it first"),
    }
}

async fn handle(mut req: Request, env: &Env) -> Result<Response> {
    let method = http::method(&req);
    let route = Route::of(&req.path());
    if route == Route::NotFound {
        return http::error(ApiError::not_found(
            "route_not_found",
            "no route matches this path",
        ));
    }
    let body = match route {
        // Health reads no body; the others are capped as on the runtime.
        Route::Health(_) => Vec::new(),
        _ => match http::body(&mut req).await {
            Ok(body) => body,
            Err(e) => return http::error(e),
        },
    };
    let client_ip = req.headers().get("cf-connecting-ip").ok().flatten();
    let api_req = with_client_addr(
        http::to_api(&req, method, route.path_info(), body),
        client_ip,
    );
    // One store per request: it counts the Durable Object calls the request makes.
    let store = match ShardedKv::open(env) {
        Ok(store) => store,
        Err(e) => return http::error(ApiError::store_unavailable(&e)),
    };
    // A message route for a valid group is answered by the group's object: one call, and the
    // calls that object made in turn.
    let (resp, onward) = match group::of(&route, &api_req) {
        Some(group) => match group::forward(&store, &group, &route, api_req).await {
            Ok(answer) => answer,
            Err(e) => (
                ApiError::store_unavailable(&e).into(),
                shard::Calls::default(),
            ),
        },
        None => (
            answer_here(&route, env, &store, &api_req).await,
            shard::Calls::default(),
        ),
    };
    platform::log_request(route.name(), resp.status, store.calls(), onward);
    http::to_worker(resp)
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let id = http::request_id(&req);
    let resp = match handle(req, &env).await {
        Ok(resp) => resp,
        Err(e) => {
            worker::console_error!(
                "{{\"error\":\"request failed\",\"detail\":{:?}}}",
                e.to_string()
            );
            http::error(ApiError::new(
                503,
                "unavailable",
                "the request could not be completed; retry",
            ))?
        }
    };
    http::finish(resp, &id)
}

/// The Cron Trigger: one cleanup pass (its audit record says what it removed).
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let outcome = with_context(&env, async |ctx| api::run_cleanup(ctx).await)
        .await
        .and_then(|pass| pass.map(drop));
    if let Err(e) = outcome {
        worker::console_error!("{{\"cleanup\":\"failed\",\"detail\":{:?}}}", e.message);
    }
}

#[cfg(test)]
mod tests {
    use mcp_edge_domain::http::Request as ApiRequest;
    use mcp_edge_domain::ratelimit::client_ip;

    use super::with_client_addr;

    fn addr_of(ip: Option<&str>) -> Option<String> {
        let req = ApiRequest {
            headers: vec![("spin-client-addr".into(), b"6.6.6.6:1".to_vec())],
            ..ApiRequest::default()
        };
        let req = with_client_addr(req, ip.map(str::to_owned));
        req.header("spin-client-addr").and_then(client_ip)
    }

    /// Every address Cloudflare may give reaches the rate limiter, IPv6 included (an
    /// unbracketed `1:2:3:4:5:6:7:8:0` would parse as no address and escape the limit), and
    /// an IPv6 address as its /64.
    #[test]
    fn the_connecting_ip_becomes_the_limited_address() {
        assert_eq!(addr_of(Some("203.0.113.7")).as_deref(), Some("203.0.113.7"));
        assert_eq!(
            addr_of(Some("2001:db8:1:2:3:4:5:6")).as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(addr_of(Some("::1")).as_deref(), Some("::/64"));
        // A spoofed runtime header never stands in for the platform's.
        assert_eq!(addr_of(None), None);
        assert_eq!(addr_of(Some("not an ip")), None);
    }
}
