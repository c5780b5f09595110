//! mcp-edge on Cloudflare Workers: the HTTP API of the WASI components, answered by the same
//! domain crate. The Worker routes as `spin.toml` does; the stateful endpoints run in the
//! [`state::McpState`] Durable Object, docs come from static assets, health answers here, and
//! the Cron Trigger runs the cleanup pass in the object.
//!
//! Compiled for `wasm32-unknown-unknown` by `worker-build` (see `workers/tools/`).

mod config;
mod docs;
mod http;
mod platform;
mod state;
mod store;

use mcp_edge_domain::api;
use mcp_edge_domain::error::ApiError;
use mcp_edge_domain::store::StoreError;
use worker::{
    Context, Env, Headers, Request, RequestInit, Response, Result, ScheduleContext, ScheduledEvent,
    event,
};

use http::Route;

fn state_stub(env: &Env) -> Result<worker::Stub> {
    env.durable_object(state::BINDING)?
        .get_by_name(state::OBJECT_NAME)
}

/// The request as the object gets it: always POST with the method in a header, the caller's
/// address in `spin-client-addr` (from `CF-Connecting-IP`), and no `spin-*` header of the
/// client's own, just as the runtime strips them.
fn forwarded(req: &Request, method: &str, body: Vec<u8>) -> Result<Request> {
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !name.starts_with("spin-") && name != state::METHOD_HEADER {
            headers.append(&name, &value)?;
        }
    }
    headers.set(state::METHOD_HEADER, method)?;
    if let Ok(Some(ip)) = req.headers().get("cf-connecting-ip") {
        headers.set("spin-client-addr", &format!("{ip}:0"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    Request::new_with_init(req.url()?.as_str(), &init)
}

async fn readiness(env: &Env) -> std::result::Result<(), StoreError> {
    let failed = |e: worker::Error| StoreError::Other(format!("durable object: {e}"));
    let resp = state_stub(env)
        .map_err(failed)?
        .fetch_with_str(&format!("https://state{}", state::READY_PATH))
        .await
        .map_err(failed)?;
    match resp.status_code() {
        204 => Ok(()),
        status => Err(StoreError::Other(format!(
            "durable object answered {status}"
        ))),
    }
}

async fn handle(mut req: Request, env: &Env) -> Result<Response> {
    let method = http::method(&req);
    let route = Route::of(&req.path());
    match route {
        Route::NotFound => http::error(ApiError::not_found(
            "route_not_found",
            "no route matches this path",
        )),
        Route::Health(ref info) => {
            let api_req = http::to_api(&req, method, info, Vec::new());
            let ready = if info.trim_end_matches('/') == "/ready" {
                readiness(env).await
            } else {
                Ok(())
            };
            http::to_worker(api::health(&api_req, || ready))
        }
        Route::Docs(ref info) => {
            let body = match http::body(&mut req).await {
                Ok(body) => body,
                Err(e) => return http::error(e),
            };
            let api_req = http::to_api(&req, method, info, body);
            http::to_worker(docs::serve(&api_req, env).await)
        }
        _ => {
            let body = match http::body(&mut req).await {
                Ok(body) => body,
                Err(e) => return http::error(e),
            };
            state_stub(env)?
                .fetch_with_request(forwarded(&req, &method, body)?)
                .await
        }
    }
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

/// The Cron Trigger: one cleanup pass in the state object.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let outcome = match state_stub(&env) {
        Ok(stub) => stub
            .fetch_with_str(&format!("https://state{}", state::CLEANUP_PATH))
            .await
            .map(|r| r.status_code()),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(200) => {}
        Ok(status) => worker::console_error!("{{\"cleanup\":\"failed\",\"status\":{status}}}"),
        Err(e) => {
            worker::console_error!("{{\"cleanup\":\"failed\",\"detail\":{:?}}}", e.to_string())
        }
    }
}
