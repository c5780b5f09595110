//! `/admin/users[/{name}]` and `/admin/api-keys[/{id}]`: user management and API keys, for
//! admins. Imports the store (users, keys) and configuration (signing keys, seed users,
//! limits); no files.

use mcp_edge_domain::api;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Admin;

impl wasi::exports::http::incoming_handler::Guest for Admin {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_store(request, out, api::admin);
    }
}

wasi::http::proxy::export!(Admin);
