//! What an MCP server is made of ([`Server`]: its tools, resources and prompts) and the
//! protocol around it, written once ([`handle`]): the transport checks of [`super::wire`],
//! version negotiation, `server/discover` (and `initialize` for earlier revisions), method
//! dispatch by declared capability, and the fields every 2026-07-28 result carries
//! (`resultType`, the server's identity in `_meta`, `ttlMs`/`cacheScope` on lists and reads).

use std::collections::BTreeMap;

use rust_mcp_schema::{
    CallToolResult, ClientCapabilities, CompleteResultCompletion, GetPromptResult, Implementation,
    Prompt, ReadResourceContent, Resource, ResourceTemplate, ServerCapabilities, Tool,
};
use serde_json::{Map, Value, json};

use super::wire::{self, Era, Failure, Message};
use crate::http::{Request, Response};

/// One request, as a server method sees it.
pub struct Call<'a> {
    pub req: &'a Request,
    pub era: Era,
    /// What the client declared in this request's `_meta` (2026-07-28). Earlier revisions
    /// declare capabilities once, in `initialize`, which a stateless server does not keep.
    pub client: Option<ClientCapabilities>,
}

/// How long a list or read result stays fresh, and who may share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caching {
    pub ttl_ms: u64,
    /// `cacheScope: "public"`: nothing in it depends on who asked.
    pub public: bool,
}

/// One page of a paged list.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// An MCP server's features. Methods of a capability the server does not declare are never
/// called (the client gets "method not found").
#[async_trait::async_trait(?Send)]
pub trait Server {
    fn info(&self) -> Implementation;
    fn instructions(&self) -> Option<String> {
        None
    }
    fn capabilities(&self) -> ServerCapabilities;
    /// Checked before any method runs (e.g. docs that need a reader token).
    async fn admit(&self, _call: &Call<'_>) -> Result<Caching, Failure>;

    async fn tools(&self, _call: &Call<'_>) -> Result<Vec<Tool>, Failure> {
        Ok(Vec::new())
    }
    async fn call_tool(
        &self,
        call: &Call<'_>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallToolResult, Failure>;

    async fn resources(
        &self,
        _call: &Call<'_>,
        _cursor: Option<&str>,
    ) -> Result<Page<Resource>, Failure> {
        Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        })
    }
    async fn resource_templates(&self, _call: &Call<'_>) -> Result<Vec<ResourceTemplate>, Failure> {
        Ok(Vec::new())
    }
    async fn read_resource(
        &self,
        _call: &Call<'_>,
        uri: &str,
    ) -> Result<Vec<ReadResourceContent>, Failure> {
        Err(Failure::resource_not_found(uri))
    }

    async fn prompts(&self, _call: &Call<'_>) -> Result<Vec<Prompt>, Failure> {
        Ok(Vec::new())
    }
    async fn get_prompt(
        &self,
        _call: &Call<'_>,
        name: &str,
        _arguments: BTreeMap<String, String>,
    ) -> Result<GetPromptResult, Failure> {
        Err(Failure::not_found(format!("no such prompt: {name}"), None))
    }

    async fn complete(
        &self,
        _call: &Call<'_>,
        _params: &Map<String, Value>,
    ) -> Result<CompleteResultCompletion, Failure> {
        Err(Failure::method_not_found("completion/complete"))
    }
}

/// What a handled request was, for the audit trail and logs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Handled {
    pub method: Option<String>,
    /// The tool or resource named.
    pub name: Option<String>,
}

/// Answers one POST to the MCP endpoint. `allowed_hosts` are the host names, besides
/// loopback, that `Host` and `Origin` may name (`*`: any `Host`).
pub async fn handle(
    req: &Request,
    server: &dyn Server,
    allowed_hosts: &[String],
) -> (Response, Handled) {
    let mut handled = Handled::default();
    if req.method != "POST" {
        let resp = wire::error_response(
            None,
            Failure {
                status: 405,
                ..Failure::invalid_request("the MCP endpoint accepts POST only")
            },
        )
        .with_header("allow", "POST");
        return (resp, handled);
    }
    if let Err(f) = wire::check_origin(req, allowed_hosts) {
        return (wire::error_response(None, f), handled);
    }
    let message = match wire::parse(&req.body) {
        Ok(m) => m,
        Err(f) => return (wire::error_response(wire::id_of(&req.body), f), handled),
    };
    handled.method = Some(message.method.clone());
    handled.name = ["name", "uri"]
        .iter()
        .find_map(|k| message.params.get(*k).and_then(Value::as_str))
        .map(|s| s.chars().take(200).collect());
    let Some(id) = message.id.clone() else {
        // Notifications (`notifications/initialized` from earlier revisions) need no answer.
        return (Response::new(202), handled);
    };
    let resp = match answer(req, server, message).await {
        Ok(result) => wire::result_response(id, result),
        Err(f) => wire::error_response(Some(id), f),
    };
    (resp, handled)
}

async fn answer(req: &Request, server: &dyn Server, message: Message) -> Result<Value, Failure> {
    let era = wire::era(req, &message)?;
    let client = match era {
        Era::Stateless => Some(wire::stateless_meta(req, &message)?.client_capabilities),
        Era::Legacy(_) => None,
    };
    let call = Call { req, era, client };
    let method = message.method.as_str();
    let stateless = call.era == Era::Stateless;
    // Methods of earlier revisions that 2026-07-28 removed, and the one it added.
    match (method, stateless) {
        ("initialize" | "ping" | "logging/setLevel", true) | ("server/discover", false) => {
            return Err(Failure::method_not_found(method));
        }
        ("ping", false) => return Ok(json!({})),
        _ => {}
    }
    let caps = server.capabilities();
    let caching = server.admit(&call).await?;
    let mut result = match method {
        "server/discover" => {
            let discovered = rust_mcp_schema::DiscoverResult {
                cache_scope: scope(caching),
                capabilities: caps,
                instructions: server.instructions(),
                meta: None,
                result_type: String::new(),
                supported_versions: wire::supported_versions(),
                ttl_ms: caching.ttl_ms,
            };
            to_value(discovered)?
        }
        "initialize" => initialize(server, &message.params, caps)?,
        "tools/list" if caps.tools.is_some() => {
            let tools = server.tools(&call).await?;
            cacheable(json!({ "tools": tools }), caching)
        }
        "tools/call" if caps.tools.is_some() => {
            let name = string_param(&message.params, "name")?;
            let arguments = match message.params.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(a)) => a.clone(),
                Some(_) => return Err(Failure::invalid_params("arguments must be an object")),
            };
            to_value(server.call_tool(&call, &name, arguments).await?)?
        }
        "resources/list" if caps.resources.is_some() => {
            let cursor = optional_string(&message.params, "cursor")?;
            let page = server.resources(&call, cursor.as_deref()).await?;
            let mut value = json!({ "resources": page.items });
            if let Some(next) = page.next_cursor {
                value["nextCursor"] = json!(next);
            }
            cacheable(value, caching)
        }
        "resources/templates/list" if caps.resources.is_some() => {
            let templates = server.resource_templates(&call).await?;
            cacheable(json!({ "resourceTemplates": templates }), caching)
        }
        "resources/read" if caps.resources.is_some() => {
            let uri = string_param(&message.params, "uri")?;
            let contents = server.read_resource(&call, &uri).await?;
            if contents.is_empty() {
                return Err(Failure::resource_not_found(&uri));
            }
            cacheable(json!({ "contents": contents }), caching)
        }
        "prompts/list" if caps.prompts.is_some() => {
            let prompts = server.prompts(&call).await?;
            cacheable(json!({ "prompts": prompts }), caching)
        }
        "prompts/get" if caps.prompts.is_some() => {
            let name = string_param(&message.params, "name")?;
            let arguments = match message.params.get("arguments") {
                None | Some(Value::Null) => BTreeMap::new(),
                Some(a) => serde_json::from_value(a.clone()).map_err(|_| {
                    Failure::invalid_params("prompt arguments must be an object of strings")
                })?,
            };
            to_value(server.get_prompt(&call, &name, arguments).await?)?
        }
        "completion/complete" if caps.completions.is_some() => {
            let completion = server.complete(&call, &message.params).await?;
            json!({ "completion": completion })
        }
        _ => return Err(Failure::method_not_found(method)),
    };
    if stateless && let Value::Object(obj) = &mut result {
        obj.insert("resultType".into(), json!("complete"));
        let meta = obj.entry("_meta").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            meta.insert(
                "io.modelcontextprotocol/serverInfo".into(),
                to_value(server.info())?,
            );
        }
    }
    Ok(result)
}

/// The `initialize` of earlier revisions: the client's version when it is one we speak, else
/// our newest of them. Nothing is remembered; every later request stands alone.
fn initialize(
    server: &dyn Server,
    params: &Map<String, Value>,
    capabilities: ServerCapabilities,
) -> Result<Value, Failure> {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| wire::LEGACY.contains(v))
        .unwrap_or(wire::LEGACY[0]);
    let mut value = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server.info(),
    });
    if let Some(instructions) = server.instructions() {
        value["instructions"] = json!(instructions);
    }
    Ok(value)
}

fn scope(caching: Caching) -> rust_mcp_schema::DiscoverResultCacheScope {
    if caching.public {
        rust_mcp_schema::DiscoverResultCacheScope::Public
    } else {
        rust_mcp_schema::DiscoverResultCacheScope::Private
    }
}

/// A list or read result with its cache hints (`CacheableResult`).
fn cacheable(mut value: Value, caching: Caching) -> Value {
    value["ttlMs"] = json!(caching.ttl_ms);
    value["cacheScope"] = json!(if caching.public { "public" } else { "private" });
    value
}

fn to_value(v: impl serde::Serialize) -> Result<Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::internal(format!("result not encodable: {e}")))
}

fn string_param(params: &Map<String, Value>, name: &str) -> Result<String, Failure> {
    params
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Failure::invalid_params(format!("params.{name} must be a string")))
}

fn optional_string(params: &Map<String, Value>, name: &str) -> Result<Option<String>, Failure> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Failure::invalid_params(format!(
            "params.{name} must be a string"
        ))),
    }
}

/// Building blocks for tool results.
pub mod content {
    use rust_mcp_schema::{CallToolResult, ContentBlock, TextContent};
    use serde_json::Value;

    pub fn text(text: impl Into<String>) -> ContentBlock {
        ContentBlock::TextContent(TextContent::new(text.into(), None, None))
    }

    /// A successful result: `structured` as JSON, and as text for clients that only read text.
    pub fn structured(structured: Value) -> CallToolResult {
        CallToolResult {
            content: vec![text(structured.to_string())],
            is_error: None,
            meta: None,
            result_type: "complete".into(),
            structured_content: Some(structured),
        }
    }

    /// A tool error the model can read and act on (`isError`), not a protocol error.
    pub fn error(message: impl Into<String>) -> CallToolResult {
        CallToolResult {
            content: vec![text(message)],
            is_error: Some(true),
            meta: None,
            result_type: "complete".into(),
            structured_content: None,
        }
    }

    pub fn blocks(content: Vec<ContentBlock>) -> CallToolResult {
        CallToolResult {
            content,
            is_error: None,
            meta: None,
            result_type: "complete".into(),
            structured_content: None,
        }
    }
}
