//! The built docs site the host mounts, read through `wasi:filesystem` directly: a file is
//! opened and read in one call each. `std::fs::read` went through wasi-libc, which adds a
//! `stat`, a stream per read and a read past the end, for every file of every docs request.

use mcp_edge_domain::docs::SiteFiles;
use wasi::filesystem::preopens::get_directories;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

/// Bytes asked for by the first read: most route records and pages fit. The host allocates
/// and zeroes what is asked for whatever the file holds, so a read asks little first and
/// twice as much each time it came back full.
const FIRST_READ: u64 = 8 * 1024;
/// The most one read asks for.
const LARGEST_READ: u64 = 1024 * 1024;

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
        let (mut contents, mut end) = file.read(FIRST_READ, 0).ok()?;
        let mut asked = FIRST_READ;
        // A regular file reads short only at its end.
        let mut full = contents.len() as u64 == asked;
        while full && !end {
            asked = (asked * 2).min(LARGEST_READ);
            let (chunk, at_end) = file.read(asked, contents.len() as u64).ok()?;
            (full, end) = (chunk.len() as u64 == asked, at_end);
            contents.extend_from_slice(&chunk);
        }
        Some(contents)
    }
}
