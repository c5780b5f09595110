//! The built site: a docs tree turned, once, into everything its requests are answered with.
//! Pages rendered with their navigation, source files as they are, `versions.json`,
//! `sitemap.xml`, per version `llms.txt` and `llms-full.txt`, the search index, and a route
//! record per URL (`_routes/…`) naming the file that answers it, its content type and ETag.
//! The docs component then only looks up a record and reads a file ([`super::serve`]).
//!
//! URLs are those docs engines write: a page `guide/install.md` is at `guide/install` (and
//! `guide/install.md`), a folder's `index.md`, `_index.md` or `README.md` (or `index.html`) at
//! `guide/`, and `latest/…` is the newest version. Rendered pages lie where a static host finds
//! them (`guide/install.html`, `guide/index.html`), so the CDN can serve the same files.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::check::{self, Finding};
use super::layout::{self, Link, PageView};
use super::render::{self, INDEX_NAMES, Page};
use super::{DocsSource, Entry, content_type, versions};

/// Where the route records live; no URL reaches them (a route names its file).
pub const ROUTES_DIR: &str = "_routes";

/// Sections of a version with at most this many pages are shown open in every page's sidebar;
/// in larger versions only the sections on the way to the current page are.
const OPEN_SIDEBAR_PAGES: usize = 200;

/// How a build is told about the place it will be served from.
#[derive(Debug, Clone)]
pub struct Options {
    /// The absolute URL the docs are served under, ending in `/` (for `sitemap.xml`, which
    /// must name absolute URLs): `https://docs.example.com/docs/`.
    pub base_url: String,
}

/// What answers a request for one URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", try_from = "RouteRecord")]
pub enum Route {
    /// A folder named without its trailing slash: relative links inside need it.
    Redirect { location: String },
    File {
        file: String,
        content_type: String,
        etag: String,
        /// For a page: its Markdown source, served on `Accept: text/markdown`.
        raw: Option<RawSource>,
    },
}

/// A [`Route`] as its record reads, field by field: serde reads an internally tagged enum by
/// first copying the whole record into a tree of its own, and a docs request reads one.
#[derive(Deserialize)]
struct RouteRecord {
    kind: RouteKind,
    location: Option<String>,
    file: Option<String>,
    content_type: Option<String>,
    etag: Option<String>,
    raw: Option<RawSource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RouteKind {
    Redirect,
    File,
}

impl TryFrom<RouteRecord> for Route {
    type Error = &'static str;

    fn try_from(r: RouteRecord) -> Result<Self, Self::Error> {
        match r.kind {
            RouteKind::Redirect => Ok(Route::Redirect {
                location: r.location.ok_or("a redirect without a location")?,
            }),
            RouteKind::File => Ok(Route::File {
                file: r.file.ok_or("a file route without a file")?,
                content_type: r
                    .content_type
                    .ok_or("a file route without a content type")?,
                etag: r.etag.ok_or("a file route without an ETag")?,
                raw: r.raw,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawSource {
    pub file: String,
    pub etag: String,
    /// The URL names the `.md` file itself: the source wins a tie of `Accept` qualities.
    pub preferred: bool,
}

/// The record file of a URL given as its segments; `dir` for a URL ending in `/`. The `@`
/// can never be part of a URL segment ([`super::safe_segment`]), so no URL's record is
/// another's.
pub fn route_key(segments: &[String], dir: bool) -> String {
    let joined = segments.join("/");
    match (joined.is_empty(), dir) {
        (true, _) => format!("{ROUTES_DIR}/@"),
        (false, true) => format!("{ROUTES_DIR}/{joined}/@"),
        (false, false) => format!("{ROUTES_DIR}/{joined}@"),
    }
}

/// `GET /docs/`: the versions, newest first (`versions.json`).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionList {
    /// What `latest/…` serves; none in an empty tree.
    pub latest: Option<String>,
    #[cfg_attr(feature = "openapi", schema(example = json!(["v1", "v0"])))]
    pub versions: Vec<String>,
}

/// A built site, in memory: file paths to their bytes.
#[derive(Debug, Default)]
pub struct Site {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Pages rendered, over all versions.
    pub pages: usize,
    /// What `docs check` reports for the source tree.
    pub findings: Vec<Finding>,
}

/// A strong validator over a file's bytes.
pub fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

/// A Markdown page of one version, rendered, with its place in the site.
struct SourcePage {
    /// The source file, from the docs root (`v1/guide/README.md`).
    source: String,
    /// The URL within the version (`guide/`, `guide/install`, `""` for the version index).
    url: String,
    page: Page,
    bytes: Vec<u8>,
}

impl SourcePage {
    fn sort_key(&self) -> (f64, String) {
        (
            self.page.front.order.unwrap_or(f64::INFINITY),
            self.page.title.to_lowercase(),
        )
    }
}

/// A folder of a version: its index page and what is in it.
#[derive(Default)]
struct Folder {
    name: String,
    index: Option<usize>,
    pages: Vec<usize>,
    folders: BTreeMap<String, Folder>,
}

enum Child<'a> {
    Page(usize),
    Folder(&'a Folder),
}

impl Folder {
    fn insert(&mut self, dirs: &[&str], page: usize, is_index: bool) {
        match dirs.split_first() {
            None if is_index => self.index = Some(page),
            None => self.pages.push(page),
            Some((first, rest)) => {
                let folder = self
                    .folders
                    .entry((*first).to_owned())
                    .or_insert_with(|| Folder {
                        name: (*first).to_owned(),
                        ..Folder::default()
                    });
                folder.insert(rest, page, is_index);
            }
        }
    }

    /// Pages and sections in sidebar order: front-matter order, then title.
    fn children<'a>(&'a self, pages: &[SourcePage]) -> Vec<Child<'a>> {
        let mut children: Vec<((f64, String), Child<'a>)> = self
            .pages
            .iter()
            .map(|&p| (pages[p].sort_key(), Child::Page(p)))
            .chain(self.folders.values().map(|f| {
                let key = f.index.map_or_else(
                    || (f64::INFINITY, f.name.to_lowercase()),
                    |i| pages[i].sort_key(),
                );
                (key, Child::Folder(f))
            }))
            .collect();
        children.sort_by(|a, b| a.0.0.total_cmp(&b.0.0).then_with(|| a.0.1.cmp(&b.0.1)));
        children.into_iter().map(|(_, c)| c).collect()
    }

    /// Every page, in reading order (a folder's index before what it holds).
    fn reading_order(&self, pages: &[SourcePage], out: &mut Vec<usize>) {
        out.extend(self.index);
        for child in self.children(pages) {
            match child {
                Child::Page(p) => out.push(p),
                Child::Folder(f) => f.reading_order(pages, out),
            }
        }
    }

    fn contains(&self, page: usize) -> bool {
        self.index == Some(page)
            || self.pages.contains(&page)
            || self.folders.values().any(|f| f.contains(page))
    }
}

/// Everything known about one version while its pages are rendered.
struct Version {
    name: String,
    pages: Vec<SourcePage>,
    root: Folder,
    order: Vec<usize>,
}

impl Version {
    fn site_url(&self, page: &SourcePage) -> String {
        format!("{}/{}", self.name, page.url)
    }

    fn link(&self, p: usize) -> Link {
        Link {
            url: self.site_url(&self.pages[p]),
            title: self.pages[p].page.title.clone(),
        }
    }

    fn title(&self) -> String {
        self.root
            .index
            .map_or_else(|| self.name.clone(), |i| self.pages[i].page.title.clone())
    }

    fn sidebar(&self, folder: &Folder, current: usize, open_all: bool) -> String {
        let from = self.site_url(&self.pages[current]);
        let mut out = String::new();
        for child in folder.children(&self.pages) {
            match child {
                Child::Page(p) => out.push_str(&layout::sidebar_item(&from, &self.link(p), None)),
                Child::Folder(f) => {
                    let open = open_all || f.contains(current);
                    let inner = open.then(|| self.sidebar(f, current, open_all));
                    let to = match f.index {
                        Some(i) => self.link(i),
                        // A section without an index page opens at its first page.
                        None => {
                            let mut order = Vec::new();
                            f.reading_order(&self.pages, &mut order);
                            match order.first() {
                                Some(&first) => Link {
                                    url: self.link(first).url,
                                    title: f.name.clone(),
                                },
                                None => continue,
                            }
                        }
                    };
                    out.push_str(&layout::sidebar_item(&from, &to, inner.as_deref()));
                }
            }
        }
        out
    }
}

/// The site being assembled: files, and the routes that name them.
struct Builder {
    files: BTreeMap<String, Vec<u8>>,
    routes: BTreeMap<String, Route>,
}

impl Builder {
    fn file(&mut self, path: String, bytes: Vec<u8>) {
        self.files.insert(path, bytes);
    }

    /// Routes `url` (segments; `dir` for a trailing slash) to `file`, unless something
    /// already answers it (source files come first).
    fn route(&mut self, url: &str, dir: bool, route: Route) {
        let segments: Vec<String> = url
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        self.routes
            .entry(route_key(&segments, dir))
            .or_insert(route);
    }

    fn serve_file(&mut self, url: &str, file: &str, raw: Option<RawSource>) {
        let route = Route::File {
            file: file.to_owned(),
            content_type: content_type(file).to_owned(),
            etag: etag(&self.files[file]),
            raw,
        };
        self.route(url, false, route);
    }

    /// A folder's index at `dir/`, and `dir` sending there.
    fn serve_index(&mut self, dir: &str, file: &str, raw: Option<RawSource>) {
        let route = Route::File {
            file: file.to_owned(),
            content_type: content_type(file).to_owned(),
            etag: etag(&self.files[file]),
            raw,
        };
        self.route(dir, true, route);
        let last = dir.rsplit('/').next().unwrap_or(dir);
        if !dir.is_empty() {
            self.route(
                dir,
                false,
                Route::Redirect {
                    location: format!("{last}/"),
                },
            );
        }
    }
}

fn strip_md(name: &str) -> Option<&str> {
    name.strip_suffix(".md")
}

/// Builds the site of the docs tree `src`: every version directory, its pages and files.
pub fn build(src: &dyn DocsSource, options: &Options) -> Site {
    let names = versions(src);
    let mut b = Builder {
        files: BTreeMap::new(),
        routes: BTreeMap::new(),
    };
    let mut built = Vec::with_capacity(names.len());
    for name in &names {
        let mut all = Vec::new();
        check::files(src, name, &mut all);
        let mut pages = Vec::new();
        for path in all {
            let Entry::File(bytes) = src.entry(&path) else {
                continue;
            };
            b.file(path.clone(), bytes.clone());
            let Some(stem) = strip_md(&path) else {
                continue;
            };
            let in_version = &path[name.len() + 1..];
            let (dir, file) = in_version.rsplit_once('/').unwrap_or(("", in_version));
            let is_index = INDEX_NAMES.contains(&file);
            let url = if is_index {
                if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                }
            } else {
                stem[name.len() + 1..].to_owned()
            };
            let page = render::render(&String::from_utf8_lossy(&bytes), &path);
            pages.push(SourcePage {
                source: path.clone(),
                url,
                page,
                bytes,
            });
        }
        // One index per folder, in the order a request looks for them; another index file
        // in the same folder is an ordinary page at its own name.
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for (i, p) in pages.iter().enumerate() {
            if p.url.is_empty() || p.url.ends_with('/') {
                let rank = |p: &SourcePage| {
                    let file = p.source.rsplit('/').next().unwrap_or_default();
                    INDEX_NAMES.iter().position(|n| *n == file)
                };
                match index_of.get(&p.url) {
                    Some(&j) if rank(&pages[j]) <= rank(p) => {}
                    _ => {
                        index_of.insert(p.url.clone(), i);
                    }
                }
            }
        }
        for (i, p) in pages.iter_mut().enumerate() {
            if (p.url.is_empty() || p.url.ends_with('/')) && index_of.get(&p.url) != Some(&i) {
                let stem = strip_md(&p.source).unwrap_or(&p.source);
                p.url = stem[name.len() + 1..].to_owned();
            }
        }
        let mut root = Folder::default();
        for (i, p) in pages.iter().enumerate() {
            let is_index = p.url.is_empty() || p.url.ends_with('/');
            let trimmed = p.url.trim_end_matches('/');
            let mut dirs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
            if !is_index {
                dirs.pop();
            }
            root.insert(&dirs, i, is_index);
        }
        let mut order = Vec::new();
        root.reading_order(&pages, &mut order);
        built.push(Version {
            name: name.clone(),
            pages,
            root,
            order,
        });
    }

    // Source files first: a file written by the author answers its own URL.
    let sources: Vec<String> = b.files.keys().cloned().collect();
    for path in &sources {
        if !path.ends_with(".md") {
            b.serve_file(path, path, None);
            let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
            if file == "index.html" {
                b.serve_index(dir, path, None);
            }
        }
    }

    let mut pages_built = 0;
    for version in &built {
        let open_all = version.pages.len() <= OPEN_SIDEBAR_PAGES;
        let site_name = version.title();
        for (position, &p) in version.order.iter().enumerate() {
            let page = &version.pages[p];
            let url = version.site_url(page);
            let switch: Vec<Link> = built
                .iter()
                .map(|other| Link {
                    url: other
                        .pages
                        .iter()
                        .find(|q| q.url == page.url)
                        .map_or_else(|| format!("{}/", other.name), |q| other.site_url(q)),
                    title: other.name.clone(),
                })
                .collect();
            let prev = position
                .checked_sub(1)
                .map(|at| version.link(version.order[at]));
            let next = version.order.get(position + 1).map(|&n| version.link(n));
            let home = version
                .root
                .index
                .map(|i| layout::sidebar_item(&url, &version.link(i), None))
                .unwrap_or_default();
            let sidebar = home + &version.sidebar(&version.root, p, open_all);
            let html = layout::page(&PageView {
                url: &url,
                title: &page.page.title,
                description: page.page.front.description.as_deref(),
                body: &page.page.body,
                headings: &page.page.headings,
                site_name: &site_name,
                version: &version.name,
                versions: &switch,
                sidebar: &sidebar,
                prev: prev.as_ref(),
                next: next.as_ref(),
            });
            let mut rendered = if url.ends_with('/') {
                format!("{url}index.html")
            } else {
                format!("{url}.html")
            };
            if b.files.contains_key(&rendered) {
                rendered = format!("_rendered/{rendered}");
            }
            b.file(rendered.clone(), html.into_bytes());
            pages_built += 1;
            let raw = |preferred| {
                Some(RawSource {
                    file: page.source.clone(),
                    etag: etag(&page.bytes),
                    preferred,
                })
            };
            if url.ends_with('/') {
                b.serve_index(url.trim_end_matches('/'), &rendered, raw(false));
            } else {
                b.serve_file(&url, &rendered, raw(false));
            }
            // The source's own name answers too (`install.md`, `guide/README.md`), and an
            // index's name without `.md` (`guide/README`).
            b.serve_file(&page.source, &rendered, raw(true));
            if let Some(stem) = strip_md(&page.source) {
                b.serve_file(stem, &rendered, raw(false));
            }
        }
    }

    let listing = VersionList {
        latest: names.first().cloned(),
        versions: names.clone(),
    };
    b.file(
        "versions.json".into(),
        serde_json::to_vec(&listing).unwrap_or_default(),
    );
    b.serve_index("", "versions.json", None);

    for version in &built {
        let llms = super::feeds::llms_txt(
            version.name.as_str(),
            &version.title(),
            &index_links(version),
        );
        let full = super::feeds::llms_full_txt(version.order.iter().map(|&p| {
            (
                &version.pages[p].page.title,
                version.pages[p].bytes.as_slice(),
            )
        }));
        for (name, bytes) in [("llms.txt", llms), ("llms-full.txt", full)] {
            let path = format!("{}/{name}", version.name);
            b.file(path.clone(), bytes.into_bytes());
            b.serve_file(&path, &path, None);
        }
    }
    let sitemap = super::feeds::sitemap(
        &options.base_url,
        built
            .iter()
            .flat_map(|v| v.order.iter().map(|&p| v.site_url(&v.pages[p]))),
    );
    b.file("sitemap.xml".into(), sitemap.into_bytes());
    b.serve_file("sitemap.xml", "sitemap.xml", None);
    let search = super::search::build(built.iter().flat_map(|v| {
        v.order.iter().map(|&p| {
            let page = &v.pages[p];
            super::search::Document {
                version: &v.name,
                url: v.site_url(page),
                source: &page.source,
                etag: etag(&page.bytes),
                size: page.bytes.len(),
                page: &page.page,
            }
        })
    }));
    b.file(super::search::INDEX_FILE.into(), search.index);
    b.serve_file(super::search::INDEX_FILE, super::search::INDEX_FILE, None);
    b.file(super::search::CATALOG_FILE.into(), search.catalog);
    b.file(super::search::POSTINGS_FILE.into(), search.postings);

    // `latest/…` answers as the newest version does.
    if let Some(newest) = names.first() {
        let prefix = format!("{ROUTES_DIR}/{newest}/");
        let own = format!("{ROUTES_DIR}/{newest}@");
        let aliases: Vec<(String, Route)> = b
            .routes
            .iter()
            .filter_map(|(key, route)| {
                let alias = if let Some(rest) = key.strip_prefix(&prefix) {
                    format!("{ROUTES_DIR}/latest/{rest}")
                } else if *key == own {
                    format!("{ROUTES_DIR}/latest@")
                } else {
                    return None;
                };
                let route = match route {
                    Route::Redirect { .. } if key == &own => Route::Redirect {
                        location: "latest/".into(),
                    },
                    other => other.clone(),
                };
                Some((alias, route))
            })
            .collect();
        b.routes.extend(aliases);
    }

    let mut files = b.files;
    for (key, route) in b.routes {
        files.insert(key, serde_json::to_vec(&route).unwrap_or_default());
    }
    Site {
        files,
        pages: pages_built,
        findings: check::check(src),
    }
}

/// The version's pages for `llms.txt`, grouped by top-level section.
fn index_links(version: &Version) -> Vec<(String, Vec<super::feeds::Entry>)> {
    let entry = |p: usize| {
        let page = &version.pages[p];
        super::feeds::Entry {
            title: page.page.title.clone(),
            href: page.source[version.name.len() + 1..].to_owned(),
            description: page.page.front.description.clone(),
        }
    };
    let mut groups = vec![("Pages".to_owned(), Vec::new())];
    groups[0].1.extend(version.root.index.map(entry));
    for child in version.root.children(&version.pages) {
        match child {
            Child::Page(p) => groups[0].1.push(entry(p)),
            Child::Folder(f) => {
                let mut order = Vec::new();
                f.reading_order(&version.pages, &mut order);
                let title = f
                    .index
                    .map_or_else(|| f.name.clone(), |i| version.pages[i].page.title.clone());
                groups.push((title, order.into_iter().map(entry).collect()));
            }
        }
    }
    groups.retain(|(_, entries)| !entries.is_empty());
    groups
}

/// What writing a site changed on disk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

impl Site {
    /// Writes the site into `dir`: files whose bytes changed (each replaced whole, by a
    /// rename), and files of an earlier build that this one no longer has removed. A
    /// non-empty `dir` that does not hold a built site is refused rather than emptied.
    pub fn write_to(&self, dir: &std::path::Path) -> std::io::Result<Written> {
        use std::io::{Error, ErrorKind};
        let is_site = dir.join(ROUTES_DIR).is_dir();
        if dir.is_dir() && !is_site && std::fs::read_dir(dir)?.next().is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} is not empty and holds no built site; not writing into it",
                    dir.display()
                ),
            ));
        }
        let mut done = Written::default();
        for (path, bytes) in &self.files {
            let full = dir.join(path);
            if std::fs::read(&full).is_ok_and(|old| old == *bytes) {
                done.unchanged += 1;
                continue;
            }
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let temp = full.with_file_name(format!(
                ".{}.tmp",
                full.file_name().and_then(|n| n.to_str()).unwrap_or("file")
            ));
            std::fs::write(&temp, bytes)?;
            std::fs::rename(&temp, &full)?;
            done.written += 1;
        }
        let mut existing = Vec::new();
        list_files(dir, dir, &mut existing)?;
        for rel in existing {
            if !self.files.contains_key(&rel) {
                std::fs::remove_file(dir.join(&rel))?;
                done.removed += 1;
            }
        }
        remove_empty_dirs(dir)?;
        Ok(done)
    }
}

fn list_files(
    root: &std::path::Path,
    dir: &std::path::Path,
    out: &mut Vec<String>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            list_files(root, &entry.path(), out)?;
        } else if let Ok(rel) = entry.path().strip_prefix(root)
            && let Some(rel) = rel.to_str()
        {
            out.push(rel.replace('\\', "/"));
        }
    }
    Ok(())
}

/// Removes the empty folders below `dir`; true when `dir` itself ended up empty.
fn remove_empty_dirs(dir: &std::path::Path) -> std::io::Result<bool> {
    let mut empty = true;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() && remove_empty_dirs(&entry.path())? {
            std::fs::remove_dir(entry.path())?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}
