//! The deploy bundle: `wrangler deploy --dry-run` accepts the configuration and the build,
//! offline, and the Worker stays under the free plan's 3 MB (compressed) script limit.

use std::io::Write;
use std::process::Command;

use crate::support;
use crate::wrangler::ensure_built;

/// Cloudflare's limit for a Worker on the free plan, after compression.
const FREE_PLAN_LIMIT_BYTES: usize = 3 * 1000 * 1000;

#[test]
fn wrangler_deploy_dry_run_passes_and_the_bundle_fits_the_free_plan() {
    ensure_built();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "source workers/tools/env.sh && exec wrangler deploy --dry-run --config wrangler.toml \
         --outdir '{}'",
        out_dir.path().display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(support::root())
        .env("MCP_EDGE_WORKER_PREBUILT", "1")
        .output()
        .expect("run wrangler deploy --dry-run");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dry run failed:\n{log}");
    assert!(log.contains("--dry-run: exiting now."), "{log}");

    // What would be uploaded: the bundled script and its modules (the wasm), gzipped.
    let mut compressed = 0;
    let mut files = Vec::new();
    for entry in walk(out_dir.path()) {
        let bytes = std::fs::read(&entry).expect("read bundle file");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&bytes).expect("gzip");
        let size = gz.finish().expect("gzip").len();
        compressed += size;
        files.push(format!("{} {} -> {size}", entry.display(), bytes.len()));
    }
    assert!(
        files.iter().any(|f| f.contains(".wasm")),
        "the bundle holds the wasm module: {files:?}"
    );
    // The size docs/performance.md reports (`cargo test --test e2e wrangler_deploy -- --nocapture`).
    println!("bundle: {compressed} bytes gzipped: {files:?}");
    assert!(
        compressed < FREE_PLAN_LIMIT_BYTES,
        "bundle is {compressed} bytes compressed: {files:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_none_or(|e| e != "map") {
            out.push(path);
        }
    }
    out
}
