//! `GET /docs/{version}/{path}`: versioned documentation from the files the host mounts at
//! `/`. Imports the file system, configuration (for `docs_access`) and the store, which is
//! opened only to check an API key when docs need a reader (a deployment that grants docs no
//! store still serves them).

use mcp_edge_domain::{api, docs::FsDocs};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Docs;

impl wasi::exports::http::incoming_handler::Guest for Docs {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_lazy_store(request, out, async |req, ctx| {
            api::docs(req, &FsDocs::at("/"), ctx).await
        });
    }
}

wasi::http::proxy::export!(Docs);
