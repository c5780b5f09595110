//! Test-only: a probe of instance reuse. Every request adds one to a counter that lives in
//! the instance's memory and first writes an audit record naming the instance (a random id
//! drawn on its first request), the count and the path, then answers `{instance} {count}`.
//! Its paths fail on demand, as a buggy component would: `/trap` panics; `/spin` loops
//! forever; `/hog` allocates without bound; `/silent` returns without a response;
//! `/unfinished` drops its body half written. `/grow` touches 24 MiB, frees it and answers.
//! Any other path answers.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

static CALLS: AtomicU64 = AtomicU64::new(0);
static INSTANCE: OnceLock<String> = OnceLock::new();

struct InstanceProbe;

fn answer(out: ResponseOutparam, text: &str, finish: bool) {
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("the body, once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the stream, once");
    stream
        .blocking_write_and_flush(text.as_bytes())
        .expect("write the body");
    drop(stream);
    if finish {
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

impl wasi::exports::http::incoming_handler::Guest for InstanceProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let instance =
            INSTANCE.get_or_init(|| format!("{:016x}", wasi::random::random::get_random_u64()));
        let path = request.path_with_query().unwrap_or_default();
        println!(
            r#"{{"audit":"probe.call","instance":"{instance}","calls":{calls},"path":"{path}"}}"#
        );
        let reply = format!("{instance} {calls}");
        match path.split('?').next().unwrap_or_default() {
            "/trap" => panic!("the probe traps on request"),
            "/spin" => loop {
                std::hint::black_box(calls);
            },
            "/hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "/silent" => drop(out),
            "/unfinished" => answer(out, &reply, false),
            "/grow" => {
                let big = std::hint::black_box(vec![1u8; 24 << 20]);
                drop(big);
                answer(out, &reply, true);
            }
            _ => answer(out, &reply, true),
        }
    }
}

wasi::http::proxy::export!(InstanceProbe);
