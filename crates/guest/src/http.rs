//! `wasi:http` incoming requests to domain [`Request`]s and domain [`Response`]s back out.

use std::io::{Read, Write};

use mcp_edge_domain::ApiError;
use mcp_edge_domain::http::{Request, Response, body_too_large, respond};
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Largest request body a component reads (the host usually refuses larger ones first).
const MAX_BODY_BYTES: u64 = mcp_edge_domain::http::MAX_BODY_BYTES as u64;

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.to_ascii_uppercase(),
    }
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let unreadable = || ApiError::bad_request("unreadable_body", "request body could not be read");
    let body = request.consume().map_err(|()| unreadable())?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| unreadable())?;
        let read = stream.take(MAX_BODY_BYTES + 1).read_to_end(&mut bytes);
        read.map_err(|_| unreadable())?;
    }
    if bytes.len() as u64 > MAX_BODY_BYTES {
        return Err(body_too_large(MAX_BODY_BYTES as usize));
    }
    Ok(bytes)
}

/// Converts the incoming request. The path is Spin's `spin-path-info` (the part after the
/// matched route's prefix) when the host sets it, as both Spin and `mcp-edge` do.
fn convert(request: &IncomingRequest) -> Result<Request, ApiError> {
    let mut headers: Vec<(String, Vec<u8>)> = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    // HTTP/1.1's Host travels as the request's authority in `wasi:http`; keep it a header.
    if !headers.iter().any(|(n, _)| n == "host")
        && let Some(authority) = request.authority()
    {
        headers.push(("host".into(), authority.into_bytes()));
    }
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
    let (full_path, query) = match path_with_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_with_query, None),
    };
    let path_info = headers
        .iter()
        .find(|(n, _)| n == "spin-path-info")
        .and_then(|(_, v)| String::from_utf8(v.clone()).ok());
    Ok(Request {
        method: method_name(&request.method()),
        path: path_info.unwrap_or(full_path),
        query,
        headers,
        body: read_body(request)?,
    })
}

fn send(out: ResponseOutparam, resp: Response) {
    let entries: Vec<(String, Vec<u8>)> = resp
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
        .collect();
    let (fields, status, body) = match Fields::from_list(&entries) {
        Ok(fields) => (fields, resp.status, resp.body),
        Err(_) => {
            let err = Response::from(ApiError::new(
                500,
                "invalid_response_header",
                "a response header was invalid",
            ));
            let fields = Fields::new();
            let _ = fields.append("content-type", b"application/json");
            (fields, err.status, err.body)
        }
    };
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        // A client that went away is not an error worth reporting from inside the guest.
        let _ = stream
            .write_all(&body)
            .and_then(|()| Write::flush(&mut stream));
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Serves one request: convert, run `handler`, write its response. Body-reading failures
/// are answered with the JSON error without calling the handler.
pub fn serve(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> Response,
) {
    let resp = match convert(&request) {
        Ok(req) => handler(req),
        Err(err) => respond(Err(err)),
    };
    drop(request);
    send(out, resp);
}
