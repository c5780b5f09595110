//! The process's memory allocator: mimalloc, tuned to give memory back promptly.
//!
//! Measured in docs/performance.md ("Threads and the allocator"): a request allocates and
//! frees many small objects on the host side (`wasi:http` resources, headers, futures), and
//! glibc's malloc took about a tenth of the server's time; mimalloc serves them from
//! per-thread free lists. Two settings keep its footprint near glibc's: no transparent huge
//! pages (the crate's `no_thp` feature: eagerly committed arenas backed by 2 MiB pages left
//! the compiler's freed heap resident after a first start, about 150 MiB), and freed pages
//! returned at once rather than after a delay.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h), which the -sys crate
/// does not name.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed pages to the kernel at once, unless `MIMALLOC_PURGE_DELAY` says otherwise
/// (mimalloc has read it already).
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc's options are integers it reads atomically; setting one has no
        // other precondition.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
}
