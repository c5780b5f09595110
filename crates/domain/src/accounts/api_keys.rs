//! API keys: long-lived bearer credentials for machine clients, each owned by a user, with
//! a role no higher than the owner's, an optional expiry and revocation that takes effect on
//! the next request (every use reads the key's record and its owner's).
//!
//! A key reads `mcpe_{id}_{secret}` (16 and 64 hex digits): the fixed prefix lets secret
//! scanners find a leaked key, the id finds its record, and only the secret's digest is
//! stored, so the store never holds a usable key.
//!
//! | key | value |
//! |---|---|
//! | `accounts/key/{id}` | [`ApiKeyRecord`] (kept after revocation, so that lists show it) |
//! | `accounts/keys` | the roster: every key id, sorted (JSON array) |

use serde::{Deserialize, Serialize};

use super::secrets::{digest, is_hex, random_hex, same};
use super::tokens::Principal;
use super::users::{Role, UserRecord};
use super::{Accounts, MAX_CAS_ATTEMPTS, add_to_roster, read_roster};
use crate::error::ApiError;
use crate::records::{corrupt, encode, read_json};

/// What every API key starts with.
pub const API_KEY_PREFIX: &str = "mcpe_";
/// Longest key name.
pub const MAX_KEY_NAME_LEN: usize = 100;

const KEYS_ROSTER: &str = "accounts/keys";

fn key_key(id: &str) -> String {
    format!("accounts/key/{id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// The user the key acts as.
    pub user: String,
    pub role: Role,
    /// SHA-256 of the secret part, hex.
    pub secret_digest: String,
    /// The owner's [`generation`](UserRecord::generation) at creation.
    pub generation: u64,
    pub created_by: String,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
}

/// What a new key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey<'a> {
    pub name: &'a str,
    pub role: Role,
    pub owner: &'a UserRecord,
    pub created_by: &'a str,
    pub expires_in_seconds: Option<u64>,
}

/// The longest life an API key may be given: ten years.
pub const MAX_EXPIRES_IN_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// Splits a presented key into id and secret, if it has the shape of one.
fn parse(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (is_hex(id, 16) && is_hex(secret, 64)).then_some((id, secret))
}

/// Whether a bearer credential is meant as an API key (by its prefix).
pub fn looks_like_api_key(credential: &str) -> bool {
    credential.starts_with(API_KEY_PREFIX)
}

fn refused(why: &str) -> ApiError {
    ApiError::new(401, "invalid_api_key", why.to_owned()).with_header("www-authenticate", "Bearer")
}

impl Accounts<'_> {
    /// Creates a key; returns its record and the key itself, which is never shown again.
    pub async fn create_key(&self, new: &NewKey<'_>) -> Result<(ApiKeyRecord, String), ApiError> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > MAX_KEY_NAME_LEN || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_key_name",
                format!("name must be 1-{MAX_KEY_NAME_LEN} printable characters"),
            ));
        }
        if !new.owner.active() {
            return Err(ApiError::new(
                409,
                "user_disabled",
                format!("user {} is disabled", new.owner.username),
            ));
        }
        if new.role > new.owner.role {
            return Err(ApiError::bad_request(
                "role_exceeds_user",
                format!(
                    "a key of {} may have at most the role {}",
                    new.owner.username,
                    new.owner.role.as_str()
                ),
            ));
        }
        let now = self.env.now_ms();
        let expires_at_ms = match new.expires_in_seconds {
            Some(0) => {
                return Err(ApiError::bad_request(
                    "invalid_expiry",
                    "expires_in_seconds must be positive",
                ));
            }
            Some(s) if s > MAX_EXPIRES_IN_SECONDS => {
                return Err(ApiError::bad_request(
                    "invalid_expiry",
                    format!(
                        "expires_in_seconds must be at most {MAX_EXPIRES_IN_SECONDS} (ten years)"
                    ),
                ));
            }
            Some(s) => Some(now.saturating_add(s.saturating_mul(1000))),
            None => None,
        };
        let id = random_hex(8)?;
        let secret = random_hex(32)?;
        let record = ApiKeyRecord {
            id: id.clone(),
            name: name.to_owned(),
            user: new.owner.username.clone(),
            role: new.role,
            secret_digest: digest(&secret),
            generation: new.owner.generation,
            created_by: new.created_by.to_owned(),
            created_at_ms: now,
            expires_at_ms,
            revoked_at_ms: None,
        };
        if !self
            .store
            .compare_and_swap(&key_key(&id), None, &encode(&record))
            .await?
        {
            return Err(ApiError::contention("a new key id"));
        }
        add_to_roster(self.store, KEYS_ROSTER, &id).await?;
        Ok((record, format!("{API_KEY_PREFIX}{id}_{secret}")))
    }

    /// The principal a presented key stands for, or 401 `invalid_api_key` saying why not.
    pub async fn authenticate_key(&self, key: &str) -> Result<Principal, ApiError> {
        let (id, secret) = parse(key).ok_or_else(|| refused("malformed API key"))?;
        let record = read_json::<ApiKeyRecord>(self.store, &key_key(id))
            .await?
            .map(|(_, r)| r)
            .filter(|r| same(&r.secret_digest, &digest(secret)))
            .ok_or_else(|| refused("unknown API key"))?;
        if record.revoked_at_ms.is_some() {
            return Err(refused("API key revoked"));
        }
        if record
            .expires_at_ms
            .is_some_and(|at| at <= self.env.now_ms())
        {
            return Err(refused("API key expired"));
        }
        let owner = self
            .stored_user(&record.user)
            .await?
            .filter(|u| u.active() && u.generation == record.generation)
            .ok_or_else(|| refused("the key's user is disabled or removed"))?;
        Ok(Principal {
            subject: owner.username,
            role: record.role.min(owner.role),
            api_key: Some(record.id),
        })
    }

    /// Every key ever created, newest first.
    pub async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, ApiError> {
        let ids = read_roster(self.store, KEYS_ROSTER).await?;
        let keys: Vec<String> = ids.iter().map(|id| key_key(id)).collect();
        let mut out = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(self.store.get_many(&keys).await?) {
            if let Some(bytes) = value {
                out.push(
                    serde_json::from_slice::<ApiKeyRecord>(&bytes).map_err(|e| corrupt(key, e))?,
                );
            }
        }
        out.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes a key (revoking it again changes nothing).
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKeyRecord, ApiError> {
        let unknown = || ApiError::not_found("api_key_not_found", format!("no API key {id}"));
        if !is_hex(id, 16) {
            return Err(unknown());
        }
        let key = key_key(id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (bytes, mut record) = read_json::<ApiKeyRecord>(self.store, &key)
                .await?
                .ok_or_else(unknown)?;
            if record.revoked_at_ms.is_some() {
                return Ok(record);
            }
            record.revoked_at_ms = Some(self.env.now_ms());
            if self
                .store
                .compare_and_swap(&key, Some(&bytes), &encode(&record))
                .await?
            {
                return Ok(record);
            }
        }
        Err(ApiError::contention("the API key"))
    }
}
