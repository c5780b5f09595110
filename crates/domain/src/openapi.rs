//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' own request and
//! response types ([`crate::api::wire`], [`crate::error::ErrorBody`], …). The operations
//! below are declarations only (utoipa's `path` attributes on empty functions); what every
//! operation shares (the error statuses any route can answer, `x-request-id`, rate limits) is
//! added by [`Shared`], and the links between operations by [`Links`].
//!
//! The committed copy, `static/docs/v1/openapi.json`, is what the deployments serve; a test
//! fails when it differs from [`document`] (`mcp-edge openapi --write` renews it).

#![allow(dead_code)]

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::accounts::{Role, UserPatch};
use crate::api::CleanupReport;
use crate::api::wire::*;
use crate::docs::site::VersionList;
use crate::error::ErrorBody;
use crate::messaging::Report;

/// Where the committed copy lives, from the repository's root.
pub const COMMITTED_PATH: &str = "static/docs/v1/openapi.json";

/// Where its rendered reference page lives (a docs page, built into the site like any other).
pub const PAGE_PATH: &str = "static/docs/v1/openapi.md";

/// The document, as JSON text (pretty, with a final newline).
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

/// The document as a Markdown page of the docs: every operation with its parameters, body
/// and answers, the schemas, and the error codes.
pub fn reference_page() -> String {
    use serde_json::Value;
    let doc: Value = serde_json::from_str(&document()).unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().replace('\n', " ");
    let cell = |v: &Value| text(v).replace('|', "\\|");
    let schema_name = |v: &Value| -> String {
        if let Some(r) = v["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap_or(r);
            format!("[`{name}`](#{})", name.to_lowercase())
        } else if let Some(t) = v["type"].as_str() {
            format!("`{t}`")
        } else if let Some(types) = v["type"].as_array() {
            let names: Vec<String> = types.iter().map(text).collect();
            format!("`{}`", names.join(" | "))
        } else {
            "any".to_owned()
        }
    };
    let mut out = String::from(
        "---\ntitle: OpenAPI reference\ndescription: Every route of the HTTP API, generated \
         from the code\nweight: 25\n# It restates the API reference in tables: search finds the \
         prose.\nsearch:\n  exclude: true\n---\n\n# OpenAPI reference\n\n",
    );
    out.push_str(
        "Generated from the code by `mcp-edge openapi --write`, like the document itself: \
         [openapi.json](openapi.json), also served at `/openapi.json`. The [API \
         reference](api.md) explains the concepts.\n\n\
         Every answer carries `x-request-id`; every error answers `{\"error\":{\"code\",\
         \"message\"}}` ([error codes](#error-codes)). Routes marked **Bearer** need \
         `Authorization: Bearer <access token or API key>`.\n",
    );
    let tags = doc["tags"].as_array().cloned().unwrap_or_default();
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for tag in &tags {
        out.push_str(&format!(
            "\n## {}\n\n{}\n",
            text(&tag["name"]),
            text(&tag["description"])
        ));
        for (path, item) in &paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let tagged = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.contains(&tag["name"]));
                if !tagged {
                    continue;
                }
                let bearer = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                out.push_str(&format!(
                    "\n### {} `{path}`\n\n{}{}\n",
                    method.to_uppercase(),
                    text(&op["summary"]),
                    if bearer { " **Bearer**" } else { "" }
                ));
                if op["description"].is_string() {
                    out.push_str(&format!("\n{}\n", text(&op["description"])));
                }
                if let Some(params) = op["parameters"].as_array() {
                    out.push_str(
                        "\n| parameter | in | type | required | |\n|---|---|---|---|---|\n",
                    );
                    for p in params {
                        out.push_str(&format!(
                            "| `{}` | {} | {} | {} | {} |\n",
                            text(&p["name"]),
                            text(&p["in"]),
                            schema_name(&p["schema"]),
                            if p["required"] == Value::Bool(true) {
                                "yes"
                            } else {
                                ""
                            },
                            cell(&p["description"])
                        ));
                    }
                }
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    for (media, body) in content {
                        out.push_str(&format!(
                            "\nBody: `{media}`, {}\n",
                            schema_name(&body["schema"])
                        ));
                    }
                }
                out.push_str("\n| status | answer | body |\n|---|---|---|\n");
                for (status, response) in op["responses"].as_object().into_iter().flatten() {
                    let response = match response["$ref"].as_str() {
                        Some(r) => {
                            &doc["components"]["responses"][r.rsplit('/').next().unwrap_or(r)]
                        }
                        None => response,
                    };
                    let bodies: Vec<String> = response["content"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(media, c)| match c["schema"].is_object() {
                            true => format!("{} `{media}`", schema_name(&c["schema"])),
                            false => format!("`{media}`"),
                        })
                        .collect();
                    out.push_str(&format!(
                        "| {status} | {} | {} |\n",
                        cell(&response["description"]),
                        bodies.join(", ")
                    ));
                }
            }
        }
    }
    out.push_str("\n## Schemas\n");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("\n### {name}\n\n"));
        if schema["description"].is_string() {
            out.push_str(&format!("{}\n\n", text(&schema["description"])));
        }
        if let Some(values) = schema["enum"].as_array() {
            let values: Vec<String> = values.iter().map(|v| format!("`{}`", text(v))).collect();
            out.push_str(&format!("One of {}.\n", values.join(", ")));
            continue;
        }
        let required = schema["required"].as_array().cloned().unwrap_or_default();
        out.push_str("| field | type | required | |\n|---|---|---|---|\n");
        for (field, f) in schema["properties"].as_object().into_iter().flatten() {
            let description = if field == "code" && name == "ErrorDetail" {
                "one of the [error codes](#error-codes)".to_owned()
            } else {
                cell(&f["description"])
            };
            out.push_str(&format!(
                "| `{field}` | {} | {} | {description} |\n",
                schema_name(f),
                if required.contains(&Value::String(field.clone())) {
                    "yes"
                } else {
                    ""
                },
            ));
        }
    }
    out.push_str("\n## Error codes\n\n| code | meaning |\n|---|---|\n");
    for (code, meaning) in crate::error::CODES {
        out.push_str(&format!("| `{code}` | {meaning} |\n"));
    }
    out
}

/// A JSON-RPC 2.0 message as `/mcp` takes it (the MCP schema itself is the protocol's).
#[derive(ToSchema)]
#[schema(example = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {}}}}))]
struct JsonRpcMessage {
    #[schema(example = "2.0")]
    jsonrpc: String,
    /// Absent in a notification.
    #[schema(value_type = Option<Value>)]
    id: Option<()>,
    method: String,
    #[schema(value_type = Option<Object>)]
    params: Option<()>,
}

/// One Server-Sent Event of `GET /mcp/stream`, as an EventSource parses it: a `message` (its
/// `data` a message as `receive` gives it, its `id` the sequence number), a `missed` gap, or
/// only a `retry` hint.
#[derive(ToSchema)]
struct StreamEvent {
    #[schema(example = "message")]
    event: Option<String>,
    /// JSON: the message, or the gap as `receive`'s `missed`.
    data: Option<String>,
    #[schema(example = "42")]
    id: Option<String>,
    /// Milliseconds to wait before reconnecting.
    retry: Option<u64>,
}

/// A JSON-RPC 2.0 answer: a `result`, or an `error` with the protocol's code.
#[derive(ToSchema)]
struct JsonRpcAnswer {
    #[schema(example = "2.0")]
    jsonrpc: String,
    #[schema(value_type = Option<Value>)]
    id: Option<()>,
    #[schema(value_type = Option<Object>)]
    result: Option<()>,
    error: Option<JsonRpcError>,
}

#[derive(ToSchema)]
struct JsonRpcError {
    /// -32700 parse error, -32600 invalid request, -32601 unknown method, -32602 invalid
    /// params, -32020 a header that disagrees with the body, -32022 an unsupported version.
    code: i64,
    message: String,
    #[schema(value_type = Option<Value>)]
    data: Option<()>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mcp-edge",
        description = "Edge messaging between clients in groups, versioned documentation, and \
            the Model Context Protocol, served by WebAssembly components on mcp-edge, Spin \
            and Cloudflare Workers. Every error answers `{\"error\":{\"code\",\"message\"}}` \
            (`/mcp` answers JSON-RPC errors instead).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "this deployment")),
    paths(
        login, refresh, logout,
        register, send, receive, stream,
        docs_index, docs_version, docs_page, openapi_json,
        health, ready,
        list_users, add_user, update_user, remove_user,
        list_keys, create_key, revoke_key, cleanup,
        mcp_post,
    ),
    components(schemas(ErrorBody, Role, UserPatch, Report, CleanupReport)),
    modifiers(&Shared, &Links),
    tags(
        (name = "accounts", description = "Log in, refresh and end sessions"),
        (name = "messaging", description = "Clients in groups: register, send, receive"),
        (name = "docs", description = "Versioned documentation"),
        (name = "health", description = "Liveness and readiness"),
        (name = "admin", description = "Users, API keys and cleanup (admin role)"),
        (name = "mcp", description = "The Model Context Protocol (Streamable HTTP, stateless)"),
    ),
)]
struct ApiDoc;

/// `POST /login`
#[utoipa::path(
    post, path = "/login", tag = "accounts", operation_id = "login",
    summary = "Log in with a user name and password",
    description = "Answers a 15-minute access token and a 30-day refresh token. A wrong \
        password and an unknown user answer alike, in the same time. Failed logins are \
        limited per user and address (5 a minute) and per user (100 an hour).",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = TokenGrant),
        (status = 400, description = "A malformed body, user name or password", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`, `user_disabled`", body = ErrorBody),
    ),
    security(()),
)]
fn login() {}

/// `POST /token/refresh`
#[utoipa::path(
    post, path = "/token/refresh", tag = "accounts", operation_id = "refresh",
    summary = "Trade a refresh token for a new access token and the next refresh token",
    description = "Each refresh token works once; presenting a used one again ends its session \
        (`refresh_token_reused`).",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "Refreshed", body = TokenGrant),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused`, \
            `session_revoked`, `user_disabled`", body = ErrorBody),
    ),
    security(()),
)]
fn refresh() {}

/// `POST /logout`
#[utoipa::path(
    post, path = "/logout", tag = "accounts", operation_id = "logout",
    summary = "End the session of a refresh token",
    request_body = RefreshBody,
    responses(
        (status = 204, description = "The session has ended"),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "`invalid_refresh_token`", body = ErrorBody),
    ),
    security(()),
)]
fn logout() {}

/// `POST /mcp/register`
#[utoipa::path(
    post, path = "/mcp/register", tag = "messaging", operation_id = "register",
    summary = "Join a group as a client, or send a member's heartbeat",
    description = "A client id belongs to the user who first registered it. Registering again \
        is the heartbeat that keeps a member from expiring (`client_timeout_seconds`). Needs \
        the writer role.",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Joined (`resumed`: came back within the retention with \
            its cursor)", body = Registered),
        (status = 200, description = "Already a member: heartbeat recorded", body = Registered),
        (status = 400, description = "A malformed body or id", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "`insufficient_role`, `client_owned_by_other`", body = ErrorBody),
        (status = 409, description = "`group_full`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn register() {}

/// `POST /mcp/send`
#[utoipa::path(
    post, path = "/mcp/send", tag = "messaging", operation_id = "send",
    summary = "Send a payload to the sender's group",
    description = "Once answered 202 the message is durable and every other member receives it \
        exactly once, in sequence order. With an `Idempotency-Key`, a retry of the same send \
        answers the first send's result and stores nothing again.",
    params(
        ("idempotency-key" = Option<String>, Header,
            description = "Names this send for safe retries (a UUID will do)",
            pattern = "^[A-Za-z0-9._:-]{1,128}$"),
    ),
    request_body = SendBody,
    responses(
        (status = 202, description = "Accepted into the group's log", body = Sent,
            headers(("idempotent-replayed" = String,
                description = "`true` when this answers an earlier send with the same key"))),
        (status = 400, description = "A malformed body, id or idempotency key", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "`insufficient_role`, `client_owned_by_other`, `not_in_group`",
            body = ErrorBody),
        (status = 404, description = "`client_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_use`", body = ErrorBody),
        (status = 410, description = "`client_expired`: register again", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn send() {}

/// `GET /mcp/receive`
#[utoipa::path(
    get, path = "/mcp/receive", tag = "messaging", operation_id = "receive",
    summary = "Poll for the group's messages this client has not seen",
    description = "With `after` (the last answer's `next_after`) every message arrives exactly \
        once; without it, the messages after the client's stored cursor. The cursor never \
        moves past what an answer held. Needs the reader role.",
    params(
        ("client_id" = String, Query, description = "The receiving client",
            pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("group_id" = String, Query, description = "Its group", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("after" = Option<u64>, Query, description = "The sequence number received last"),
        ("limit" = Option<u16>, Query, description = "Most messages in one answer (default 100)",
            minimum = 1, maximum = 1000),
        ("wait" = Option<u16>, Query, description = "Seconds to wait for a message when there is \
            none yet: the answer comes as soon as one arrives, else empty when the time is up \
            (default 0; at most the deployment's `receive_max_wait_seconds`, 30 by default)",
            minimum = 0, maximum = 30),
    ),
    responses(
        (status = 200, description = "The messages after the cursor, maybe none", body = ReceiveOut),
        (status = 400, description = "A missing, repeated or malformed query parameter", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "`insufficient_role`, `client_owned_by_other`, `not_in_group`",
            body = ErrorBody),
        (status = 404, description = "`client_not_found`", body = ErrorBody),
        (status = 410, description = "`client_expired`: register again", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn receive() {}

/// `GET /mcp/stream`
#[utoipa::path(
    get, path = "/mcp/stream", tag = "messaging", operation_id = "stream",
    summary = "The group's messages for this client as Server-Sent Events",
    description = "Each message is an event `message` whose `id` is its sequence number and \
        whose `data` is the message as `receive` gives it; a gap the cleanup left is an event \
        `missed`. The stream starts after `Last-Event-ID` (a reconnect), else after `after`, \
        else at the client's cursor, and moves the cursor as it sends. An idle stream sends a \
        comment every `stream_keepalive_seconds` (15); it ends after \
        `stream_lifetime_seconds` (300) and the client reconnects with `Last-Event-ID`. \
        Needs the reader role.",
    params(
        ("client_id" = String, Query, description = "The receiving client",
            pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("group_id" = String, Query, description = "Its group", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("after" = Option<u64>, Query, description = "The sequence number received last"),
        ("last-event-id" = Option<String>, Header,
            description = "The id of the last event received (a reconnect), a sequence number; \
            wins over `after`"),
    ),
    responses(
        (status = 200, description = "The events, as they come",
            content((StreamEvent = "text/event-stream"))),
        (status = 400, description = "A missing, repeated or malformed query parameter, or a \
            `Last-Event-ID` that is not a sequence number", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "`insufficient_role`, `client_owned_by_other`, `not_in_group`",
            body = ErrorBody),
        (status = 404, description = "`client_not_found`", body = ErrorBody),
        (status = 410, description = "`client_expired`: register again", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn stream() {}

/// `GET /docs/`
#[utoipa::path(
    get, path = "/docs/", tag = "docs", operation_id = "docs_index",
    summary = "The list of documentation versions",
    params(("if-none-match" = Option<String>, Header, description = "An earlier ETag")),
    responses(
        (status = 200, description = "The versions, newest first", body = VersionList,
            headers(("etag" = String), ("cache-control" = String))),
        (status = 304, description = "Not modified (`If-None-Match` matched)",
            headers(("etag" = String))),
        (status = 401, description = "Docs need a reader credential here", body = ErrorBody),
        (status = 404, description = "`doc_not_found`", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
fn docs_index() {}

/// `GET /docs/{version}/`
#[utoipa::path(
    get, path = "/docs/{version}/", tag = "docs", operation_id = "docs_version",
    summary = "A version's index page",
    params(
        ("version" = String, Path, description = "`v1`, `v0`, … or `latest`"),
        DocsHeaders,
    ),
    responses(
        (status = 200, description = "The page", content(("text/html"), ("text/markdown")),
            headers(("etag" = String), ("cache-control" = String), ("vary" = String))),
        (status = 304, description = "Not modified", headers(("etag" = String))),
        (status = 401, description = "Docs need a reader credential here", body = ErrorBody),
        (status = 404, description = "`doc_not_found`", body = ErrorBody),
        (status = 406, description = "`not_acceptable`", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
fn docs_version() {}

/// `GET /docs/{version}/{page}`
#[utoipa::path(
    get, path = "/docs/{version}/{page}", tag = "docs", operation_id = "docs_page",
    summary = "A page or file of a version",
    description = "A page is served as HTML, or as its Markdown source for `Accept: text/markdown` \
        or a URL ending in `.md`. Folders are named with a trailing slash (one without is \
        redirected). Also `versions.json`, `sitemap.xml`, `llms.txt`, `llms-full.txt`.",
    params(
        ("version" = String, Path, description = "`v1`, `v0`, … or `latest`"),
        ("page" = String, Path, description = "The page's path in the version (`quickstart`, \
            `api.md`, `guide/install`)"),
        DocsHeaders,
    ),
    responses(
        (status = 200, description = "The page or file",
            content(("text/html"), ("text/markdown"), ("application/json"), ("application/xml"),
                ("text/plain"), ("image/png"), ("application/octet-stream")),
            headers(("etag" = String), ("cache-control" = String), ("vary" = String))),
        (status = 301, description = "A folder named without its trailing slash",
            headers(("location" = String))),
        (status = 304, description = "Not modified", headers(("etag" = String))),
        (status = 401, description = "Docs need a reader credential here", body = ErrorBody),
        (status = 404, description = "`doc_not_found`", body = ErrorBody),
        (status = 406, description = "`not_acceptable`", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
fn docs_page() {}

/// Conditional and negotiated docs requests.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
struct DocsHeaders {
    /// An ETag from an earlier answer: `304` when it still matches.
    #[param(rename = "if-none-match")]
    if_none_match: Option<String>,
    /// `text/markdown` for a page's source; a page answers `406` to an `Accept` that
    /// takes neither HTML nor Markdown.
    accept: Option<String>,
}

/// `GET /openapi.json`
#[utoipa::path(
    get, path = "/openapi.json", tag = "docs", operation_id = "openapi",
    summary = "This document",
    description = "Public and cacheable whatever `docs_access` says.",
    params(("if-none-match" = Option<String>, Header, description = "An earlier ETag")),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
            body = Object, headers(("etag" = String), ("cache-control" = String))),
        (status = 304, description = "Not modified", headers(("etag" = String))),
        (status = 404, description = "The site was built without it", body = ErrorBody),
    ),
    security(()),
)]
fn openapi_json() {}

/// `GET /health`
#[utoipa::path(
    get, path = "/health", tag = "health", operation_id = "health",
    summary = "Liveness: the server answers",
    responses((status = 200, description = "Alive", body = Liveness)),
    security(()),
)]
fn health() {}

/// `GET /health/ready`
#[utoipa::path(
    get, path = "/health/ready", tag = "health", operation_id = "ready",
    summary = "Readiness: a store round trip",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "`not_ready`", body = ErrorBody,
            headers(("retry-after" = String))),
    ),
    security(()),
)]
fn ready() {}

/// `GET /admin/users`
#[utoipa::path(
    get, path = "/admin/users", tag = "admin", operation_id = "list_users",
    summary = "List the users",
    responses(
        (status = 200, description = "Every user", body = UserList),
    ),
    security(("bearer" = [])),
)]
fn list_users() {}

/// `POST /admin/users`
#[utoipa::path(
    post, path = "/admin/users", tag = "admin", operation_id = "add_user",
    summary = "Add a user",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "Added", body = UserOut),
        (status = 400, description = "A malformed body, name or password", body = ErrorBody),
        (status = 409, description = "`user_exists`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn add_user() {}

/// `PATCH /admin/users/{name}`
#[utoipa::path(
    patch, path = "/admin/users/{name}", tag = "admin", operation_id = "update_user",
    summary = "Change a user's role, password or disabled flag",
    description = "Disabling a user or changing its password ends its sessions.",
    params(("name" = String, Path, description = "The user name")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "Changed", body = UserOut),
        (status = 400, description = "A malformed body, name or password", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`last_admin`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn update_user() {}

/// `DELETE /admin/users/{name}`
#[utoipa::path(
    delete, path = "/admin/users/{name}", tag = "admin", operation_id = "remove_user",
    summary = "Remove a user, its sessions and its API keys",
    params(("name" = String, Path, description = "The user name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A malformed name", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`last_admin`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn remove_user() {}

/// `GET /admin/api-keys`
#[utoipa::path(
    get, path = "/admin/api-keys", tag = "admin", operation_id = "list_keys",
    summary = "List the API keys (never the keys themselves)",
    responses(
        (status = 200, description = "Every key", body = KeyList),
    ),
    security(("bearer" = [])),
)]
fn list_keys() {}

/// `POST /admin/api-keys`
#[utoipa::path(
    post, path = "/admin/api-keys", tag = "admin", operation_id = "create_key",
    summary = "Create an API key for a machine client",
    description = "The answer holds the key (`mcpe_…`) once; only its digest is stored.",
    request_body = NewKeyBody,
    responses(
        (status = 201, description = "Created", body = KeyOut,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 400, description = "A malformed body, name or expiry; `role_exceeds_user`",
            body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`user_disabled`: the owner is disabled", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn create_key() {}

/// `DELETE /admin/api-keys/{id}`
#[utoipa::path(
    delete, path = "/admin/api-keys/{id}", tag = "admin", operation_id = "revoke_key",
    summary = "Revoke an API key (refused from the next request on)",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`api_key_not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn revoke_key() {}

/// `POST /admin/cleanup`
#[utoipa::path(
    post, path = "/admin/cleanup", tag = "admin", operation_id = "cleanup",
    summary = "Run one cleanup pass now",
    description = "Expires silent clients and old messages, at most `cleanup_batch` items; \
        `complete` is false when more is left for the next run. With `group_id`, on \
        Cloudflare Workers, that group's own cleanup (what its object's alarm runs); \
        elsewhere the whole pass, which covers every group.",
    params(
        ("group_id" = Option<String>, Query, description = "One group to clean up"),
    ),
    responses(
        (status = 200, description = "What the pass removed", body = CleanupReport),
        (status = 400, description = "`invalid_id`: a malformed `group_id`, or a malformed query", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
fn cleanup() {}

/// `POST /mcp`
#[utoipa::path(
    post, path = "/mcp", tag = "mcp", operation_id = "mcp",
    summary = "One JSON-RPC message of the Model Context Protocol",
    description = "Revision 2026-07-28, stateless: each message is its own POST (the \
        `initialize` handshake, `ping` and `notifications/initialized` for 2025-11-25 and \
        2025-06-18). GET and DELETE answer 405: there is no server-initiated stream and \
        no session to end. Errors are JSON-RPC error answers. The message tools need a Bearer \
        credential with the tool's role; docs tools and resources follow `docs_access`. \
        docs/mcp.md describes the tools and resources.",
    params(
        ("mcp-protocol-version" = Option<String>, Header,
            description = "The revision; must match the body's `_meta`"),
        ("mcp-method" = Option<String>, Header, description = "Must match the body's `method`"),
        ("mcp-name" = Option<String>, Header,
            description = "The tool or resource named in `params` (base64 sentinel allowed)"),
        ("origin" = Option<String>, Header,
            description = "When present, must name an allowed host (DNS rebinding protection)"),
    ),
    request_body = JsonRpcMessage,
    responses(
        (status = 200, description = "The answer to a request",
            content((JsonRpcAnswer = "application/json"), (String = "text/event-stream"))),
        (status = 202, description = "A notification, accepted"),
        (status = 400, description = "A malformed message or mismatched headers", body = JsonRpcAnswer),
        (status = 401, description = "A message tool without a valid credential", body = JsonRpcAnswer,
            headers(("www-authenticate" = String))),
        (status = 403, description = "A foreign Host or Origin", body = JsonRpcAnswer),
        (status = 404, description = "An unknown method (`-32601`)", body = JsonRpcAnswer),
    ),
    security((), ("bearer" = [])),
)]
fn mcp_post() {}

/// What every operation shares: the Bearer scheme, `x-request-id` on every answer, and the
/// statuses any route can answer whatever it does (a body over the cap, a slow body, rate
/// limits where they apply, a store or component failure, the deadline).
struct Shared;

/// Operations that are rate limited (per address, and per user once authenticated).
const LIMITED: &[&str] = &[
    "login",
    "refresh",
    "logout",
    "register",
    "send",
    "receive",
    "stream",
    "list_users",
    "add_user",
    "update_user",
    "remove_user",
    "list_keys",
    "create_key",
    "revoke_key",
    "cleanup",
];

/// The answers any route can give whatever it does, as `components/responses` entries: the
/// name, the status, what it means, whether it says when to retry, and the body's schema.
const SHARED: &[(&str, &str, &str, bool, &str)] = &[
    (
        "Unauthorized",
        "401",
        "No valid credential: `unauthorized`, `invalid_api_key`, `user_disabled`",
        false,
        "ErrorBody",
    ),
    (
        "Forbidden",
        "403",
        "`insufficient_role`: the credential's role may not do this",
        false,
        "ErrorBody",
    ),
    (
        "RequestTimeout",
        "408",
        "`request_timeout`: the body did not arrive in time",
        false,
        "ErrorBody",
    ),
    (
        "PayloadTooLarge",
        "413",
        "`payload_too_large`: the body (or a payload) is over its limit",
        false,
        "ErrorBody",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "`unsupported_media_type`: the body is not application/json",
        false,
        "ErrorBody",
    ),
    (
        "TooManyRequests",
        "429",
        "`rate_limited`, `too_many_login_failures`, `group_backlog_full`, `too_many_waiting`",
        true,
        "ErrorBody",
    ),
    (
        "ServerError",
        "500",
        "`server_misconfigured`, `component_failed` and the like",
        false,
        "ErrorBody",
    ),
    (
        "Unavailable",
        "503",
        "`store_unavailable`, `contention`, `client_expiring`, `too_many_waiting`: retry",
        true,
        "ErrorBody",
    ),
    (
        "GatewayTimeout",
        "504",
        "`timeout`: the component did not answer in time",
        false,
        "ErrorBody",
    ),
];

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

fn header_ref(name: &str) -> RefOr<utoipa::openapi::header::Header> {
    RefOr::Ref(utoipa::openapi::Ref::new(format!(
        "#/components/headers/{name}"
    )))
}

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or API key")
                    .description(Some(
                        "An access token from /login (a JWT), or an API key (`mcpe_…`) from \
                         /admin/api-keys.",
                    ))
                    .build(),
            ),
        );
        components.headers.insert(
            "RequestId".to_owned(),
            RefOr::T(string_header(
                "This request's id: the client's `x-request-id` when it is safe to echo, else \
                 a new one. Log lines and audit records carry it.",
            )),
        );
        components.headers.insert(
            "RetryAfter".to_owned(),
            RefOr::T(string_header("Seconds to wait before retrying")),
        );
        for (name, _, description, retry_after, body) in SHARED {
            let mut response = ResponseBuilder::new()
                .description(*description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name(*body)))
                        .build(),
                )
                .build();
            response
                .headers
                .insert("x-request-id".to_owned(), header_ref("RequestId"));
            if *retry_after {
                response
                    .headers
                    .insert("retry-after".to_owned(), header_ref("RetryAfter"));
            }
            if *name == "Unauthorized" {
                response.headers.insert(
                    "www-authenticate".to_owned(),
                    RefOr::T(string_header("`Bearer`: the scheme to authenticate with")),
                );
            }
            components
                .responses
                .insert((*name).to_owned(), RefOr::T(response));
        }
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                let id = op.operation_id.clone().unwrap_or_default();
                let takes_body = op.request_body.is_some();
                let bearer = serde_json::to_value(&op.security)
                    .is_ok_and(|s| s.to_string().contains("\"bearer\""));
                let responses = &mut op.responses.responses;
                for response in responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert("x-request-id".to_owned(), header_ref("RequestId"));
                    }
                }
                for (name, status, ..) in SHARED {
                    let applies = match *status {
                        "401" | "403" => bearer,
                        "415" => takes_body && !id.starts_with("mcp"),
                        "429" => LIMITED.contains(&id.as_str()),
                        _ => true,
                    };
                    if applies {
                        responses.entry((*status).to_owned()).or_insert_with(|| {
                            RefOr::Ref(utoipa::openapi::Ref::new(format!(
                                "#/components/responses/{name}"
                            )))
                        });
                    }
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<&mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.patch,
        &mut item.delete,
        &mut item.put,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
    .collect()
}

/// The links a client follows: login → refresh, register → send and receive as that client,
/// send → receive in that group. (Schemathesis walks them in its stateful phase.)
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let link = |op: &str, description: &str| {
            LinkBuilder::new().operation_id(op).description(description)
        };
        let links: [(&str, &str, &str, utoipa::openapi::link::Link); 5] = [
            (
                "/login",
                "200",
                "RefreshThisSession",
                link("refresh", "Refresh the session just started")
                    .request_body(Some(serde_json::json!({
                        "refresh_token": "$response.body#/refresh_token"
                    })))
                    .build(),
            ),
            (
                "/mcp/register",
                "201",
                "SendAsThisClient",
                link("send", "Send to the group just joined")
                    .request_body(Some(serde_json::json!({
                        "sender_id": "$request.body#/client_id",
                        "group_id": "$request.body#/group_id",
                        "payload": {"text": "hello"}
                    })))
                    .build(),
            ),
            (
                "/mcp/register",
                "201",
                "ReceiveAsThisClient",
                link("receive", "Poll the group just joined")
                    .parameter("client_id", "$request.body#/client_id")
                    .parameter("group_id", "$request.body#/group_id")
                    .build(),
            ),
            (
                "/mcp/register",
                "200",
                "ReceiveAsThisMember",
                link("receive", "Poll the member's group")
                    .parameter("client_id", "$request.body#/client_id")
                    .parameter("group_id", "$request.body#/group_id")
                    .build(),
            ),
            (
                "/mcp/send",
                "202",
                "ReceiveAfterThisSend",
                link(
                    "receive",
                    "Poll the group as the sender, after this message",
                )
                .parameter("client_id", "$request.body#/sender_id")
                .parameter("group_id", "$request.body#/group_id")
                .parameter("after", "$response.body#/seq")
                .build(),
            ),
        ];
        for (path, status, name, link) in links {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            for op in operations(item) {
                if let Some(RefOr::T(response)) = op.responses.responses.get_mut(status) {
                    response
                        .links
                        .insert(name.to_owned(), RefOr::T(link.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let committed = std::fs::read_to_string(repo().join(COMMITTED_PATH)).unwrap_or_default();
        assert!(
            committed == document(),
            "{COMMITTED_PATH} differs from the document the code generates; run \
             `cargo run --release -- openapi --write` and commit the result"
        );
    }

    #[test]
    fn the_committed_reference_page_is_the_generated_one() {
        let committed = std::fs::read_to_string(repo().join(PAGE_PATH)).unwrap_or_default();
        assert!(
            committed == reference_page(),
            "{PAGE_PATH} differs from the page the code generates; run \
             `cargo run --release -- openapi --write` and commit the result"
        );
    }

    #[test]
    fn every_route_of_the_manifest_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let manifest = std::fs::read_to_string(repo().join("spin.toml")).unwrap();
        for line in manifest.lines() {
            let Some(route) = line.strip_prefix("route = \"") else {
                continue;
            };
            let route = route.trim_end_matches('"').trim_end_matches("/...");
            assert!(
                paths
                    .keys()
                    .any(|p| p == route || p.starts_with(&format!("{route}/"))),
                "spin.toml routes {route}, which the document lacks"
            );
        }
    }

    #[test]
    fn every_error_answer_names_the_error_body_and_a_request_id() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    let response = match response["$ref"].as_str() {
                        Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
                        None => response,
                    };
                    assert!(
                        response["headers"]["x-request-id"]["$ref"].is_string(),
                        "{method} {path} {status}"
                    );
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = response["content"]["application/json"]["schema"]["$ref"]
                            .as_str()
                            .unwrap_or_default();
                        assert!(
                            schema.ends_with("/ErrorBody") || schema.ends_with("/JsonRpcAnswer"),
                            "{method} {path} {status}: {schema}"
                        );
                    }
                }
            }
        }
    }
}
