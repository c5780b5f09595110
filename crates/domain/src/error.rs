//! The error model: every failure a client can see is an [`ApiError`] with an HTTP status, a
//! stable snake_case code and a human message, serialised as
//! `{"error":{"code":"...","message":"..."}}`.

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers (`Allow` on 405, `WWW-Authenticate` on 401).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message).with_header("www-authenticate", "Bearer")
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(403, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(
            405,
            "method_not_allowed",
            format!("this route accepts {allowed}"),
        )
        .with_header("allow", allowed)
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(413, "payload_too_large", message)
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            415,
            "unsupported_media_type",
            "request body must be application/json",
        )
    }

    /// The server is missing configuration it needs; the message names what.
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::new(500, "server_misconfigured", message)
    }

    pub fn store_unavailable(err: &StoreError) -> Self {
        Self::new(
            503,
            "store_unavailable",
            format!("the key-value store is unavailable: {err}"),
        )
    }

    /// Too much contention on one key; the client may retry.
    pub fn contention(what: &str) -> Self {
        Self::new(
            503,
            "contention",
            format!("too many concurrent updates to {what}; retry"),
        )
        .with_header("retry-after", "1")
    }

    /// The JSON body clients see.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        })
        .unwrap_or_default()
    }
}

/// The body of every error answer: `{"error":{"code":"...","message":"..."}}`.
#[derive(serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail<'a> {
    /// Stable, for programs: one of [`CODES`].
    #[cfg_attr(feature = "openapi", schema(schema_with = code_schema))]
    pub code: &'a str,
    /// For people; its wording may change.
    pub message: &'a str,
}

/// Every error code a client can be answered with, and what it means. The runtimes' own
/// refusals (before or around a component) are here too. A test holds the code to this list.
pub const CODES: &[(&str, &str)] = &[
    ("invalid_json", "the body is not JSON, or too deeply nested"),
    (
        "invalid_request",
        "the JSON body lacks a field, or has one of the wrong type",
    ),
    ("empty_body", "the route needs a JSON body"),
    (
        "invalid_query",
        "a query parameter is missing, repeated or malformed",
    ),
    (
        "invalid_id",
        "a client, group or user id is empty, too long or has other characters than A-Z a-z 0-9 _ - . : @",
    ),
    (
        "invalid_password",
        "a password is empty or longer than 1024 bytes",
    ),
    ("invalid_key_name", "an API key name is empty or too long"),
    (
        "invalid_expiry",
        "an API key's expires_in_seconds is 0 or too large",
    ),
    (
        "invalid_idempotency_key",
        "the Idempotency-Key header is empty, too long or not visible ASCII",
    ),
    ("unreadable_body", "the request body could not be read"),
    (
        "unauthorized",
        "no credential, or one that does not verify or has expired",
    ),
    ("invalid_credentials", "wrong user name or password"),
    ("invalid_api_key", "an unknown, revoked or expired API key"),
    (
        "invalid_refresh_token",
        "an unknown or expired refresh token",
    ),
    (
        "refresh_token_reused",
        "a refresh token was used twice; its session is revoked",
    ),
    ("session_revoked", "the refresh token's session has ended"),
    ("user_disabled", "the credential's user is disabled"),
    ("insufficient_role", "the credential's role may not do this"),
    (
        "client_owned_by_other",
        "the client id belongs to another user",
    ),
    ("not_in_group", "the client is not a member of that group"),
    (
        "role_exceeds_user",
        "an API key cannot have a higher role than its user",
    ),
    (
        "last_admin",
        "the last enabled admin cannot be removed, disabled or demoted",
    ),
    ("route_not_found", "no route matches this path"),
    ("client_not_found", "no such client is registered"),
    ("doc_not_found", "no such document"),
    ("user_not_found", "no such user"),
    ("api_key_not_found", "no such API key"),
    (
        "method_not_allowed",
        "the route does not take this method (Allow names those it takes)",
    ),
    (
        "not_acceptable",
        "the document is not available in a type the Accept header takes",
    ),
    ("request_timeout", "the request body did not arrive in time"),
    (
        "group_full",
        "the group holds max_clients_per_group members",
    ),
    ("user_exists", "a user of that name exists already"),
    (
        "idempotency_key_in_use",
        "the Idempotency-Key was used for a different send",
    ),
    (
        "client_expired",
        "the client was expired for silence and must register again",
    ),
    (
        "payload_too_large",
        "the body or the payload is over its limit",
    ),
    ("unsupported_media_type", "the body is not application/json"),
    (
        "rate_limited",
        "too many requests from this address or user (see Retry-After)",
    ),
    (
        "too_many_login_failures",
        "too many failed logins for this user (see Retry-After)",
    ),
    (
        "group_backlog_full",
        "the group's log is full until the next cleanup (see Retry-After)",
    ),
    (
        "too_many_waiting",
        "as many receives are waiting for this client, address or server as may (see \
         Retry-After)",
    ),
    (
        "server_misconfigured",
        "the deployment lacks configuration it needs",
    ),
    ("serialization_error", "an answer could not be serialised"),
    ("internal", "an internal check failed"),
    ("hash_error", "a password could not be hashed"),
    ("token_error", "an access token could not be issued"),
    ("entropy_unavailable", "the platform gave no randomness"),
    ("corrupt_record", "a stored record could not be read"),
    (
        "invalid_response_header",
        "a handler set a header the platform refuses",
    ),
    ("component_missing", "the route's component is not loaded"),
    ("component_failed", "the component trapped or failed"),
    ("component_error", "the component reported an error"),
    (
        "instance_setup_failed",
        "the component could not be instantiated",
    ),
    ("store_unavailable", "the key-value store did not answer"),
    (
        "contention",
        "too many concurrent updates of one record; retry (see Retry-After)",
    ),
    (
        "client_expiring",
        "a cleanup run is expiring this client right now; retry",
    ),
    ("not_ready", "the store check failed (see Retry-After)"),
    (
        "shutting_down",
        "the server is shutting down; retry shortly or on another replica",
    ),
    ("unavailable", "the platform could not serve the request"),
    (
        "timeout",
        "the component did not answer within the deadline",
    ),
];

/// The `code` schema: a string, one of [`CODES`].
#[cfg(feature = "openapi")]
fn code_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    let described = CODES
        .iter()
        .map(|(code, meaning)| format!("- `{code}`: {meaning}"))
        .collect::<Vec<_>>()
        .join("\n");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(CODES.iter().map(|(code, _)| *code)))
        .description(Some(format!(
            "Stable, for programs; the message is for people.\n\n{described}"
        )))
        .build()
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::store_unavailable(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_documented_json_shape() {
        let err = ApiError::not_found("client_not_found", "no such client");
        let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(v["error"]["code"], "client_not_found");
        assert_eq!(v["error"]["message"], "no such client");
        assert_eq!(v.as_object().unwrap().len(), 1);
    }

    /// The codes that error constructors name in the sources of every runtime: the first
    /// string literal after `ApiError::new(`, `ApiError::bad_request(`, …, `json_error(` (a
    /// status before it skipped), and after a `(NNN, ` tuple.
    fn codes_in(text: &str) -> Vec<String> {
        const OPENERS: &[&str] = &[
            "ApiError::new(",
            "ApiError::bad_request(",
            "ApiError::forbidden(",
            "ApiError::not_found(",
            "json_error(",
        ];
        let literal_after = |rest: &str| -> Option<String> {
            let rest = rest.trim_start();
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let rest = if digits == 3 {
                rest[3..].trim_start().strip_prefix(',')?.trim_start()
            } else {
                rest
            };
            let body = rest.strip_prefix('"')?;
            let end = body.find('"')?;
            let code = &body[..end];
            (!code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .then(|| code.to_owned())
        };
        let mut found = Vec::new();
        for (i, _) in text.char_indices() {
            let rest = &text[i..];
            if let Some(opener) = OPENERS.iter().find(|o| rest.starts_with(**o)) {
                found.extend(literal_after(&rest[opener.len()..]));
            } else if rest.starts_with('(') && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
                found.extend(literal_after(&rest[1..]));
            }
        }
        found
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                sources(&path, out);
            } else if name.ends_with(".rs") && !name.contains("test") && name != "fuzzing.rs" {
                let mut text = std::fs::read_to_string(&path).unwrap();
                // The catalog itself names every code; it is what is checked.
                if let Some(start) = text.find("pub const CODES") {
                    let end = start + text[start..].find("];").unwrap();
                    text.replace_range(start..end, "");
                }
                out.push((path.display().to_string(), text));
            }
        }
    }

    #[test]
    fn every_code_the_runtimes_answer_with_is_catalogued_and_every_entry_is_used() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in [
            "crates/domain/src",
            "crates/guest/src",
            "crates/host/src",
            "workers/src",
            "src",
        ] {
            sources(&root.join(dir), &mut files);
        }
        let catalogued: Vec<&str> = CODES.iter().map(|(c, _)| *c).collect();
        let mut seen = std::collections::BTreeSet::new();
        for (path, text) in &files {
            for code in codes_in(text) {
                assert!(
                    catalogued.contains(&code.as_str()),
                    "{path} answers with `{code}`, which error::CODES lacks"
                );
                seen.insert(code);
            }
        }
        for code in catalogued {
            let quoted = format!("\"{code}\"");
            assert!(
                files.iter().any(|(_, text)| text.contains(&quoted)),
                "error::CODES lists `{code}`, which no source names"
            );
        }
        assert!(seen.len() > 30, "the scan found only {seen:?}");
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let err = ApiError::unauthorized("missing token");
        assert_eq!(err.status, 401);
        assert!(err.headers.contains(&("www-authenticate", "Bearer".into())));
    }
}
