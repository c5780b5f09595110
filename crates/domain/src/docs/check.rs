//! `docs check`: every Markdown page of a tree read as the server reads it, reporting what a
//! reader would trip over: links to pages or files that do not exist, anchors that no heading
//! has, front matter that does not parse, pages without a title. Links resolve exactly as
//! requests do (`page`, `page.md`, `./page`, `../v1/page`, `page/`, folder indexes).

use pulldown_cmark::{Event, Options, Parser, Tag};

use super::render::{self, INDEX_NAMES};
use super::{DocsSource, Entry};

/// One thing wrong, at a line of a file (`line` counts from 1, in the file as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub kind: &'static str,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.kind, self.message
        )
    }
}

/// Every file below `dir` (`""`: the root), as paths from the root, sorted.
pub(crate) fn files(src: &dyn DocsSource, dir: &str, out: &mut Vec<String>) {
    let mut names = src.list(dir);
    names.sort();
    for name in names {
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        match src.entry(&path) {
            Entry::Dir => files(src, &path, out),
            Entry::File(_) => out.push(path),
            Entry::Missing => {}
        }
    }
}

/// `base/relative` with `.` and `..` resolved; `None` when it climbs out of the root.
fn join(base_dir: &str, relative: &str) -> Option<String> {
    let mut parts: Vec<&str> = base_dir.split('/').filter(|s| !s.is_empty()).collect();
    for segment in relative.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// The file a link's path names, resolved as a request for it would be.
fn resolve(src: &dyn DocsSource, path: &str, wants_dir: bool) -> Option<String> {
    let file = |p: &str| matches!(src.entry(p), Entry::File(_)).then(|| p.to_owned());
    let index = |dir: &str| {
        ["index.html"]
            .iter()
            .chain(INDEX_NAMES.iter())
            .find_map(|name| file(&format!("{dir}/{name}")))
    };
    match src.entry(path) {
        Entry::File(_) if !wants_dir => Some(path.to_owned()),
        Entry::Dir => index(path),
        _ if wants_dir => None,
        _ => file(&format!("{path}.md")),
    }
}

fn is_external(dest: &str) -> bool {
    dest.contains("://")
        || dest.starts_with("mailto:")
        || dest.starts_with("data:")
        || dest.starts_with("tel:")
}

/// Checks every Markdown page of the tree.
pub fn check(src: &dyn DocsSource) -> Vec<Finding> {
    let mut all = Vec::new();
    files(src, "", &mut all);
    let mut findings = Vec::new();
    let mut anchors: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut anchors_of = |file: &str| -> Vec<String> {
        anchors
            .entry(file.to_owned())
            .or_insert_with(|| match src.entry(file) {
                Entry::File(bytes) => render::render(&String::from_utf8_lossy(&bytes), file)
                    .headings
                    .into_iter()
                    .map(|(_, id, _)| id)
                    .collect(),
                _ => Vec::new(),
            })
            .clone()
    };
    for file in all.iter().filter(|f| f.ends_with(".md")) {
        let Entry::File(bytes) = src.entry(file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let split = super::front_matter::split(&text);
        let mut finding = |line: usize, kind, message: String| {
            findings.push(Finding {
                file: file.clone(),
                line,
                kind,
                message,
            })
        };
        if let Some(error) = &split.error {
            finding(
                1,
                "front_matter",
                error.lines().next().unwrap_or(error).to_owned(),
            );
        }
        let page = render::render(&text, file);
        if split.front.title.is_none() && page.headings.is_empty() {
            finding(
                1,
                "untitled",
                "no title in front matter and no heading".to_owned(),
            );
        }
        let dir = file.rsplit_once('/').map_or("", |(d, _)| d);
        let line_of = |offset: usize| split.lines + split.body[..offset].matches('\n').count() + 1;
        let options = Options::ENABLE_TABLES | Options::ENABLE_HEADING_ATTRIBUTES;
        for (event, range) in Parser::new_ext(split.body, options).into_offset_iter() {
            let dest = match &event {
                Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                    dest_url.to_string()
                }
                _ => continue,
            };
            if dest.is_empty() || is_external(&dest) || dest.starts_with('/') {
                continue;
            }
            let line = line_of(range.start);
            let (path, fragment) = match dest.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (dest.as_str(), None),
            };
            let path = path.split('?').next().unwrap_or(path);
            let target = if path.is_empty() {
                Some(file.clone())
            } else {
                join(dir, path).and_then(|joined| resolve(src, &joined, path.ends_with('/')))
            };
            let Some(target) = target else {
                finding(line, "dead_link", format!("{dest} names no page or file"));
                continue;
            };
            if let Some(fragment) = fragment.filter(|f| !f.is_empty())
                && target.ends_with(".md")
                && !anchors_of(&target).iter().any(|id| id == fragment)
            {
                finding(
                    line,
                    "dead_anchor",
                    format!("{dest}: {target} has no heading #{fragment}"),
                );
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::MemoryDocs;

    #[test]
    fn planted_problems_are_found_at_their_lines_and_nothing_else() {
        let docs = MemoryDocs::new(&[
            (
                "v1/index.md",
                "---\ntitle: Home\n---\n# Home\n\n[install](install) [again](./install.md#step-two)\n\
                 [guide](guide/) [ext](https://example.com/x.md) [self](#home)\n\n\
                 [gone](missing-page)\n\n![logo](img/logo.png) ![lost](img/nope.png)\n",
            ),
            (
                "v1/install.md",
                "# Install\n\n## Step two\n\n[back](index.md#nowhere)\n",
            ),
            ("v1/guide/README.md", "+++\ntitle = \n+++\nGuide text\n"),
            ("v1/img/logo.png", "png"),
            ("v1/notes.md", "just words, no heading\n"),
            (
                "v0/index.md",
                "# Old\n\n[new](../v1/install#step-two) [up](../../etc/passwd)\n",
            ),
        ]);
        let found: Vec<String> = check(&docs).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "v0/index.md:3: dead_link: ../../etc/passwd names no page or file",
                "v1/guide/README.md:1: front_matter: TOML front matter: string values must be quoted, expected literal string",
                "v1/guide/README.md:1: untitled: no title in front matter and no heading",
                "v1/index.md:9: dead_link: missing-page names no page or file",
                "v1/index.md:11: dead_link: img/nope.png names no page or file",
                "v1/install.md:5: dead_anchor: index.md#nowhere: v1/index.md has no heading #nowhere",
                "v1/notes.md:1: untitled: no title in front matter and no heading",
            ]
        );
    }
}
