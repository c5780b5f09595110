//! The built docs site the host mounts, read through `wasi:filesystem` directly: a file is
//! opened and read in one call each. `std::fs::read` went through wasi-libc, which adds a
//! `stat`, a stream per read and a read past the end, for every file of every docs request.

use mcp_edge_domain::docs::SiteFiles;
use wasi::filesystem::preopens::get_directories;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

/// Bytes asked for per read: a whole page in one call (the host allocates what is asked).
const CHUNK: u64 = 64 * 1024;

/// The site at the preopened directory `name` (the host mounts it at `/`).
pub struct PreopenedSite {
    root: Option<Descriptor>,
}

impl PreopenedSite {
    pub fn at(name: &str) -> Self {
        let root = get_directories()
            .into_iter()
            .find_map(|(dir, mounted)| (mounted == name).then_some(dir));
        Self { root }
    }
}

#[async_trait::async_trait(?Send)]
impl SiteFiles for PreopenedSite {
    async fn read(&self, path: &str) -> Option<Vec<u8>> {
        let file = self
            .root
            .as_ref()?
            .open_at(
                PathFlags::SYMLINK_FOLLOW,
                path,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .ok()?;
        let mut contents = Vec::new();
        loop {
            let (chunk, end) = file.read(CHUNK, contents.len() as u64).ok()?;
            let short = (chunk.len() as u64) < CHUNK;
            contents.extend_from_slice(&chunk);
            // A regular file reads short only at its end.
            if end || short {
                return Some(contents);
            }
        }
    }
}
