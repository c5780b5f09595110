//! Hardening, end to end against the real `mcp-edge` and the real components: hostile input
//! on every route, docs path attacks, token and identity attacks, slow and excess clients, and
//! the headers every response carries (the abuse limits are in `tests/e2e/limits.rs`, on every runtime).
//! `docs/security.md` maps each threat to these tests.

#[path = "../support/mod.rs"]
mod support;

mod docs_paths;
mod headers;
mod hostile_input;
mod slow_clients;
mod token_attacks;
