//! Users and roles. Users live in the store; the `users` variable (and the first-run admin
//! that `mcp-edge` writes into it) seeds them:
//!
//! - an entry of the variable is copied into the store the first time its user is looked up
//!   at login or listed by an admin, and again whenever the entry changes (its role or
//!   password hash), as if an admin had set that role and password;
//! - otherwise the store wins: a password changed, a user disabled or removed through the
//!   admin API or the CLI stays so while the entry is unchanged.
//!
//! | key | value |
//! |---|---|
//! | `accounts/user/{name}` | [`UserRecord`] (a removed user keeps a tombstone) |
//! | `accounts/users` | the roster: every user name not removed, sorted (JSON array) |

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use super::{Accounts, MAX_CAS_ATTEMPTS, add_to_roster, read_roster, remove_from_roster};
use crate::error::ApiError;
use crate::ids::{is_valid_id, validate_id};
use crate::records::{encode, read_json};

/// The roster of user names.
pub(crate) const USERS_ROSTER: &str = "accounts/users";

fn user_key(name: &str) -> String {
    format!("accounts/user/{name}")
}

/// Roles, in increasing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    Reader,
    Writer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Longest password accepted (Argon2 would take any length; a bound keeps the cost of a
/// request bounded).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Shortest password a new user or a password change may set. (Login takes any length, so
/// that older, shorter seeded passwords still work.)
pub const MIN_NEW_PASSWORD_LEN: usize = 8;

/// An entry of the `users` variable: a JSON array of these.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub username: String,
    pub role: Role,
    /// An Argon2id PHC string (`mcp-edge hash-password` prints one).
    pub password_hash: String,
}

impl UserEntry {
    /// What a record remembers of the entry it was taken from.
    fn fingerprint(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.password_hash)
    }
}

/// Parses the `users` variable.
pub fn parse_users(raw: &str) -> Result<Vec<UserEntry>, ApiError> {
    let users: Vec<UserEntry> = serde_json::from_str(raw).map_err(|e| {
        ApiError::misconfigured(format!(
            "configuration variable users must be a JSON array of {{username, role, password_hash}}: {e}"
        ))
    })?;
    for user in &users {
        if !is_valid_id(&user.username) {
            return Err(ApiError::misconfigured(format!(
                "configured user name {:?} is not a valid identifier",
                user.username
            )));
        }
        if !user.password_hash.starts_with("$argon2id$") {
            return Err(ApiError::misconfigured(format!(
                "password_hash of user {} must be an Argon2id PHC string",
                user.username
            )));
        }
    }
    Ok(users)
}

/// A user as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    pub role: Role,
    /// Argon2id PHC string; empty once removed.
    pub password_hash: String,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub removed: bool,
    /// Moves on when everything the user holds must stop working (disabled, removed): API
    /// keys and sessions remember the value they were made under.
    #[serde(default)]
    pub generation: u64,
    /// Moves on when the user's sessions must end (a new password) but API keys stay.
    #[serde(default)]
    pub sessions: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The `users` entry this record was last taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
}

impl UserRecord {
    /// Whether the user may hold working credentials.
    pub fn active(&self) -> bool {
        !self.disabled && !self.removed
    }
}

/// What an admin may change about a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"disabled": true})))]
pub struct UserPatch {
    pub role: Option<Role>,
    /// 8–1024 bytes; ends the user's sessions.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: Option<String>,
    pub disabled: Option<bool>,
}

/// An Argon2id PHC hash of `password` with a fresh random salt and the crate's default
/// (OWASP-recommended) parameters.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| ApiError::new(500, "entropy_unavailable", e.to_string()))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| ApiError::new(500, "hash_error", e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::new(500, "hash_error", e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for anything unparsable).
pub fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks a password an admin or the CLI is about to set.
pub fn validate_new_password(password: &str) -> Result<(), ApiError> {
    if password.len() < MIN_NEW_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::bad_request(
            "invalid_password",
            format!("a new password must be {MIN_NEW_PASSWORD_LEN}-{MAX_PASSWORD_LEN} bytes"),
        ));
    }
    Ok(())
}

fn invalid_credentials() -> ApiError {
    ApiError::new(401, "invalid_credentials", "unknown user or wrong password")
}

fn user_not_found(name: &str) -> ApiError {
    ApiError::not_found("user_not_found", format!("no user {name}"))
}

impl Accounts<'_> {
    async fn load_user(&self, name: &str) -> Result<Option<(Vec<u8>, UserRecord)>, ApiError> {
        read_json(self.store, &user_key(name)).await
    }

    /// The user as stored, without consulting the seeds: what credential checks on the
    /// request path use (a user holding a key or session is in the store already).
    pub async fn stored_user(&self, name: &str) -> Result<Option<UserRecord>, ApiError> {
        Ok(self
            .load_user(name)
            .await?
            .map(|(_, r)| r)
            .filter(|r| !r.removed))
    }

    /// The user, with its seed entry applied when that is new or changed.
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, ApiError> {
        let seed = self.seeds.iter().find(|e| e.username == name);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let stored = self.load_user(name).await?;
            let Some(entry) = seed else {
                return Ok(stored.map(|(_, r)| r).filter(|r| !r.removed));
            };
            let fingerprint = entry.fingerprint();
            if let Some((_, r)) = &stored
                && r.seed.as_deref() == Some(fingerprint.as_str())
            {
                return Ok(Some(r.clone()).filter(|r| !r.removed));
            }
            let now = self.env.now_ms();
            let record = match &stored {
                None => UserRecord {
                    username: entry.username.clone(),
                    role: entry.role,
                    password_hash: entry.password_hash.clone(),
                    disabled: false,
                    removed: false,
                    generation: 0,
                    sessions: 0,
                    created_at_ms: now,
                    updated_at_ms: now,
                    seed: Some(fingerprint),
                },
                Some((_, old)) => UserRecord {
                    role: entry.role,
                    password_hash: entry.password_hash.clone(),
                    removed: false,
                    sessions: old.sessions + u64::from(old.password_hash != entry.password_hash),
                    created_at_ms: if old.removed { now } else { old.created_at_ms },
                    updated_at_ms: now,
                    seed: Some(fingerprint),
                    ..old.clone()
                },
            };
            if self
                .store
                .compare_and_swap(
                    &user_key(name),
                    stored.as_ref().map(|(b, _)| b.as_slice()),
                    &encode(&record),
                )
                .await?
            {
                add_to_roster(self.store, USERS_ROSTER, name).await?;
                return Ok(Some(record));
            }
        }
        Err(ApiError::contention("the user record"))
    }

    /// Checks a login. An unknown user costs one Argon2 verification too and gets the same
    /// answer as a wrong password, so neither the answer nor its timing tells which user
    /// names exist. A disabled user is told so only after a correct password.
    pub async fn check_password(&self, name: &str, password: &str) -> Result<UserRecord, ApiError> {
        let Some(user) = self.user(name).await? else {
            let _ = hash_password(password);
            return Err(invalid_credentials());
        };
        if !password_matches(password, &user.password_hash) {
            return Err(invalid_credentials());
        }
        if user.disabled {
            return Err(ApiError::new(
                401,
                "user_disabled",
                format!("user {name} is disabled"),
            ));
        }
        Ok(user)
    }

    /// Every user not removed, seeds applied, sorted by name.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, ApiError> {
        for entry in self.seeds {
            self.user(&entry.username).await?;
        }
        let names = read_roster(self.store, USERS_ROSTER).await?;
        let keys: Vec<String> = names.iter().map(|n| user_key(n)).collect();
        let mut users = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(self.store.get_many(&keys).await?) {
            if let Some(bytes) = value {
                let record: UserRecord =
                    serde_json::from_slice(&bytes).map_err(|e| crate::records::corrupt(key, e))?;
                if !record.removed {
                    users.push(record);
                }
            }
        }
        Ok(users)
    }

    /// Adds a user (409 `user_exists` when the name is taken).
    pub async fn add_user(
        &self,
        name: &str,
        password: &str,
        role: Role,
    ) -> Result<UserRecord, ApiError> {
        validate_id("username", name)?;
        validate_new_password(password)?;
        if self.user(name).await?.is_some() {
            return Err(user_exists(name));
        }
        let hash = hash_password(password)?;
        let stored = self.load_user(name).await?;
        let now = self.env.now_ms();
        let record = match &stored {
            Some((_, old)) if !old.removed => return Err(user_exists(name)),
            // Over a tombstone: the generations go on, so nothing of the old user revives.
            Some((_, old)) => UserRecord {
                role,
                password_hash: hash,
                disabled: false,
                removed: false,
                created_at_ms: now,
                updated_at_ms: now,
                ..old.clone()
            },
            None => UserRecord {
                username: name.to_owned(),
                role,
                password_hash: hash,
                disabled: false,
                removed: false,
                generation: 0,
                sessions: 0,
                created_at_ms: now,
                updated_at_ms: now,
                seed: None,
            },
        };
        if !self
            .store
            .compare_and_swap(
                &user_key(name),
                stored.as_ref().map(|(b, _)| b.as_slice()),
                &encode(&record),
            )
            .await?
        {
            return Err(user_exists(name));
        }
        add_to_roster(self.store, USERS_ROSTER, name).await?;
        Ok(record)
    }

    /// Changes a user's role, password or disabled flag. A new password ends the user's
    /// sessions; disabling ends everything the user holds.
    pub async fn update_user(&self, name: &str, patch: &UserPatch) -> Result<UserRecord, ApiError> {
        let hash = match &patch.password {
            Some(password) => {
                validate_new_password(password)?;
                Some(hash_password(password)?)
            }
            None => None,
        };
        if self.user(name).await?.is_none() {
            return Err(user_not_found(name));
        }
        self.change_user(name, |old| {
            let mut new = old.clone();
            if let Some(role) = patch.role {
                new.role = role;
            }
            if let Some(hash) = &hash {
                new.password_hash = hash.clone();
                new.sessions += 1;
            }
            if let Some(disabled) = patch.disabled {
                if disabled && !old.disabled {
                    new.generation += 1;
                }
                new.disabled = disabled;
            }
            new
        })
        .await
    }

    /// Removes a user: a tombstone keeps the generation, so that nothing the user held works
    /// again, even if the name is added anew.
    pub async fn remove_user(&self, name: &str) -> Result<UserRecord, ApiError> {
        if self.user(name).await?.is_none() {
            return Err(user_not_found(name));
        }
        let record = self
            .change_user(name, |old| UserRecord {
                password_hash: String::new(),
                removed: true,
                disabled: false,
                generation: old.generation + 1,
                ..old.clone()
            })
            .await?;
        remove_from_roster(self.store, USERS_ROSTER, name).await?;
        Ok(record)
    }

    /// Applies `change` to the live record by compare-and-swap, refusing a change that would
    /// leave no active admin.
    async fn change_user(
        &self,
        name: &str,
        change: impl Fn(&UserRecord) -> UserRecord,
    ) -> Result<UserRecord, ApiError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((bytes, old)) = self.load_user(name).await? else {
                return Err(user_not_found(name));
            };
            if old.removed {
                return Err(user_not_found(name));
            }
            let mut new = change(&old);
            new.updated_at_ms = self.env.now_ms();
            let was_admin = old.active() && old.role == Role::Admin;
            let is_admin = new.active() && new.role == Role::Admin;
            if was_admin && !is_admin && !self.another_active_admin(name).await? {
                return Err(ApiError::new(
                    409,
                    "last_admin",
                    format!("{name} is the last active admin; add or enable another first"),
                ));
            }
            if self
                .store
                .compare_and_swap(&user_key(name), Some(&bytes), &encode(&new))
                .await?
            {
                return Ok(new);
            }
        }
        Err(ApiError::contention("the user record"))
    }

    async fn another_active_admin(&self, name: &str) -> Result<bool, ApiError> {
        Ok(self
            .list_users()
            .await?
            .iter()
            .any(|u| u.username != name && u.active() && u.role == Role::Admin))
    }
}

fn user_exists(name: &str) -> ApiError {
    ApiError::new(409, "user_exists", format!("user {name} exists already"))
}
