//! A documentation tree this project did not shape its renderer around (tests/fixtures/docs-tree:
//! all three front-matter forms, headings with punctuation, code, Unicode and repeats, every
//! link form, the three folder index names, an image, and planted problems), checked by
//! `mcp-edge docs check` and served page by page by the real docs component
//! (`mcp-edge up --docs DIR`).

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

#[test]
fn the_fixture_tree_renders_right_page_by_page() {
    support::ensure_built("spin.toml");
    // The project's own application, told to serve the fixture instead of static/docs.
    let s = support::server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--docs")
        .arg(FIXTURE)
        .start();
    let page = |path: &str| {
        let r = s.get(path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.text()
    };

    let home = page("/docs/v1/");
    assert!(home.contains("<title>Fixture home</title>"), "{home}");
    assert!(home.contains("name=\"description\""), "{home}");
    assert!(
        !home.contains("sidebar_position"),
        "front matter shown: {home}"
    );
    for href in [
        "href=\"install\"",
        "href=\"./install\"",
        "href=\"install#installing-spin\"",
        "href=\"guide/\"",
        "href=\"zola/\"",
        "href=\"../v2/\"",
        "href=\"#welcome\"",
        "src=\"img/logo.svg\"",
    ] {
        assert!(home.contains(href), "{href} not in {home}");
    }

    let install = page("/docs/v1/install");
    assert!(install.contains("<title>Install</title>"), "{install}");
    assert!(!install.contains("weight = 2"), "{install}");
    for id in [
        "installing-spin",
        "whats-new-in-20",
        "spin-up-options",
        "über-ünïcode",
        "setup",
        "setup-1",
        "custom",
    ] {
        assert!(
            install.contains(&format!("id=\"{id}\""))
                && install.contains(&format!("href=\"#{id}\"")),
            "#{id} not in {install}"
        );
    }
    assert_eq!(page("/docs/v1/install.md"), install);

    let guide = page("/docs/v1/guide/");
    assert!(guide.contains("<title>Guide</title>"), "{guide}");
    assert!(
        !guide.contains("template"),
        "Bartholomew front matter shown: {guide}"
    );
    assert!(guide.contains("href=\"../install\""), "{guide}");
    assert!(page("/docs/v1/zola/").contains("<title>Zola section</title>"));
    assert!(page("/docs/v1/untitled").contains("<title>untitled</title>"));
    assert!(page("/docs/v1/broken-front-matter").contains("<title>Broken front matter</title>"));
    assert!(page("/docs/v1/img/logo.svg").contains("<svg"));

    // Raw Markdown stays byte for byte as written.
    let raw = s.get("/docs/v1/install", &[("accept", "text/markdown")]);
    let written = std::fs::read_to_string(root().join(FIXTURE).join("v1/install.md")).unwrap();
    assert_eq!(raw.text(), written);
}
