//! Versioned documentation: safe path resolution, version listing and `latest`, content
//! types, Markdown rendering with content negotiation, strong ETags and cache headers.
//!
//! File access goes through [`DocsSource`], whose paths are always relative to the docs root
//! and built only from segments that passed [`safe_segment`]: a request can never name
//! anything outside the root, whatever the platform's file API would make of it.

use sha2::{Digest, Sha256};

use crate::error::ApiError;

pub mod check;
pub mod front_matter;
pub mod render;
use crate::http::{Request, Response};

/// Longest request path (after the `/docs` prefix) we look at.
pub const MAX_PATH_LEN: usize = 1024;

pub enum Entry {
    File(Vec<u8>),
    Dir,
    Missing,
}

/// Read access to the docs tree. `path` is relative to the docs root, `/`-separated, with
/// no empty, `.` or `..` segments. Errors are reported as [`Entry::Missing`].
pub trait DocsSource {
    fn entry(&self, path: &str) -> Entry;
    /// Names in the directory at `path` (`""` is the root).
    fn list(&self, path: &str) -> Vec<String>;
    /// Names of the directories in the directory at `path`.
    fn subdirs(&self, path: &str) -> Vec<String> {
        self.list(path)
            .into_iter()
            .filter(|name| {
                let full = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}/{name}")
                };
                matches!(self.entry(&full), Entry::Dir)
            })
            .collect()
    }
}

/// The docs tree in a directory, read with `std::fs`: through `wasi:filesystem` inside a
/// component (where the host mounts the tree read-only and its sandbox refuses anything outside
/// the mount) and directly in a native server.
pub struct FsDocs {
    root: std::path::PathBuf,
}

impl FsDocs {
    pub fn at(root: impl Into<std::path::PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl DocsSource for FsDocs {
    fn entry(&self, path: &str) -> Entry {
        let full = self.root.join(path);
        match std::fs::metadata(&full) {
            Ok(meta) if meta.is_dir() => Entry::Dir,
            Ok(meta) if meta.is_file() => std::fs::read(&full)
                .map(Entry::File)
                .unwrap_or(Entry::Missing),
            _ => Entry::Missing,
        }
    }

    fn list(&self, path: &str) -> Vec<String> {
        std::fs::read_dir(self.root.join(path))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// From the listing's own entry types: no `stat` (and no read) per name, except to
    /// follow a symbolic link.
    fn subdirs(&self, path: &str) -> Vec<String> {
        std::fs::read_dir(self.root.join(path))
            .map(|entries| {
                entries
                    .filter_map(|e| {
                        let e = e.ok()?;
                        let kind = e.file_type().ok()?;
                        let dir = kind.is_dir()
                            || (kind.is_symlink() && e.path().metadata().ok()?.is_dir());
                        dir.then_some(())?;
                        e.file_name().into_string().ok()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A docs tree in memory (file paths to contents; directories are implied) that remembers
/// every path it was asked for: for tests and fuzzing.
#[cfg(any(test, feature = "fuzzing"))]
pub struct MemoryDocs {
    files: std::collections::BTreeMap<String, Vec<u8>>,
    pub asked: std::cell::RefCell<Vec<String>>,
}

#[cfg(any(test, feature = "fuzzing"))]
impl MemoryDocs {
    pub fn new(files: &[(&str, &str)]) -> Self {
        Self {
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
                .collect(),
            asked: Default::default(),
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl DocsSource for MemoryDocs {
    fn entry(&self, path: &str) -> Entry {
        self.asked.borrow_mut().push(path.to_owned());
        if let Some(bytes) = self.files.get(path) {
            return Entry::File(bytes.clone());
        }
        if is_dir_in(self.files.keys().map(String::as_str), path) {
            Entry::Dir
        } else {
            Entry::Missing
        }
    }

    fn list(&self, path: &str) -> Vec<String> {
        self.asked.borrow_mut().push(path.to_owned());
        children_in(self.files.keys().map(String::as_str), path)
    }
}

/// For a tree given as its file paths (where a directory cannot be listed, such as Workers
/// assets): whether `path` is a directory, i.e. the root or a prefix of some file.
pub fn is_dir_in<'a>(files: impl IntoIterator<Item = &'a str>, path: &str) -> bool {
    let prefix = format!("{path}/");
    path.is_empty() || files.into_iter().any(|f| f.starts_with(&prefix))
}

/// For a tree given as its sorted file paths: the names directly inside directory `path`.
pub fn children_in<'a>(files: impl IntoIterator<Item = &'a str>, path: &str) -> Vec<String> {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut names: Vec<String> = files
        .into_iter()
        .filter_map(|f| f.strip_prefix(&prefix))
        .map(|rest| rest.split('/').next().unwrap_or_default().to_string())
        .collect();
    names.dedup();
    names
}

/// How responses may be cached: versioned docs are public unless configured otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Private,
}

fn not_found() -> ApiError {
    ApiError::not_found("doc_not_found", "no such document")
}

/// A decoded path segment, if it is one we serve: non-empty, not hidden (which also rules
/// out `.` and `..`), and only `[A-Za-z0-9._~-]` after a single percent-decoding, so encoded
/// slashes, backslashes, NUL and double encoding (`%252e`) never pass.
pub fn safe_segment(raw: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    let ok = !decoded.is_empty()
        && !decoded.starts_with('.')
        && decoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'));
    ok.then(|| decoded.into_owned())
}

/// `v1`, `v1.2`, `2` → their numeric parts; anything else is not a version directory.
fn version_key(name: &str) -> Option<Vec<u64>> {
    let digits = name.strip_prefix('v').unwrap_or(name);
    digits.split('.').map(|p| p.parse().ok()).collect()
}

/// Version directories, newest first.
pub fn versions(src: &dyn DocsSource) -> Vec<String> {
    let mut found: Vec<(Vec<u64>, String)> = src
        .subdirs("")
        .into_iter()
        .filter(|n| safe_segment(n).as_deref() == Some(n.as_str()))
        .filter_map(|n| version_key(&n).map(|k| (k, n)))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    found.into_iter().map(|(_, n)| n).collect()
}

fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("md" | "markdown") => "text/markdown; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

fn is_markdown(name: &str) -> bool {
    matches!(content_type(name), "text/markdown; charset=utf-8")
}

/// The quality the `Accept` header gives `mime`, and whether it was named exactly.
fn accept_quality(accept: Option<&str>, mime: &str) -> (f32, bool) {
    let Some(accept) = accept else {
        return (1.0, false);
    };
    let (kind, _) = mime.split_once('/').unwrap_or((mime, ""));
    let mut best: Option<(u8, f32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let specificity = if range == mime {
            3
        } else if range == format!("{kind}/*") {
            2
        } else if range == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map(|(s, q)| (q, s == 3)).unwrap_or((0.0, false))
}

/// Whether a Markdown file should go out raw (`Some(true)`), rendered (`Some(false)`), or
/// not at all (`None`: the client accepts neither).
fn wants_raw_markdown(accept: Option<&str>) -> Option<bool> {
    let (md, md_exact) = accept_quality(accept, "text/markdown");
    let (html, html_exact) = accept_quality(accept, "text/html");
    if md <= 0.0 && html <= 0.0 {
        return None;
    }
    Some(md > html || (md == html && md_exact && !html_exact))
}

pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders a Markdown page (front matter and all) into a complete, self-contained HTML page;
/// `name` is its path in the tree, which titles a page without a title of its own.
pub fn render_markdown(markdown: &str, name: &str) -> String {
    #[cfg(test)]
    RENDERS.with(|r| r.set(r.get() + 1));
    let page = render::render(markdown, name);
    let description = page
        .front
        .description
        .as_deref()
        .map(|d| {
            format!(
                "<meta name=\"description\" content=\"{}\">\n",
                escape_html(d)
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n{description}<style>{PAGE_STYLE}</style>\n\
         </head>\n<body>\n<main>\n{}</main>\n</body>\n</html>\n",
        escape_html(&page.title),
        page.body
    )
}

/// Names the renderer's output: part of every rendered page's ETag, so that a new renderer
/// (this crate's version, or a change of the page template) changes the tags of pages whose
/// source did not change. Bump the suffix when the template changes within a release.
const RENDERER: &str = concat!("mcp-edge-domain ", env!("CARGO_PKG_VERSION"), " page-2");

/// Strong validator over the source bytes, the representation made of them, and (for
/// rendered pages) the renderer: computed before any rendering, so that a revalidation that
/// matches costs a read and a hash, not a render.
fn etag(variant: &str, source: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(variant.as_bytes());
    hasher.update([0]);
    if variant == "rendered" {
        hasher.update(RENDERER.as_bytes());
        hasher.update([0]);
    }
    hasher.update(source);
    format!("\"{}\"", &hex::encode(hasher.finalize())[..32])
}

#[cfg(test)]
thread_local! {
    /// Renders on this thread, for tests that a 304 renders nothing.
    pub(crate) static RENDERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `If-None-Match` uses weak comparison (RFC 9110 §13.1.2).
fn none_match(header: Option<&str>, tag: &str) -> bool {
    let Some(header) = header else { return false };
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

/// The one inline style rendered pages carry; the CSP allows exactly it, by hash.
const PAGE_STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;line-height:1.5}\
pre{background:#f4f4f4;padding:1rem;overflow:auto}code{font-size:.95em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem}";

/// No scripts, no inline code, nothing from elsewhere; only the page style (by hash) and
/// images from the docs themselves.
fn html_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use jwt_simple::reexports::ct_codecs::{Base64, Encoder};
        let digest = Sha256::digest(PAGE_STYLE.as_bytes());
        let hash = Base64::encode_to_string(digest).unwrap_or_default();
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// Answers a docs request. `req.path` is the part after the `/docs` route prefix.
pub fn serve(
    req: &Request,
    src: &dyn DocsSource,
    visibility: Visibility,
) -> Result<Response, ApiError> {
    req.expect_method(&["GET", "HEAD"])?;
    let raw = req.path.as_str();
    if raw.len() > MAX_PATH_LEN {
        return Err(not_found());
    }
    let trimmed = raw.strip_prefix('/').unwrap_or(raw);
    let available = versions(src);
    if trimmed.is_empty() {
        let listing = serde_json::json!({ "versions": available, "latest": available.first() });
        return Ok(finish(
            req,
            Response::json(200, &listing),
            visibility,
            false,
        ));
    }

    let wants_dir = trimmed.ends_with('/');
    let raw_segments: Vec<&str> = trimmed.trim_end_matches('/').split('/').collect();
    let mut segments = Vec::with_capacity(raw_segments.len());
    for raw in &raw_segments {
        segments.push(safe_segment(raw).ok_or_else(not_found)?);
    }
    let is_latest = segments[0] == "latest";
    if is_latest {
        segments[0] = available.first().cloned().ok_or_else(not_found)?;
    } else if !available.contains(&segments[0]) {
        return Err(not_found());
    }
    let path = segments.join("/");

    // `page` is served by `page.md`, as docs engines write their links.
    let entry = match src.entry(&path) {
        Entry::Missing if !wants_dir && !is_markdown(&path) => {
            let with_md = format!("{path}.md");
            match src.entry(&with_md) {
                Entry::File(bytes) => {
                    return serve_file(req, with_md, bytes, visibility, is_latest);
                }
                _ => Entry::Missing,
            }
        }
        entry => entry,
    };
    let (name, bytes) = match entry {
        Entry::File(bytes) if !wants_dir => (path, bytes),
        Entry::Dir if !wants_dir => {
            // Relative links inside an index page need the trailing slash.
            let last = raw_segments.last().copied().unwrap_or_default();
            return Ok(Response::new(301)
                .with_header("location", format!("{last}/"))
                .with_header("cache-control", "public, max-age=300"));
        }
        Entry::Dir => ["index.html", "index.md", "_index.md", "README.md"]
            .iter()
            .find_map(|index| match src.entry(&format!("{path}/{index}")) {
                Entry::File(bytes) => Some((format!("{path}/{index}"), bytes)),
                _ => None,
            })
            .ok_or_else(not_found)?,
        _ => return Err(not_found()),
    };

    serve_file(req, name, bytes, visibility, is_latest)
}

/// Answers with the file `name` (its `bytes`): raw, or a Markdown page rendered, with its
/// ETag, CSP and cache headers.
fn serve_file(
    req: &Request,
    name: String,
    bytes: Vec<u8>,
    visibility: Visibility,
    is_latest: bool,
) -> Result<Response, ApiError> {
    let (variant, ctype) = if is_markdown(&name) {
        match wants_raw_markdown(req.header("accept")) {
            None => {
                return Err(ApiError::new(
                    406,
                    "not_acceptable",
                    "this document is available as text/html or text/markdown",
                ));
            }
            Some(true) => ("markdown", "text/markdown; charset=utf-8"),
            Some(false) => ("rendered", "text/html; charset=utf-8"),
        }
    } else {
        ("file", content_type(&name))
    };

    let tag = etag(variant, &bytes);
    let mut resp = if none_match(req.header("if-none-match"), &tag) {
        Response::new(304)
    } else {
        let body = if variant == "rendered" {
            render_markdown(&String::from_utf8_lossy(&bytes), &name).into_bytes()
        } else {
            bytes
        };
        Response::new(200)
            .with_header("content-type", ctype)
            .with_body(body)
    };
    resp = resp.with_header("etag", tag);
    if ctype.starts_with("text/html") {
        resp = resp.with_header("content-security-policy", html_csp());
    }
    if is_markdown(&name) {
        resp = resp.with_header("vary", "Accept");
    }
    Ok(finish(req, resp, visibility, is_latest))
}

fn finish(req: &Request, mut resp: Response, visibility: Visibility, moving: bool) -> Response {
    let cache = match (visibility, moving) {
        (Visibility::Private, _) => "private, no-cache",
        // `latest` moves when a version is published; pinned versions change rarely and
        // revalidate cheaply through the ETag.
        (Visibility::Public, true) => "public, max-age=60",
        (Visibility::Public, false) => "public, max-age=300",
    };
    resp = resp.with_header("cache-control", cache);
    if req.method == "HEAD" {
        resp.body.clear();
    }
    resp
}

#[cfg(test)]
mod tests;
