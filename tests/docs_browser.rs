//! The rendered docs in a real browser: Debian's chromium, driven by playwright-core
//! (tests/browser/docs.mjs), reads `mcp-edge up`'s pages as a reader would. It follows a
//! sidebar link, a table-of-contents anchor and the version switcher, and it sees no console
//! error and no Content-Security-Policy violation. The screenshot it takes is the one in
//! docs/ (docs-page.png), refreshed by a run with MCP_EDGE_SCREENSHOT=docs/docs-page.png.
//! chromium and the npm package are installed on first use, as the other prerequisites are.

mod support;

use std::process::Command;

use serde_json::Value;

/// `npm ci` in tests/browser once per checkout (its lock file pins playwright-core).
fn ensure_playwright() {
    support::npm_ci(
        "tests/browser",
        &["node_modules/playwright-core/package.json"],
    );
}

#[test]
fn a_reader_navigates_the_rendered_docs_in_chromium() {
    mcp_edge_provision::ensure_program("chromium", "chromium");
    ensure_playwright();
    let server = support::app();
    let out_dir = tempfile::tempdir().unwrap();
    let screenshot = std::env::var("MCP_EDGE_SCREENSHOT")
        .map(|p| support::root().join(p))
        .unwrap_or_else(|_| out_dir.path().join("docs-page.png"));
    let out = Command::new("node")
        .arg("tests/browser/docs.mjs")
        .arg(&server.base)
        .arg(&screenshot)
        .current_dir(support::root())
        .output()
        .expect("run node tests/browser/docs.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert!(seen.get("failure").is_none(), "{seen:#}");
    assert_eq!(seen["index_title"], "mcp-edge", "{seen:#}");
    let sidebar: Vec<&str> = seen["sidebar"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        sidebar,
        [
            "mcp-edge",
            "Quickstart",
            "API reference",
            "OpenAPI reference"
        ],
        "{seen:#}"
    );
    assert_eq!(seen["after_sidebar"]["url"], "/docs/v1/api", "{seen:#}");
    assert_eq!(
        seen["current"],
        serde_json::json!(["API reference"]),
        "{seen:#}"
    );
    assert_eq!(
        seen["after_sidebar"]["h1"]
            .as_str()
            .unwrap()
            .trim_end_matches(" #"),
        "API reference (v1)",
        "{seen:#}"
    );
    let href = seen["after_toc"]["href"].as_str().unwrap();
    assert!(href.starts_with('#') && href.len() > 1, "{seen:#}");
    assert_eq!(seen["after_toc"]["hash"], href, "{seen:#}");
    assert_eq!(seen["anchor_in_view"], true, "{seen:#}");
    assert_eq!(seen["after_version"]["current"], "v0", "{seen:#}");
    assert!(
        seen["after_version"]["url"]
            .as_str()
            .unwrap()
            .starts_with("/docs/v0/"),
        "{seen:#}"
    );
    for list in ["console_errors", "page_errors", "failed_requests"] {
        assert_eq!(seen[list], serde_json::json!([]), "{list}: {seen:#}");
    }
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
}
