//! `POST /mcp/send`: appends a message to the sender's group.
//! Imports the key-value store and configuration.

use mcp_edge_domain::{api, audit::StdoutAudit, env::SystemEnv};
use mcp_edge_guest::{config::WasiConfig, kv};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Send;

impl wasi::exports::http::incoming_handler::Guest for Send {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve(request, out, |req| {
            kv::with_default_store(|store| {
                api::send(
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

wasi::http::proxy::export!(Send);
