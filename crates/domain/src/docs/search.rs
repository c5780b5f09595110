//! Search, built with the site. Three files:
//! - `search-index.json`: per page its version, URL, title, description, headings and words,
//!   for any client (`/docs/search-index.json`);
//! - [`CATALOG_FILE`]: every page's version, path, title, description, source file and ETag,
//!   one JSON line per page in reading order (a reader parses only the lines it needs), which
//!   the MCP endpoint lists and ranks search results by;
//! - [`POSTINGS_FILE`]: the BM25 index, as postings per term. The `bm25` crate tokenizes
//!   (stop words, stemming) and weighs each term of a page; the file keeps those weights so
//!   that a query reads only the postings of its own terms, never the pages.

use std::collections::BTreeMap;

use bm25::{Embedder, EmbedderBuilder, Language};
use serde::{Deserialize, Serialize};

use super::render::Page;

/// Where the public index lies in the site.
pub const INDEX_FILE: &str = "search-index.json";
/// The page catalog (no URL reaches it, as with route records).
pub const CATALOG_FILE: &str = "_search/catalog.jsonl";
/// The BM25 postings.
pub const POSTINGS_FILE: &str = "_search/postings.bin";

const MAGIC: &[u8; 4] = b"MEB1";

/// One page, as the index needs it.
pub struct Document<'a> {
    pub version: &'a str,
    /// The URL under the docs root, version first (`v1/guide/install`, `v1/`).
    pub url: String,
    /// The Markdown source file under the docs root.
    pub source: &'a str,
    pub etag: String,
    pub size: usize,
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
    url: &'a str,
    title: &'a str,
    description: Option<&'a str>,
    headings: Vec<Heading<'a>>,
    text: &'a str,
}

/// A page in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub version: String,
    /// The path within the version (`guide/install`, `guide/`, `""` for its index).
    pub path: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub source: String,
    pub etag: String,
    pub size: usize,
}

impl Entry {
    /// The page's resource URI: `docs://v1/guide/install`.
    pub fn uri(&self) -> String {
        format!("docs://{}/{}", self.version, self.path)
    }
}

/// The catalog file, read in place: entry `i` is page `i` of the postings.
pub struct Catalog<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Catalog<'a> {
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        Some(Self {
            lines: text.lines().collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<Entry> {
        serde_json::from_str(self.lines.get(i)?).ok()
    }
}

/// What the build writes: the public index, the catalog and the postings.
pub struct Built {
    pub index: Vec<u8>,
    pub catalog: Vec<u8>,
    pub postings: Vec<u8>,
}

fn embedder(avgdl: f32) -> Embedder<u32> {
    EmbedderBuilder::<u32>::with_avgdl(avgdl)
        .language_mode(Language::English)
        .build()
}

/// The text a page is found by: its title and headings count more than its body.
fn searchable(page: &Page) -> String {
    let mut text = String::new();
    for _ in 0..3 {
        text.push_str(&page.title);
        text.push('\n');
    }
    for (_, _, heading) in &page.headings {
        text.push_str(heading);
        text.push('\n');
        text.push_str(heading);
        text.push('\n');
    }
    if let Some(d) = &page.front.description {
        text.push_str(d);
        text.push('\n');
    }
    text.push_str(&page.text);
    text
}

/// Builds the three files from the site's pages, in reading order.
pub fn build<'a>(documents: impl IntoIterator<Item = Document<'a>>) -> Built {
    let documents: Vec<Document<'a>> = documents.into_iter().collect();
    let indexed: Vec<Indexed<'_>> = documents
        .iter()
        .filter(|d| !d.page.front.search_exclude)
        .map(|d| Indexed {
            version: d.version,
            url: &d.url,
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
    let index =
        serde_json::to_vec(&serde_json::json!({ "documents": indexed })).unwrap_or_default();

    let catalog: Vec<Entry> = documents
        .iter()
        .map(|d| Entry {
            version: d.version.to_owned(),
            path: d.url[d.version.len() + 1..].to_owned(),
            title: d.page.title.clone(),
            description: d.page.front.description.clone(),
            source: d.source.to_owned(),
            etag: d.etag.clone(),
            size: d.size,
        })
        .collect();
    let mut lines = Vec::new();
    for entry in &catalog {
        if let Ok(line) = serde_json::to_vec(entry) {
            lines.extend_from_slice(&line);
            lines.push(b'\n');
        }
    }
    let catalog = lines;

    // Postings name a page by its line in the catalog, which lists every page; pages left
    // out of search have none, and count in neither the page count nor the average length.
    let texts: Vec<(usize, String)> = documents
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.page.front.search_exclude)
        .map(|(doc, d)| (doc, searchable(d.page)))
        .collect();
    let fitted = EmbedderBuilder::<u32>::with_fit_to_corpus(
        Language::English,
        &texts.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
    )
    .build();
    let avgdl = fitted.avgdl();
    let embedder = embedder(avgdl);
    let mut terms: BTreeMap<u32, Vec<(u32, f32)>> = BTreeMap::new();
    for (doc, text) in &texts {
        let doc = *doc;
        let mut seen = BTreeMap::new();
        for t in embedder.embed(text).iter() {
            seen.entry(t.index).or_insert(t.value);
        }
        for (term, weight) in seen {
            terms.entry(term).or_default().push((doc as u32, weight));
        }
    }
    Built {
        index,
        catalog,
        postings: encode(texts.len() as u32, avgdl, &terms),
    }
}

fn encode(docs: u32, avgdl: f32, terms: &BTreeMap<u32, Vec<(u32, f32)>>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&docs.to_le_bytes());
    out.extend_from_slice(&avgdl.to_le_bytes());
    out.extend_from_slice(&(terms.len() as u32).to_le_bytes());
    let mut start = 0u32;
    for (term, postings) in terms {
        out.extend_from_slice(&term.to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&(postings.len() as u32).to_le_bytes());
        start += postings.len() as u32;
    }
    for postings in terms.values() {
        for (doc, weight) in postings {
            out.extend_from_slice(&doc.to_le_bytes());
            out.extend_from_slice(&weight.to_le_bytes());
        }
    }
    out
}

/// The postings file, read in place.
pub struct Postings<'a> {
    docs: u32,
    avgdl: f32,
    terms: &'a [u8],
    postings: &'a [u8],
}

fn word(bytes: &[u8], at: usize) -> Option<[u8; 4]> {
    bytes.get(at..at + 4)?.try_into().ok()
}

impl<'a> Postings<'a> {
    /// `None` when the bytes are not a postings file of this format.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.get(..4)? != MAGIC {
            return None;
        }
        let docs = u32::from_le_bytes(word(bytes, 4)?);
        let avgdl = f32::from_le_bytes(word(bytes, 8)?);
        let count = u32::from_le_bytes(word(bytes, 12)?) as usize;
        let terms_end = 16usize.checked_add(count.checked_mul(12)?)?;
        Some(Self {
            docs,
            avgdl,
            terms: bytes.get(16..terms_end)?,
            postings: bytes.get(terms_end..)?,
        })
    }

    fn term(&self, at: usize) -> Option<(u32, usize, usize)> {
        let base = at * 12;
        Some((
            u32::from_le_bytes(word(self.terms, base)?),
            u32::from_le_bytes(word(self.terms, base + 4)?) as usize,
            u32::from_le_bytes(word(self.terms, base + 8)?) as usize,
        ))
    }

    /// `(doc, weight)` of every page holding `term`.
    fn postings_of(&self, term: u32) -> Vec<(u32, f32)> {
        let (mut lo, mut hi) = (0, self.terms.len() / 12);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let Some((t, start, len)) = self.term(mid) else {
                return Vec::new();
            };
            match t.cmp(&term) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return (start..start + len)
                        .filter_map(|i| {
                            let doc = u32::from_le_bytes(word(self.postings, i * 8)?);
                            let w = f32::from_le_bytes(word(self.postings, i * 8 + 4)?);
                            Some((doc, w))
                        })
                        .collect();
                }
            }
        }
        Vec::new()
    }

    /// Pages matching `query`, best first, as `(doc, score)`: BM25, with the query tokenized
    /// and weighed by the same embedder as the pages were.
    pub fn search(&self, query: &str) -> Vec<(usize, f32)> {
        let query = embedder(self.avgdl).embed(query);
        let mut scores: BTreeMap<u32, f32> = BTreeMap::new();
        for token in query.iter() {
            let postings = self.postings_of(token.index);
            let df = postings.len() as f32;
            let idf = (1.0 + (self.docs as f32 - df + 0.5) / (df + 0.5)).ln();
            for (doc, weight) in postings {
                *scores.entry(doc).or_default() += idf * weight;
            }
        }
        let mut ranked: Vec<(usize, f32)> = scores
            .into_iter()
            .map(|(doc, score)| (doc as usize, score))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
    }
}

/// A short passage of `text` around the first word of `query` it holds (else its start).
pub fn snippet(text: &str, query: &str, max_chars: usize) -> String {
    let lower = text.to_lowercase();
    let at = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .filter_map(|w| lower.find(&w.to_lowercase()))
        .min()
        .unwrap_or(0)
        .min(text.len());
    // Back up to a word boundary a little before the match, on a char boundary.
    let mut start = at.saturating_sub(max_chars / 3);
    while start > 0 && !text.is_char_boundary(start) {
        start -= 1;
    }
    if let Some(space) = text[..start].rfind(char::is_whitespace) {
        start = if at - space < max_chars / 2 {
            space + 1
        } else {
            start
        };
    }
    let passage: String = text[start..].chars().take(max_chars).collect();
    let passage = passage.split_whitespace().collect::<Vec<_>>().join(" ");
    if start > 0 {
        format!("…{passage}")
    } else {
        passage
    }
}
