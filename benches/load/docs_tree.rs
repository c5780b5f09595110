//! A large documentation tree for the docs scenarios: the repository's own `static/docs` plus
//! a generated version `v2` of 1 000 pages in 20 sections (front matter, headings, a code
//! block, links written without `.md` as other docs engines write them). Its sidebar is over
//! the size at which sections fold, so a page carries the navigation of a real big tree.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub const SECTIONS: usize = 20;
pub const PAGES_PER_SECTION: usize = 50;

/// The URL of one generated page.
pub fn page_url(section: usize, page: usize) -> String {
    format!("/docs/v2/section-{section:02}/page-{page:02}")
}

/// The generated source tree, and the site built from it for the native baseline.
pub struct Tree {
    pub source: PathBuf,
    pub site: PathBuf,
    pub pages: usize,
    /// How long the domain's site build took (the host's, which `mcp-edge up --docs` runs).
    pub build_time: Duration,
    _dir: tempfile::TempDir,
}

pub fn generate(root: &Path) -> Result<Tree> {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("docs");
    copy_dir(&root.join("static/docs"), &source)?;
    let version = source.join("v2");
    std::fs::create_dir_all(&version)?;
    std::fs::write(
        version.join("index.md"),
        "---\ntitle: Generated\nweight: 1\n---\n\n# Generated tree\n\nSee [the first page](section-00/page-00).\n",
    )?;
    for section in 0..SECTIONS {
        let folder = version.join(format!("section-{section:02}"));
        std::fs::create_dir_all(&folder)?;
        std::fs::write(
            folder.join("index.md"),
            format!(
                "+++\ntitle = \"Section {section}\"\nweight = {section}\n+++\n\nPages of section {section}.\n"
            ),
        )?;
        for page in 0..PAGES_PER_SECTION {
            std::fs::write(
                folder.join(format!("page-{page:02}.md")),
                page_text(section, page),
            )?;
        }
    }
    let site = dir.path().join("site");
    let started = Instant::now();
    let built = mcp_edge_host::docs_site::build(&source, &site, "http://127.0.0.1/docs/")?;
    Ok(Tree {
        source,
        site,
        pages: built.pages,
        build_time: started.elapsed(),
        _dir: dir,
    })
}

fn page_text(section: usize, page: usize) -> String {
    let next = (page + 1) % PAGES_PER_SECTION;
    let other = (section + 1) % SECTIONS;
    let mut text = format!(
        "---\ntitle: \"Page {section}.{page}\"\ndescription: A generated page\nweight: {page}\n---\n\n\
         # Page {section}.{page}\n\nOn to [the next page](page-{next:02}#usage) or to \
         [another section](../section-{other:02}/page-{page:02}).\n"
    );
    for part in ["Usage", "Options", "Examples", "Troubleshooting"] {
        text.push_str(&format!(
            "\n## {part}\n\nSome *prose* about {part} with `inline code` and a [link](#usage).\n\n\
             ```toml\n# a comment, not a heading\nkey = \"value {section}-{page}\"\n```\n\n\
             ### {part} in detail\n\n- one\n- two\n- three\n"
        ));
    }
    text
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
