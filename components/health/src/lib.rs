//! `GET /health` (liveness) and `GET /health/ready` (readiness: a store round trip).
//! Imports the key-value store only.

use mcp_edge_domain::api;
use mcp_edge_guest::kv::{DEFAULT_STORE, WasiKv};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Health;

impl wasi::exports::http::incoming_handler::Guest for Health {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve(request, out, |req| {
            mcp_edge_guest::block_on(api::health(&req, async || {
                api::store_round_trip(&WasiKv::open(DEFAULT_STORE)?).await
            }))
        });
    }
}

wasi::http::proxy::export!(Health);
