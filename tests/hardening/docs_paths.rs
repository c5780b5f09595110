//! Docs path attacks: every case is 404, and nothing outside the docs root is ever served.

use std::path::Path;

use crate::support;

/// Request targets that try to leave the docs root, on the real application (whose docs root
/// is `static/docs`; the repository around it holds `Cargo.toml`).
fn attacks() -> Vec<String> {
    let mut cases: Vec<String> = [
        "/docs/v1/../../Cargo.toml",
        "/docs/../Cargo.toml",
        "/docs/v1/%2e%2e/%2e%2e/Cargo.toml",
        "/docs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/docs/v1/..%2f..%2fCargo.toml",
        "/docs/v1/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/docs/v1/..%5c..%5cCargo.toml",
        "/docs/v1/%5c..%5c..%5cCargo.toml",
        "/docs/v1/%252e%252e/%252e%252e/Cargo.toml",
        "/docs/v1/%25252e%25252e/Cargo.toml",
        "/docs/v1/.%2e/.%2e/Cargo.toml",
        "/docs/v1/....//....//Cargo.toml",
        "/docs/v1/%c0%ae%c0%ae/%c0%ae%c0%ae/Cargo.toml",
        "/docs/v1/%u002e%u002e/Cargo.toml",
        "/docs//etc/passwd",
        "/docs/v1//etc/passwd",
        "/docs/v1/%2fetc%2fpasswd",
        "/docs/%2fetc/passwd",
        "/docs/C:%5cWindows%5cwin.ini",
        "/docs/v1/%00",
        "/docs/v1/index.md%00",
        "/docs/v1/index.md%00.html",
        "/docs/v1/.git/config",
        "/docs/v1/.%2e",
        "/docs/latest/../../../Cargo.toml",
        "/docs/v1/index.md/../../../Cargo.toml",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cases.push(format!("/docs/v1/{}", "a/".repeat(3000)));
    cases.push(format!("/docs/v1/{}index.md", "../".repeat(500)));
    cases.push(format!("/docs/{}", "%2e%2e%2f".repeat(200)));
    cases
}

fn leaked(body: &str) -> bool {
    body.contains("[workspace]") || body.contains("root:x:0:0") || body.contains("[extensions]")
}

#[test]
fn traversal_and_encoding_tricks_are_404_on_the_real_docs_tree() {
    let server = support::app();
    // The docs are there: the table below fails for the right reason.
    assert_eq!(server.get("/docs/v1/index.md", &[]).status, 200);
    for target in attacks() {
        let reply = server.exchange(
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(reply.status, 404, "{target:.200}: {:.300}", reply.raw);
        assert!(reply.error_code().is_some(), "{target:.200}: no JSON error");
        assert!(!leaked(&reply.body), "{target:.200} leaked a file");
    }
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("create symlink");
}

/// A docs tree whose symlinks point outside it: the site build does not follow them, so
/// nothing outside the tree is ever published.
#[test]
fn symlinks_out_of_the_docs_tree_are_404() {
    support::ensure_built("spin.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let marker = "TOP-SECRET-MARKER-7f3a";
    std::fs::write(root.join("secret.md"), format!("# {marker}\n")).unwrap();
    std::fs::create_dir_all(root.join("outside/v9")).unwrap();
    std::fs::write(root.join("outside/v9/index.md"), format!("# {marker}\n")).unwrap();
    let docs = root.join("docs/v1");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("index.md"), "# inside\n").unwrap();
    symlink(Path::new("../../secret.md"), &docs.join("relative.md"));
    symlink(&root.join("secret.md"), &docs.join("absolute.md"));
    symlink(Path::new("/etc/passwd"), &docs.join("passwd.md"));
    symlink(&root.join("outside"), &docs.join("outdir"));
    symlink(&root.join("outside/v9"), &root.join("docs/v9"));
    // The site is built from this tree (`up --docs`): the build must not follow the links.
    let server = support::server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--docs")
        .arg(root.join("docs").to_str().unwrap())
        .start();
    let inside = server.get("/docs/v1/", &[]);
    assert_eq!(inside.status, 200, "{}", inside.text());
    assert!(inside.text().contains("inside"));
    for path in [
        "/docs/v1/relative.md",
        "/docs/v1/absolute.md",
        "/docs/v1/passwd.md",
        "/docs/v1/outdir/v9/index.md",
        "/docs/v9/index.md",
        "/docs/v9/",
    ] {
        let reply = server.get(path, &[]);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert!(
            !reply.text().contains(marker) && !leaked(&reply.text()),
            "{path} leaked"
        );
    }
    // The listing of versions does not offer the symlinked one either.
    let listing = server.get("/docs", &[]);
    assert!(!listing.text().contains(marker), "{}", listing.text());
}
