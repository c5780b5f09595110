//! The fixture docs tree (tests/fixtures/docs-tree) served page by page, on each runtime:
//! titles, heading ids, resolved links, navigation, raw Markdown and the site's feeds.

use crate::deployment::{Deployment, Kind};
use crate::support::root;

const FIXTURE: &str = "tests/fixtures/docs-tree";

/// The part of `html` from `from` to the next `to`.
fn section<'a>(html: &'a str, from: &str, to: &str) -> &'a str {
    let start = html
        .find(from)
        .unwrap_or_else(|| panic!("{from} not in {html}"));
    let rest = &html[start..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

/// Every `href` in `html`, in order.
fn hrefs(html: &str) -> Vec<&str> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect()
}

/// The project's own application, told to serve the fixture instead of static/docs.
pub fn the_fixture_tree_renders_right_page_by_page(kind: Kind) {
    let s = Deployment::start_with_docs(kind, FIXTURE);
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
    // The `.md` name serves the same page to a browser, and its source to anyone else.
    let named = s.get("/docs/v1/install.md", &[("accept", "text/html,*/*;q=0.8")]);
    assert_eq!(named.text(), install);
    let source = s.get("/docs/v1/install.md", &[]);
    assert!(
        source.text().starts_with("+++\ntitle = \"Install\""),
        "{}",
        source.text()
    );

    // Navigation: the version's pages in front-matter order then by title, the current one
    // marked; the other version's index (it has no such page); previous and next; the
    // page's own sections.
    let sidebar = section(
        &install,
        "<nav class=\"sidebar\" aria-label=\"Pages\">",
        "</nav>",
    );
    assert_eq!(
        hrefs(sidebar),
        [
            "./",
            "install",
            "broken-front-matter",
            "guide/",
            "untitled",
            "zola/"
        ],
        "{sidebar}"
    );
    assert!(sidebar.contains("<a href=\"install\" aria-current=\"page\">Install</a>"));
    let versions = section(&install, "<nav aria-label=\"Versions\">", "</nav>");
    assert_eq!(hrefs(versions), ["../v2/", "install"], "{versions}");
    assert!(install.contains("<a href=\"./\" rel=\"prev\">Fixture home</a>"));
    assert!(install.contains("<a href=\"broken-front-matter\" rel=\"next\">"));
    let toc = section(&install, "<nav aria-label=\"On this page\">", "</nav>");
    assert_eq!(
        hrefs(toc),
        [
            "#installing-spin",
            "#whats-new-in-20",
            "#spin-up-options",
            "#über-ünïcode",
            "#setup",
            "#setup-1",
            "#custom"
        ]
    );
    for landmark in [
        "<header class=\"top\">",
        "<main id=\"content\">",
        "<aside class=\"toc\">",
    ] {
        assert!(install.contains(landmark), "{landmark}");
    }

    let guide = page("/docs/v1/guide/");
    assert!(guide.contains("<title>Guide</title>"), "{guide}");
    assert!(
        !guide.contains("template = "),
        "Bartholomew front matter shown: {guide}"
    );
    assert!(guide.contains("href=\"../install\""), "{guide}");
    // Inside a folder the navigation is relative to it.
    let sidebar = section(
        &guide,
        "<nav class=\"sidebar\" aria-label=\"Pages\">",
        "</nav>",
    );
    assert_eq!(
        hrefs(sidebar),
        [
            "../",
            "../install",
            "../broken-front-matter",
            "./",
            "../untitled",
            "../zola/"
        ],
        "{sidebar}"
    );
    let v2 = page("/docs/v2/");
    assert!(v2.contains("<a href=\"../v1/\">v1</a>"), "{v2}");
    let llms = s.get("/docs/v1/llms.txt", &[]).text();
    assert!(llms.contains("- [Install](install.md)"), "{llms}");
    let sitemap = s.get("/docs/sitemap.xml", &[]).text();
    assert!(sitemap.contains("/docs/v1/guide/</loc>"), "{sitemap}");
    assert!(page("/docs/v1/zola/").contains("<title>Zola section</title>"));
    assert!(page("/docs/v1/untitled").contains("<title>untitled</title>"));
    assert!(page("/docs/v1/broken-front-matter").contains("<title>Broken front matter</title>"));
    assert!(page("/docs/v1/img/logo.svg").contains("<svg"));

    // Raw Markdown stays byte for byte as written.
    let raw = s.get("/docs/v1/install", &[("accept", "text/markdown")]);
    let written = std::fs::read_to_string(root().join(FIXTURE).join("v1/install.md")).unwrap();
    assert_eq!(raw.text(), written);
}
