//! `GET /docs/{version}/{path}`: versioned documentation from the built site the host mounts
//! at `/` (`mcp-edge docs build`): a route record and a file read per request, no rendering. Imports the file system, configuration (for `docs_access`) and the store, which is
//! opened only to check an API key when docs need a reader (a deployment that grants docs no
//! store still serves them).

use mcp_edge_domain::api;
use mcp_edge_guest::files::PreopenedSite;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Docs;

impl wasi::exports::http::incoming_handler::Guest for Docs {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_lazy_store(request, out, async |req, ctx| {
            api::docs(req, &PreopenedSite::at("/"), ctx).await
        });
    }
}

wasi::http::proxy::export!(Docs);
