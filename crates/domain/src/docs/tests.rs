use super::*;

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

fn serve_public(req: &Request) -> Result<Response, ApiError> {
    serve(req, &tree(), Visibility::Public)
}

#[pollster::test]
async fn versions_are_listed_newest_first_and_latest_resolves() {
    assert_eq!(versions(&tree()), vec!["v10", "v2", "v1", "v0"]);
    for path in ["", "/"] {
        let resp = serve_public(&get(path)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["latest"], "v10");
        assert_eq!(v["versions"][3], "v0");
    }
    let resp = serve_public(&get("/latest/")).unwrap();
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
        let resp = serve_public(&get(path)).unwrap();
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.header("content-type"), Some(ctype), "{path}");
        assert_eq!(resp.header("cache-control"), Some("public, max-age=300"));
    }
}

#[pollster::test]
async fn directories_serve_their_index_and_redirect_without_slash() {
    let resp = serve_public(&get("/v1/guide/")).unwrap();
    assert_eq!(resp.body, b"<h1>guide</h1>");
    let resp = serve_public(&get("/v1/guide")).unwrap();
    assert_eq!(
        (resp.status, resp.header("location")),
        (301, Some("guide/"))
    );
    let resp = serve_public(&get("/v1")).unwrap();
    assert_eq!(resp.header("location"), Some("v1/"));
    let resp = serve_public(&get("/v1/")).unwrap();
    assert!(
        String::from_utf8(resp.body)
            .unwrap()
            .contains("<h1 id=\"api-reference\">API reference <a class=\"anchor\"")
    );
    assert_eq!(serve_public(&get("/v2/")).unwrap_err().status, 404);
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
    let html = |path: &str| {
        let resp = serve(&get(path), &docs, Visibility::Public).unwrap();
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
    assert_eq!(html("/v1/install.md"), install);
    assert!(html("/v1/guide/").contains("<title>Guide</title>"));
    assert!(html("/v1/zola/").contains("<title>Zola section</title>"));
    let raw = serve(
        &get_with("/v1/install", "accept", "text/markdown"),
        &docs,
        Visibility::Public,
    )
    .unwrap();
    assert!(
        String::from_utf8(raw.body)
            .unwrap()
            .starts_with("---\ntitle: Installing\n---\n")
    );
    assert_eq!(
        serve(&get("/v1/missing"), &docs, Visibility::Public)
            .unwrap_err()
            .status,
        404
    );
}

#[pollster::test]
async fn markdown_is_rendered_or_raw_by_accept() {
    let html = serve_public(&get_with("/v1/index.md", "accept", "text/html,*/*;q=0.8")).unwrap();
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

    let raw = serve_public(&get_with("/v1/index.md", "accept", "text/markdown")).unwrap();
    assert_eq!(
        raw.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    assert!(raw.body.starts_with(b"# API reference"));
    assert_ne!(raw.header("etag"), html.header("etag"));

    let raw = serve_public(&get_with("/v1/index.md", "accept", "text/markdown, */*")).unwrap();
    assert!(raw.body.starts_with(b"# API"));
    let no_accept = serve_public(&get("/v1/index.md")).unwrap();
    assert!(no_accept.body.starts_with(b"<!doctype html>"));
    let err = serve_public(&get_with("/v1/index.md", "accept", "application/json")).unwrap_err();
    assert_eq!(err.status, 406);
}

#[pollster::test]
async fn etag_revalidation_gives_304() {
    let first = serve_public(&get("/v1/page.html")).unwrap();
    let tag = first.header("etag").unwrap().to_string();
    assert!(tag.starts_with('"') && tag.ends_with('"'));
    for header in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"other\", {tag}"),
        "*".into(),
    ] {
        let resp = serve_public(&get_with("/v1/page.html", "if-none-match", &header)).unwrap();
        assert_eq!(resp.status, 304, "{header}");
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("etag"), Some(tag.as_str()));
    }
    let resp = serve_public(&get_with("/v1/page.html", "if-none-match", "\"stale\"")).unwrap();
    assert_eq!(resp.status, 200);
}

/// A rendered page's tag comes from its source and the renderer: a matching revalidation
/// answers 304 without rendering, and a changed source changes the tag.
#[pollster::test]
async fn a_matching_revalidation_of_a_rendered_page_renders_nothing() {
    let renders = || RENDERS.with(std::cell::Cell::get);
    let before = renders();
    let first = serve_public(&get("/v1/index.md")).unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(renders(), before + 1);
    let tag = first.header("etag").unwrap().to_string();
    let again = serve_public(&get_with("/v1/index.md", "if-none-match", &tag)).unwrap();
    assert_eq!(again.status, 304);
    assert_eq!(renders(), before + 1, "the 304 rendered the page");
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    assert_eq!(again.header("vary"), Some("Accept"));
    let edited = MemoryDocs::new(&[("v1/index.md", "# API reference, edited\n")]);
    let changed = serve(&get("/v1/index.md"), &edited, Visibility::Public).unwrap();
    assert_ne!(changed.header("etag"), Some(tag.as_str()));
    // The raw Markdown has its own tag, from the same bytes.
    let raw = serve_public(&get_with("/v1/index.md", "accept", "text/markdown")).unwrap();
    assert_ne!(raw.header("etag"), Some(tag.as_str()));
}

#[pollster::test]
async fn head_has_headers_but_no_body() {
    let mut req = get("/v1/page.html");
    req.method = "HEAD".into();
    let resp = serve_public(&req).unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.body.is_empty());
    assert!(resp.header("etag").is_some());
    req.method = "POST".into();
    assert_eq!(serve_public(&req).unwrap_err().status, 405);
}

#[pollster::test]
async fn private_docs_are_not_cached_publicly() {
    let resp = serve(&get("/v1/page.html"), &tree(), Visibility::Private).unwrap();
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
        let err = serve_public(&get(path)).unwrap_err();
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
