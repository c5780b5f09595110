//! `POST /login`: checks credentials from configuration and issues an access token.
//! Imports configuration, and the store for the rate limits and failed-login counts.

use mcp_edge_domain::api;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Login;

impl wasi::exports::http::incoming_handler::Guest for Login {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_store(request, out, api::login);
    }
}

wasi::http::proxy::export!(Login);
