//! The suite's multi round-trip fixtures (SEP-2322): tools, and one prompt, that first ask
//! the client for input (elicitation, sampling, roots) and answer once it has been given,
//! with `requestState` carried between rounds (signed where the suite tampers with it).

use mcp_edge_domain::mcp::{Call, Failure, InputRequired, Outcome, content};
use rust_mcp_schema::{CallToolResult, GetPromptResult};
use serde_json::{Map, Value, json};

/// Signs `requestState` of the tamper test. A test-only key: the fixture has no secrets.
const STATE_KEY: &[u8] = b"mcp-fixtures-request-state-key";

pub const TOOLS: [(&str, &str); 9] = [
    (
        "test_input_required_result_elicitation",
        "MRTR: asks for a name by elicitation",
    ),
    (
        "test_input_required_result_sampling",
        "MRTR: asks the client's model a question",
    ),
    (
        "test_input_required_result_list_roots",
        "MRTR: asks for the client's roots",
    ),
    (
        "test_input_required_result_request_state",
        "MRTR: round-trips requestState",
    ),
    (
        "test_input_required_result_multiple_inputs",
        "MRTR: three input requests at once",
    ),
    (
        "test_input_required_result_multi_round",
        "MRTR: two rounds of input",
    ),
    (
        "test_input_required_result_tampered_state",
        "MRTR: signed requestState",
    ),
    (
        "test_input_required_result_capabilities",
        "MRTR: asks only what the client can answer",
    ),
    (
        "test_streaming_elicitation",
        "MRTR: asks for input, nothing sent on the response stream",
    ),
];

pub const PROMPT: &str = "test_input_required_result_prompt";

fn nonce() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn elicit(message: &str, field: &str, kind: &str) -> Value {
    json!({"method": "elicitation/create", "params": {
        "message": message,
        "requestedSchema": {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    }})
}

fn sample(question: &str, max_tokens: u32) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": question}}],
        "maxTokens": max_tokens
    }})
}

fn roots() -> Value {
    json!({"method": "roots/list", "params": {}})
}

fn ask<T>(requests: Value, state: Option<Value>) -> Result<Outcome<T>, Failure> {
    let Value::Object(input_requests) = requests else {
        return Err(Failure::internal(
            "fixture: input requests must be an object",
        ));
    };
    Ok(Outcome::InputRequired(InputRequired {
        input_requests,
        request_state: state.map(|s| s.to_string()),
    }))
}

fn done(text: String) -> Result<Outcome<CallToolResult>, Failure> {
    Ok(content::blocks(vec![content::text(text)]).into())
}

/// A field of an elicitation answer's `content`.
fn answered(response: Option<&Value>, field: &str) -> String {
    response
        .and_then(|r| r["content"][field].as_str())
        .unwrap_or("unknown")
        .to_owned()
}

fn state(call: &Call<'_>) -> Option<Value> {
    serde_json::from_str(call.request_state.as_deref()?).ok()
}

fn signed(payload: Value) -> Value {
    let data = payload.to_string();
    let mac = hmac_sha256::HMAC::mac(data.as_bytes(), STATE_KEY);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    json!({"data": data, "hmac": hex})
}

fn verified(call: &Call<'_>) -> Option<Value> {
    let wrapper = state(call)?;
    let data = wrapper["data"].as_str()?;
    let mac = hmac_sha256::HMAC::mac(data.as_bytes(), STATE_KEY);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    (wrapper["hmac"].as_str() == Some(hex.as_str()))
        .then(|| serde_json::from_str(data).ok())
        .flatten()
}

/// The answer of MRTR tool `name`, if it is one.
pub fn tool(call: &Call<'_>, name: &str) -> Option<Result<Outcome<CallToolResult>, Failure>> {
    let got = |key: &str| call.input_response(key);
    Some(match name {
        "test_input_required_result_elicitation" | "test_streaming_elicitation" => {
            match got("user_name") {
                Some(r) => done(format!("Hello, {}!", answered(Some(r), "name"))),
                None => ask(
                    json!({"user_name": elicit("What is your name?", "name", "string")}),
                    None,
                ),
            }
        }
        "test_input_required_result_sampling" => match got("sample_request") {
            Some(r) => done(format!(
                "Sampling result: {}",
                r["content"]["text"].as_str().unwrap_or("no response")
            )),
            None => ask(
                json!({"sample_request": sample("What is the capital of France?", 100)}),
                None,
            ),
        },
        "test_input_required_result_list_roots" => match got("roots_request") {
            Some(r) => done(format!(
                "Found {} root(s)",
                r["roots"].as_array().map_or(0, Vec::len)
            )),
            None => ask(json!({"roots_request": roots()}), None),
        },
        "test_input_required_result_request_state" => {
            let ok = state(call).is_some_and(|s| s["kind"] == "request-state")
                && got("confirm").is_some_and(|r| r["content"]["ok"] == true);
            if ok {
                done("state-ok: requestState validated".into())
            } else {
                ask(
                    json!({"confirm": elicit("Please confirm", "ok", "boolean")}),
                    Some(json!({"kind": "request-state", "nonce": nonce()})),
                )
            }
        }
        "test_input_required_result_multiple_inputs" => {
            let all = ["user_name", "greeting", "client_roots"]
                .iter()
                .all(|k| got(k).is_some());
            if all && state(call).is_some_and(|s| s["kind"] == "multiple-inputs") {
                let greeting = got("greeting")
                    .and_then(|g| g["content"]["text"].as_str())
                    .unwrap_or("Hello there!");
                let roots = got("client_roots")
                    .and_then(|r| r["roots"].as_array())
                    .map_or(0, Vec::len);
                done(format!(
                    "Name: {}; Greeting: {greeting}; Roots: {roots}",
                    answered(got("user_name"), "name")
                ))
            } else {
                ask(
                    json!({
                        "user_name": elicit("What is your name?", "name", "string"),
                        "greeting": sample("Generate a greeting", 50),
                        "client_roots": roots()
                    }),
                    Some(json!({"kind": "multiple-inputs", "nonce": nonce()})),
                )
            }
        }
        "test_input_required_result_multi_round" => {
            let first = || {
                ask(
                    json!({"step1": elicit("Step 1: What is your name?", "name", "string")}),
                    Some(json!({"round": 1, "nonce": nonce()})),
                )
            };
            match state(call) {
                Some(s) if s["round"] == 1 && got("step1").is_some() => ask(
                    json!({"step2": elicit("Step 2: What is your favorite color?", "color", "string")}),
                    Some(
                        json!({"round": 2, "name": answered(got("step1"), "name"), "nonce": nonce()}),
                    ),
                ),
                Some(s) if s["round"] == 2 && got("step2").is_some() => done(format!(
                    "Multi-round complete for {} who likes {}",
                    s["name"].as_str().unwrap_or("friend"),
                    answered(got("step2"), "color")
                )),
                _ => first(),
            }
        }
        "test_input_required_result_tampered_state" => {
            if call.request_state.is_some() {
                match verified(call) {
                    None => Err(Failure::invalid_params(
                        "requestState integrity check failed",
                    )),
                    Some(s) if s["kind"] == "tamper-test" && got("confirm").is_some() => {
                        done("integrity-ok: state verified".into())
                    }
                    Some(_) => tamper_round(),
                }
            } else {
                tamper_round()
            }
        }
        "test_input_required_result_capabilities" => {
            if !call.input_responses.is_empty() {
                let keys: Vec<&str> = call.input_responses.keys().map(String::as_str).collect();
                return Some(done(format!(
                    "capabilities-ok: received {}",
                    keys.join(",")
                )));
            }
            let caps = call.client.as_ref();
            let mut requests = Map::new();
            if caps.is_some_and(|c| c.elicitation.is_some()) {
                requests.insert(
                    "elicit_input".into(),
                    elicit("Elicitation input", "value", "string"),
                );
            }
            if caps.is_some_and(|c| c.sampling.is_some()) {
                requests.insert("sample_input".into(), sample("Sample request", 50));
            }
            if requests.is_empty() {
                done("No supported capabilities declared".into())
            } else {
                ask(
                    Value::Object(requests),
                    Some(signed(
                        json!({"kind": "capabilities-test", "nonce": nonce()}),
                    )),
                )
            }
        }
        _ => return None,
    })
}

fn tamper_round() -> Result<Outcome<CallToolResult>, Failure> {
    ask(
        json!({"confirm": elicit("Please confirm", "ok", "boolean")}),
        Some(signed(json!({"kind": "tamper-test", "nonce": nonce()}))),
    )
}

/// The MRTR prompt: asks for a context, then uses it.
pub fn prompt(call: &Call<'_>) -> Result<Outcome<GetPromptResult>, Failure> {
    match call.input_response("user_context") {
        Some(r) => {
            let text = format!("Prompt with context: {}", answered(Some(r), "context"));
            serde_json::from_value::<GetPromptResult>(json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
                "resultType": "complete"
            }))
            .map(Outcome::from)
            .map_err(|e| Failure::internal(format!("fixture: {e}")))
        }
        None => ask(
            json!({"user_context": elicit("What context should the prompt use?", "context", "string")}),
            None,
        ),
    }
}
