//! Test-only: never returns, so the host's deadline must end the request.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct SpinForever;

impl wasi::exports::http::incoming_handler::Guest for SpinForever {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

wasi::http::proxy::export!(SpinForever);
