//! `spin build` for `mcp-edge`: runs each component's `[component.X.build]` command in its
//! working directory when the component is stale (its `source` or a directory it mounts is
//! missing, it has no `watch` patterns, or a watched file is newer than the oldest of them:
//! a build command may make the files it mounts, as the docs component's makes its site).
//! Commands find this runtime's own executable in `MCP_EDGE`.

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
    let mut outputs = vec![base.join(&component.source)];
    outputs.extend(
        component
            .files
            .iter()
            .map(|mount| base.join(mount.source_dir())),
    );
    let mut built = None;
    for output in &outputs {
        let Some(at) = modified(output) else {
            return Ok(true);
        };
        built = Some(built.map_or(at, |b: SystemTime| b.min(at)));
    }
    let Some(built) = built else {
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

/// The `--target` a build command compiles for, if it names one.
fn target_of(command: &str) -> Option<&str> {
    let mut words = command.split_whitespace();
    while let Some(word) = words.next() {
        if word == "--target" {
            return words.next();
        }
        if let Some(target) = word.strip_prefix("--target=") {
            return Some(target);
        }
    }
    None
}

/// Builds stale components; returns how many were built. A Rust target a build command
/// needs is installed first (with rustup), or the build stops with one line saying what to run.
pub fn build(manifest: &Manifest, base: &Path) -> Result<usize> {
    let machine = mcp_edge_provision::Machine::current();
    let mut ready: Vec<String> = Vec::new();
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
        if let Some(target) = target_of(&decl.command)
            && !ready.iter().any(|t| t == target)
        {
            machine
                .rust_target(target)
                .ready()
                .map_err(anyhow::Error::msg)?;
            ready.push(target.to_owned());
        }
        tracing::info!(component = %id, command = %decl.command, "building");
        let mut command = Command::new("sh");
        if let Ok(exe) = std::env::current_exe() {
            command.env("MCP_EDGE", exe);
        }
        let status = command
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

#[cfg(test)]
mod tests {
    use super::target_of;

    #[test]
    fn the_target_is_read_off_the_build_command() {
        assert_eq!(
            target_of("cargo build --target wasm32-wasip2 --release -p x"),
            Some("wasm32-wasip2")
        );
        assert_eq!(
            target_of("cargo build --target=wasm32-wasip2"),
            Some("wasm32-wasip2")
        );
        assert_eq!(target_of("make component"), None);
    }
}
