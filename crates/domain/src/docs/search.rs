//! The search index, built with the site (`search-index.json`): per page its version, URL,
//! title, description, headings and words. The MCP endpoint's search reads it; any client
//! can fetch it at `/docs/search-index.json`.

use serde::Serialize;

use super::render::Page;

/// Where the index lies in the site.
pub const INDEX_FILE: &str = "search-index.json";

/// One page, as the index needs it.
pub struct Document<'a> {
    pub version: &'a str,
    pub url: String,
    pub page: &'a Page,
}

#[derive(Serialize)]
struct Heading<'a> {
    level: u8,
    id: &'a str,
    text: &'a str,
}

#[derive(Serialize)]
struct Indexed<'a> {
    version: &'a str,
    url: String,
    title: &'a str,
    description: Option<&'a str>,
    headings: Vec<Heading<'a>>,
    text: &'a str,
}

/// The index file's bytes.
pub fn index<'a>(documents: impl IntoIterator<Item = Document<'a>>) -> Vec<u8> {
    let documents: Vec<Indexed<'_>> = documents
        .into_iter()
        .map(|d| Indexed {
            version: d.version,
            url: d.url,
            title: &d.page.title,
            description: d.page.front.description.as_deref(),
            headings: d
                .page
                .headings
                .iter()
                .map(|(level, id, text)| Heading {
                    level: *level,
                    id,
                    text,
                })
                .collect(),
            text: &d.page.text,
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "documents": documents })).unwrap_or_default()
}
