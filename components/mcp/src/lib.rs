//! `POST /mcp`: the Model Context Protocol endpoint (2026-07-28, stateless Streamable HTTP).
//! The docs tools and resources read the built site the host mounts at `/`, as the docs
//! component does; the store is opened only for the message tools and for API keys.

use mcp_edge_domain::api;
use mcp_edge_guest::files::PreopenedSite;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Mcp;

impl wasi::exports::http::incoming_handler::Guest for Mcp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_lazy_store(request, out, async |req, ctx| {
            api::mcp(req, &PreopenedSite::at("/"), ctx).await
        });
    }
}

wasi::http::proxy::export!(Mcp);
