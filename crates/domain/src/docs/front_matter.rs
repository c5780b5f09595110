//! Front matter: the metadata block a page opens with, in the three forms docs engines
//! write: YAML between `---` lines (Jekyll, Docusaurus, MkDocs), TOML between `+++` lines
//! (Hugo, Zola), and TOML closed by a `---` line (Bartholomew, Spin's docs engine). It is
//! parsed with the YAML and TOML crates and never rendered.

use serde::Deserialize;

/// What the pages' metadata gives the site.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrontMatter {
    pub title: Option<String>,
    pub description: Option<String>,
    /// The ordering key: `weight`, `sidebar_position` or `nav_order`, whichever is present.
    pub order: Option<f64>,
    /// Left out of search (`search: {exclude: true}`, as MkDocs Material writes it): the page
    /// is still served, listed and readable as a resource.
    pub search_exclude: bool,
}

/// A page split into its front matter and its Markdown body.
#[derive(Debug, Clone, PartialEq)]
pub struct Split<'a> {
    pub front: FrontMatter,
    pub body: &'a str,
    /// Why the front matter could not be read, when a block was there but did not parse
    /// (the page is still served, without it).
    pub error: Option<String>,
    /// Lines the block took, so that positions in `body` can be told in the file's lines.
    pub lines: usize,
}

#[derive(Deserialize, Default)]
struct Fields {
    title: Option<String>,
    description: Option<String>,
    weight: Option<f64>,
    sidebar_position: Option<f64>,
    nav_order: Option<f64>,
    search: Option<SearchFields>,
}

#[derive(Deserialize, Default)]
struct SearchFields {
    #[serde(default)]
    exclude: bool,
}

impl From<Fields> for FrontMatter {
    fn from(f: Fields) -> Self {
        FrontMatter {
            title: f.title.filter(|t| !t.trim().is_empty()),
            description: f.description,
            order: f.weight.or(f.sidebar_position).or(f.nav_order),
            search_exclude: f.search.is_some_and(|s| s.exclude),
        }
    }
}

/// The text between the opening line and the first line equal to `close`, and the body after
/// it; `None` when there is no closing line.
fn block<'a>(text: &'a str, close: &str) -> Option<(&'a str, &'a str, usize)> {
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == close {
            return Some((&text[..offset], &text[offset + line.len()..], n + 1));
        }
        offset += line.len();
    }
    None
}

fn yaml(text: &str) -> Result<FrontMatter, String> {
    if text.trim().is_empty() {
        return Ok(FrontMatter::default());
    }
    serde_yaml_ng::from_str::<Fields>(text)
        .map(FrontMatter::from)
        .map_err(|e| format!("YAML front matter: {e}"))
}

fn toml_fields(text: &str) -> Result<FrontMatter, String> {
    toml::from_str::<Fields>(text)
        .map(FrontMatter::from)
        .map_err(|e| format!("TOML front matter: {}", e.message()))
}

/// Whether `line` reads as a TOML key/value line (`title = "…"`) or table header.
fn looks_like_toml(line: &str) -> bool {
    let line = line.trim();
    if line.starts_with('[') && line.ends_with(']') {
        return true;
    }
    line.split_once('=').is_some_and(|(key, _)| {
        let key = key.trim().trim_matches('"');
        !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    })
}

/// Splits `source` into front matter and body.
pub fn split(source: &str) -> Split<'_> {
    let text = source.strip_prefix('\u{feff}').unwrap_or(source);
    let none = Split {
        front: FrontMatter::default(),
        body: text,
        error: None,
        lines: 0,
    };
    let first = text.lines().next().unwrap_or_default().trim_end();
    let (parsed, body, lines) = if first == "---" || first == "+++" {
        let after_open = &text[text.find('\n').map_or(text.len(), |i| i + 1)..];
        let Some((inner, body, n)) = block(after_open, first) else {
            return none;
        };
        let parsed = if first == "---" {
            yaml(inner)
        } else {
            toml_fields(inner)
        };
        (parsed, body, n + 1)
    } else if looks_like_toml(first) {
        // Bartholomew's form: TOML from the first line, closed by `---`. Only a block that
        // parses counts, so a page that merely starts with `a = b` stays a page.
        match block(text, "---") {
            Some((inner, body, n)) => match toml_fields(inner) {
                Ok(front) => (Ok(front), body, n),
                Err(_) => return none,
            },
            None => return none,
        }
    } else {
        return none;
    };
    match parsed {
        Ok(front) => Split {
            front,
            body,
            error: None,
            lines,
        },
        Err(error) => Split {
            front: FrontMatter::default(),
            body,
            error: Some(error),
            lines,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_are_parsed_and_removed() {
        let yaml = split("---\ntitle: Install\nsidebar_position: 2\n---\n# Heading\n");
        assert_eq!(yaml.front.title.as_deref(), Some("Install"));
        assert_eq!(yaml.front.order, Some(2.0));
        assert_eq!(yaml.body, "# Heading\n");
        assert_eq!(yaml.lines, 4);

        let toml = split("+++\ntitle = \"Zola page\"\nweight = 5\n+++\nBody\n");
        assert_eq!(toml.front.title.as_deref(), Some("Zola page"));
        assert_eq!(toml.front.order, Some(5.0));
        assert_eq!(toml.body, "Body\n");

        let bart = split(
            "title = \"Spin docs\"\ndate = \"2024-01-01T00:00:00Z\"\n[extra]\nurl = \"x\"\n---\n\nText\n",
        );
        assert_eq!(bart.front.title.as_deref(), Some("Spin docs"));
        assert_eq!(bart.body, "\nText\n");
        assert!(bart.error.is_none());
    }

    #[test]
    fn pages_without_or_with_broken_front_matter() {
        let plain = split("# Just a page\n\n---\n\nA rule above.\n");
        assert_eq!(plain.front, FrontMatter::default());
        assert_eq!(plain.body, "# Just a page\n\n---\n\nA rule above.\n");

        let broken = split("---\ntitle: [unclosed\n---\nBody\n");
        assert!(broken.error.as_deref().unwrap().contains("YAML"));
        assert_eq!(broken.body, "Body\n");

        // Starts like TOML but is not front matter: left alone.
        let code = split("a = b is how you assign\n---\nmore\n");
        assert_eq!(code.body, "a = b is how you assign\n---\nmore\n");
        // An opening line without a close is just text.
        assert_eq!(split("---\nno close\n").body, "---\nno close\n");
    }
}
