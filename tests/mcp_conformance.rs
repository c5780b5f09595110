//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! tests/mcp/package-lock.json) against `mcp-edge up`, as `server --url …/mcp --requirements
//! 2026-07-28`: once against the product's own /mcp, once against the suite's fixtures
//! (tests/guests/mcp-fixtures) served by the same protocol code. Each run passes only when
//! every failure is one its baseline file (tests/mcp/baseline-*.yml) names, and no entry there
//! is stale. The fixtures' baseline is empty; the product's names the scenarios that call
//! fixtures it does not carry.

mod support;

use std::process::Command;

/// Runs the suite against `url`; panics with its report unless it passed against `baseline`.
fn conformance(url: &str, baseline: &str) -> String {
    let out = Command::new("node")
        .args([
            "--import",
            "./node20.mjs",
            "node_modules/@modelcontextprotocol/conformance/dist/index.js",
            "server",
            "--url",
            url,
            "--requirements",
            "2026-07-28",
            "--expected-failures",
            baseline,
        ])
        .current_dir(support::root().join("tests/mcp"))
        .output()
        .expect("run the MCP conformance suite");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "conformance against {url} failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// The passing scenarios of a report.
fn passed(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("✓ "))
        .filter_map(|l| l.split(':').next())
        .collect()
}

#[test]
fn the_product_endpoint_passes_the_conformance_suite_but_its_named_gaps() {
    support::ensure_mcp_packages();
    let server = support::app();
    let report = conformance(&format!("{}/mcp", server.base), "baseline-product.yml");
    let passed = passed(&report);
    for scenario in [
        "tools-list",
        "resources-list",
        "sep-2164-resource-not-found",
        "dns-rebinding-protection",
        "http-header-validation",
    ] {
        assert!(
            passed.contains(&scenario),
            "{scenario} did not pass:\n{report}"
        );
    }
}

#[test]
fn the_protocol_code_passes_the_conformance_suite_with_its_fixtures() {
    support::ensure_mcp_packages();
    let server = support::server("tests/fixtures/mcp-fixtures.toml").start();
    let report = conformance(&format!("{}/mcp", server.base), "baseline-fixtures.yml");
    let passed = passed(&report);
    for scenario in [
        "completion-complete",
        "tools-call-simple-text",
        "tools-call-image",
        "tools-call-error",
        "resources-read-binary",
        "resources-templates-read",
        "prompts-get-with-args",
        "caching",
        "server-stateless",
        "tools-call-with-progress",
        "input-required-result-multi-round",
        "input-required-result-tampered-state",
        "input-required-result-non-tool-request",
    ] {
        assert!(
            passed.contains(&scenario),
            "{scenario} did not pass:\n{report}"
        );
    }
}
