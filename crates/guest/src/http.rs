//! `wasi:http` incoming requests to domain [`Request`]s and domain [`Response`]s back out.

use std::io::Write;

use mcp_edge_domain::ApiError;
use mcp_edge_domain::http::{Request, Response, body_too_large, respond};
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;

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

/// Most bytes `blocking-write-and-flush` takes (WASI 0.2); a larger body is written in one
/// `write` (the host takes up to a megabyte at once).
pub(crate) const MOST_PER_FLUSHED_WRITE: usize = 4096;

/// Most bytes asked of the body stream at once (the host answers with what it has).
const READ_CHUNK: u64 = 64 * 1024;

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let unreadable = || ApiError::bad_request("unreadable_body", "request body could not be read");
    let body = request.consume().map_err(|()| unreadable())?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| unreadable())?;
        // One host call per chunk the host holds (std's `read_to_end` adds probe reads).
        while bytes.len() as u64 <= MAX_BODY_BYTES {
            let want = (MAX_BODY_BYTES + 1 - bytes.len() as u64).min(READ_CHUNK);
            match stream.blocking_read(want) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => return Err(unreadable()),
            }
        }
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
        .map(|(mut name, value)| {
            name.make_ascii_lowercase();
            (name, value)
        })
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
    let method = method_name(&request.method());
    // A GET or HEAD request's content has no meaning (RFC 9110, 9.3.1-2) and no endpoint
    // reads one: leaving it unread saves five host calls on the commonest requests.
    let body = match method.as_str() {
        "GET" | "HEAD" => Vec::new(),
        _ => read_body(request)?,
    };
    Ok(Request {
        method,
        path: path_info.unwrap_or(full_path),
        query,
        headers,
        body,
    })
}

fn send(out: ResponseOutparam, resp: Response) {
    let Response {
        status,
        headers,
        body,
    } = resp;
    let entries: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .map(|(n, v)| (n, v.into_bytes()))
        .collect();
    let (fields, status, body) = match Fields::from_list(&entries) {
        Ok(fields) => (fields, status, body),
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
    // A new response's status is 200 (WASI 0.2): one host call fewer on most answers.
    if status != 200 {
        let _ = response.set_status_code(status);
    }
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        // A client that went away is not an error worth reporting from inside the guest.
        if body.len() <= MOST_PER_FLUSHED_WRITE {
            // One host call instead of `check-write`, `write` and `flush`.
            if !body.is_empty() {
                let _ = stream.blocking_write_and_flush(&body);
            }
        } else {
            let _ = stream
                .write_all(&body)
                .and_then(|()| Write::flush(&mut stream));
        }
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
