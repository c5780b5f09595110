//! `POST /mcp/register`: joins a client to a group, or refreshes its heartbeat.
//! Imports the key-value store and configuration.

use mcp_edge_domain::{api, audit::StdoutAudit, env::SystemEnv};
use mcp_edge_guest::{config::WasiConfig, kv};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Register;

impl wasi::exports::http::incoming_handler::Guest for Register {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve(request, out, |req| {
            kv::with_default_store(|store| {
                api::register(
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

wasi::http::proxy::export!(Register);
