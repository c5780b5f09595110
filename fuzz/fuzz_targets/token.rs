#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mcp_edge_domain::fuzzing::token_verification(data);
});
