#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mcp_edge_domain::fuzzing::users_config(data);
});
