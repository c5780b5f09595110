//! `POST /mcp`: this deployment as an MCP server. The docs are tools (`search_docs`,
//! `fetch_doc`, `list_doc_versions`) and resources (`docs://{version}/{path}`), read from the
//! built site; the message groups are tools (`register_client`, `send_message`,
//! `receive_messages`) that run the REST endpoints' own handlers, so ownership rules, limits,
//! audit events and cursors are theirs, unchanged.

use rust_mcp_schema::{
    CallToolResult, Implementation, MetaObject, ReadResourceContent, Resource, ResourceTemplate,
    ServerCapabilities, ServerCapabilitiesResources, ServerCapabilitiesTools, TextResourceContents,
    Tool, ToolInputSchema,
};
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::accounts::Action;
use crate::config::{self, DocsAccess};
use crate::docs::SiteFiles;
use crate::docs::front_matter;
use crate::docs::safe_segment;
use crate::docs::search::{self, Catalog, Postings};
use crate::docs::site::{self, Route};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::mcp::server::{Caching, Call, Outcome, Page, Server, content};
use crate::mcp::wire::Failure;
use crate::park::{PARK_HEADER, Park};

/// Pages per `resources/list` page.
const RESOURCES_PAGE: usize = 100;
/// Docs results stay fresh this long (they change when the site is rebuilt).
const DOCS_TTL_MS: u64 = 60_000;
const DEFAULT_LIMIT: u64 = 5;
const MAX_LIMIT: u64 = 20;
const DEFAULT_MAX_CHARS: u64 = 20_000;
const MAX_CHARS: u64 = 100_000;
const SNIPPET_CHARS: usize = 240;

/// A page found by its URL: the source file it was built from, and that file's ETag.
struct Located {
    version: String,
    uri: String,
    source: String,
    etag: String,
}

pub struct EdgeMcp<'s, 'c> {
    pub site: &'s dyn SiteFiles,
    pub ctx: &'s Ctx<'c>,
}

/// An API error as the MCP transport answers it: credentials at the HTTP level (401 with a
/// challenge, 403), anything else as a JSON-RPC error with its HTTP status.
fn failure(e: ApiError) -> Failure {
    refusal(e.status, &e.message).unwrap_or_else(|| Failure {
        status: e.status,
        ..Failure::internal(format!("{}: {}", e.code, e.message))
    })
}

/// A credential refused (401, 403): the whole HTTP request is refused, with a challenge.
fn refusal(status: u16, message: &str) -> Option<Failure> {
    match status {
        401 => Some(Failure::unauthorized(message)),
        403 => Some(Failure::forbidden(message)),
        _ => None,
    }
}

fn schema(properties: Value, required: &[&str]) -> ToolInputSchema {
    let mut extra = Map::new();
    extra.insert("properties".into(), properties);
    extra.insert("required".into(), json!(required));
    extra.insert("additionalProperties".into(), json!(false));
    ToolInputSchema::new(None, Some(extra))
}

fn tool(name: &str, title: &str, description: &str, input: ToolInputSchema) -> Tool {
    Tool {
        annotations: None,
        description: Some(description.into()),
        icons: Vec::new(),
        input_schema: input,
        meta: None,
        name: name.into(),
        output_schema: None,
        title: Some(title.into()),
    }
}

/// The tools, in a fixed order.
fn tools() -> Vec<Tool> {
    vec![
        tool(
            "search_docs",
            "Search the documentation",
            "Full-text search (BM25) over every page of the documentation. Returns the best \
             pages first, each with its title, docs:// URI, version and a snippet.",
            schema(
                json!({
                    "query": {"type": "string", "minLength": 1, "description": "What to look for"},
                    "version": {"type": "string", "description": "Only this version (e.g. v1, or latest)"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
                }),
                &["query"],
            ),
        ),
        tool(
            "fetch_doc",
            "Fetch a documentation page",
            "A page's Markdown source, in chunks: give its docs:// URI (or version and path), \
             and offset with the next_offset of the previous chunk to read on.",
            schema(
                json!({
                    "uri": {"type": "string", "description": "docs://{version}/{path}"},
                    "version": {"type": "string"},
                    "path": {"type": "string", "description": "The page's path within its version"},
                    "offset": {"type": "integer", "minimum": 0, "default": 0, "description": "In characters"},
                    "max_chars": {"type": "integer", "minimum": 1, "maximum": MAX_CHARS, "default": DEFAULT_MAX_CHARS}
                }),
                &[],
            ),
        ),
        tool(
            "list_doc_versions",
            "List documentation versions",
            "The documentation's versions, newest first.",
            schema(json!({}), &[]),
        ),
        tool(
            "register_client",
            "Join a message group",
            "Registers client_id in group_id (or refreshes its heartbeat). Needs a writer \
             access token or API key; the client_id then belongs to its subject.",
            schema(
                json!({
                    "client_id": {"type": "string"},
                    "group_id": {"type": "string"}
                }),
                &["client_id", "group_id"],
            ),
        ),
        tool(
            "send_message",
            "Send a message to a group",
            "Appends payload (any JSON value) to the group's log as sender_id, which must be \
             registered in the group. idempotency_key makes a retry safe.",
            schema(
                json!({
                    "sender_id": {"type": "string"},
                    "group_id": {"type": "string"},
                    "payload": {"description": "Any JSON value"},
                    "idempotency_key": {"type": "string"}
                }),
                &["sender_id", "group_id", "payload"],
            ),
        ),
        tool(
            "receive_messages",
            "Receive a group's messages",
            "The group's messages client_id has not seen yet, oldest first. Pass after (the \
             next_after of the previous answer) to receive exactly once across retries, and \
             wait (seconds) to wait for a message when there is none yet.",
            schema(
                json!({
                    "client_id": {"type": "string"},
                    "group_id": {"type": "string"},
                    "after": {"type": "integer", "minimum": 0},
                    "limit": {"type": "integer", "minimum": 1, "maximum": crate::messaging::MAX_RECEIVE_LIMIT},
                    "wait": {"type": "integer", "minimum": 0, "description": "Seconds to wait for a message (long-poll), up to the deployment's receive_max_wait_seconds (30 by default)"}
                }),
                &["client_id", "group_id"],
            ),
        ),
    ]
}

/// A tool argument that is bad: a tool error the model can correct.
struct BadArgument(String);

type ToolResult = Result<CallToolResult, Failure>;

fn string_arg(args: &Map<String, Value>, name: &str) -> Result<Option<String>, BadArgument> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(BadArgument(format!("{name} must be a string"))),
    }
}

fn number_arg(
    args: &Map<String, Value>,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, BadArgument> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                BadArgument(format!(
                    "{name} must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

fn required(value: Option<String>, name: &str) -> Result<String, BadArgument> {
    value.ok_or_else(|| BadArgument(format!("{name} is required")))
}

impl EdgeMcp<'_, '_> {
    async fn catalog(&self) -> Result<Vec<u8>, Failure> {
        self.site
            .read(search::CATALOG_FILE)
            .await
            .ok_or_else(|| Failure::internal("the docs site has no catalog; rebuild it"))
    }

    async fn versions(&self) -> Result<Vec<String>, Failure> {
        let bytes = self.site.read("versions.json").await.unwrap_or_default();
        let listing: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(listing["versions"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `latest` is the newest version.
    async fn resolve_version(&self, version: &str) -> Result<String, Failure> {
        if version == "latest" {
            return Ok(self
                .versions()
                .await?
                .into_iter()
                .next()
                .unwrap_or_default());
        }
        Ok(version.to_owned())
    }

    /// The page at `version`/`path` (`latest` included), found as its URL is: through the
    /// route record, with every spelling the docs URLs accept (`guide/install`,
    /// `guide/install.md`, `guide/`, `guide`).
    async fn locate(&self, version: &str, path: &str) -> Option<Located> {
        let path = path.trim_start_matches('/');
        let mut segments = vec![safe_segment(version)?];
        for raw in path.split('/').filter(|s| !s.is_empty()) {
            segments.push(safe_segment(raw)?);
        }
        let dir = segments.len() == 1 || path.ends_with('/');
        let mut record = self.site.read(&site::route_key(&segments, dir)).await?;
        if let Ok(Route::Redirect { .. }) = serde_json::from_slice(&record) {
            record = self.site.read(&site::route_key(&segments, true)).await?;
        }
        match serde_json::from_slice(&record).ok()? {
            Route::File { raw: Some(raw), .. } => Some(Located {
                version: raw.file.split('/').next().unwrap_or_default().to_owned(),
                uri: format!("docs://{version}/{path}"),
                source: raw.file,
                etag: raw.etag,
            }),
            _ => None,
        }
    }

    async fn source(&self, file: &str, uri: &str) -> Result<String, Failure> {
        let bytes = self
            .site
            .read(file)
            .await
            .ok_or_else(|| Failure::resource_not_found(uri))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn search_docs(&self, args: &Map<String, Value>) -> Result<ToolResult, BadArgument> {
        let query = required(string_arg(args, "query")?, "query")?;
        if query.trim().is_empty() {
            return Err(BadArgument("query must not be empty".into()));
        }
        let limit = number_arg(args, "limit", 1..=MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT) as usize;
        let version = string_arg(args, "version")?;
        Ok(self.ranked(&query, version.as_deref(), limit).await)
    }

    async fn ranked(&self, query: &str, version: Option<&str>, limit: usize) -> ToolResult {
        let bytes = self.catalog().await?;
        let catalog = Catalog::parse(&bytes).ok_or_else(|| {
            Failure::internal("the docs catalog cannot be read; rebuild the site")
        })?;
        let version = match version {
            Some(v) => Some(self.resolve_version(v).await?),
            None => None,
        };
        let bytes = self
            .site
            .read(search::POSTINGS_FILE)
            .await
            .unwrap_or_default();
        let postings = Postings::parse(&bytes).ok_or_else(|| {
            Failure::internal("the search index cannot be read; rebuild the site")
        })?;
        let mut results = Vec::new();
        for (doc, score) in postings.search(query) {
            let Some(entry) = catalog.get(doc) else {
                continue;
            };
            if version.as_ref().is_some_and(|v| *v != entry.version) {
                continue;
            }
            let text = self
                .source(&entry.source, &entry.uri())
                .await
                .unwrap_or_default();
            let body = front_matter::split(&text).body;
            results.push(json!({
                "title": entry.title,
                "uri": entry.uri(),
                "version": entry.version,
                "path": entry.path,
                "url": format!("/docs/{}/{}", entry.version, entry.path),
                "score": (score * 1000.0).round() / 1000.0,
                "snippet": search::snippet(body, query, SNIPPET_CHARS),
            }));
            if results.len() == limit {
                break;
            }
        }
        let mut text = String::new();
        for (i, r) in results.iter().enumerate() {
            text.push_str(&format!(
                "{}. {} ({})\n   {}\n",
                i + 1,
                r["title"].as_str().unwrap_or_default(),
                r["uri"].as_str().unwrap_or_default(),
                r["snippet"].as_str().unwrap_or_default()
            ));
        }
        if results.is_empty() {
            text.push_str("No page matches.");
        }
        let mut result = content::structured(json!({ "results": results }));
        result.content = vec![content::text(text)];
        Ok(result)
    }

    async fn fetch_doc(&self, args: &Map<String, Value>) -> Result<ToolResult, BadArgument> {
        let (version, path) = match string_arg(args, "uri")? {
            Some(uri) => parse_uri(&uri).ok_or_else(|| {
                BadArgument(format!("{uri} is not a docs://{{version}}/{{path}} URI"))
            })?,
            None => (
                required(string_arg(args, "version")?, "uri or version")?,
                string_arg(args, "path")?.unwrap_or_default(),
            ),
        };
        let offset = number_arg(args, "offset", 0..=u32::MAX as u64)?.unwrap_or(0) as usize;
        let max =
            number_arg(args, "max_chars", 1..=MAX_CHARS)?.unwrap_or(DEFAULT_MAX_CHARS) as usize;
        let Some(page) = self.locate(&version, &path).await else {
            return Ok(Ok(content::error(format!(
                "no page {path:?} in version {version:?}; search_docs finds pages"
            ))));
        };
        let text = match self.source(&page.source, &page.uri).await {
            Ok(t) => t,
            Err(f) => return Ok(Err(f)),
        };
        let total = text.chars().count();
        let chunk: String = text.chars().skip(offset).take(max).collect();
        let end = offset.saturating_add(chunk.chars().count());
        let next = (end < total).then_some(end);
        let mut result = content::structured(json!({
            "uri": page.uri,
            "version": page.version,
            "etag": page.etag,
            "offset": offset,
            "next_offset": next,
            "total_chars": total,
            "text": chunk,
        }));
        let note = match next {
            Some(n) => format!("\n\n[{end} of {total} characters; continue with offset {n}]"),
            None => String::new(),
        };
        result.content = vec![content::text(format!("{chunk}{note}"))];
        Ok(Ok(result))
    }

    /// Runs a REST endpoint's handler for a message tool, with the caller's credential and
    /// address, and turns its answer into the tool's.
    async fn rest(
        &self,
        call: &Call<'_>,
        mut inner: Request,
        handler: impl AsyncFnOnce(&Request, &Ctx<'_>) -> Response,
    ) -> ToolResult {
        // The host's park header too: a message tool that waits is parked like its endpoint.
        for name in [
            "authorization",
            "spin-client-addr",
            "x-request-id",
            PARK_HEADER,
        ] {
            if let Some(v) = call.req.header_values(name).next() {
                inner.headers.push((name.into(), v.to_vec()));
            }
        }
        if !inner.body.is_empty() {
            inner
                .headers
                .push(("content-type".into(), b"application/json".to_vec()));
        }
        let resp = handler(&inner, self.ctx).await;
        if Park::is_park(&resp) {
            call.defer(resp);
            return Ok(content::structured(Value::Null));
        }
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if (200..300).contains(&resp.status) {
            return Ok(content::structured(body));
        }
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("the request was refused");
        match refusal(resp.status, message) {
            Some(refused) => Err(refused),
            None => Ok(content::error(body.to_string())),
        }
    }

    async fn message_tool(
        &self,
        call: &Call<'_>,
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<ToolResult, BadArgument> {
        Ok(match name {
            "register_client" => {
                let body = json!({
                    "client_id": required(string_arg(args, "client_id")?, "client_id")?,
                    "group_id": required(string_arg(args, "group_id")?, "group_id")?,
                });
                self.rest(call, post(&body), super::register).await
            }
            "send_message" => {
                let payload = args
                    .get("payload")
                    .cloned()
                    .ok_or_else(|| BadArgument("payload is required".into()))?;
                let body = json!({
                    "sender_id": required(string_arg(args, "sender_id")?, "sender_id")?,
                    "group_id": required(string_arg(args, "group_id")?, "group_id")?,
                    "payload": payload,
                });
                let mut req = post(&body);
                if let Some(key) = string_arg(args, "idempotency_key")? {
                    req.headers
                        .push((super::IDEMPOTENCY_KEY.into(), key.into_bytes()));
                }
                self.rest(call, req, super::send).await
            }
            _ => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair(
                    "client_id",
                    &required(string_arg(args, "client_id")?, "client_id")?,
                );
                query.append_pair(
                    "group_id",
                    &required(string_arg(args, "group_id")?, "group_id")?,
                );
                if let Some(after) = number_arg(args, "after", 0..=u64::MAX)? {
                    query.append_pair("after", &after.to_string());
                }
                let max = crate::messaging::MAX_RECEIVE_LIMIT as u64;
                if let Some(limit) = number_arg(args, "limit", 1..=max)? {
                    query.append_pair("limit", &limit.to_string());
                }
                // The endpoint checks it against the deployment's maximum.
                if let Some(wait) = number_arg(args, "wait", 0..=u32::MAX as u64)? {
                    query.append_pair("wait", &wait.to_string());
                }
                let req = Request {
                    method: "GET".into(),
                    query: Some(query.finish()),
                    ..Default::default()
                };
                self.rest(call, req, super::receive).await
            }
        })
    }
}

fn post(body: &Value) -> Request {
    Request {
        method: "POST".into(),
        body: body.to_string().into_bytes(),
        ..Default::default()
    }
}

/// `docs://v1/guide/install` → `("v1", "guide/install")`.
fn parse_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("docs://")?;
    let (version, path) = rest.split_once('/').unwrap_or((rest, ""));
    (!version.is_empty()).then(|| (version.to_owned(), path.to_owned()))
}

#[async_trait::async_trait(?Send)]
impl Server for EdgeMcp<'_, '_> {
    fn info(&self) -> Implementation {
        Implementation {
            description: Some("mcp-edge: versioned docs and message groups".into()),
            icons: Vec::new(),
            name: "mcp-edge".into(),
            title: Some("mcp-edge".into()),
            version: env!("CARGO_PKG_VERSION").into(),
            website_url: None,
        }
    }

    fn instructions(&self) -> Option<String> {
        Some(
            "Documentation: search_docs finds pages (best first); fetch_doc reads one in \
             chunks; every page is also a docs://{version}/{path} resource. Message groups: \
             register_client, then send_message and receive_messages (pass after = the last \
             next_after to receive each message once); these need a writer credential."
                .into(),
        )
    }

    fn capabilities(&self) -> ServerCapabilities {
        ServerCapabilities {
            completions: None,
            experimental: None,
            extensions: None,
            logging: None,
            prompts: None,
            resources: Some(ServerCapabilitiesResources {
                list_changed: None,
                subscribe: None,
            }),
            tools: Some(ServerCapabilitiesTools { list_changed: None }),
        }
    }

    async fn admit(&self, call: &Call<'_>) -> Result<Caching, Failure> {
        match config::docs_access(self.ctx.config).map_err(failure)? {
            DocsAccess::Public => Ok(Caching {
                ttl_ms: DOCS_TTL_MS,
                public: true,
            }),
            DocsAccess::Reader => {
                let who = super::principal(call.req, self.ctx)
                    .await
                    .map_err(failure)?;
                who.authorize(Action::ReadDocs).map_err(failure)?;
                Ok(Caching {
                    ttl_ms: DOCS_TTL_MS,
                    public: false,
                })
            }
        }
    }

    async fn tools(&self, _call: &Call<'_>) -> Result<Vec<Tool>, Failure> {
        Ok(tools())
    }

    async fn call_tool(
        &self,
        call: &Call<'_>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<Outcome<CallToolResult>, Failure> {
        let outcome = match name {
            "search_docs" => self.search_docs(&arguments).await,
            "fetch_doc" => self.fetch_doc(&arguments).await,
            "list_doc_versions" => {
                let versions = self.versions().await?;
                Ok(Ok(content::structured(json!({
                    "latest": versions.first(),
                    "versions": versions,
                }))))
            }
            "register_client" | "send_message" | "receive_messages" => {
                self.message_tool(call, name, &arguments).await
            }
            _ => return Err(Failure::not_found(format!("no such tool: {name}"), None)),
        };
        match outcome {
            Ok(result) => result.map(Outcome::from),
            Err(BadArgument(message)) => Ok(content::error(message).into()),
        }
    }

    async fn resources(
        &self,
        _call: &Call<'_>,
        cursor: Option<&str>,
    ) -> Result<Page<Resource>, Failure> {
        let start: usize = match cursor {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| Failure::not_found("invalid cursor", None))?,
        };
        let bytes = self.catalog().await?;
        let catalog = Catalog::parse(&bytes).ok_or_else(|| {
            Failure::internal("the docs catalog cannot be read; rebuild the site")
        })?;
        let items = (start..catalog.len().min(start + RESOURCES_PAGE))
            .filter_map(|i| catalog.get(i))
            .map(|e| Resource {
                annotations: None,
                description: e.description.clone(),
                icons: Vec::new(),
                meta: None,
                mime_type: Some("text/markdown".into()),
                name: format!("{}/{}", e.version, e.path),
                size: i64::try_from(e.size).ok(),
                title: Some(e.title.clone()),
                uri: e.uri(),
            })
            .collect();
        let end = start + RESOURCES_PAGE;
        Ok(Page {
            items,
            next_cursor: (end < catalog.len()).then(|| end.to_string()),
        })
    }

    async fn resource_templates(&self, _call: &Call<'_>) -> Result<Vec<ResourceTemplate>, Failure> {
        Ok(vec![ResourceTemplate {
            annotations: None,
            description: Some(
                "A documentation page's Markdown, by version (or latest) and path".into(),
            ),
            icons: Vec::new(),
            meta: None,
            mime_type: Some("text/markdown".into()),
            name: "docs-page".into(),
            title: Some("Documentation page".into()),
            uri_template: "docs://{version}/{+path}".into(),
        }])
    }

    async fn read_resource(
        &self,
        _call: &Call<'_>,
        uri: &str,
    ) -> Result<Vec<ReadResourceContent>, Failure> {
        let (version, path) = parse_uri(uri).ok_or_else(|| Failure::resource_not_found(uri))?;
        let page = self
            .locate(&version, &path)
            .await
            .ok_or_else(|| Failure::resource_not_found(uri))?;
        let text = self.source(&page.source, uri).await?;
        let mut meta = Map::new();
        meta.insert("etag".into(), json!(page.etag));
        Ok(vec![ReadResourceContent::TextResourceContents(
            TextResourceContents {
                meta: Some(MetaObject(meta)),
                mime_type: Some("text/markdown".into()),
                text,
                uri: uri.to_owned(),
            },
        )])
    }
}

/// Hosts `Host` and `Origin` may name besides loopback (`mcp_allowed_hosts`).
pub fn allowed_hosts(ctx: &Ctx<'_>) -> Result<Vec<String>, ApiError> {
    Ok(config::text(ctx.config, config::keys::MCP_ALLOWED_HOSTS)?
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect())
}
