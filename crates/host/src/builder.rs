//! `spin build` for `mcp-edge`: runs each component's `[component.X.build]` command in its
//! working directory when the component is stale (its `source` is missing, it has no
//! `watch` patterns, or a watched file is newer than the source).

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::manifest::{ComponentDecl, Manifest};

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn is_stale(
    base: &Path,
    component: &ComponentDecl,
    workdir: &Path,
    watch: &[String],
) -> Result<bool> {
    let Some(built) = modified(&base.join(&component.source)) else {
        return Ok(true);
    };
    if watch.is_empty() {
        return Ok(true);
    }
    for pattern in watch {
        let full = workdir.join(pattern);
        let full = full.to_str().context("watch pattern is not valid UTF-8")?;
        for entry in glob::glob(full).with_context(|| format!("bad watch pattern {pattern:?}"))? {
            if entry
                .ok()
                .and_then(|p| modified(&p))
                .is_some_and(|m| m > built)
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Builds stale components; returns how many were built.
pub fn build(manifest: &Manifest, base: &Path) -> Result<usize> {
    let mut built = 0;
    for (id, component) in &manifest.component {
        let Some(decl) = &component.build else {
            continue;
        };
        let workdir = base.join(decl.workdir.as_deref().unwrap_or("."));
        if !is_stale(base, component, &workdir, &decl.watch)? {
            tracing::info!(component = %id, "up to date");
            continue;
        }
        tracing::info!(component = %id, command = %decl.command, "building");
        let status = Command::new("sh")
            .arg("-c")
            .arg(&decl.command)
            .current_dir(&workdir)
            .status()
            .with_context(|| format!("cannot run the build command of component {id}"))?;
        if !status.success() {
            bail!(
                "building component {id} failed ({status}): {}",
                decl.command
            );
        }
        if !base.join(&component.source).is_file() {
            bail!(
                "component {id} built, but its source {} does not exist",
                component.source
            );
        }
        built += 1;
    }
    Ok(built)
}
