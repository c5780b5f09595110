//! Glue between standard WASI 0.2 interfaces and the domain crate, shared by every
//! component so that none of them repeats it: `wasi:http` requests and responses
//! ([`http`]), a [`KvStore`](mcp_edge_domain::store::KvStore) over `wasi:keyvalue`
//! ([`kv`]), a [`ConfigSource`](mcp_edge_domain::config::ConfigSource) over `wasi:config`
//! ([`config`]), the built docs site over `wasi:filesystem` ([`files`]) and the audit trail on
//! `wasi:cli/stdout` ([`audit`]). What a component
//! actually imports is only what it calls.

pub mod audit;
pub mod config;
pub mod files;
pub mod http;
pub mod kv;

/// Bindings for the non-HTTP interfaces, generated from the project's `wit/`.
/// (`wasi:http` and friends come from the `wasi` crate.)
#[allow(clippy::all, unsafe_op_in_unsafe_fn)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "mcp-edge:api/guest-imports",
        generate_all,
    });
}

pub use http::serve;

use audit::WasiStdoutAudit;
use mcp_edge_domain::api::Ctx;
use mcp_edge_domain::env::SystemEnv;
use mcp_edge_domain::http::{Request, Response};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

/// Runs a domain handler to completion. The domain's store seam is asynchronous for
/// platforms whose storage is (Workers); `wasi:keyvalue` calls return at once, so these
/// futures are ready when first polled and nothing ever waits here.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// Runs `f` with what a stateful endpoint is given: the default store, its configuration, the
/// system clock and randomness, and the audit trail on standard output.
pub fn with_context<T>(
    f: impl FnOnce(&Ctx) -> T,
    unavailable: impl FnOnce(mcp_edge_domain::store::StoreError) -> T,
) -> T {
    match kv::WasiKv::open(kv::DEFAULT_STORE) {
        Ok(store) => f(&Ctx {
            store: &store,
            config: &config::WasiConfig::default(),
            env: &SystemEnv,
            audit: &WasiStdoutAudit,
        }),
        Err(e) => unavailable(e),
    }
}

/// Serves a stateful endpoint's request with `handler` (see [`with_context`]); a store that
/// cannot be opened is answered 503.
pub fn serve_with_store(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl AsyncFnOnce(&Request, &Ctx<'_>) -> Response,
) {
    serve(request, out, |req| {
        with_context(
            |ctx| block_on(handler(&req, ctx)),
            |e| {
                mcp_edge_domain::http::respond(Err(mcp_edge_domain::ApiError::store_unavailable(
                    &e,
                )))
            },
        )
    });
}

/// As [`serve_with_store`], with the store opened only if the handler uses it.
pub fn serve_with_lazy_store(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl AsyncFnOnce(&Request, &Ctx<'_>) -> Response,
) {
    serve(request, out, |req| {
        let store = kv::LazyKv::new(kv::DEFAULT_STORE);
        block_on(handler(
            &req,
            &Ctx {
                store: &store,
                config: &config::WasiConfig::default(),
                env: &SystemEnv,
                audit: &WasiStdoutAudit,
            },
        ))
    });
}
