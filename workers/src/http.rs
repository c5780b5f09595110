//! Conversions between Workers' `Request`/`Response` and the domain's, plus the few things the
//! `mcp-edge` runtime does around every component (routing, body limit, request id, the
//! `spin-*` headers), done the same way here so that clients cannot tell the two apart.

use futures_util::StreamExt;
use mcp_edge_domain::error::ApiError;
use mcp_edge_domain::http::{
    MAX_BODY_BYTES, Request as ApiRequest, Response as ApiResponse, body_too_large,
    request_id as choose_request_id, respond,
};
use worker::{Headers, Request, Response, ResponseBuilder};

/// Where a path goes, with Spin's routing semantics over the routes of `spin.toml`: the exact
/// routes, and the `/docs/...` and `/health/...` wildcards with their path info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Login,
    Refresh,
    Logout,
    /// `/admin/users/...` and `/admin/api-keys/...`; the path info is the part after `/admin`.
    Admin(String),
    Register,
    Send,
    Receive,
    Stream,
    Cleanup,
    /// `POST /mcp`: the MCP endpoint.
    Mcp,
    Docs(String),
    /// `GET /openapi.json`, which Spin routes to the docs component.
    OpenApi,
    Health(String),
    NotFound,
}

impl Route {
    pub fn of(path: &str) -> Route {
        let wildcard = |prefix: &str| {
            path.strip_prefix(prefix)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(str::to_owned)
        };
        // As Spin routes (by `routefinder`): a trailing slash matches the same route.
        let exact = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        match exact {
            "/login" => Route::Login,
            "/token/refresh" => Route::Refresh,
            "/logout" => Route::Logout,
            "/mcp/register" => Route::Register,
            "/mcp/send" => Route::Send,
            "/mcp/receive" => Route::Receive,
            "/mcp/stream" => Route::Stream,
            "/admin/cleanup" => Route::Cleanup,
            "/mcp" => Route::Mcp,
            "/openapi.json" => Route::OpenApi,
            _ => match (wildcard("/docs"), wildcard("/health")) {
                (Some(info), _) => Route::Docs(info),
                (_, Some(info)) => Route::Health(info),
                _ if wildcard("/admin/users").is_some()
                    || wildcard("/admin/api-keys").is_some() =>
                {
                    Route::Admin(path["/admin".len()..].to_owned())
                }
                _ => Route::NotFound,
            },
        }
    }

    /// The route's name in the request log.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Login => "login",
            Route::Refresh => "token_refresh",
            Route::Logout => "logout",
            Route::Admin(_) => "admin",
            Route::Register => "register",
            Route::Send => "send",
            Route::Receive => "receive",
            Route::Stream => "stream",
            Route::Cleanup => "cleanup",
            Route::Mcp => "mcp",
            Route::Docs(_) | Route::OpenApi => "docs",
            Route::Health(_) => "health",
            Route::NotFound => "not_found",
        }
    }

    /// The path the domain handler sees (Spin's `spin-path-info`).
    pub fn path_info(&self) -> &str {
        match self {
            Route::Docs(info) | Route::Health(info) | Route::Admin(info) => info,
            _ => "",
        }
    }
}

/// The method as the client sent it (Workers' `Method` enum knows only the common ones).
pub fn method(req: &Request) -> String {
    req.inner().method().to_ascii_uppercase()
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`] (declared or actual). A body sent
/// without a length (chunked) is read chunk by chunk and dropped once it passes the cap, so
/// an oversized upload never sits in the Worker's memory.
pub async fn body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(body_too_large(MAX_BODY_BYTES));
    }
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    let unreadable =
        |_| ApiError::bad_request("unreadable_body", "the request body could not be read");
    let mut stream = req.stream().map_err(unreadable)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unreadable)?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(body_too_large(MAX_BODY_BYTES));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The domain's view of a request: `path` is the route's path info.
pub fn to_api(req: &Request, method: String, path: &str, body: Vec<u8>) -> ApiRequest {
    let query = req.url().ok().and_then(|u| u.query().map(str::to_owned));
    ApiRequest {
        method,
        path: path.to_owned(),
        query,
        headers: req
            .headers()
            .entries()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.into_bytes()))
            .collect(),
        body,
    }
}

pub fn to_worker(resp: ApiResponse) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in &resp.headers {
        headers.append(name, value)?;
    }
    let builder = ResponseBuilder::new()
        .with_status(resp.status)
        .with_headers(headers);
    // 204 and 304 answers must have no body at all, not an empty one.
    Ok(if resp.body.is_empty() {
        builder.empty()
    } else {
        builder.fixed(resp.body)
    })
}

/// A runtime-level error answer in the domain's JSON error shape.
pub fn error(err: ApiError) -> worker::Result<Response> {
    to_worker(respond(Err(err)))
}

/// The request id: the client's `x-request-id` when sensible, else a fresh one.
pub fn request_id(req: &Request) -> String {
    choose_request_id(req.headers().get("x-request-id").ok().flatten().as_deref())
}

/// What every answer carries, whoever produced it: the request id, `nosniff`, and no
/// software name.
pub fn finish(resp: Response, request_id: &str) -> worker::Result<Response> {
    // Responses from a fetch (assets, Durable Objects) have immutable headers: copy them.
    let headers = Headers::new();
    for (name, value) in resp.headers().entries() {
        if name != "server" && name != "x-powered-by" {
            headers.append(&name, &value)?;
        }
    }
    headers.set("x-request-id", request_id)?;
    if !headers.has("x-content-type-options")? {
        headers.set("x-content-type-options", "nosniff")?;
    }
    Ok(resp.with_headers(headers))
}

#[cfg(test)]
mod tests {
    use super::Route;

    /// The Worker serves exactly the routes of spin.toml, each with its component's handler.
    #[test]
    fn routes_match_spin_toml() {
        let manifest: toml::Value =
            toml::from_str(include_str!("../../spin.toml")).expect("spin.toml parses");
        let triggers = manifest["trigger"]["http"]
            .as_array()
            .expect("HTTP triggers");
        let mut seen = Vec::new();
        for trigger in triggers {
            let (route, component) = (
                trigger["route"].as_str().unwrap_or_default(),
                trigger["component"].as_str().unwrap_or_default(),
            );
            let path = route.trim_end_matches("/...");
            let expected = match component {
                "login" => match path {
                    "/token/refresh" => Route::Refresh,
                    "/logout" => Route::Logout,
                    _ => Route::Login,
                },
                "admin" => Route::Admin(path["/admin".len()..].to_owned()),
                "register" => Route::Register,
                "send" => Route::Send,
                "receive" => Route::Receive,
                "stream" => Route::Stream,
                "cleanup" => Route::Cleanup,
                "docs" if path == "/openapi.json" => Route::OpenApi,
                "docs" => Route::Docs(String::new()),
                "health" => Route::Health(String::new()),
                "mcp" => Route::Mcp,
                other => panic!("spin.toml routes to {other}, which the Worker does not serve"),
            };
            assert_eq!(Route::of(path), expected, "{route}");
            seen.push(component);
        }
        assert_eq!(seen.len(), 14, "{seen:?}");
        assert_eq!(
            Route::of("/admin/users/ann"),
            Route::Admin("/users/ann".into())
        );
        assert_eq!(Route::of("/admin/usersx"), Route::NotFound);
        assert_eq!(Route::of("/docs/v1/a.md"), Route::Docs("/v1/a.md".into()));
        assert_eq!(Route::of("/health/ready"), Route::Health("/ready".into()));
        assert_eq!(Route::of("/docsx"), Route::NotFound);
        assert_eq!(Route::of("/login/"), Route::Login);
        assert_eq!(Route::of("/loginx"), Route::NotFound);
    }
}
