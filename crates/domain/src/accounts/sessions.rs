//! Sessions: the refresh tokens a login hands out, rotated on every use (OAuth 2.1 §4.3.1,
//! RFC 6819 §5.2.2.3). A login starts a session (a token family); each exchange marks the
//! presented token used and returns the next one of the family. Presenting a used token again
//! means two parties hold it, so the whole family is revoked and both must log in again.
//!
//! | key | value |
//! |---|---|
//! | `refresh/token/{sha256 of the token}` | [`TokenRecord`]: its session, expiry, when used |
//! | `refresh/session/{id}` | [`SessionRecord`]: its user, the user's generations, expiry, revocation |
//!
//! Tokens are `mcpr_` and 64 hex digits; only their digests are stored. Both records are
//! listed in [`index::CREDENTIALS`] under the bucket in which they expire, and the scheduled
//! cleanup deletes them from then on.

use serde::{Deserialize, Serialize};

use super::secrets::{digest, is_hex, random_hex};
use super::users::UserRecord;
use super::{Accounts, MAX_CAS_ATTEMPTS};
use crate::error::ApiError;
use crate::index;
use crate::records::{encode, read_json};

/// What every refresh token starts with.
pub const REFRESH_TOKEN_PREFIX: &str = "mcpr_";

fn token_key(token: &str) -> String {
    format!("refresh/token/{}", digest(token))
}

fn session_key(id: &str) -> String {
    format!("refresh/session/{id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub session: String,
    pub expires_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    /// The user's [`generation`](UserRecord::generation) and
    /// [`sessions`](UserRecord::sessions) when the session began: it ends when either moves.
    pub generation: u64,
    pub sessions: u64,
    pub started_at_ms: u64,
    /// When its newest token expires.
    pub expires_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
}

/// A refresh token just handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedRefresh {
    pub token: String,
    pub expires_in: u64,
}

/// The fields both kinds of record share, for the sweep.
#[derive(Deserialize)]
struct Expiring {
    expires_at_ms: u64,
}

fn invalid() -> ApiError {
    ApiError::new(
        401,
        "invalid_refresh_token",
        "unknown, expired or malformed refresh token; log in again",
    )
}

fn ended(why: &str) -> ApiError {
    ApiError::new(401, "session_revoked", format!("{why}; log in again"))
}

fn well_formed(token: &str) -> bool {
    token
        .strip_prefix(REFRESH_TOKEN_PREFIX)
        .is_some_and(|secret| is_hex(secret, 64))
}

impl Accounts<'_> {
    /// Starts a session for `user` and returns its first refresh token.
    pub async fn start_session(&self, user: &UserRecord) -> Result<IssuedRefresh, ApiError> {
        let now = self.env.now_ms();
        let id = random_hex(16)?;
        let session = SessionRecord {
            user: user.username.clone(),
            generation: user.generation,
            sessions: user.sessions,
            started_at_ms: now,
            expires_at_ms: now + self.refresh_ttl_ms(),
            revoked_at_ms: None,
        };
        let key = session_key(&id);
        self.list_until(&key, session.expires_at_ms).await?;
        if !self
            .store
            .compare_and_swap(&key, None, &encode(&session))
            .await?
        {
            return Err(ApiError::contention("a new session"));
        }
        self.mint(&id, session.expires_at_ms).await
    }

    /// Exchanges a refresh token for the user it belongs to and the session's next token.
    pub async fn rotate(&self, token: &str) -> Result<(UserRecord, IssuedRefresh), ApiError> {
        if !well_formed(token) {
            return Err(invalid());
        }
        let key = token_key(token);
        let now = self.env.now_ms();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((bytes, record)) = read_json::<TokenRecord>(self.store, &key).await? else {
                return Err(invalid());
            };
            if record.expires_at_ms <= now {
                return Err(invalid());
            }
            let (_, session) = self.live_session(&record.session).await?;
            if record.used_at_ms.is_some() {
                self.revoke_session(&record.session).await?;
                return Err(ApiError::new(
                    401,
                    "refresh_token_reused",
                    "this refresh token was already exchanged; its session is revoked, log in again",
                ));
            }
            let used = TokenRecord {
                used_at_ms: Some(now),
                ..record.clone()
            };
            if !self
                .store
                .compare_and_swap(&key, Some(&bytes), &encode(&used))
                .await?
            {
                continue; // used meanwhile: the next look finds out by whom
            }
            let user = self
                .stored_user(&session.user)
                .await?
                .filter(|u| {
                    u.active()
                        && u.generation == session.generation
                        && u.sessions == session.sessions
                })
                .ok_or_else(|| ended("the user is disabled or removed, or changed password"))?;
            let expires_at_ms = now + self.refresh_ttl_ms();
            self.extend_session(&record.session, expires_at_ms).await?;
            let next = self.mint(&record.session, expires_at_ms).await?;
            return Ok((user, next));
        }
        Err(ApiError::contention("the refresh token"))
    }

    /// Ends the session a refresh token belongs to (logout). Ending an ended session again
    /// is fine; an unknown token is not.
    pub async fn end_session(&self, token: &str) -> Result<String, ApiError> {
        if !well_formed(token) {
            return Err(invalid());
        }
        let Some((_, record)) = read_json::<TokenRecord>(self.store, &token_key(token)).await?
        else {
            return Err(invalid());
        };
        let user = read_json::<SessionRecord>(self.store, &session_key(&record.session))
            .await?
            .map(|(_, s)| s.user)
            .ok_or_else(invalid)?;
        self.revoke_session(&record.session).await?;
        Ok(user)
    }

    fn refresh_ttl_ms(&self) -> u64 {
        self.refresh_ttl_seconds.saturating_mul(1000)
    }

    async fn live_session(&self, id: &str) -> Result<(Vec<u8>, SessionRecord), ApiError> {
        match read_json::<SessionRecord>(self.store, &session_key(id)).await? {
            None => Err(invalid()),
            Some((_, s)) if s.revoked_at_ms.is_some() => Err(ended("this session was revoked")),
            Some(found) => Ok(found),
        }
    }

    async fn mint(&self, session: &str, expires_at_ms: u64) -> Result<IssuedRefresh, ApiError> {
        let token = format!("{REFRESH_TOKEN_PREFIX}{}", random_hex(32)?);
        let key = token_key(&token);
        self.list_until(&key, expires_at_ms).await?;
        let record = TokenRecord {
            session: session.to_owned(),
            expires_at_ms,
            used_at_ms: None,
        };
        self.store.set(&key, &encode(&record)).await?;
        Ok(IssuedRefresh {
            token,
            expires_in: self.refresh_ttl_seconds,
        })
    }

    /// Lists a credential for the sweep in the bucket in which it expires.
    async fn list_until(&self, key: &str, expires_at_ms: u64) -> Result<(), ApiError> {
        if self.store.schedule_cleanup(key, expires_at_ms).await? {
            return Ok(()); // its object looks at it then
        }
        index::CREDENTIALS
            .add(self.store, expires_at_ms / self.bucket_ms, key)
            .await?;
        Ok(())
    }

    async fn update_session(
        &self,
        id: &str,
        change: impl Fn(&mut SessionRecord),
    ) -> Result<(), ApiError> {
        let key = session_key(id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((bytes, mut session)) = read_json::<SessionRecord>(self.store, &key).await?
            else {
                return Ok(());
            };
            change(&mut session);
            if self
                .store
                .compare_and_swap(&key, Some(&bytes), &encode(&session))
                .await?
            {
                return Ok(());
            }
        }
        Err(ApiError::contention("the session"))
    }

    async fn revoke_session(&self, id: &str) -> Result<(), ApiError> {
        let now = self.env.now_ms();
        self.update_session(id, |s| {
            s.revoked_at_ms.get_or_insert(now);
        })
        .await
    }

    async fn extend_session(&self, id: &str, expires_at_ms: u64) -> Result<(), ApiError> {
        self.list_until(&session_key(id), expires_at_ms).await?;
        self.update_session(id, |s| s.expires_at_ms = s.expires_at_ms.max(expires_at_ms))
            .await
    }

    /// Deletes the refresh token or session at `key` if it is past its expiry, else lists it
    /// again for when it is. Returns whether it deleted it.
    pub async fn expire_credential(&self, key: &str) -> Result<bool, ApiError> {
        match read_json::<Expiring>(self.store, key).await.ok().flatten() {
            None => Ok(false),
            Some((_, r)) if r.expires_at_ms <= self.env.now_ms() => {
                self.store.delete(key).await?;
                Ok(true)
            }
            Some((_, r)) => {
                self.list_until(key, r.expires_at_ms).await?;
                Ok(false)
            }
        }
    }

    /// Deletes refresh tokens and sessions past their expiry, at most `budget` of them; lists
    /// again what was extended since. Returns how many it deleted and whether it is done.
    pub async fn sweep(&self, budget: &mut usize) -> Result<(u64, bool), ApiError> {
        let now = self.env.now_ms();
        let last = (now / self.bucket_ms).checked_sub(1);
        let mut removed = 0;
        let done = index::CREDENTIALS
            .walk(self.store, last, budget, async |key, budget| {
                *budget -= 1;
                removed += u64::from(self.expire_credential(key).await?);
                Ok::<bool, ApiError>(true)
            })
            .await?;
        Ok((removed, done))
    }
}

/// Whether `store` holds a refresh token record for `token` (tests).
#[cfg(test)]
pub(crate) async fn is_stored(store: &dyn crate::store::KvStore, token: &str) -> bool {
    store.get(&token_key(token)).await.ok().flatten().is_some()
}
