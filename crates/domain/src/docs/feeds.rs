//! The files a site offers to crawlers and agents: `sitemap.xml` (sitemaps.org) over every
//! page, and per version `llms.txt` and `llms-full.txt` (llmstxt.org): an index of the pages
//! with links to their Markdown, and every page's Markdown in one file.

use super::escape_html;
use super::front_matter;

/// One page in `llms.txt`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub title: String,
    /// The page's source, relative to the version (`guide/install.md`).
    pub href: String,
    pub description: Option<String>,
}

/// `sitemap.xml`: `base_url` (absolute, ending in `/`) joined with each page's site URL.
pub fn sitemap<'a>(base_url: &str, urls: impl IntoIterator<Item = String> + 'a) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for url in urls {
        out.push_str(&format!(
            "<url><loc>{}{}</loc></url>\n",
            escape_html(base_url),
            escape_html(&url)
        ));
    }
    out.push_str("</urlset>\n");
    out
}

/// A version's `llms.txt`: its title, a summary line, then a list of links per section.
pub fn llms_txt(version: &str, title: &str, groups: &[(String, Vec<Entry>)]) -> String {
    let mut out = format!(
        "# {title}\n\n> Documentation, version {version}. Each link is the page's Markdown source.\n"
    );
    for (section, entries) in groups {
        out.push_str(&format!("\n## {section}\n\n"));
        for e in entries {
            out.push_str(&format!("- [{}]({})", e.title, e.href));
            if let Some(d) = &e.description {
                out.push_str(&format!(": {}", d.trim()));
            }
            out.push('\n');
        }
    }
    out
}

/// A version's `llms-full.txt`: every page's Markdown (without its front matter), in
/// reading order, each opened by its title.
pub fn llms_full_txt<'a>(pages: impl IntoIterator<Item = (&'a String, &'a [u8])>) -> String {
    let mut out = String::new();
    for (title, bytes) in pages {
        let text = String::from_utf8_lossy(bytes);
        let body = front_matter::split(&text).body.trim().to_owned();
        if !out.is_empty() {
            out.push('\n');
        }
        // A page that opens with its own title heading is not titled twice.
        if !body.starts_with("# ") {
            out.push_str(&format!("# {title}\n\n"));
        }
        out.push_str(&body);
        out.push('\n');
    }
    out
}
