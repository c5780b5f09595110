//! `GET /mcp/receive`: the group's messages the client has not yet seen.
//! Imports the key-value store and configuration.

use mcp_edge_domain::{api, audit::StdoutAudit, env::SystemEnv};
use mcp_edge_guest::{config::WasiConfig, kv};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Receive;

impl wasi::exports::http::incoming_handler::Guest for Receive {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve(request, out, |req| {
            kv::with_default_store(|store| {
                api::receive(
                    &req,
                    &api::Ctx {
                        store,
                        config: &WasiConfig,
                        env: &SystemEnv,
                        audit: &StdoutAudit,
                    },
                )
            })
        });
    }
}

wasi::http::proxy::export!(Receive);
