//! The accounts wing: who may call, and with what. Users and roles ([`users`]), access
//! tokens and the role rules ([`tokens`]), sessions of rotating refresh tokens
//! ([`sessions`]), API keys for machine clients ([`api_keys`]), and the random secrets and
//! digests they are made of ([`secrets`]). Everything lives in the key-value store, so every
//! instance on every platform sees the same accounts, and a revocation at once.
//!
//! A bearer credential is one of three kinds, told apart by its shape: an access token (a
//! JWT), an API key (`mcpe_…`) or a refresh token (`mcpr_…`, accepted only by
//! `POST /token/refresh` and `POST /logout`).

pub mod api_keys;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod users;

#[cfg(test)]
mod tests;

pub use api_keys::{API_KEY_PREFIX, ApiKeyRecord, NewKey};
pub use sessions::{IssuedRefresh, REFRESH_TOKEN_PREFIX};
pub use tokens::{Action, IssuedToken, Principal, Tokens, bearer_token};
pub use users::{Role, UserEntry, UserPatch, UserRecord, hash_password, parse_users};

use crate::config::DEFAULT_REFRESH_TOKEN_TTL_SECONDS;
use crate::env::Env;
use crate::error::ApiError;
use crate::records::{encode, read_json};
use crate::store::KvStore;

/// Compare-and-swap retries before a change gives up as contended.
pub(crate) const MAX_CAS_ATTEMPTS: usize = 16;

/// The accounts of a deployment.
pub struct Accounts<'a> {
    store: &'a dyn KvStore,
    env: &'a dyn Env,
    /// The `users` variable's entries (empty where an endpoint is not given it).
    seeds: &'a [UserEntry],
    refresh_ttl_seconds: u64,
    /// Width of the cleanup index's buckets.
    bucket_ms: u64,
}

impl<'a> Accounts<'a> {
    pub fn new(store: &'a dyn KvStore, env: &'a dyn Env) -> Self {
        Self {
            store,
            env,
            seeds: &[],
            refresh_ttl_seconds: DEFAULT_REFRESH_TOKEN_TTL_SECONDS,
            bucket_ms: 60_000,
        }
    }

    /// Users the `users` variable seeds.
    pub fn with_seeds(mut self, seeds: &'a [UserEntry]) -> Self {
        self.seeds = seeds;
        self
    }

    pub fn with_refresh_ttl_seconds(mut self, seconds: u64) -> Self {
        self.refresh_ttl_seconds = seconds.max(1);
        self
    }

    pub fn with_bucket_ms(mut self, bucket_ms: u64) -> Self {
        self.bucket_ms = bucket_ms.max(1);
        self
    }

    /// The principal a bearer credential stands for: an API key or an access token.
    pub async fn authenticate(
        &self,
        credential: &str,
        tokens: &Tokens,
    ) -> Result<Principal, ApiError> {
        if api_keys::looks_like_api_key(credential) {
            return self.authenticate_key(credential).await;
        }
        if credential.starts_with(REFRESH_TOKEN_PREFIX) {
            return Err(ApiError::unauthorized(
                "a refresh token is not an access token; exchange it at POST /token/refresh",
            ));
        }
        tokens.verify(credential, self.env.now_ms())
    }
}

/// A roster: the sorted names under `key`, for listing without listing keys.
pub(crate) async fn read_roster(store: &dyn KvStore, key: &str) -> Result<Vec<String>, ApiError> {
    Ok(read_json::<Vec<String>>(store, key)
        .await?
        .map(|(_, v)| v)
        .unwrap_or_default())
}

async fn change_roster(
    store: &dyn KvStore,
    key: &str,
    change: impl Fn(&mut Vec<String>) -> bool,
) -> Result<(), ApiError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current = read_json::<Vec<String>>(store, key).await?;
        let mut names = current.as_ref().map(|(_, v)| v.clone()).unwrap_or_default();
        if !change(&mut names) {
            return Ok(());
        }
        if store
            .compare_and_swap(
                key,
                current.as_ref().map(|(b, _)| b.as_slice()),
                &encode(&names),
            )
            .await?
        {
            return Ok(());
        }
    }
    Err(ApiError::contention(key))
}

pub(crate) async fn add_to_roster(
    store: &dyn KvStore,
    key: &str,
    name: &str,
) -> Result<(), ApiError> {
    change_roster(store, key, |names| {
        match names.binary_search_by(|n| n.as_str().cmp(name)) {
            Ok(_) => false,
            Err(at) => {
                names.insert(at, name.to_owned());
                true
            }
        }
    })
    .await
}

pub(crate) async fn remove_from_roster(
    store: &dyn KvStore,
    key: &str,
    name: &str,
) -> Result<(), ApiError> {
    change_roster(store, key, |names| {
        match names.binary_search_by(|n| n.as_str().cmp(name)) {
            Ok(at) => {
                names.remove(at);
                true
            }
            Err(_) => false,
        }
    })
    .await
}
