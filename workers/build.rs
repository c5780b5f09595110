//! Builds the docs site (from `static/docs`, or the tree `MCP_EDGE_DOCS` names) into
//! `workers/build/assets/docs`, the Worker's static assets (wrangler.toml `[assets]`): the
//! same site `mcp-edge docs build` makes, with the same pages, route records and ETags. The
//! Worker reads it through the assets binding, so a docs change needs no new Worker code.

use std::path::{Path, PathBuf};

use mcp_edge_domain::docs::{FsDocs, site};

fn main() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("cargo::rerun-if-env-changed=MCP_EDGE_DOCS");
    println!("cargo::rerun-if-env-changed=MCP_EDGE_DOCS_BASE_URL");
    let source = std::env::var_os("MCP_EDGE_DOCS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("../static/docs"));
    println!("cargo::rerun-if-changed={}", source.display());
    let base_url = std::env::var("MCP_EDGE_DOCS_BASE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8787/docs/".to_owned());
    let built = site::build(&FsDocs::at(&source), &site::Options { base_url });
    for finding in &built.findings {
        println!("cargo::warning={}/{finding}", source.display());
    }
    let out = crate_dir.join("build/assets/docs");
    if let Err(e) = built.write_to(&out) {
        panic!("cannot write the docs site to {}: {e}", out.display());
    }
}
