//! Markdown to an HTML page, from `pulldown-cmark`'s events: the title (front matter, else the
//! first heading, else the file name), heading ids as GitHub makes them (explicit `{#id}`
//! honoured) with a self-link each, and links between pages rewritten to the URLs the docs
//! are served at (`page.md` → `page`, `README.md` → its folder).

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};

use super::escape_html;
use super::front_matter::{self, FrontMatter};

/// A rendered page: its title, front matter, body HTML and headings.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub title: String,
    pub front: FrontMatter,
    pub body: String,
    /// `(level, id, text)` of every heading, in order.
    pub headings: Vec<(u8, String, String)>,
    /// The page's words without markup, for the search index.
    pub text: String,
}

/// GitHub's heading slug: lower case, everything but letters, digits, `_`, `-` and spaces
/// dropped, spaces to hyphens.
pub fn slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Folder index names, in the order they are looked for.
pub const INDEX_NAMES: [&str; 3] = ["index.md", "_index.md", "README.md"];

/// The served form of a relative link between pages: `.md` dropped, an index page as its
/// folder; anything with a scheme, absolute or in-page is left alone.
pub fn page_link(dest: &str) -> Option<String> {
    if dest.is_empty()
        || dest.starts_with('#')
        || dest.starts_with('/')
        || dest.contains("://")
        || dest.starts_with("mailto:")
        || dest.starts_with("data:")
    {
        return None;
    }
    let (path, rest) = match dest.find(['#', '?']) {
        Some(at) => dest.split_at(at),
        None => (dest, ""),
    };
    let (dir, file) = match path.rfind('/') {
        Some(at) => path.split_at(at + 1),
        None => ("", path),
    };
    let served = if INDEX_NAMES.contains(&file) {
        if dir.is_empty() {
            "./".to_owned()
        } else {
            dir.to_owned()
        }
    } else if let Some(stem) = file.strip_suffix(".md") {
        format!("{dir}{stem}")
    } else {
        return None;
    };
    Some(format!("{served}{rest}"))
}

fn level_number(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Renders a page's Markdown source (front matter included); `file_name` titles a page that
/// has no title of its own.
pub fn render(source: &str, file_name: &str) -> Page {
    let split = front_matter::split(source);
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut events: Vec<Event<'_>> = Parser::new_ext(split.body, options).collect();

    // Headings: their text, then ids (explicit ones reserved first, so that a slug never
    // takes an id the author chose).
    let mut spans = Vec::new();
    let mut open: Option<(usize, u8, Option<String>, String)> = None;
    for (i, event) in events.iter().enumerate() {
        match event {
            Event::Start(Tag::Heading { level, id, .. }) => {
                open = Some((
                    i,
                    level_number(*level),
                    id.as_ref().map(|s| s.to_string()),
                    String::new(),
                ));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, _, text)) = &mut open {
                    text.push_str(t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((start, level, id, text)) = open.take() {
                    spans.push((start, i, level, id, text));
                }
            }
            _ => {}
        }
    }
    let mut taken: std::collections::HashSet<String> =
        spans.iter().filter_map(|s| s.3.clone()).collect();
    let mut headings = Vec::with_capacity(spans.len());
    for (_, _, level, explicit, text) in &spans {
        let id = match explicit {
            Some(id) => id.clone(),
            None => {
                let base = slug(text.trim());
                let base = if base.is_empty() {
                    "section".to_owned()
                } else {
                    base
                };
                let mut candidate = base.clone();
                let mut n = 0;
                while taken.contains(&candidate) {
                    n += 1;
                    candidate = format!("{base}-{n}");
                }
                taken.insert(candidate.clone());
                candidate
            }
        };
        headings.push((*level, id, text.trim().to_owned()));
    }
    // Ids and self-links into the events, back to front so that indices stay valid.
    for ((start, end, ..), (_, id, _)) in spans.iter().zip(&headings).rev() {
        events.insert(
            *end,
            Event::InlineHtml(CowStr::from(format!(
                " <a class=\"anchor\" href=\"#{0}\" aria-label=\"Link to this section\">#</a>",
                escape_html(id)
            ))),
        );
        if let Event::Start(Tag::Heading { id: slot, .. }) = &mut events[*start] {
            *slot = Some(CowStr::from(id.clone()));
        }
    }
    for event in &mut events {
        if let Event::Start(Tag::Link { dest_url, .. }) = event
            && let Some(served) = page_link(dest_url)
        {
            *dest_url = CowStr::from(served);
        }
    }

    let title = split
        .front
        .title
        .clone()
        .or_else(|| {
            headings
                .iter()
                .find(|(level, ..)| *level == 1)
                .or(headings.first())
                .map(|(_, _, text)| text.clone())
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            file_name
                .rsplit('/')
                .next()
                .unwrap_or(file_name)
                .trim_end_matches(".md")
                .to_owned()
        });
    let text = plain_text(&events);
    let mut body = String::with_capacity(split.body.len() * 3 / 2);
    html::push_html(&mut body, events.into_iter());
    Page {
        title,
        front: split.front,
        body,
        headings,
        text,
    }
}

/// The words of a page's events, blocks separated by line breaks.
fn plain_text(events: &[Event<'_>]) -> String {
    let mut text = String::new();
    for event in events {
        match event {
            Event::Text(t) | Event::Code(t) => text.push_str(t),
            Event::SoftBreak | Event::HardBreak => text.push(' '),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::TableCell,
            ) => text.push('\n'),
            _ => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_match_github() {
        assert_eq!(slug("Installing Spin"), "installing-spin");
        assert_eq!(slug("What's new in 2.0?"), "whats-new-in-20");
        assert_eq!(slug("`spin up` options"), "spin-up-options");
        assert_eq!(slug("Über cool — ünïcode"), "über-cool--ünïcode");
        assert_eq!(slug("snake_case and-dash"), "snake_case-and-dash");
    }

    #[test]
    fn headings_get_ids_self_links_and_repeats_are_numbered() {
        let page = render(
            "# Title\n\n## Setup\n\n## Setup\n\n## `code` & *more*\n\n## Custom {#mine}\n\n## Setup\n",
            "p.md",
        );
        let ids: Vec<&str> = page.headings.iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            ["title", "setup", "setup-1", "code--more", "mine", "setup-2"]
        );
        assert!(
            page.body
                .contains("<h2 id=\"setup-1\">Setup <a class=\"anchor\" href=\"#setup-1\""),
            "{}",
            page.body
        );
        assert!(page.body.contains("<h2 id=\"mine\">"), "{}", page.body);
        assert_eq!(page.title, "Title");
    }

    #[test]
    fn titles_come_from_front_matter_then_headings_then_the_file_name() {
        let code_first = "```toml\n# Pass in 1 or more key value stores\n```\n\n## Second level\n";
        assert_eq!(render(code_first, "v1/kv.md").title, "Second level");
        let both = "## First h2\n\n# The h1\n";
        assert_eq!(render(both, "x.md").title, "The h1");
        let fm = "---\ntitle: From front matter\n---\n# Heading\n";
        assert_eq!(render(fm, "x.md").title, "From front matter");
        assert_eq!(
            render("no headings at all\n", "guide/setup.md").title,
            "setup"
        );
        assert!(!render(fm, "x.md").body.contains("title:"));
    }

    #[test]
    fn links_between_pages_point_at_their_served_urls() {
        for (written, served) in [
            ("install.md", Some("install")),
            (
                "install.md#installing-spin",
                Some("install#installing-spin"),
            ),
            ("./sqlite-api-guide.md", Some("./sqlite-api-guide")),
            ("../v1/page.md?x=1", Some("../v1/page?x=1")),
            ("guide/README.md", Some("guide/")),
            ("index.md", Some("./")),
            ("_index.md#top", Some("./#top")),
            ("install", None),
            ("page/", None),
            ("#frag", None),
            ("/abs.md", None),
            ("https://example.com/a.md", None),
            ("image.png", None),
        ] {
            assert_eq!(page_link(written).as_deref(), served, "{written}");
        }
        let page = render("[a](quickstart.md#run) [b](https://x.dev/y.md)", "p.md");
        assert!(
            page.body.contains("href=\"quickstart#run\""),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("href=\"https://x.dev/y.md\""),
            "{}",
            page.body
        );
    }
}
