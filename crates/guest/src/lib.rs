//! Glue between standard WASI 0.2 interfaces and the domain crate, shared by every
//! component so that none of them repeats it: `wasi:http` requests and responses
//! ([`http`]), a [`KvStore`](mcp_edge_domain::store::KvStore) over `wasi:keyvalue`
//! ([`kv`]), a [`ConfigSource`](mcp_edge_domain::config::ConfigSource) over `wasi:config`
//! ([`config`]) and a [`DocsSource`](mcp_edge_domain::docs::DocsSource) over the files the
//! host mounts ([`files`]). What a component actually imports is only what it calls.

pub mod config;
pub mod files;
pub mod http;
pub mod kv;

/// Bindings for the non-HTTP interfaces, generated from the project's `wit/`.
/// (`wasi:http` and friends come from the `wasi` crate.)
#[allow(clippy::all, unsafe_op_in_unsafe_fn)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "mcp-edge:api/guest-imports",
        generate_all,
    });
}

pub use http::serve;
