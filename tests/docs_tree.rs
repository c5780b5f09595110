//! A documentation tree this project did not shape its renderer around (tests/fixtures/docs-tree:
//! all three front-matter forms, headings with punctuation, code, Unicode and repeats, every
//! link form, the three folder index names, an image, and planted problems), checked by
//! `mcp-edge docs check` here; served page by page by each runtime in the e2e suite
//! (tests/e2e/docs_tree.rs).

mod support;

use std::process::Command;

use support::{binary, root};

const FIXTURE: &str = "tests/fixtures/docs-tree";

fn docs_check(dir: &str) -> (bool, String) {
    let out = Command::new(binary())
        .args(["docs", "check", dir])
        .current_dir(root())
        .output()
        .expect("run mcp-edge docs check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn docs_check_finds_nothing_in_the_shipped_docs_and_exactly_the_planted_problems() {
    assert_eq!(docs_check("static/docs"), (true, String::new()));
    let (ok, out) = docs_check(FIXTURE);
    assert!(!ok, "planted problems must fail the check");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (line, expected) in lines.iter().zip([
        "v1/broken-front-matter.md:1: front_matter: YAML front matter",
        "v1/index.md:15: dead_link: not-a-page names no page or file",
        "v1/install.md:22: dead_anchor: index#nowhere: v1/index.md has no heading #nowhere",
        "v1/untitled.md:1: untitled: no title in front matter and no heading",
    ]) {
        assert!(
            line.starts_with(&format!("{FIXTURE}/{expected}")),
            "{line} is not {expected}"
        );
    }
}

/// `up --docs DIR` builds the site from the tree at every start: a page edited between two
/// starts on the same data directory is served as it is now, with a new ETag.
#[test]
fn a_page_changed_on_disk_is_served_changed_by_the_next_up() {
    let tree = tempfile::tempdir().unwrap();
    let page = tree.path().join("v1/guide.md");
    std::fs::create_dir_all(page.parent().unwrap()).unwrap();
    std::fs::write(&page, "# Guide\n\nThe first text.\n").unwrap();
    let docs = tree.path().to_str().unwrap().to_owned();
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let start = || {
        support::server_in("spin.toml", data.clone())
            .arg("--kv")
            .arg("memory")
            .arg("--docs")
            .arg(&docs)
            .start()
    };

    let server = start();
    let first = server.get("/docs/v1/guide", &[]);
    assert_eq!(first.status, 200);
    assert!(first.text().contains("The first text."), "{}", first.text());
    drop(server);

    std::fs::write(&page, "# Guide\n\nThe second text.\n").unwrap();
    let server = start();
    let second = server.get("/docs/v1/guide", &[]);
    assert_eq!(second.status, 200);
    assert!(
        second.text().contains("The second text."),
        "{}",
        second.text()
    );
    assert!(!second.text().contains("The first text."));
    assert_ne!(first.header("etag"), second.header("etag"));
    let raw = server.get("/docs/v1/guide.md", &[("accept", "text/markdown")]);
    assert_eq!(raw.text(), "# Guide\n\nThe second text.\n");
}
