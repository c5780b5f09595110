//! The Model Context Protocol, revision 2026-07-28 over Streamable HTTP, statelessly, with
//! `initialize` kept for clients of 2025-11-25 and 2025-06-18. [`wire`] is the transport
//! (what is checked before a method runs, how errors travel), [`server`] the protocol around
//! any server's tools and resources. The protocol's types are `rust-mcp-schema`'s. This
//! deployment's own server (docs and message groups) is [`crate::api::mcp`]; a test guest
//! serves the conformance suite's fixtures from the same code.

pub mod server;
pub mod wire;

pub use server::{Caching, Call, Handled, InputRequired, Outcome, Page, Server, content, handle};
pub use wire::{Era, Failure};
