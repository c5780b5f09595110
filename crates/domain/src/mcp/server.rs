//! What an MCP server is made of ([`Server`]: its tools, resources and prompts) and the
//! protocol around it, written once ([`handle`]): the transport checks of [`super::wire`],
//! version negotiation, `server/discover` (and `initialize` for earlier revisions), method
//! dispatch by declared capability, and the fields every 2026-07-28 result carries
//! (`resultType`, the server's identity in `_meta`, `ttlMs`/`cacheScope` on lists and reads).

use std::cell::RefCell;
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
    /// `params._meta.progressToken`, when the client asked for progress.
    pub progress_token: Option<Value>,
    /// `params.inputResponses` and `params.requestState` of a retried request.
    pub input_responses: Map<String, Value>,
    pub request_state: Option<String>,
    /// Notifications about this request, sent before its result (as an SSE response).
    notifications: RefCell<Vec<Value>>,
    /// An answer to the whole HTTP request in place of the method's result ([`Call::defer`]).
    deferred: RefCell<Option<Response>>,
}

impl Call<'_> {
    /// Answers the HTTP request with `resp` instead of the method's result: a park answer
    /// ([`crate::park`]), which the host holds and dispatches again, never shows a client.
    pub fn defer(&self, resp: Response) {
        *self.deferred.borrow_mut() = Some(resp);
    }

    /// Reports progress, when the client asked for it (`notifications/progress`).
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let Some(token) = &self.progress_token else {
            return;
        };
        let mut params = json!({ "progressToken": token, "progress": progress });
        if let Some(total) = total {
            params["total"] = json!(total);
        }
        if let Some(message) = message {
            params["message"] = json!(message);
        }
        self.notifications.borrow_mut().push(json!({
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": params,
        }));
    }
}

impl Call<'_> {
    /// The client's answer to the input request `key` of an earlier round, if it sent one.
    pub fn input_response(&self, key: &str) -> Option<&Value> {
        self.input_responses.get(key)
    }
}

/// A method's answer: its result, or a request for input first (multi round-trip requests,
/// 2026-07-28). The client asks again with `inputResponses` and the `requestState` given.
pub enum Outcome<T> {
    Complete(T),
    InputRequired(InputRequired),
}

impl<T> From<T> for Outcome<T> {
    fn from(result: T) -> Self {
        Outcome::Complete(result)
    }
}

/// Input the server needs from the client: requests by key (`elicitation/create`,
/// `sampling/createMessage`, `roots/list`), and opaque state to be sent back with the answers.
pub struct InputRequired {
    pub input_requests: Map<String, Value>,
    pub request_state: Option<String>,
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
    ) -> Result<Outcome<CallToolResult>, Failure>;

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
    ) -> Result<Outcome<GetPromptResult>, Failure> {
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
    let (result, notifications, deferred) = answer(req, server, message).await;
    if let Some(resp) = deferred {
        return (resp, handled);
    }
    let resp = match result {
        Ok(result) if notifications.is_empty() || !accepts_event_stream(req) => {
            wire::result_response(id, result)
        }
        Ok(result) => wire::event_stream(notifications, id, result),
        Err(f) => wire::error_response(Some(id), f),
    };
    (resp, handled)
}

/// `params.inputResponses`: absent, or an object of answers that are each an object (an
/// elicitation, sampling or roots result).
fn input_responses(params: &Map<String, Value>) -> Result<Map<String, Value>, Failure> {
    match params.get("inputResponses") {
        None => Ok(Map::new()),
        Some(Value::Object(answers)) if answers.values().all(Value::is_object) => {
            Ok(answers.clone())
        }
        Some(_) => Err(Failure::invalid_params(
            "inputResponses must be an object of result objects",
        )),
    }
}

/// Whether the client takes a response stream (every conforming client does).
fn accepts_event_stream(req: &Request) -> bool {
    req.header("accept").is_some_and(|a| {
        a.split(',')
            .any(|m| m.trim().starts_with("text/event-stream"))
    })
}

/// The result of a request, the notifications its method sent on the way, and an answer that
/// replaces them both ([`Call::defer`]).
async fn answer(
    req: &Request,
    server: &dyn Server,
    message: Message,
) -> (Result<Value, Failure>, Vec<Value>, Option<Response>) {
    let progress_token = message
        .params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .filter(|t| t.is_string() || t.is_number())
        .cloned();
    // The transport's checks come first, then the request's own parameters.
    let checked = wire::era(req, &message).and_then(|era| {
        let client = match era {
            Era::Stateless => Some(wire::stateless_meta(req, &message)?.client_capabilities),
            Era::Legacy(_) => None,
        };
        Ok((era, client, input_responses(&message.params)?))
    });
    let (era, client, input_responses) = match checked {
        Ok(checked) => checked,
        Err(f) => return (Err(f), Vec::new(), None),
    };
    let call = Call {
        req,
        era,
        client,
        progress_token,
        input_responses,
        request_state: message
            .params
            .get("requestState")
            .and_then(Value::as_str)
            .map(str::to_owned),
        notifications: RefCell::new(Vec::new()),
        deferred: RefCell::new(None),
    };
    let result = dispatch(&call, server, message).await;
    (
        result,
        call.notifications.into_inner(),
        call.deferred.into_inner(),
    )
}

async fn dispatch(
    call: &Call<'_>,
    server: &dyn Server,
    message: Message,
) -> Result<Value, Failure> {
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
    let caching = server.admit(call).await?;
    let mut result = match method {
        "server/discover" => {
            let discovered = rust_mcp_schema::DiscoverResult {
                cache_scope: scope(caching),
                capabilities: caps,
                instructions: server.instructions(),
                meta: None,
                result_type: "complete".into(),
                supported_versions: wire::supported_versions(),
                ttl_ms: caching.ttl_ms,
            };
            to_value(discovered)?
        }
        "initialize" => initialize(server, &message.params, caps)?,
        "tools/list" if caps.tools.is_some() => {
            let tools = server.tools(call).await?;
            cacheable(json!({ "tools": tools }), caching)
        }
        "tools/call" if caps.tools.is_some() => {
            let name = string_param(&message.params, "name")?;
            let arguments = match message.params.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(a)) => a.clone(),
                Some(_) => return Err(Failure::invalid_params("arguments must be an object")),
            };
            outcome(server.call_tool(call, &name, arguments).await?, stateless)?
        }
        "resources/list" if caps.resources.is_some() => {
            let cursor = optional_string(&message.params, "cursor")?;
            let page = server.resources(call, cursor.as_deref()).await?;
            let mut value = json!({ "resources": page.items });
            if let Some(next) = page.next_cursor {
                value["nextCursor"] = json!(next);
            }
            cacheable(value, caching)
        }
        "resources/templates/list" if caps.resources.is_some() => {
            let templates = server.resource_templates(call).await?;
            cacheable(json!({ "resourceTemplates": templates }), caching)
        }
        "resources/read" if caps.resources.is_some() => {
            let uri = string_param(&message.params, "uri")?;
            let contents = server.read_resource(call, &uri).await?;
            if contents.is_empty() {
                return Err(Failure::resource_not_found(&uri));
            }
            cacheable(json!({ "contents": contents }), caching)
        }
        "prompts/list" if caps.prompts.is_some() => {
            let prompts = server.prompts(call).await?;
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
            outcome(server.get_prompt(call, &name, arguments).await?, stateless)?
        }
        "completion/complete" if caps.completions.is_some() => {
            let completion = server.complete(call, &message.params).await?;
            json!({ "completion": completion })
        }
        _ => return Err(Failure::method_not_found(method)),
    };
    if stateless && let Value::Object(obj) = &mut result {
        obj.entry("resultType").or_insert_with(|| json!("complete"));
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

/// A result, or what the client must answer first (`resultType: "input_required"`).
fn outcome<T: serde::Serialize>(outcome: Outcome<T>, stateless: bool) -> Result<Value, Failure> {
    match outcome {
        Outcome::Complete(result) => {
            let mut value = to_value(result)?;
            if let Value::Object(obj) = &mut value {
                obj.insert("resultType".into(), json!("complete"));
            }
            Ok(value)
        }
        // Earlier revisions asked for input with requests of the server's own, over a
        // session stream, which this stateless server does not keep.
        Outcome::InputRequired(_) if !stateless => Err(Failure::internal(
            "this request needs input from the client; use protocol version 2026-07-28",
        )),
        Outcome::InputRequired(asked) => {
            let mut value = json!({
                "resultType": "input_required",
                "inputRequests": asked.input_requests,
            });
            if let Some(state) = asked.request_state {
                value["requestState"] = json!(state);
            }
            Ok(value)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::wire::LATEST;

    /// One tool that reports progress, then asks for a name before it answers.
    struct Greeter;

    #[async_trait::async_trait(?Send)]
    impl Server for Greeter {
        fn info(&self) -> Implementation {
            serde_json::from_value(json!({"name": "greeter", "version": "1"})).unwrap()
        }
        fn capabilities(&self) -> ServerCapabilities {
            ServerCapabilities {
                tools: Some(Default::default()),
                ..Default::default()
            }
        }
        async fn admit(&self, _call: &Call<'_>) -> Result<Caching, Failure> {
            Ok(Caching {
                ttl_ms: 0,
                public: true,
            })
        }
        async fn call_tool(
            &self,
            call: &Call<'_>,
            _name: &str,
            _arguments: Map<String, Value>,
        ) -> Result<Outcome<CallToolResult>, Failure> {
            call.progress(1.0, Some(2.0), Some("looking"));
            match call.input_response("who") {
                Some(who) => Ok(content::blocks(vec![content::text(format!(
                    "hello {}",
                    who["content"]["name"].as_str().unwrap_or("?")
                ))])
                .into()),
                None => Ok(Outcome::InputRequired(InputRequired {
                    input_requests: json!({"who": {"method": "elicitation/create", "params": {}}})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    request_state: Some("round-1".into()),
                })),
            }
        }
    }

    fn call(params: Value, accept: &str) -> Request {
        let mut params = params;
        params["name"] = json!("greet");
        params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(LATEST);
        params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
        let headers = [
            ("host", "localhost"),
            ("accept", accept),
            ("mcp-protocol-version", LATEST),
            ("mcp-method", "tools/call"),
            ("mcp-name", "greet"),
        ];
        let mut req = crate::mcp::wire::tests::req(&headers);
        req.body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
            .to_string()
            .into_bytes();
        req
    }

    fn events(body: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(body)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[pollster::test]
    async fn input_is_asked_for_then_used_and_progress_precedes_the_result_as_a_stream() {
        let both = "application/json, text/event-stream";
        let (resp, _) = handle(&call(json!({}), both), &Greeter, &[]).await;
        // No progress token: no notifications, one JSON object asking for input.
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["result"]["resultType"], "input_required", "{v}");
        assert_eq!(v["result"]["requestState"], "round-1");
        assert!(v["result"]["inputRequests"]["who"].is_object());

        let retry = json!({
            "inputResponses": {"who": {"action": "accept", "content": {"name": "ann"}}},
            "requestState": "round-1",
            "_meta": {"progressToken": "p1"}
        });
        let (resp, _) = handle(&call(retry.clone(), both), &Greeter, &[]).await;
        assert_eq!(resp.header("content-type"), Some("text/event-stream"));
        let got = events(&resp.body);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0]["method"], "notifications/progress");
        assert_eq!(got[0]["params"]["progressToken"], "p1");
        assert_eq!(got[1]["result"]["content"][0]["text"], "hello ann");
        assert_eq!(got[1]["result"]["resultType"], "complete");

        // A client that takes only JSON gets the result alone.
        let (resp, _) = handle(&call(retry, "application/json"), &Greeter, &[]).await;
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["result"]["content"][0]["text"], "hello ann");

        // Answers that are not result objects are refused.
        let bad = json!({"inputResponses": {"who": 42}});
        let (resp, _) = handle(&call(bad, both), &Greeter, &[]).await;
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(
            (resp.status, v["error"]["code"].as_i64()),
            (400, Some(-32602))
        );
    }
}
