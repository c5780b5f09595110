#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mcp_edge_domain::fuzzing::api_request(data);
});
