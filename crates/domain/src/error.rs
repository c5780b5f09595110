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
        serde_json::to_vec(&serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        }))
        .unwrap_or_default()
    }
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

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let err = ApiError::unauthorized("missing token");
        assert_eq!(err.status, 401);
        assert!(err.headers.contains(&("www-authenticate", "Bearer".into())));
    }
}
