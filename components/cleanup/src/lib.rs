//! Cleanup: expires stale clients and old messages. Runs on a schedule through the cron
//! handler (Spin's `trigger-cron` plugin, or `mcp-edge`'s scheduler), and on demand through
//! `POST /admin/cleanup` (admin only) for external schedulers.

use mcp_edge_domain::api;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

#[allow(clippy::all, unsafe_op_in_unsafe_fn)]
mod cron {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron@2.0.0",
    });
}

use cron::fermyon::spin_cron::cron_types::{Error, Metadata};

struct Cleanup;

impl wasi::exports::http::incoming_handler::Guest for Cleanup {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve_with_store(request, out, api::cleanup);
    }
}

impl cron::Guest for Cleanup {
    fn handle_cron_event(_metadata: Metadata) -> Result<(), Error> {
        mcp_edge_guest::with_context(
            |ctx| {
                mcp_edge_guest::block_on(api::run_cleanup(ctx))
                    .map(|_| ())
                    .map_err(|e| Error::Other(e.message))
            },
            |e| Err(Error::Other(e.to_string())),
        )
    }
}

wasi::http::proxy::export!(Cleanup);
cron::export!(Cleanup with_types_in cron);
