//! The Streamable HTTP transport, statelessly: one JSON-RPC message per POST, answered with
//! one JSON object. What is checked here comes before any method runs: the HTTP method, the
//! `Host` and `Origin` (DNS rebinding), the body's shape, the protocol version and, for
//! 2026-07-28, the `MCP-Protocol-Version` / `Mcp-Method` / `Mcp-Name` headers against the body.

use jwt_simple::reexports::ct_codecs::{Base64, Decoder};
use rust_mcp_schema::{
    HEADER_MISMATCH, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY, PARSE_ERROR, RequestMetaObject, RpcError,
    UNSUPPORTED_PROTOCOL_VERSION,
};
use serde_json::{Map, Value, json};

use crate::http::{Request, Response};

/// The revision this server speaks natively: stateless, with `_meta` on every request.
pub const LATEST: &str = rust_mcp_schema::LATEST_PROTOCOL_VERSION;
/// Earlier revisions still served, with their `initialize` handshake (no session is kept).
pub const LEGACY: [&str; 2] = ["2025-11-25", "2025-06-18"];

pub fn supported_versions() -> Vec<String> {
    std::iter::once(LATEST)
        .chain(LEGACY)
        .map(str::to_owned)
        .collect()
}

/// How a request speaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Era {
    /// 2026-07-28: per-request `_meta`, `server/discover`, `resultType`, cache hints.
    Stateless,
    /// 2025-11-25 or 2025-06-18 (the version named), after an `initialize`.
    Legacy(String),
}

/// A JSON-RPC error, with the HTTP status it is sent with.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub error: RpcError,
    /// `WWW-Authenticate` for a 401.
    pub challenge: Option<String>,
}

impl Failure {
    fn new(status: u16, code: i64, message: impl Into<String>, data: Option<Value>) -> Self {
        Self {
            status,
            error: RpcError {
                code,
                message: message.into(),
                data,
            },
            challenge: None,
        }
    }

    pub fn parse_error(message: impl Into<String>) -> Self {
        Self::new(400, PARSE_ERROR, message, None)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, INVALID_REQUEST, message, None)
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            404,
            METHOD_NOT_FOUND,
            format!("method not found: {method}"),
            None,
        )
    }

    /// Malformed parameters of the request itself (HTTP 400).
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(400, INVALID_PARAMS, message, None)
    }

    /// Well-formed, but naming what is not there: an unknown tool, a bad cursor. The request
    /// reached its method, so the transport answers 200.
    pub fn not_found(message: impl Into<String>, data: Option<Value>) -> Self {
        Self::new(200, INVALID_PARAMS, message, data)
    }

    pub fn resource_not_found(uri: &str) -> Self {
        Self::not_found(
            format!("resource not found: {uri}"),
            Some(json!({ "uri": uri })),
        )
    }

    pub fn header_mismatch(message: impl Into<String>) -> Self {
        Self::new(400, HEADER_MISMATCH, message, None)
    }

    pub fn unsupported_version(requested: &str) -> Self {
        Self::new(
            400,
            UNSUPPORTED_PROTOCOL_VERSION,
            format!("unsupported protocol version: {requested}"),
            Some(json!({ "supported": supported_versions(), "requested": requested })),
        )
    }

    /// The request needs a client capability its `_meta` did not declare.
    pub fn missing_capability(capability: &str) -> Self {
        Self::new(
            400,
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            format!("this request needs the client capability `{capability}`"),
            Some(json!({ "requiredCapabilities": { capability: {} } })),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(200, INTERNAL_ERROR, message, None)
    }

    /// No valid credential for what was asked: the whole HTTP request is refused, as the
    /// MCP authorization spec has resource servers do.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut f = Self::new(401, INVALID_REQUEST, message, None);
        f.challenge = Some(r#"Bearer realm="mcp-edge""#.to_owned());
        f
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        let mut f = Self::new(403, INVALID_REQUEST, message, None);
        f.challenge = Some(r#"Bearer realm="mcp-edge", error="insufficient_scope""#.to_owned());
        f
    }
}

/// One parsed JSON-RPC message from the client.
#[derive(Debug)]
pub struct Message {
    /// `None` for a notification.
    pub id: Option<Value>,
    pub method: String,
    pub params: Map<String, Value>,
}

/// The JSON-RPC id of a body, when it can be found, for the error that answers it.
pub fn id_of(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Map<String, Value>>(body)
        .ok()?
        .remove("id")
        .filter(|id| id.is_string() || id.is_number())
}

/// Parses the POST body: a single request or notification (no batches, no responses).
pub fn parse(body: &[u8]) -> Result<Message, Failure> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::parse_error(format!("the body is not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(Failure::invalid_request(
            "the body must be one JSON-RPC request or notification (batches are not accepted)",
        ));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Failure::invalid_request("jsonrpc must be \"2.0\""));
    }
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
        Some(_) => return Err(Failure::invalid_request("id must be a string or a number")),
    };
    let Some(Value::String(method)) = obj.remove("method") else {
        return Err(Failure::invalid_request(
            "a request needs a method (clients send no responses here)",
        ));
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => return Err(Failure::invalid_params("params must be an object")),
    };
    Ok(Message { id, method, params })
}

/// `Host` and `Origin` must both name an allowed host (DNS-rebinding protection). Loopback
/// names are always allowed; `*` allows any `Host`, and then an `Origin` must name the same
/// host as `Host` does.
pub fn check_origin(req: &Request, allowed: &[String]) -> Result<(), Failure> {
    let any = allowed.iter().any(|h| h == "*");
    let permitted = |host: &str| {
        let host = host.to_ascii_lowercase();
        is_loopback(&host) || allowed.iter().any(|a| a.eq_ignore_ascii_case(&host))
    };
    let host = req.header("host").map(hostname);
    if let Some(host) = host
        && !any
        && !permitted(host)
    {
        return Err(Failure {
            status: 403,
            ..Failure::invalid_request(format!("host {host} is not allowed"))
        });
    }
    if let Some(origin) = req.header("origin") {
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| hostname(rest.split('/').next().unwrap_or("")))
            .unwrap_or("");
        let same_as_host = any && host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host));
        if origin == "null" || !(permitted(origin_host) || same_as_host) {
            return Err(Failure {
                status: 403,
                ..Failure::invalid_request(format!("origin {origin} is not allowed"))
            });
        }
    }
    Ok(())
}

/// The host name of an authority (`host:port`, `[v6]:port`).
fn hostname(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The era of a request, from its `MCP-Protocol-Version` header and its body.
pub fn era(req: &Request, message: &Message) -> Result<Era, Failure> {
    let header = req.header("mcp-protocol-version").map(str::trim);
    let meta_version = message
        .params
        .get("_meta")
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .and_then(Value::as_str);
    match header {
        // A legacy client's first message predates version negotiation.
        None if message.method == "initialize" => Ok(Era::Legacy(LEGACY[0].to_owned())),
        None => Err(Failure::header_mismatch(
            "the MCP-Protocol-Version header is required",
        )),
        Some(v) => {
            if let Some(meta) = meta_version
                && meta != v
            {
                return Err(Failure::header_mismatch(format!(
                    "MCP-Protocol-Version header {v} does not match _meta protocolVersion {meta}"
                )));
            }
            if v == LATEST {
                Ok(Era::Stateless)
            } else if LEGACY.contains(&v) {
                Ok(Era::Legacy(v.to_owned()))
            } else {
                Err(Failure::unsupported_version(v))
            }
        }
    }
}

/// For a 2026-07-28 request: its `_meta` (required, with the protocol version and client
/// capabilities) and its mirrored headers.
pub fn stateless_meta(req: &Request, message: &Message) -> Result<RequestMetaObject, Failure> {
    let meta = message
        .params
        .get("_meta")
        .ok_or_else(|| Failure::invalid_params("params._meta is required"))?;
    for key in [
        "io.modelcontextprotocol/protocolVersion",
        "io.modelcontextprotocol/clientCapabilities",
    ] {
        if meta.get(key).is_none() {
            return Err(Failure::invalid_params(format!(
                "params._meta must carry {key}"
            )));
        }
    }
    let meta: RequestMetaObject = serde_json::from_value(meta.clone())
        .map_err(|e| Failure::invalid_params(format!("params._meta: {e}")))?;
    check_header(req, "mcp-method", Some(&message.method))?;
    let name_field = match message.method.as_str() {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(field) = name_field {
        let value = message.params.get(field).and_then(Value::as_str);
        check_header(req, "mcp-name", value)?;
    }
    Ok(meta)
}

/// A mirrored header must be present and, decoded, equal its body value.
fn check_header(req: &Request, name: &str, body: Option<&str>) -> Result<(), Failure> {
    let Some(raw) = req.header(name) else {
        return Err(Failure::header_mismatch(format!(
            "the {name} header is required"
        )));
    };
    let decoded = decode_header(raw)
        .ok_or_else(|| Failure::header_mismatch(format!("the {name} header is malformed")))?;
    match body {
        Some(body) if body == decoded => Ok(()),
        Some(body) => Err(Failure::header_mismatch(format!(
            "header {name} value '{decoded}' does not match body value '{body}'"
        ))),
        None => Err(Failure::header_mismatch(format!(
            "header {name} is set but the body has no matching value"
        ))),
    }
}

/// A header value, with the `=?base64?…?=` sentinel decoded.
fn decode_header(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = Base64::decode_to_vec(encoded, None).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

fn jsonrpc(id: Option<Value>, key: &str, value: Value) -> Value {
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), json!("2.0"));
    obj.insert("id".into(), id.unwrap_or(Value::Null));
    obj.insert(key.into(), value);
    Value::Object(obj)
}

pub fn result_response(id: Value, result: Value) -> Response {
    Response::json(200, &jsonrpc(Some(id), "result", result))
}

/// A result preceded by the notifications about its request, as a Server-Sent Events stream
/// that ends with the result.
pub fn event_stream(notifications: Vec<Value>, id: Value, result: Value) -> Response {
    let mut body = String::new();
    for message in
        notifications
            .into_iter()
            .chain(std::iter::once(jsonrpc(Some(id), "result", result)))
    {
        body.push_str("event: message\ndata: ");
        body.push_str(&message.to_string());
        body.push_str("\n\n");
    }
    Response::new(200)
        .with_header("content-type", "text/event-stream")
        .with_header("cache-control", "no-cache")
        .with_header("x-accel-buffering", "no")
        .with_body(body.into_bytes())
}

pub fn error_response(id: Option<Value>, failure: Failure) -> Response {
    let error = serde_json::to_value(&failure.error).unwrap_or(Value::Null);
    let resp = Response::json(failure.status, &jsonrpc(id, "error", error));
    match failure.challenge {
        Some(challenge) => resp.with_header("www-authenticate", challenge),
        None => resp,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A POST with these headers (and no body).
    pub(crate) fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            ..Default::default()
        }
    }

    fn message(method: &str, params: Value) -> Message {
        Message {
            id: Some(json!(1)),
            method: method.into(),
            params: params.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn bodies_that_are_not_one_request_are_refused() {
        assert_eq!(parse(b"{").unwrap_err().error.code, PARSE_ERROR);
        assert_eq!(parse(b"[]").unwrap_err().error.code, INVALID_REQUEST);
        let response = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert_eq!(parse(response).unwrap_err().error.code, INVALID_REQUEST);
        let ok = parse(br#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#).unwrap();
        assert_eq!(
            (ok.id, ok.method.as_str()),
            (Some(json!("a")), "tools/list")
        );
        let note = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(note.id, None);
    }

    #[test]
    fn rebinding_hosts_and_origins_are_refused() {
        let local = ["localhost:3000", "127.0.0.1:3000", "127.0.0.3", "[::1]:80"];
        for host in local {
            assert!(check_origin(&req(&[("host", host)]), &[]).is_ok(), "{host}");
        }
        let evil = req(&[
            ("host", "evil.example.com"),
            ("origin", "http://evil.example.com"),
        ]);
        assert_eq!(check_origin(&evil, &[]).unwrap_err().status, 403);
        let named = ["docs.example.com".to_owned()];
        let ours = req(&[
            ("host", "docs.example.com"),
            ("origin", "https://docs.example.com"),
        ]);
        assert!(check_origin(&ours, &named).is_ok());
        let foreign = req(&[
            ("host", "docs.example.com"),
            ("origin", "https://evil.example"),
        ]);
        assert!(check_origin(&foreign, &named).is_err());
        let any = ["*".to_owned()];
        assert!(check_origin(&ours, &any).is_ok());
        assert!(check_origin(&foreign, &any).is_err());
        let null = req(&[("host", "localhost"), ("origin", "null")]);
        assert!(check_origin(&null, &[]).is_err());
    }

    #[test]
    fn versions_come_from_the_header_and_must_agree_with_the_body() {
        let meta = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": LATEST}});
        let m = message("tools/list", meta.clone());
        assert_eq!(
            era(&req(&[("mcp-protocol-version", LATEST)]), &m).unwrap(),
            Era::Stateless
        );
        assert_eq!(era(&req(&[]), &m).unwrap_err().error.code, HEADER_MISMATCH);
        let other = req(&[("mcp-protocol-version", "2025-11-25")]);
        assert_eq!(era(&other, &m).unwrap_err().error.code, HEADER_MISMATCH);
        let plain = message("tools/list", json!({}));
        assert_eq!(
            era(&other, &plain).unwrap(),
            Era::Legacy("2025-11-25".into())
        );
        let future = req(&[("mcp-protocol-version", "2099-01-01")]);
        let err = era(&future, &plain).unwrap_err();
        assert_eq!(err.error.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(err.error.data.unwrap()["requested"], "2099-01-01");
        let init = message("initialize", json!({}));
        assert!(matches!(era(&req(&[]), &init).unwrap(), Era::Legacy(_)));
    }

    #[test]
    fn mirrored_headers_are_checked_after_decoding() {
        let params = json!({
            "name": "héllo",
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": LATEST,
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        });
        let m = message("tools/call", params);
        let encoded = "=?base64?aMOpbGxv?=";
        let good = req(&[("mcp-method", "tools/call"), ("mcp-name", encoded)]);
        assert!(stateless_meta(&good, &m).is_ok());
        let wrong = req(&[("mcp-method", "tools/call"), ("mcp-name", "other")]);
        assert_eq!(
            stateless_meta(&wrong, &m).unwrap_err().error.code,
            HEADER_MISMATCH
        );
        let missing = req(&[("mcp-method", "tools/call")]);
        assert_eq!(stateless_meta(&missing, &m).unwrap_err().status, 400);
        let no_meta = message("tools/list", json!({}));
        let err = stateless_meta(&good, &no_meta).unwrap_err();
        assert_eq!((err.status, err.error.code), (400, INVALID_PARAMS));
    }
}
