//! `GET /mcp/stream`: the group's messages for a client as Server-Sent Events.
//! Imports the key-value store and configuration.

use mcp_edge_domain::api;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Stream;

impl wasi::exports::http::incoming_handler::Guest for Stream {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_store(request, out, api::stream);
    }
}

wasi::http::proxy::export!(Stream);
