//! Answers a docs request from a built site ([`super::site`]): the URL's route record is
//! looked up, and the file it names is read, unless the client's copy is current (`304`, from
//! the record alone). Nothing is rendered here.

use sha2::{Digest, Sha256};

use super::layout::PAGE_STYLE;
use super::site::{Route, route_key};
use super::{MAX_PATH_LEN, Visibility, safe_segment};
use crate::error::ApiError;
use crate::http::{Request, Response};

/// Read access to a built site; `path` is relative to its root. `None`: no such file (or it
/// cannot be read).
#[async_trait::async_trait(?Send)]
pub trait SiteFiles {
    async fn read(&self, path: &str) -> Option<Vec<u8>>;
}

/// A built site in a directory, read with `std::fs` (natively; the components read the site
/// the host mounts through `mcp_edge_guest::files`).
pub struct FsSite {
    root: std::path::PathBuf,
}

impl FsSite {
    pub fn at(root: impl Into<std::path::PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

#[async_trait::async_trait(?Send)]
impl SiteFiles for FsSite {
    async fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(path)).ok()
    }
}

/// A site built in memory answers as the same files would.
#[async_trait::async_trait(?Send)]
impl SiteFiles for super::site::Site {
    async fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).cloned()
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("doc_not_found", "no such document")
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

/// Whether a page should go out as its Markdown source (`Some(true)`), rendered
/// (`Some(false)`), or not at all (`None`: the client accepts neither). A tie goes to the
/// source when the URL named the `.md` file (`prefer_raw`).
fn wants_raw_markdown(accept: Option<&str>, prefer_raw: bool) -> Option<bool> {
    let (md, md_exact) = accept_quality(accept, "text/markdown");
    let (html, html_exact) = accept_quality(accept, "text/html");
    if md <= 0.0 && html <= 0.0 {
        return None;
    }
    Some(
        md > html
            || (md == html
                && ((md_exact && !html_exact) || (prefer_raw && md_exact == html_exact))),
    )
}

/// `If-None-Match` uses weak comparison (RFC 9110 §13.1.2).
fn none_match(header: Option<&str>, tag: &str) -> bool {
    let Some(header) = header else { return false };
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

/// No scripts, no inline code, nothing from elsewhere; only the page style (by hash) and
/// images from the docs themselves.
pub fn html_csp() -> &'static str {
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
pub async fn serve(
    req: &Request,
    site: &dyn SiteFiles,
    visibility: Visibility,
) -> Result<Response, ApiError> {
    req.expect_method(&["GET", "HEAD"])?;
    let raw = req.path.as_str();
    if raw.len() > MAX_PATH_LEN {
        return Err(not_found());
    }
    let trimmed = raw.strip_prefix('/').unwrap_or(raw);
    let wants_dir = trimmed.is_empty() || trimmed.ends_with('/');
    let mut segments = Vec::new();
    if !trimmed.is_empty() {
        for raw in trimmed.trim_end_matches('/').split('/') {
            segments.push(safe_segment(raw).ok_or_else(not_found)?);
        }
    }
    let is_latest = segments.first().is_some_and(|s| s == "latest");
    let record = site
        .read(&route_key(&segments, wants_dir))
        .await
        .ok_or_else(not_found)?;
    let route: Route = serde_json::from_slice(&record).map_err(|_| not_found())?;
    let (file, content_type, tag, negotiated) = match route {
        Route::Redirect { location } => {
            return Ok(Response::new(301)
                .with_header("location", location)
                .with_header("cache-control", "public, max-age=300"));
        }
        Route::File {
            file,
            content_type,
            etag,
            raw: None,
        } => (file, content_type, etag, false),
        Route::File {
            file,
            content_type,
            etag,
            raw: Some(source),
        } => match wants_raw_markdown(req.header("accept"), source.preferred) {
            None => {
                return Err(ApiError::new(
                    406,
                    "not_acceptable",
                    "this document is available as text/html or text/markdown",
                ));
            }
            Some(true) => (
                source.file,
                "text/markdown; charset=utf-8".to_owned(),
                source.etag,
                true,
            ),
            Some(false) => (file, content_type, etag, true),
        },
    };

    let mut resp = if none_match(req.header("if-none-match"), &tag) {
        Response::new(304)
    } else {
        let body = site.read(&file).await.ok_or_else(not_found)?;
        Response::new(200)
            .with_header("content-type", &content_type)
            .with_body(body)
    };
    resp = resp.with_header("etag", tag);
    if content_type.starts_with("text/html") {
        resp = resp.with_header("content-security-policy", html_csp());
    }
    if negotiated {
        resp = resp.with_header("vary", "Accept");
    }
    let cache = match (visibility, is_latest) {
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
    Ok(resp)
}
