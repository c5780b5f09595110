//! The docs site, built natively (`mcp-edge docs build`, and `up`/`build --docs DIR`): the
//! domain's site build over a directory, written where the docs component mounts it, with
//! what `docs check` finds logged as warnings.

use std::path::Path;

use anyhow::{Context, Result, bail};
use mcp_edge_domain::docs::{FsDocs, site};

/// What a build did.
#[derive(Debug)]
pub struct Built {
    pub pages: usize,
    pub files: usize,
    pub written: site::Written,
    pub findings: usize,
}

/// Builds the site of the docs tree `source` into `out`. `base_url` is where it will be
/// served (absolute, for `sitemap.xml`).
pub fn build(source: &Path, out: &Path, base_url: &str) -> Result<Built> {
    if !source.is_dir() {
        bail!("docs tree {}: not a directory", source.display());
    }
    let base_url = if base_url.ends_with('/') {
        base_url.to_owned()
    } else {
        format!("{base_url}/")
    };
    let started = std::time::Instant::now();
    let built = site::build(&FsDocs::at(source), &site::Options { base_url });
    for finding in &built.findings {
        tracing::warn!("{}/{finding}", source.display());
    }
    let written = built
        .write_to(out)
        .with_context(|| format!("cannot write the docs site to {}", out.display()))?;
    // The site's folder is what `build` compares with the sources it was made from (for
    // every component that mounts it), so it is stamped even when nothing in it changed.
    std::fs::File::open(out)
        .and_then(|dir| dir.set_modified(std::time::SystemTime::now()))
        .with_context(|| format!("cannot touch {}", out.display()))?;
    tracing::info!(
        source = %source.display(),
        site = %out.display(),
        pages = built.pages,
        written = written.written,
        removed = written.removed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "docs site built"
    );
    Ok(Built {
        pages: built.pages,
        files: built.files.len(),
        written,
        findings: built.findings.len(),
    })
}
