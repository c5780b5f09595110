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
