//! `POST /login`, `POST /token/refresh`, `POST /logout`: the routes of a session, one
//! contract (see `api::session`). Imports configuration (signing keys, seed users, limits)
//! and the store (users, sessions, rate limits and failed-login counts).

use mcp_edge_domain::api;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Login;

impl wasi::exports::http::incoming_handler::Guest for Login {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_store(request, out, api::session);
    }
}

wasi::http::proxy::export!(Login);
