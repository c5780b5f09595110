//! `POST /login`: checks credentials from configuration and issues an access token.
//! Imports configuration only; it never touches the store.

use mcp_edge_domain::{api, audit::StdoutAudit, env::SystemEnv};
use mcp_edge_guest::config::WasiConfig;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Login;

impl wasi::exports::http::incoming_handler::Guest for Login {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve(request, out, |req| {
            api::login(&req, &WasiConfig, &SystemEnv, &StdoutAudit)
        });
    }
}

wasi::http::proxy::export!(Login);
