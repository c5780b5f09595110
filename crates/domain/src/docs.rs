//! Versioned documentation, as a pipeline: a source tree ([`DocsSource`]) is read once by the
//! site build ([`site`]: front matter, Markdown, navigation, feeds, search index), natively,
//! and the docs component answers requests from what the build made ([`serve`]).
//!
//! Stages, one per module: [`front_matter`], [`render`] (Markdown to HTML from the parser's
//! events), [`layout`] (the page around it), [`site`], [`feeds`] (sitemap, llms.txt),
//! [`search`], [`check`] (dead links and anchors) and [`serve`].
//!
//! Request paths are made only of segments that passed [`safe_segment`]: a request can never
//! name anything outside the site, whatever the platform's file API would make of it.

pub mod check;
pub mod feeds;
pub mod front_matter;
pub mod layout;
pub mod render;
pub mod search;
pub mod serve;
pub mod site;

pub use serve::{FsSite, SiteFiles, serve};

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

/// The docs tree in a directory, read with `std::fs` by the site build and `docs check`.
pub struct FsDocs {
    root: std::path::PathBuf,
}

impl FsDocs {
    pub fn at(root: impl Into<std::path::PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl FsDocs {
    /// `path` under the root, unless it is (or passes through) a symbolic link that leads
    /// out of the tree: a build never publishes what lies outside it.
    fn inside(&self, path: &str) -> Option<std::path::PathBuf> {
        let full = self.root.join(path);
        let resolved = full.canonicalize().ok()?;
        let root = self.root.canonicalize().ok()?;
        resolved.starts_with(&root).then_some(resolved)
    }
}

impl DocsSource for FsDocs {
    fn entry(&self, path: &str) -> Entry {
        let Some(full) = self.inside(path) else {
            return Entry::Missing;
        };
        match std::fs::metadata(&full) {
            Ok(meta) if meta.is_dir() => Entry::Dir,
            Ok(meta) if meta.is_file() => std::fs::read(&full)
                .map(Entry::File)
                .unwrap_or(Entry::Missing),
            _ => Entry::Missing,
        }
    }

    fn list(&self, path: &str) -> Vec<String> {
        let Some(full) = self.inside(path) else {
            return Vec::new();
        };
        std::fs::read_dir(full)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
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

pub fn content_type(name: &str) -> &'static str {
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

pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests;
