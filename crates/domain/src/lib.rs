//! Platform-neutral domain logic of mcp-edge.
//!
//! Everything a client can observe is decided here, once: request and response types
//! ([`http`]), validation ([`ids`]), the error model ([`error`]), configuration ([`config`]),
//! the accounts wing (users and roles, access tokens, refresh-token sessions, API keys,
//! [`accounts`]), the messaging wing (client registry, group logs,
//! idempotent sends and their cleanup, [`messaging`]) over a key-value store ([`store`]) with
//! its cleanup indexes ([`index`]), abuse limits ([`ratelimit`]), versioned docs ([`docs`]), the Model Context Protocol ([`mcp`]),
//! the endpoint handlers that tie them together ([`api`]), and the audit trail they leave
//! ([`audit`]). Platform adapters (the WASI components, a native server, a Worker) supply
//! storage, configuration, files, time and randomness through traits.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod config;
pub mod cors;
pub mod docs;
pub mod env;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub mod ids;
pub mod index;
#[cfg(test)]
pub mod interleave;
pub mod mcp;
pub mod messaging;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod park;
pub mod ratelimit;
pub mod records;
pub mod store;

pub use error::ApiError;
