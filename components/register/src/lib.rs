//! `POST /mcp/register`: joins a client to a group, or refreshes its heartbeat.
//! Imports the key-value store and configuration.

use mcp_edge_domain::api;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Register;

impl wasi::exports::http::incoming_handler::Guest for Register {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_store(request, out, api::register);
    }
}

wasi::http::proxy::export!(Register);
