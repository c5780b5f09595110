//! `POST /mcp/send`: appends a message to the sender's group.
//! Imports the key-value store and configuration.

use mcp_edge_domain::api;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Send;

impl wasi::exports::http::incoming_handler::Guest for Send {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_store(request, out, api::send);
    }
}

wasi::http::proxy::export!(Send);
