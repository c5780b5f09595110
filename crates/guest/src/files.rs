//! Docs files through `wasi:filesystem`: the host mounts the docs tree (spin.toml `files`)
//! read-only at the guest's `/`, and its sandbox refuses anything outside the mount.

use std::fs;
use std::path::PathBuf;

use mcp_edge_domain::docs::{DocsSource, Entry};

pub struct MountedDocs {
    root: PathBuf,
}

impl MountedDocs {
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl DocsSource for MountedDocs {
    fn entry(&self, path: &str) -> Entry {
        let full = self.root.join(path);
        match fs::metadata(&full) {
            Ok(meta) if meta.is_dir() => Entry::Dir,
            Ok(meta) if meta.is_file() => {
                fs::read(&full).map(Entry::File).unwrap_or(Entry::Missing)
            }
            _ => Entry::Missing,
        }
    }

    fn list(&self, path: &str) -> Vec<String> {
        fs::read_dir(self.root.join(path))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}
