//! Test-only: the fixtures the MCP conformance suite calls by name (`test_simple_text`,
//! `test://static-text`, `test_simple_prompt`, …), served through the same protocol code as
//! the product's `/mcp` ([`mcp_edge_domain::mcp::handle`]), so that the suite's scenarios
//! exercise that code without the product carrying fixtures.

mod mrtr;

use std::collections::BTreeMap;

use mcp_edge_domain::http::Request;
use mcp_edge_domain::mcp::{Caching, Call, Failure, Outcome, Page, Server, content, handle};
use rust_mcp_schema::{
    CallToolResult, CompleteResultCompletion, GetPromptResult, Implementation, JsonObject, Prompt,
    ReadResourceContent, Resource, ResourceTemplate, ServerCapabilities, Tool,
};
use serde_json::{Map, Value, json};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

/// A 1×1 PNG and a short WAV, as the suite's reference server sends.
const IMAGE: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const AUDIO: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";

/// A value of one of the schema's types, from its JSON.
fn of<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Failure> {
    serde_json::from_value(value).map_err(|e| Failure::internal(format!("fixture: {e}")))
}

struct Fixtures;

const TOOLS: [(&str, &str); 9] = [
    ("test_simple_text", "Tests simple text content response"),
    ("test_image_content", "Tests image content response"),
    ("test_audio_content", "Tests audio content response"),
    (
        "test_embedded_resource",
        "Tests embedded resource content response",
    ),
    (
        "test_multiple_content_types",
        "Tests response with multiple content types",
    ),
    ("test_error_handling", "Tests error response handling"),
    (
        "test_tool_with_progress",
        "Reports progress 0, 50 and 100 of 100 when asked",
    ),
    (
        "test_missing_capability",
        "Needs the client's sampling capability",
    ),
    (
        "test_logging_tool",
        "Would log at the request's logLevel; logs nothing without one",
    ),
];

#[async_trait::async_trait(?Send)]
impl Server for Fixtures {
    fn info(&self) -> Implementation {
        Implementation {
            description: None,
            icons: Vec::new(),
            name: "mcp-edge-conformance-fixtures".into(),
            title: None,
            version: "1.0.0".into(),
            website_url: None,
        }
    }

    fn capabilities(&self) -> ServerCapabilities {
        ServerCapabilities {
            completions: Some(JsonObject(BTreeMap::new())),
            experimental: None,
            extensions: None,
            logging: None,
            prompts: Some(Default::default()),
            resources: Some(Default::default()),
            tools: Some(Default::default()),
        }
    }

    async fn admit(&self, _call: &Call<'_>) -> Result<Caching, Failure> {
        Ok(Caching {
            ttl_ms: 60_000,
            public: true,
        })
    }

    async fn tools(&self, _call: &Call<'_>) -> Result<Vec<Tool>, Failure> {
        TOOLS
            .iter()
            .chain(mrtr::TOOLS.iter())
            .map(|(name, description)| {
                of(json!({
                    "name": name,
                    "description": description,
                    "inputSchema": {"type": "object", "properties": {}}
                }))
            })
            .collect()
    }

    async fn call_tool(
        &self,
        call: &Call<'_>,
        name: &str,
        _arguments: Map<String, Value>,
    ) -> Result<Outcome<CallToolResult>, Failure> {
        if let Some(answer) = mrtr::tool(call, name) {
            return answer;
        }
        let blocks = match name {
            "test_simple_text" => json!([
                {"type": "text", "text": "This is a simple text response for testing."}
            ]),
            "test_image_content" => {
                json!([{"type": "image", "data": IMAGE, "mimeType": "image/png"}])
            }
            "test_audio_content" => {
                json!([{"type": "audio", "data": AUDIO, "mimeType": "audio/wav"}])
            }
            "test_embedded_resource" => json!([{"type": "resource", "resource": {
                "uri": "test://embedded-resource", "mimeType": "text/plain",
                "text": "This is an embedded resource content."}}]),
            "test_multiple_content_types" => json!([
                {"type": "text", "text": "Multiple content types test:"},
                {"type": "image", "data": IMAGE, "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                    "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}
            ]),
            "test_error_handling" => {
                return Ok(
                    content::error("This tool intentionally returns an error for testing").into(),
                );
            }
            "test_tool_with_progress" => {
                for step in [0.0, 50.0, 100.0] {
                    call.progress(step, Some(100.0), None);
                }
                json!([{"type": "text", "text": "progress reported"}])
            }
            // No log message is sent: the request set no `logLevel` (and this server never logs).
            "test_logging_tool" => json!([{"type": "text", "text": "done, nothing logged"}]),
            "test_missing_capability" => {
                if call.client.as_ref().is_none_or(|c| c.sampling.is_none()) {
                    return Err(Failure::missing_capability("sampling"));
                }
                json!([{"type": "text", "text": "sampling is declared"}])
            }
            _ => return Err(Failure::not_found(format!("no such tool: {name}"), None)),
        };
        Ok(content::blocks(of(blocks)?).into())
    }

    async fn resources(
        &self,
        _call: &Call<'_>,
        _cursor: Option<&str>,
    ) -> Result<Page<Resource>, Failure> {
        Ok(Page {
            items: of(json!([
                {"uri": "test://static-text", "name": "static-text", "title": "Static Text Resource",
                 "description": "A static text resource for testing", "mimeType": "text/plain"},
                {"uri": "test://static-binary", "name": "static-binary", "title": "Static Binary Resource",
                 "description": "A static binary resource (image) for testing", "mimeType": "image/png"}
            ]))?,
            next_cursor: None,
        })
    }

    async fn resource_templates(&self, _call: &Call<'_>) -> Result<Vec<ResourceTemplate>, Failure> {
        of(
            json!([{"uriTemplate": "test://template/{id}/data", "name": "template",
            "title": "Resource Template", "mimeType": "application/json",
            "description": "A resource template with parameter substitution"}]),
        )
    }

    async fn read_resource(
        &self,
        _call: &Call<'_>,
        uri: &str,
    ) -> Result<Vec<ReadResourceContent>, Failure> {
        let contents = match uri {
            "test://static-text" => json!([{"uri": uri, "mimeType": "text/plain",
                "text": "This is the content of the static text resource."}]),
            "test://static-binary" => json!([{"uri": uri, "mimeType": "image/png", "blob": IMAGE}]),
            _ => match uri
                .strip_prefix("test://template/")
                .and_then(|r| r.strip_suffix("/data"))
            {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    let text = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                    json!([{"uri": uri, "mimeType": "application/json", "text": text.to_string()}])
                }
                _ => return Err(Failure::resource_not_found(uri)),
            },
        };
        of(contents)
    }

    async fn prompts(&self, _call: &Call<'_>) -> Result<Vec<Prompt>, Failure> {
        of(json!([
            {"name": "test_simple_prompt", "title": "Simple Test Prompt",
             "description": "A simple prompt without arguments"},
            {"name": "test_prompt_with_arguments", "title": "Prompt With Arguments",
             "description": "A prompt with required arguments", "arguments": [
                {"name": "arg1", "description": "First test argument", "required": true},
                {"name": "arg2", "description": "Second test argument", "required": true}]},
            {"name": "test_prompt_with_embedded_resource", "title": "Prompt With Embedded Resource",
             "description": "A prompt that includes an embedded resource", "arguments": [
                {"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
            {"name": "test_prompt_with_image", "title": "Prompt With Image",
             "description": "A prompt that includes image content"},
            {"name": mrtr::PROMPT, "description": "MRTR: a prompt that asks for a context first"}
        ]))
    }

    async fn get_prompt(
        &self,
        call: &Call<'_>,
        name: &str,
        arguments: BTreeMap<String, String>,
    ) -> Result<Outcome<GetPromptResult>, Failure> {
        if name == mrtr::PROMPT {
            return mrtr::prompt(call);
        }
        let arg = |k: &str| arguments.get(k).cloned().unwrap_or_default();
        let messages = match name {
            "test_simple_prompt" => json!([{"role": "user", "content":
                {"type": "text", "text": "This is a simple prompt for testing."}}]),
            "test_prompt_with_arguments" => json!([{"role": "user", "content": {"type": "text",
                "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2"))}}]),
            "test_prompt_with_embedded_resource" => json!([
                {"role": "user", "content": {"type": "resource", "resource": {"uri": arg("resourceUri"),
                    "mimeType": "text/plain", "text": "Embedded resource content for testing."}}},
                {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}}
            ]),
            "test_prompt_with_image" => json!([
                {"role": "user", "content": {"type": "image", "data": IMAGE, "mimeType": "image/png"}},
                {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}}
            ]),
            _ => return Err(Failure::not_found(format!("no such prompt: {name}"), None)),
        };
        of::<GetPromptResult>(json!({"messages": messages, "resultType": "complete"}))
            .map(Outcome::from)
    }

    async fn complete(
        &self,
        _call: &Call<'_>,
        _params: &Map<String, Value>,
    ) -> Result<CompleteResultCompletion, Failure> {
        Ok(CompleteResultCompletion {
            has_more: Some(false),
            total: Some(0),
            values: Vec::new(),
        })
    }
}

struct Guest;

impl wasi::exports::http::incoming_handler::Guest for Guest {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        mcp_edge_guest::serve(request, out, |req: Request| {
            mcp_edge_guest::block_on(handle(&req, &Fixtures, &[])).0
        });
    }
}

wasi::http::proxy::export!(Guest);
