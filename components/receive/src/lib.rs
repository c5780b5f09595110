//! `GET /mcp/receive`: the group's messages the client has not yet seen.
//! Imports the key-value store and configuration.

use mcp_edge_domain::api;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Receive;

impl wasi::exports::http::incoming_handler::Guest for Receive {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_store(request, out, api::receive);
    }
}

wasi::http::proxy::export!(Receive);
