//! Hardening, end to end against the real `mcp-edge` and the real components: hostile input
//! on every route, docs path attacks, token and identity attacks, abuse limits, and the
//! headers every response carries. `docs/security.md` maps each threat to these tests.

#[path = "../support/mod.rs"]
mod support;

mod abuse_limits;
mod docs_paths;
mod headers;
mod hostile_input;
mod token_attacks;
