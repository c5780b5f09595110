//! `GET /docs/{version}/{path}`: versioned documentation from the files the host mounts at
//! `/`. Imports the file system and configuration (for `docs_access`); no store.

use mcp_edge_domain::{api, audit::StdoutAudit, docs::FsDocs, env::SystemEnv};
use mcp_edge_guest::config::WasiConfig;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Docs;

impl wasi::exports::http::incoming_handler::Guest for Docs {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve(request, out, |req| {
            mcp_edge_guest::block_on(api::docs(
                &req,
                &FsDocs::at("/"),
                &WasiConfig,
                &SystemEnv,
                &StdoutAudit,
            ))
        });
    }
}

wasi::http::proxy::export!(Docs);
