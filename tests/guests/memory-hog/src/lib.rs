//! Test-only: allocates without bound, so the host's memory cap must stop it.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct MemoryHog;

impl wasi::exports::http::incoming_handler::Guest for MemoryHog {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

wasi::http::proxy::export!(MemoryHog);
