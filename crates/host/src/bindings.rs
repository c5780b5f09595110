//! Host-side bindings for the non-HTTP interfaces the components import
//! (`wasi:keyvalue@0.2.0-draft2`, `wasi:config@0.2.0-draft-2024-09-27`), generated from the
//! same `wit/` the guests use.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "mcp-edge:api/guest-imports",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": crate::kv::wasi::BucketHandle,
        "wasi:keyvalue/atomics.cas": crate::kv::wasi::CasHandle,
    },
});

/// The cron handler of Spin's `trigger-cron` plugin, which scheduled components export.
pub mod cron {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron@2.0.0",
        exports: { default: async },
    });
}
