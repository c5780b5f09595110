//! Configuration the endpoints read. Values arrive as strings (Spin variables through
//! `wasi:config`, Worker vars, environment) and are parsed and checked here, once, with an
//! error that names the variable.

use std::collections::HashMap;

use crate::error::ApiError;

/// Variable names, identical on every platform (Spin variables are lower snake case).
pub mod keys {
    pub const JWT_SECRET: &str = "jwt_secret";
    pub const USERS: &str = "users";
    pub const TOKEN_TTL_SECONDS: &str = "token_ttl_seconds";
    pub const MAX_PAYLOAD_BYTES: &str = "max_payload_bytes";
    pub const MAX_RECEIVE_BYTES: &str = "max_receive_bytes";
    pub const DOCS_ACCESS: &str = "docs_access";
    pub const CLIENT_TIMEOUT_SECONDS: &str = "client_timeout_seconds";
    pub const MESSAGE_RETENTION_SECONDS: &str = "message_retention_seconds";
    pub const MAX_MESSAGES_PER_GROUP: &str = "max_messages_per_group";
    pub const CLEANUP_BATCH: &str = "cleanup_batch";
    pub const CLEANUP_BUCKET_SECONDS: &str = "cleanup_bucket_seconds";
    pub const MAX_CLIENTS_PER_GROUP: &str = "max_clients_per_group";
    pub const RATE_LIMIT_BURST: &str = "rate_limit_burst";
    pub const RATE_LIMIT_REFILL_MS: &str = "rate_limit_refill_ms";
    pub const LOGIN_FAILURE_BURST: &str = "login_failure_burst";
    pub const LOGIN_FAILURE_REFILL_MS: &str = "login_failure_refill_ms";
    pub const LOGIN_USER_FAILURE_BURST: &str = "login_user_failure_burst";
    pub const LOGIN_USER_FAILURE_REFILL_MS: &str = "login_user_failure_refill_ms";
    pub const REFRESH_TOKEN_TTL_SECONDS: &str = "refresh_token_ttl_seconds";
    pub const CORS_ALLOWED_ORIGINS: &str = "cors_allowed_origins";
    pub const MCP_ALLOWED_HOSTS: &str = "mcp_allowed_hosts";
    pub const RECEIVE_MAX_WAIT_SECONDS: &str = "receive_max_wait_seconds";
    pub const STREAM_LIFETIME_SECONDS: &str = "stream_lifetime_seconds";
    pub const STREAM_KEEPALIVE_SECONDS: &str = "stream_keepalive_seconds";
}

pub const DEFAULT_TOKEN_TTL_SECONDS: u64 = 900;
/// 30 days.
pub const DEFAULT_REFRESH_TOKEN_TTL_SECONDS: u64 = 30 * 24 * 3600;
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_RECEIVE_BYTES: usize = 4 * 1024 * 1024;
pub const MIN_SECRET_BYTES: usize = 32;
pub const DEFAULT_MAX_CLIENTS_PER_GROUP: u64 = 1000;
pub const DEFAULT_MAX_MESSAGES_PER_GROUP: u64 = 10_000;
/// The longest `wait` a receive may ask for.
pub const DEFAULT_RECEIVE_MAX_WAIT_SECONDS: u64 = 30;
/// How long a message stream lasts before the client reconnects.
pub const DEFAULT_STREAM_LIFETIME_SECONDS: u64 = 300;
/// How often an idle stream sends a comment line, so proxies keep it open.
pub const DEFAULT_STREAM_KEEPALIVE_SECONDS: u64 = 15;

/// A source of configuration values.
pub trait ConfigSource {
    /// The value of `key`, `Ok(None)` when unset, `Err` when the source itself failed.
    fn get(&self, key: &str) -> Result<Option<String>, String>;
}

impl ConfigSource for HashMap<String, String> {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        Ok(HashMap::get(self, key).cloned())
    }
}

fn value(src: &dyn ConfigSource, key: &str) -> Result<Option<String>, ApiError> {
    match src.get(key) {
        Ok(v) => Ok(v.filter(|s| !s.trim().is_empty())),
        Err(e) => Err(ApiError::misconfigured(format!(
            "configuration variable {key} could not be read: {e}"
        ))),
    }
}

/// A numeric variable, or `default` when unset.
pub fn number(src: &dyn ConfigSource, key: &str, default: u64) -> Result<u64, ApiError> {
    parse_number(src, key, default)
}

/// A numeric variable that must not be 0, or `default` when unset.
pub fn positive(src: &dyn ConfigSource, key: &str, default: u64) -> Result<u64, ApiError> {
    let value = number(src, key, default)?;
    if value == 0 {
        return Err(ApiError::misconfigured(format!(
            "configuration variable {key} must be positive"
        )));
    }
    Ok(value)
}

fn parse_number<T: std::str::FromStr>(
    src: &dyn ConfigSource,
    key: &str,
    default: T,
) -> Result<T, ApiError> {
    match value(src, key)? {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            ApiError::misconfigured(format!("configuration variable {key} must be a number"))
        }),
    }
}

/// The HMAC secrets for access tokens: `jwt_secret` is a comma-separated list, the current
/// key first, then previous keys whose tokens still verify. Required; each at least 32 bytes.
pub fn jwt_secrets(src: &dyn ConfigSource) -> Result<Vec<Vec<u8>>, ApiError> {
    let raw = value(src, keys::JWT_SECRET)?.ok_or_else(|| {
        ApiError::misconfigured(format!(
            "configuration variable {} is not set",
            keys::JWT_SECRET
        ))
    })?;
    let secrets: Vec<Vec<u8>> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect();
    if secrets.is_empty() || secrets.iter().any(|s| s.len() < MIN_SECRET_BYTES) {
        return Err(ApiError::misconfigured(format!(
            "configuration variable {} must list keys of at least {MIN_SECRET_BYTES} bytes each",
            keys::JWT_SECRET
        )));
    }
    Ok(secrets)
}

/// A text variable, `None` when unset or blank.
pub fn text(src: &dyn ConfigSource, key: &str) -> Result<Option<String>, ApiError> {
    value(src, key)
}

/// Lifetime of a refresh token, in seconds.
pub fn refresh_token_ttl_seconds(src: &dyn ConfigSource) -> Result<u64, ApiError> {
    positive(
        src,
        keys::REFRESH_TOKEN_TTL_SECONDS,
        DEFAULT_REFRESH_TOKEN_TTL_SECONDS,
    )
}

pub fn token_ttl_seconds(src: &dyn ConfigSource) -> Result<u64, ApiError> {
    positive(src, keys::TOKEN_TTL_SECONDS, DEFAULT_TOKEN_TTL_SECONDS)
}

pub fn max_payload_bytes(src: &dyn ConfigSource) -> Result<usize, ApiError> {
    parse_number(src, keys::MAX_PAYLOAD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES)
}

/// About the most bytes of messages one receive answers with (at least one message).
pub fn max_receive_bytes(src: &dyn ConfigSource) -> Result<usize, ApiError> {
    let max = positive(
        src,
        keys::MAX_RECEIVE_BYTES,
        DEFAULT_MAX_RECEIVE_BYTES as u64,
    )?;
    Ok(usize::try_from(max).unwrap_or(usize::MAX))
}

/// The cleanup index's bucket width, shared by the endpoints that list and the cleanup that
/// reads.
pub fn cleanup_bucket_ms(src: &dyn ConfigSource) -> Result<u64, ApiError> {
    Ok(positive(src, keys::CLEANUP_BUCKET_SECONDS, 60)?.saturating_mul(1000))
}

/// Who may read the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocsAccess {
    /// Anyone; responses are CDN-cacheable.
    Public,
    /// A bearer token with at least the `reader` role.
    Reader,
}

pub fn docs_access(src: &dyn ConfigSource) -> Result<DocsAccess, ApiError> {
    match value(src, keys::DOCS_ACCESS)?.as_deref().map(str::trim) {
        None | Some("public") => Ok(DocsAccess::Public),
        Some("reader") => Ok(DocsAccess::Reader),
        Some(_) => Err(ApiError::misconfigured(format!(
            "configuration variable {} must be \"public\" or \"reader\"",
            keys::DOCS_ACCESS
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_are_required_long_enough_and_listed_current_first() {
        assert_eq!(jwt_secrets(&src(&[])).unwrap_err().status, 500);
        let short = src(&[(keys::JWT_SECRET, "short")]);
        assert!(
            jwt_secrets(&short)
                .unwrap_err()
                .message
                .contains("32 bytes")
        );
        let ok = src(&[(keys::JWT_SECRET, &"s".repeat(32))]);
        assert_eq!(jwt_secrets(&ok).unwrap(), vec![b"s".repeat(32)]);
        let list = format!("{}, {}", "n".repeat(32), "o".repeat(40));
        let rotated = jwt_secrets(&src(&[(keys::JWT_SECRET, &list)])).unwrap();
        assert_eq!(rotated, vec![b"n".repeat(32), b"o".repeat(40)]);
        let one_short = format!("{},short", "n".repeat(32));
        assert!(jwt_secrets(&src(&[(keys::JWT_SECRET, &one_short)])).is_err());
    }

    #[test]
    fn numbers_have_defaults_and_reject_garbage() {
        assert_eq!(token_ttl_seconds(&src(&[])).unwrap(), 900);
        assert_eq!(max_payload_bytes(&src(&[])).unwrap(), 65536);
        let bad = src(&[(keys::TOKEN_TTL_SECONDS, "soon")]);
        assert!(
            token_ttl_seconds(&bad)
                .unwrap_err()
                .message
                .contains("token_ttl_seconds")
        );
        assert_eq!(
            token_ttl_seconds(&src(&[(keys::TOKEN_TTL_SECONDS, "0")]))
                .unwrap_err()
                .status,
            500
        );
    }

    #[test]
    fn docs_access_values() {
        assert_eq!(docs_access(&src(&[])).unwrap(), DocsAccess::Public);
        assert_eq!(
            docs_access(&src(&[(keys::DOCS_ACCESS, "reader")])).unwrap(),
            DocsAccess::Reader
        );
        assert!(docs_access(&src(&[(keys::DOCS_ACCESS, "everyone")])).is_err());
    }
}
