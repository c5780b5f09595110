//! The page template of the built site: header with the version switcher, sidebar, the page,
//! previous/next links and the page's table of contents. No scripts: the version switcher is a
//! `<details>` list of links, and the one stylesheet is inline, allowed by its hash in the CSP.
//! Every link is relative, so that the site works under any base path and from a CDN.

use super::escape_html;

/// The href that leads from the page at `from` to `to`, both site URLs (`v1/guide/install`,
/// `v1/guide/` for a folder's index, `""` for the site root).
pub fn relative(from: &str, to: &str) -> String {
    let mut from_dir: Vec<&str> = from.split('/').collect();
    from_dir.pop();
    let to_parts: Vec<&str> = to.split('/').collect();
    let (to_last, to_dir) = to_parts.split_last().unwrap_or((&"", &[]));
    let common = from_dir
        .iter()
        .zip(to_dir)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = "../".repeat(from_dir.len() - common);
    for part in &to_dir[common..] {
        out.push_str(part);
        out.push('/');
    }
    out.push_str(to_last);
    if out.is_empty() { "./".to_owned() } else { out }
}

/// A link in the navigation: where it goes (a site URL) and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub url: String,
    pub title: String,
}

/// What one page of the site shows.
pub struct PageView<'a> {
    /// This page's site URL.
    pub url: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    /// The rendered Markdown.
    pub body: &'a str,
    /// `(level, id, text)` of the page's headings.
    pub headings: &'a [(u8, String, String)],
    /// The version's name (its index page's title) and the version itself.
    pub site_name: &'a str,
    pub version: &'a str,
    /// Every version, newest first, each with the page it switches to.
    pub versions: &'a [Link],
    /// The sidebar's list, already rendered (see [`sidebar_item`]).
    pub sidebar: &'a str,
    pub prev: Option<&'a Link>,
    pub next: Option<&'a Link>,
}

fn link(from: &str, to: &Link, extra: &str) -> String {
    let current = if from == to.url {
        " aria-current=\"page\""
    } else {
        ""
    };
    format!(
        "<a href=\"{}\"{current}{extra}>{}</a>",
        escape_html(&relative(from, &to.url)),
        escape_html(&to.title)
    )
}

/// One entry of the sidebar, with its children (already rendered) when it is a section.
pub fn sidebar_item(from: &str, to: &Link, children: Option<&str>) -> String {
    match children {
        Some(inner) if !inner.is_empty() => format!(
            "<li class=\"section\">{}<ul>{inner}</ul></li>",
            link(from, to, "")
        ),
        _ => format!("<li>{}</li>", link(from, to, "")),
    }
}

/// The table of contents: the page's second- and third-level headings.
fn toc(headings: &[(u8, String, String)]) -> String {
    let items: String = headings
        .iter()
        .filter(|(level, ..)| (2..=3).contains(level))
        .map(|(level, id, text)| {
            format!(
                "<li class=\"h{level}\"><a href=\"#{}\">{}</a></li>",
                escape_html(id),
                escape_html(text)
            )
        })
        .collect();
    if items.is_empty() {
        return String::new();
    }
    format!(
        "<aside class=\"toc\"><nav aria-label=\"On this page\"><h2>On this page</h2><ul>{items}</ul></nav></aside>\n"
    )
}

/// The complete HTML document of a page.
pub fn page(view: &PageView<'_>) -> String {
    let from = view.url;
    let description = view
        .description
        .map(|d| {
            format!(
                "<meta name=\"description\" content=\"{}\">\n",
                escape_html(d)
            )
        })
        .unwrap_or_default();
    let versions: String = view
        .versions
        .iter()
        .map(|v| {
            let current = if v.title == view.version {
                " aria-current=\"true\""
            } else {
                ""
            };
            format!(
                "<li><a href=\"{}\"{current}>{}</a></li>",
                escape_html(&relative(from, &v.url)),
                escape_html(&v.title)
            )
        })
        .collect();
    let home = Link {
        url: format!("{}/", view.version),
        title: view.site_name.to_owned(),
    };
    let pager = match (view.prev, view.next) {
        (None, None) => String::new(),
        (prev, next) => {
            let prev = prev
                .map(|p| link(from, p, " rel=\"prev\""))
                .map(|a| format!("<span class=\"prev\">Previous: {a}</span>"))
                .unwrap_or_default();
            let next = next
                .map(|n| link(from, n, " rel=\"next\""))
                .map(|a| format!("<span class=\"next\">Next: {a}</span>"))
                .unwrap_or_default();
            format!("<nav class=\"pager\" aria-label=\"Previous and next\">{prev}{next}</nav>\n")
        }
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>{title}</title>\n{description}<style>{PAGE_STYLE}</style>\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#content\">Skip to content</a>\n\
         <header class=\"top\"><a class=\"home\" href=\"{home_href}\">{site}</a>\
         <details class=\"versions\"><summary>Version <span class=\"current\">{version}</span></summary>\
         <nav aria-label=\"Versions\"><ul>{versions}</ul></nav></details></header>\n\
         <div class=\"layout\">\n\
         <nav class=\"sidebar\" aria-label=\"Pages\"><ul>{sidebar}</ul></nav>\n\
         <main id=\"content\">\n<article>\n{body}</article>\n{pager}</main>\n{toc}\
         </div>\n</body>\n</html>\n",
        title = escape_html(view.title),
        home_href = escape_html(&relative(from, &home.url)),
        site = escape_html(view.site_name),
        version = escape_html(view.version),
        sidebar = view.sidebar,
        body = view.body,
        toc = toc(view.headings),
    )
}

/// The one inline style pages carry; the CSP allows exactly it, by hash. Light and dark
/// (`prefers-color-scheme`), one column on a phone, and only the page itself in print.
pub const PAGE_STYLE: &str = ":root{--fg:#1f2328;--bg:#fff;--muted:#59636e;--line:#d1d9e0;--code:#f6f8fa;--link:#0550ae}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#3d444d;--code:#151b23;--link:#4493f8}}\
*{box-sizing:border-box}body{margin:0;font-family:system-ui,sans-serif;line-height:1.55;color:var(--fg);background:var(--bg)}\
a{color:var(--link)}a[aria-current]{font-weight:600;color:var(--fg)}\
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:var(--bg);padding:.5rem}\
.top{display:flex;gap:1.5rem;align-items:center;padding:.7rem 1.2rem;border-bottom:1px solid var(--line)}\
.home{font-weight:700;text-decoration:none;color:var(--fg)}\
.versions{position:relative}.versions summary{cursor:pointer;color:var(--muted)}\
.versions ul{position:absolute;z-index:1;margin:.3rem 0;padding:.4rem 1rem;list-style:none;background:var(--bg);border:1px solid var(--line)}\
.layout{display:grid;grid-template-columns:16rem minmax(0,1fr) 14rem;gap:2rem;max-width:84rem;margin:0 auto;padding:1rem 1.2rem}\
.sidebar ul,.toc ul{list-style:none;margin:0;padding-left:.9rem}.sidebar>ul,.toc ul{padding-left:0}\
.sidebar li,.toc li{margin:.25rem 0}.toc .h3{padding-left:.9rem}.toc h2{font-size:.9rem;color:var(--muted);margin:0 0 .4rem}\
.sidebar,.toc{font-size:.92rem}main{min-width:0}\
h1,h2,h3,h4{line-height:1.25}.anchor{visibility:hidden;text-decoration:none;color:var(--muted)}\
h1:hover .anchor,h2:hover .anchor,h3:hover .anchor,h4:hover .anchor,.anchor:focus{visibility:visible}\
pre{background:var(--code);padding:1rem;overflow:auto;border-radius:6px}code{font-size:.92em}\
table{border-collapse:collapse;display:block;overflow:auto}td,th{border:1px solid var(--line);padding:.3rem .6rem}img{max-width:100%}\
.pager{display:flex;justify-content:space-between;gap:1rem;margin-top:3rem;padding-top:1rem;border-top:1px solid var(--line)}.pager .next{margin-left:auto}\
@media (max-width:60rem){.layout{grid-template-columns:minmax(0,1fr)}.toc{display:none}\
.sidebar{order:2;border-top:1px solid var(--line);padding-top:1rem}}\
@media print{.top,.sidebar,.toc,.pager,.skip,.anchor{display:none}.layout{display:block}body{color:#000;background:#fff}}";

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn links_are_relative_to_the_page() {
        for (from, to, href) in [
            ("v1/install", "v1/guide/", "guide/"),
            ("v1/guide/", "v1/install", "../install"),
            ("v1/install", "v1/", "./"),
            ("v1/", "v1/", "./"),
            ("v1/install", "v2/install", "../v2/install"),
            ("v1/a/b/c", "v1/a/d", "../d"),
            ("v1/a/", "v1/a/b", "b"),
            ("latest/install", "v2/", "../v2/"),
        ] {
            assert_eq!(relative(from, to), href, "{from} -> {to}");
        }
    }
}
