//! The bodies the REST routes take and answer with, as types. The handlers parse and
//! serialise exactly these, and the OpenAPI document ([`crate::openapi`]) derives its schemas
//! from them, so the contract and the code cannot disagree.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::accounts::{ApiKeyRecord, Role, UserRecord};
use crate::env::rfc3339_ms;
use crate::messaging::log::{Missed, Received};
use crate::messaging::{self, StoredMessage};

/// `POST /login`
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"username": "alice", "password": "correct horse battery staple"})))]
pub struct LoginBody {
    /// 1–128 characters of `A-Z a-z 0-9 . _ : -`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", min_length = 1, max_length = 128)
    )]
    pub username: String,
    /// 1–1024 bytes.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024))]
    pub password: String,
}

/// `POST /token/refresh`, `POST /logout`
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshBody {
    /// The session's current refresh token (`mcpr_…`).
    #[cfg_attr(feature = "openapi", schema(example = "mcpr_3q2+7w…"))]
    pub refresh_token: String,
}

/// An access token and the session's next refresh token, as login and refresh answer.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenGrant {
    /// A JWT (HS256) to send as `Authorization: Bearer …`.
    pub access_token: String,
    #[cfg_attr(feature = "openapi", schema(example = "Bearer"))]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[cfg_attr(feature = "openapi", schema(example = 900))]
    pub expires_in: u64,
    pub role: Role,
    /// Single use: refreshing answers the next one; using one twice ends the session.
    pub refresh_token: String,
    #[cfg_attr(feature = "openapi", schema(example = 2592000))]
    pub refresh_expires_in: u64,
}

/// `POST /mcp/register`
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"client_id": "alice", "group_id": "team"})))]
pub struct RegisterBody {
    /// 1–128 characters of `A-Z a-z 0-9 . _ : -`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", min_length = 1, max_length = 128)
    )]
    pub client_id: String,
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", min_length = 1, max_length = 128)
    )]
    pub group_id: String,
}

/// A client's membership, as registering answers it.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registered {
    pub client_id: String,
    pub group_id: String,
    /// RFC 3339, milliseconds, UTC.
    pub registered_at: String,
    pub last_heartbeat: String,
    /// The client came back within the retention after it expired, and kept its cursor.
    pub resumed: bool,
    /// The sequence number of the last message this client has received (0: none yet).
    pub cursor: u64,
}

/// Distinguishes an absent field from an explicit `null` (a valid payload), keeping the
/// payload's text as sent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    messaging::raw_payload(d).map(Some)
}

/// `POST /mcp/send`
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"sender_id": "alice", "group_id": "team", "payload": {"text": "hi bob"}})))]
pub struct SendBody {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", min_length = 1, max_length = 128)
    )]
    pub sender_id: String,
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", min_length = 1, max_length = 128)
    )]
    pub group_id: String,
    /// Any JSON value (a string, an object, `null`, …), up to `max_payload_bytes` as sent.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Value, required = true))]
    pub payload: Option<Box<RawValue>>,
}

/// A message accepted into its group's log.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sent {
    pub message_id: String,
    /// Its place in the group's log: 1, 2, 3, … with no gaps.
    pub seq: u64,
    pub timestamp: String,
}

/// A message as receivers get it: the payload's JSON text is copied through, never parsed.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageOut<'a> {
    pub message_id: &'a str,
    pub seq: u64,
    pub sender_id: &'a str,
    pub group_id: &'a str,
    /// The payload exactly as it was sent.
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub payload: &'a RawValue,
    pub timestamp: String,
}

impl<'a> From<&'a StoredMessage> for MessageOut<'a> {
    fn from(m: &'a StoredMessage) -> Self {
        Self {
            message_id: &m.message_id,
            seq: m.seq,
            sender_id: &m.sender_id,
            group_id: &m.group_id,
            payload: &m.payload,
            timestamp: rfc3339_ms(m.timestamp_ms),
        }
    }
}

/// Messages the cleanup removed before this client received them.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MissedOut {
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
    /// The first message still held after the gap.
    pub first_held_seq: u64,
}

impl From<Missed> for MissedOut {
    fn from(m: Missed) -> Self {
        Self {
            first_seq: m.first_seq,
            last_seq: m.last_seq,
            count: m.count(),
            first_held_seq: m.first_held_seq(),
        }
    }
}

/// `GET /mcp/receive`
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiveOut<'a> {
    /// In sequence order, never the client's own messages.
    pub messages: Vec<MessageOut<'a>>,
    /// Pass as `after` in the next receive to get each message exactly once.
    pub next_after: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<MissedOut>,
}

impl<'a> From<&'a Received> for ReceiveOut<'a> {
    fn from(got: &'a Received) -> Self {
        Self {
            messages: got.messages.iter().map(MessageOut::from).collect(),
            next_after: got.next_after,
            missed: got.missed.map(MissedOut::from),
        }
    }
}

/// `GET /health`
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Liveness {
    #[cfg_attr(feature = "openapi", schema(example = "ok"))]
    pub status: &'static str,
}

/// `GET /health/ready`
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    #[cfg_attr(feature = "openapi", schema(example = "ready"))]
    pub status: &'static str,
    pub checks: ReadinessChecks,
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadinessChecks {
    #[cfg_attr(feature = "openapi", schema(example = "ok"))]
    pub store: &'static str,
}

/// `POST /admin/users`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"username": "bob", "password": "a long passphrase", "role": "writer"})))]
pub struct NewUserBody {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", min_length = 1, max_length = 128)
    )]
    pub username: String,
    /// 8–1024 bytes.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: String,
    pub role: Role,
}

/// A user as the admin API shows it (never its password hash).
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserOut {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&UserRecord> for UserOut {
    fn from(u: &UserRecord) -> Self {
        Self {
            username: u.username.clone(),
            role: u.role,
            disabled: u.disabled,
            created_at: rfc3339_ms(u.created_at_ms),
            updated_at: rfc3339_ms(u.updated_at_ms),
        }
    }
}

/// `GET /admin/users`
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<UserOut>,
}

/// `POST /admin/api-keys`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "ci-bot", "role": "writer", "expires_in_seconds": 2592000})))]
pub struct NewKeyBody {
    pub name: String,
    /// At most the owner's role; `reader` when absent.
    #[serde(default)]
    pub role: Option<Role>,
    /// The owning user; the caller when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", min_length = 1, max_length = 128)
    )]
    pub user: Option<String>,
    /// No expiry when absent; at most ten years.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 315360000))]
    pub expires_in_seconds: Option<u64>,
}

/// Where an API key stands.
#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

/// An API key as the admin API shows it (never the key itself, but once at creation).
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyOut {
    pub id: String,
    pub name: String,
    pub user: String,
    pub role: Role,
    pub status: KeyStatus,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The key (`mcpe_…`), only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KeyOut {
    pub fn of(k: &ApiKeyRecord, now_ms: u64) -> Self {
        let status = if k.revoked_at_ms.is_some() {
            KeyStatus::Revoked
        } else if k.expires_at_ms.is_some_and(|at| at <= now_ms) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        };
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            user: k.user.clone(),
            role: k.role,
            status,
            created_by: k.created_by.clone(),
            created_at: rfc3339_ms(k.created_at_ms),
            expires_at: k.expires_at_ms.map(rfc3339_ms),
            revoked_at: k.revoked_at_ms.map(rfc3339_ms),
            key: None,
        }
    }
}

/// `GET /admin/api-keys`
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    pub api_keys: Vec<KeyOut>,
}
