//! Test-only: answers 200 with the request as the component saw it, one `name: value` line
//! each: the method, the path with query, the authority, then every `spin-*` header, sorted.

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct EchoRequest;

impl wasi::exports::http::incoming_handler::Guest for EchoRequest {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = match request.method() {
            Method::Get => "GET".to_owned(),
            Method::Post => "POST".to_owned(),
            other => format!("{other:?}"),
        };
        let mut lines = vec![
            format!("method: {method}"),
            format!("path: {}", request.path_with_query().unwrap_or_default()),
            format!("authority: {}", request.authority().unwrap_or_default()),
        ];
        let mut spin: Vec<String> = request
            .headers()
            .entries()
            .into_iter()
            .filter(|(name, _)| name.starts_with("spin-"))
            .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(&value)))
            .collect();
        spin.sort();
        lines.extend(spin);
        let body_text = lines.join("\n") + "\n";

        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("the body, once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("the stream, once");
        stream
            .blocking_write_and_flush(body_text.as_bytes())
            .expect("write the body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasi::http::proxy::export!(EchoRequest);
