use super::site::{self, Site};
use super::*;
use crate::error::ApiError;
use crate::http::{Request, Response};

fn tree() -> MemoryDocs {
    MemoryDocs::new(&[
        ("v0/index.md", "# Old\n"),
        (
            "v1/index.md",
            "# API reference\n\nSee [quickstart](quickstart.md).\n",
        ),
        ("v1/page.html", "<p>hi</p>"),
        ("v1/style.css", "body{}"),
        ("v1/guide/index.html", "<h1>guide</h1>"),
        ("v10/index.md", "# Ten\n"),
        ("v2/readme.txt", "plain"),
        ("notes/secret.md", "not a version"),
    ])
}

fn get(path: &str) -> Request {
    Request::get(path)
}

fn get_with(path: &str, header: &str, value: &str) -> Request {
    let mut req = get(path);
    req.headers.push((header.into(), value.as_bytes().to_vec()));
    req
}

fn built(docs: &MemoryDocs) -> Site {
    site::build(
        docs,
        &site::Options {
            base_url: "https://docs.example/docs/".into(),
        },
    )
}

async fn serve_public(req: &Request) -> Result<Response, ApiError> {
    serve(req, &built(&tree()), Visibility::Public).await
}

#[pollster::test]
async fn versions_are_listed_newest_first_and_latest_resolves() {
    assert_eq!(versions(&tree()), vec!["v10", "v2", "v1", "v0"]);
    for path in ["", "/"] {
        let resp = serve_public(&get(path)).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["latest"], "v10");
        assert_eq!(v["versions"][3], "v0");
    }
    let resp = serve_public(&get("/latest/")).await.unwrap();
    assert!(
        String::from_utf8(resp.body)
            .unwrap()
            .contains("<title>Ten</title>")
    );
    assert_eq!(
        resp.headers
            .iter()
            .find(|h| h.0 == "cache-control")
            .unwrap()
            .1,
        "public, max-age=60"
    );
}

#[pollster::test]
async fn files_get_their_content_type() {
    let cases = [
        ("/v1/page.html", "text/html; charset=utf-8"),
        ("/v1/style.css", "text/css; charset=utf-8"),
        ("/v2/readme.txt", "text/plain; charset=utf-8"),
    ];
    for (path, ctype) in cases {
        let resp = serve_public(&get(path)).await.unwrap();
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.header("content-type"), Some(ctype), "{path}");
        assert_eq!(resp.header("cache-control"), Some("public, max-age=300"));
    }
}

#[pollster::test]
async fn directories_serve_their_index_and_redirect_without_slash() {
    let resp = serve_public(&get("/v1/guide/")).await.unwrap();
    assert_eq!(resp.body, b"<h1>guide</h1>");
    let resp = serve_public(&get("/v1/guide")).await.unwrap();
    assert_eq!(
        (resp.status, resp.header("location")),
        (301, Some("guide/"))
    );
    let resp = serve_public(&get("/v1")).await.unwrap();
    assert_eq!(resp.header("location"), Some("v1/"));
    let resp = serve_public(&get("/v1/")).await.unwrap();
    assert!(
        String::from_utf8(resp.body)
            .unwrap()
            .contains("<h1 id=\"api-reference\">API reference <a class=\"anchor\"")
    );
    assert_eq!(serve_public(&get("/v2/")).await.unwrap_err().status, 404);
}

/// Pages are found as docs engines link them: without `.md`, and folders by `index.md`,
/// `_index.md` or `README.md`; raw Markdown stays as written.
#[pollster::test]
async fn pages_without_md_and_every_index_name_are_served() {
    let docs = MemoryDocs::new(&[
        (
            "v1/install.md",
            "---\ntitle: Installing\n---\n# Install\n\nSee [the guide](guide/README.md) and [home](./index.md).\n",
        ),
        ("v1/index.md", "# Home\n"),
        ("v1/guide/README.md", "# Guide\n"),
        (
            "v1/zola/_index.md",
            "+++\ntitle = \"Zola section\"\n+++\nBody\n",
        ),
    ]);
    let site = built(&docs);
    let html = |path: &str| {
        let resp = pollster::block_on(serve(&get(path), &site, Visibility::Public)).unwrap();
        assert_eq!(resp.status, 200, "{path}");
        String::from_utf8(resp.body).unwrap()
    };
    let install = html("/v1/install");
    assert!(install.contains("<title>Installing</title>"), "{install}");
    assert!(
        !install.contains("title: Installing"),
        "front matter shown: {install}"
    );
    assert!(
        install.contains("href=\"guide/\"") && install.contains("href=\"./\""),
        "{install}"
    );
    let named = serve(
        &get_with("/v1/install.md", "accept", "text/html"),
        &site,
        Visibility::Public,
    )
    .await
    .unwrap();
    assert_eq!(String::from_utf8(named.body).unwrap(), install);
    assert!(html("/v1/guide/").contains("<title>Guide</title>"));
    assert!(html("/v1/zola/").contains("<title>Zola section</title>"));
    let raw = serve(
        &get_with("/v1/install", "accept", "text/markdown"),
        &built(&docs),
        Visibility::Public,
    )
    .await
    .unwrap();
    assert!(
        String::from_utf8(raw.body)
            .unwrap()
            .starts_with("---\ntitle: Installing\n---\n")
    );
    assert_eq!(
        serve(&get("/v1/missing"), &built(&docs), Visibility::Public)
            .await
            .unwrap_err()
            .status,
        404
    );
}

#[pollster::test]
async fn markdown_is_rendered_or_raw_by_accept() {
    let html = serve_public(&get_with("/v1/index.md", "accept", "text/html,*/*;q=0.8"))
        .await
        .unwrap();
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let body = String::from_utf8(html.body.clone()).unwrap();
    assert!(
        body.contains("<a href=\"quickstart\">quickstart</a>"),
        "{body}"
    );
    assert!(html.header("content-security-policy").is_some());
    assert_eq!(html.header("vary"), Some("Accept"));

    let raw = serve_public(&get_with("/v1/index.md", "accept", "text/markdown"))
        .await
        .unwrap();
    assert_eq!(
        raw.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    assert!(raw.body.starts_with(b"# API reference"));
    assert_ne!(raw.header("etag"), html.header("etag"));

    let raw = serve_public(&get_with("/v1/index.md", "accept", "text/markdown, */*"))
        .await
        .unwrap();
    assert!(raw.body.starts_with(b"# API"));
    // A URL naming the `.md` file gives its source when the client has no preference (as
    // llms.txt links expect); the page's own URL gives the rendered page.
    let no_accept = serve_public(&get("/v1/index.md")).await.unwrap();
    assert!(no_accept.body.starts_with(b"# API reference"));
    let any = serve_public(&get_with("/v1/index.md", "accept", "*/*"))
        .await
        .unwrap();
    assert!(any.body.starts_with(b"# API reference"));
    let page = serve_public(&get("/v1/")).await.unwrap();
    assert!(page.body.starts_with(b"<!doctype html>"));
    let err = serve_public(&get_with("/v1/index.md", "accept", "application/json"))
        .await
        .unwrap_err();
    assert_eq!(err.status, 406);
}

#[pollster::test]
async fn etag_revalidation_gives_304() {
    let first = serve_public(&get("/v1/page.html")).await.unwrap();
    let tag = first.header("etag").unwrap().to_string();
    assert!(tag.starts_with('"') && tag.ends_with('"'));
    for header in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"other\", {tag}"),
        "*".into(),
    ] {
        let resp = serve_public(&get_with("/v1/page.html", "if-none-match", &header))
            .await
            .unwrap();
        assert_eq!(resp.status, 304, "{header}");
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("etag"), Some(tag.as_str()));
    }
    let resp = serve_public(&get_with("/v1/page.html", "if-none-match", "\"stale\""))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
}

/// A site that counts what it is asked to read.
struct Counting {
    site: Site,
    reads: std::cell::RefCell<Vec<String>>,
}

#[async_trait::async_trait(?Send)]
impl SiteFiles for Counting {
    async fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.reads.borrow_mut().push(path.to_owned());
        self.site.read(path).await
    }
}

/// A matching revalidation costs the route record's lookup, and nothing is rendered while
/// serving: the page's bytes are the build's, and a changed source changes the tag.
#[pollster::test]
async fn a_matching_revalidation_reads_only_the_route_record() {
    let site = Counting {
        site: built(&tree()),
        reads: Default::default(),
    };
    let first = serve(&get("/v1/"), &site, Visibility::Public)
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(*site.reads.borrow(), ["_routes/v1/@", "v1/index.html"]);
    let tag = first.header("etag").unwrap().to_string();
    site.reads.borrow_mut().clear();
    let again = serve(
        &get_with("/v1/", "if-none-match", &tag),
        &site,
        Visibility::Public,
    )
    .await
    .unwrap();
    assert_eq!(again.status, 304);
    assert_eq!(*site.reads.borrow(), ["_routes/v1/@"]);
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    assert_eq!(again.header("vary"), Some("Accept"));
    let edited = MemoryDocs::new(&[("v1/index.md", "# API reference, edited\n")]);
    let changed = serve(&get("/v1/"), &built(&edited), Visibility::Public)
        .await
        .unwrap();
    assert_ne!(changed.header("etag"), Some(tag.as_str()));
    // The raw Markdown has its own tag.
    let raw = serve_public(&get_with("/v1/index.md", "accept", "text/markdown"))
        .await
        .unwrap();
    assert_ne!(raw.header("etag"), Some(tag.as_str()));
}

#[pollster::test]
async fn head_has_headers_but_no_body() {
    let mut req = get("/v1/page.html");
    req.method = "HEAD".into();
    let resp = serve_public(&req).await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.body.is_empty());
    assert!(resp.header("etag").is_some());
    req.method = "POST".into();
    assert_eq!(serve_public(&req).await.unwrap_err().status, 405);
}

#[pollster::test]
async fn private_docs_are_not_cached_publicly() {
    let resp = serve(&get("/v1/page.html"), &built(&tree()), Visibility::Private)
        .await
        .unwrap();
    assert_eq!(resp.header("cache-control"), Some("private, no-cache"));
}

#[pollster::test]
async fn traversal_and_odd_paths_are_404() {
    let long = format!("/v1/{}", "a".repeat(MAX_PATH_LEN));
    let cases = [
        "/v1/../notes/secret.md",
        "/../notes/secret.md",
        "/notes/secret.md",
        "/v1/%2e%2e/notes/secret.md",
        "/v1/%2E%2E/notes/secret.md",
        "/v1/..%2fnotes%2fsecret.md",
        "/v1%2f..%2fnotes/secret.md",
        "/v1/%252e%252e/notes/secret.md",
        "/v1/..%5cnotes%5csecret.md",
        "/v1/.%2e/notes/secret.md",
        "//etc/passwd",
        "/v1//page.html",
        "/v1/page.html%00.md",
        "/v1/page.html\0",
        "/v1/.hidden",
        "/v1/./page.html",
        "/v1/%ff",
        "/v1/a b",
        "/v3/index.md",
        "/latest/../../etc/passwd",
        long.as_str(),
    ];
    for path in cases {
        let err = serve_public(&get(path)).await.unwrap_err();
        assert_eq!((err.status, err.code), (404, "doc_not_found"), "{path:?}");
    }
}

#[pollster::test]
async fn safe_segment_decodes_once_and_filters() {
    assert_eq!(safe_segment("api.md").as_deref(), Some("api.md"));
    assert_eq!(safe_segment("a%2Db").as_deref(), Some("a-b"));
    for bad in [
        "", ".", "..", "%2e%2e", "%2f", "a%5cb", "%00", "%252e", ".git", "a%20b",
    ] {
        assert_eq!(safe_segment(bad), None, "{bad}");
    }
}

/// A two-version tree with ordered pages and a section, as the navigation tests read it.
fn navigable() -> MemoryDocs {
    MemoryDocs::new(&[
        ("v1/index.md", "---\ntitle: Home\n---\nWelcome.\n"),
        ("v1/zeta.md", "---\nweight: 1\n---\n# Zeta first\n"),
        (
            "v1/alpha.md",
            "# Alpha\n\n## Part one\n\n### Detail\n\n#### Too deep\n",
        ),
        (
            "v1/guide/README.md",
            "+++\ntitle = \"Guide\"\nweight = 2\n+++\nGuide home\n",
        ),
        ("v1/guide/setup.md", "# Setup\n"),
        (
            "v1/only-in-one.md",
            "---\ndescription: Just here\n---\n# Only\n",
        ),
        ("v2/index.md", "# Home two\n"),
        ("v2/alpha.md", "# Alpha two\n"),
    ])
}

async fn page_of(site: &Site, path: &str) -> String {
    let resp = serve(&get(path), site, Visibility::Public).await.unwrap();
    assert_eq!(resp.status, 200, "{path}");
    String::from_utf8(resp.body).unwrap()
}

/// The part of `html` between `from` and the next `to`.
fn between<'a>(html: &'a str, from: &str, to: &str) -> &'a str {
    let start = html
        .find(from)
        .unwrap_or_else(|| panic!("{from} not in {html}"));
    let rest = &html[start..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

#[pollster::test]
async fn the_sidebar_follows_front_matter_order_then_titles_with_folders_as_sections() {
    let site = built(&navigable());
    let alpha = page_of(&site, "/v1/alpha").await;
    let sidebar = between(&alpha, "<nav class=\"sidebar\"", "</nav>");
    let hrefs: Vec<&str> = sidebar
        .split("href=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    // Home, then weight 1, weight 2 (the section, with its page), then by title.
    assert_eq!(
        hrefs,
        [
            "./",
            "zeta",
            "guide/",
            "guide/setup",
            "alpha",
            "only-in-one"
        ]
    );
    assert!(
        sidebar.contains("<a href=\"alpha\" aria-current=\"page\">Alpha</a>"),
        "{sidebar}"
    );
    assert!(sidebar.contains("<li class=\"section\"><a href=\"guide/\">Guide</a><ul>"));
    // From inside the section, the same links are relative to it.
    let setup = page_of(&site, "/v1/guide/setup").await;
    let sidebar = between(&setup, "<nav class=\"sidebar\"", "</nav>");
    assert!(sidebar.contains("href=\"../zeta\""), "{sidebar}");
    assert!(
        sidebar.contains("<a href=\"setup\" aria-current=\"page\">"),
        "{sidebar}"
    );
    // Previous and next follow the sidebar.
    assert!(
        setup.contains("<a href=\"./\" rel=\"prev\">Guide</a>"),
        "{setup}"
    );
    assert!(
        setup.contains("<a href=\"../alpha\" rel=\"next\">Alpha</a>"),
        "{setup}"
    );
    let home = page_of(&site, "/v1/").await;
    assert!(!home.contains("rel=\"prev\""));
    assert!(home.contains("<a href=\"zeta\" rel=\"next\">Zeta first</a>"));
    assert!(home.contains("<header class=\"top\"><a class=\"home\" href=\"./\">Home</a>"));
    assert!(home.contains("<main id=\"content\">"));
}

#[pollster::test]
async fn the_version_switcher_keeps_the_page_where_it_exists_and_the_toc_lists_sections() {
    let site = built(&navigable());
    let alpha = page_of(&site, "/v1/alpha").await;
    let versions = between(&alpha, "<nav aria-label=\"Versions\">", "</nav>");
    assert!(
        versions.contains("<a href=\"../v2/alpha\">v2</a>"),
        "{versions}"
    );
    assert!(
        versions.contains("<a href=\"alpha\" aria-current=\"true\">v1</a>"),
        "{versions}"
    );
    let only = page_of(&site, "/v1/only-in-one").await;
    assert!(only.contains("<a href=\"../v2/\">v2</a>"), "{only}");
    assert!(only.contains("<meta name=\"description\" content=\"Just here\">"));
    let toc = between(&alpha, "<nav aria-label=\"On this page\">", "</nav>");
    assert!(
        toc.contains("<li class=\"h2\"><a href=\"#part-one\">Part one</a></li>"),
        "{toc}"
    );
    assert!(
        toc.contains("<li class=\"h3\"><a href=\"#detail\">Detail</a></li>"),
        "{toc}"
    );
    assert!(
        !toc.contains("too-deep") && !toc.contains("#alpha"),
        "{toc}"
    );
    // `latest` is the newest version, page for page.
    let latest = page_of(&site, "/latest/alpha").await;
    assert_eq!(latest, page_of(&site, "/v2/alpha").await);
    let moved = serve(&get("/latest"), &site, Visibility::Public)
        .await
        .unwrap();
    assert_eq!(
        (moved.status, moved.header("location")),
        (301, Some("latest/"))
    );
}

#[pollster::test]
async fn the_site_offers_sitemap_llms_txt_and_a_search_index() {
    let site = built(&navigable());
    let text = |path: &str| String::from_utf8(site.files[path].clone()).unwrap();
    let sitemap = text("sitemap.xml");
    assert!(
        sitemap.contains("<loc>https://docs.example/docs/v1/guide/setup</loc>"),
        "{sitemap}"
    );
    assert!(
        sitemap.contains("<loc>https://docs.example/docs/v2/</loc>"),
        "{sitemap}"
    );
    assert_eq!(sitemap.matches("<loc>").count(), 8);
    let llms = text("v1/llms.txt");
    assert!(llms.starts_with("# Home\n\n> "), "{llms}");
    assert!(
        llms.contains("- [Only](only-in-one.md): Just here\n"),
        "{llms}"
    );
    assert!(
        llms.contains("\n## Guide\n\n- [Guide](guide/README.md)\n- [Setup](guide/setup.md)\n"),
        "{llms}"
    );
    let full = text("v1/llms-full.txt");
    assert!(
        full.starts_with("# Home\n\nWelcome.\n\n# Zeta first\n"),
        "{full}"
    );
    assert!(!full.contains("weight"), "front matter in {full}");
    let index: serde_json::Value =
        serde_json::from_slice(&site.files["search-index.json"]).unwrap();
    let alpha = index["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["url"] == "v1/alpha")
        .unwrap();
    assert_eq!(alpha["title"], "Alpha");
    assert_eq!(alpha["headings"][1]["id"], "part-one");
    assert!(alpha["text"].as_str().unwrap().contains("Too deep"));
    // They are served like any file, from the site's root or a version.
    for path in [
        "/sitemap.xml",
        "/search-index.json",
        "/v1/llms.txt",
        "/latest/llms-full.txt",
    ] {
        assert_eq!(
            serve(&get(path), &site, Visibility::Public)
                .await
                .unwrap()
                .status,
            200,
            "{path}"
        );
    }
}

#[test]
fn a_page_left_out_of_search_is_still_listed_but_never_found() {
    let docs = MemoryDocs::new(&[
        (
            "v1/index.md",
            "---\ntitle: Home\n---\nIdempotency keys make retries safe.\n",
        ),
        (
            "v1/reference.md",
            "---\ntitle: Reference\nsearch:\n  exclude: true\n---\n\
             Idempotency key, idempotency key, idempotency key retries.\n",
        ),
    ]);
    let site = built(&docs);
    let catalog = String::from_utf8(site.files[super::search::CATALOG_FILE].clone()).unwrap();
    let lines: Vec<&str> = catalog.lines().collect();
    assert_eq!(lines.len(), 2, "{catalog}");
    let postings = super::search::Postings::parse(&site.files[super::search::POSTINGS_FILE])
        .expect("postings");
    let found = postings.search("idempotency key retries");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        lines[found[0].0].contains("\"title\":\"Home\""),
        "{catalog}"
    );
    let index = String::from_utf8(site.files["search-index.json"].clone()).unwrap();
    assert!(!index.contains("Reference"), "{index}");
    assert!(site.files.contains_key("v1/reference.html"));
}

#[test]
fn writing_a_site_changes_only_what_changed_and_never_a_foreign_folder() {
    let dir = std::env::temp_dir().join(format!("mcp-edge-site-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = built(&navigable()).write_to(&dir).unwrap();
    assert!(first.written > 20 && first.removed == 0, "{first:?}");
    let again = built(&navigable()).write_to(&dir).unwrap();
    assert_eq!((again.written, again.removed), (0, 0));
    let fewer = MemoryDocs::new(&[("v1/index.md", "---\ntitle: Home\n---\nWelcome.\n")]);
    let shrunk = built(&fewer).write_to(&dir).unwrap();
    assert!(shrunk.removed > 10, "{shrunk:?}");
    assert!(!dir.join("v2").exists() && !dir.join("v1/guide").exists());
    assert!(dir.join("v1/index.html").is_file());
    let foreign = dir.join("v1");
    assert!(
        built(&fewer).write_to(&foreign).is_err(),
        "wrote into a folder that is no site"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn route_records_read_back_as_written_and_an_incomplete_one_is_refused() {
    use site::{RawSource, Route};
    let routes = [
        Route::Redirect {
            location: "guide/".into(),
        },
        Route::File {
            file: "files/a.html".into(),
            content_type: "text/html; charset=utf-8".into(),
            etag: "\"1\"".into(),
            raw: None,
        },
        Route::File {
            file: "files/a.html".into(),
            content_type: "text/html; charset=utf-8".into(),
            etag: "\"1\"".into(),
            raw: Some(RawSource {
                file: "files/a.md".into(),
                etag: "\"2\"".into(),
                preferred: true,
            }),
        },
    ];
    for route in routes {
        let record = serde_json::to_string(&route).unwrap();
        assert_eq!(
            serde_json::from_str::<Route>(&record).unwrap(),
            route,
            "{record}"
        );
    }
    for incomplete in [
        r#"{"kind":"redirect"}"#,
        r#"{"kind":"file","file":"files/a.html","etag":"\"1\""}"#,
        r#"{"kind":"elsewhere","location":"/"}"#,
    ] {
        assert!(
            serde_json::from_str::<Route>(incomplete).is_err(),
            "{incomplete}"
        );
    }
}
