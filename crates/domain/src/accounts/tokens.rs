//! Access tokens: HS256 JWTs (`jwt-simple`) that carry a subject, a role and the `kid` of
//! the key that signed them, and the role rules they are checked against.
//!
//! `jwt_secret` lists the current signing key first and any previous ones after it: new
//! tokens are signed with the current key, and tokens signed with a listed previous key
//! verify until they expire. A key taken off the list stops verifying at once.

use jwt_simple::prelude::*;
use sha2::{Digest, Sha256};

use super::users::Role;
use crate::error::ApiError;
use crate::http::Request;

/// What a caller wants to do; each action has a least role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Receive,
    ReadDocs,
    Register,
    Send,
    Cleanup,
    ManageAccounts,
    ReadMetrics,
}

impl Action {
    pub fn least_role(self) -> Role {
        match self {
            Action::Receive | Action::ReadDocs => Role::Reader,
            Action::Register | Action::Send => Role::Writer,
            Action::Cleanup | Action::ManageAccounts | Action::ReadMetrics => Role::Admin,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::Receive => "receive",
            Action::ReadDocs => "read docs",
            Action::Register => "register",
            Action::Send => "send",
            Action::Cleanup => "run cleanup",
            Action::ManageAccounts => "manage users and API keys",
            Action::ReadMetrics => "read metrics",
        }
    }
}

/// The verified identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
    /// The API key the request came with, if it did not use an access token.
    pub api_key: Option<String>,
}

impl Principal {
    pub fn authorize(&self, action: Action) -> Result<(), ApiError> {
        if self.role >= action.least_role() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_role",
                format!(
                    "role {} may not {}; it needs {}",
                    self.role.as_str(),
                    action.describe(),
                    action.least_role().as_str()
                ),
            ))
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RoleClaim {
    role: Role,
}

/// Tolerated clock skew between the issuer and verifiers.
pub const CLOCK_LEEWAY_SECONDS: u64 = 30;

/// The key id of a signing secret: the first 8 bytes of its SHA-256, hex. It names the key
/// without saying anything about it.
pub fn key_id(secret: &[u8]) -> String {
    hex::encode(&Sha256::digest(secret)[..8])
}

/// Issues access tokens with the current key and verifies them with any listed key.
pub struct Tokens {
    /// The current key first; each with its key id.
    keys: Vec<(String, HS256Key)>,
}

/// A freshly issued access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

impl Tokens {
    /// `secrets`: the current signing secret first, then previous ones still accepted.
    pub fn new(secrets: &[Vec<u8>]) -> Self {
        Self {
            keys: secrets
                .iter()
                .map(|s| {
                    let kid = key_id(s);
                    let key = HS256Key::from_bytes(s).with_key_id(&kid);
                    (kid, key)
                })
                .collect(),
        }
    }

    pub fn issue(
        &self,
        subject: &str,
        role: Role,
        ttl_seconds: u64,
        now_ms: u64,
        jti: String,
    ) -> Result<IssuedToken, ApiError> {
        let (_, key) = self
            .keys
            .first()
            .ok_or_else(|| ApiError::misconfigured("no signing key is configured"))?;
        let now = Duration::from_millis(now_ms);
        let mut claims =
            Claims::with_custom_claims(RoleClaim { role }, Duration::from_secs(ttl_seconds))
                .with_subject(subject)
                .with_jwt_id(jti);
        // Stamp times from the caller's clock so issue and verify agree in tests and on
        // platforms whose clock the domain does not read itself.
        claims.issued_at = Some(now);
        claims.invalid_before = Some(now);
        claims.expires_at = Some(now + Duration::from_secs(ttl_seconds));
        let token = key
            .authenticate(claims)
            .map_err(|e| ApiError::new(500, "token_error", format!("could not sign token: {e}")))?;
        Ok(IssuedToken {
            token,
            expires_in: ttl_seconds,
        })
    }

    /// The keys that may have signed `token`: the one its `kid` names, or every key for a
    /// token without one (issued before tokens carried it).
    fn candidates(&self, token: &str) -> Result<Vec<&HS256Key>, ApiError> {
        let metadata = Token::decode_metadata(token)
            .map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
        match metadata.key_id() {
            None => Ok(self.keys.iter().map(|(_, k)| k).collect()),
            Some(kid) => match self.keys.iter().find(|(id, _)| id == kid) {
                Some((_, key)) => Ok(vec![key]),
                None => Err(ApiError::unauthorized(
                    "token is signed with a key that is no longer accepted; log in again",
                )),
            },
        }
    }

    /// Verifies signature, algorithm (HS256 only: `none` and others are refused), expiry,
    /// not-before and issued-at (within [`CLOCK_LEEWAY_SECONDS`]); requires `sub`, `exp` and
    /// `role`.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Principal, ApiError> {
        let options = VerificationOptions {
            artificial_time: Some(Duration::from_millis(now_ms)),
            time_tolerance: Some(Duration::from_secs(CLOCK_LEEWAY_SECONDS)),
            ..Default::default()
        };
        let claims = self
            .candidates(token)?
            .into_iter()
            .find_map(|key| {
                key.verify_token::<RoleClaim>(token, Some(options.clone()))
                    .ok()
            })
            .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
        if claims.expires_at.is_none() {
            return Err(ApiError::unauthorized("token has no expiry"));
        }
        let subject = claims
            .subject
            .ok_or_else(|| ApiError::unauthorized("token has no subject"))?;
        Ok(Principal {
            subject,
            role: claims.custom.role,
            api_key: None,
        })
    }
}

/// The bearer credential of a request: exactly one `Authorization: Bearer <credential>`
/// header.
pub fn bearer_token(req: &Request) -> Result<&str, ApiError> {
    let mut values = req.header_values("authorization");
    let value = values
        .next()
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    if values.next().is_some() {
        return Err(ApiError::unauthorized("more than one Authorization header"));
    }
    let value = std::str::from_utf8(value)
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("Authorization must be \"Bearer <token>\""))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "Authorization must be \"Bearer <token>\"",
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64_helpers::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD: &[u8] = b"an older secret of at least 32 bytes";
    const NOW: u64 = 1_800_000_000_000;

    mod base64_helpers {
        use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};

        pub fn b64(data: &[u8]) -> String {
            Base64UrlSafeNoPadding::encode_to_string(data).unwrap()
        }

        pub fn unb64(data: &str) -> Vec<u8> {
            Base64UrlSafeNoPadding::decode_to_vec(data, None).unwrap()
        }
    }

    fn tokens(secrets: &[&[u8]]) -> Tokens {
        Tokens::new(&secrets.iter().map(|s| s.to_vec()).collect::<Vec<_>>())
    }

    fn issue(role: Role, now: u64) -> String {
        tokens(&[SECRET])
            .issue("alice", role, 900, now, "jti-1".into())
            .unwrap()
            .token
    }

    #[test]
    fn round_trip_keeps_subject_and_role() {
        let p = tokens(&[SECRET])
            .verify(&issue(Role::Writer, NOW), NOW)
            .unwrap();
        assert_eq!(
            p,
            Principal {
                subject: "alice".into(),
                role: Role::Writer,
                api_key: None,
            }
        );
    }

    #[test]
    fn claims_carry_iat_exp_jti_and_the_header_a_kid() {
        let token = issue(Role::Reader, NOW);
        let mut parts = token.split('.');
        let header: serde_json::Value =
            serde_json::from_slice(&unb64(parts.next().unwrap())).unwrap();
        assert_eq!(header["kid"], key_id(SECRET));
        let claims: serde_json::Value =
            serde_json::from_slice(&unb64(parts.next().unwrap())).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["role"], "reader");
        assert_eq!(claims["jti"], "jti-1");
        assert_eq!(claims["iat"], NOW / 1000);
        assert_eq!(claims["exp"], NOW / 1000 + 900);
    }

    #[test]
    fn a_previous_key_verifies_until_it_is_taken_off_the_list() {
        let old_token = tokens(&[OLD])
            .issue("bob", Role::Writer, 900, NOW, "j".into())
            .unwrap()
            .token;
        let rotated = tokens(&[SECRET, OLD]);
        assert_eq!(rotated.verify(&old_token, NOW).unwrap().subject, "bob");
        let new_token = rotated
            .issue("bob", Role::Writer, 900, NOW, "k".into())
            .unwrap()
            .token;
        // New tokens use the current key: verifiable without the old one.
        assert!(tokens(&[SECRET]).verify(&new_token, NOW).is_ok());
        let removed = tokens(&[SECRET]).verify(&old_token, NOW).unwrap_err();
        assert_eq!(removed.status, 401);
        assert!(removed.message.contains("no longer accepted"), "{removed}");
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let tokens = tokens(&[SECRET]);
        let token = issue(Role::Admin, NOW);
        let later = NOW + (900 + CLOCK_LEEWAY_SECONDS + 1) * 1000;
        assert_eq!(tokens.verify(&token, later).unwrap_err().status, 401);
        let earlier = NOW - (CLOCK_LEEWAY_SECONDS + 5) * 1000;
        assert_eq!(tokens.verify(&token, earlier).unwrap_err().status, 401);
        // within the leeway it is fine
        assert!(tokens.verify(&token, NOW - 5_000).is_ok());
    }

    #[test]
    fn other_secrets_alg_none_and_edited_claims_are_refused() {
        let token = issue(Role::Reader, NOW);
        let other = tokens(&[b"another secret of at least 32 bytes!!"]);
        assert_eq!(other.verify(&token, NOW).unwrap_err().status, 401);

        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
        claims["role"] = "admin".into();
        let edited = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_vec(&claims).unwrap()),
            parts[2]
        );
        let ours = tokens(&[SECRET]);
        assert_eq!(ours.verify(&edited, NOW).unwrap_err().status, 401);

        let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(ours.verify(&unsigned, NOW).unwrap_err().status, 401);
        for garbage in ["", "abc", "a.b.c", "....."] {
            assert_eq!(ours.verify(garbage, NOW).unwrap_err().status, 401);
        }
    }

    #[test]
    fn roles_are_ordered_by_power() {
        let as_role = |role| Principal {
            subject: "x".into(),
            role,
            api_key: None,
        };
        let (reader, writer, admin) = (
            as_role(Role::Reader),
            as_role(Role::Writer),
            as_role(Role::Admin),
        );
        assert!(reader.authorize(Action::Receive).is_ok());
        assert_eq!(reader.authorize(Action::Send).unwrap_err().status, 403);
        assert_eq!(reader.authorize(Action::Register).unwrap_err().status, 403);
        for action in [
            Action::Receive,
            Action::Register,
            Action::Send,
            Action::ReadDocs,
        ] {
            assert!(writer.authorize(action).is_ok());
            assert!(admin.authorize(action).is_ok());
        }
        for action in [Action::ManageAccounts, Action::ReadMetrics, Action::Cleanup] {
            assert_eq!(writer.authorize(action).unwrap_err().status, 403);
            assert!(admin.authorize(action).is_ok());
        }
    }

    #[test]
    fn bearer_header_forms() {
        let mut req = Request::get("/mcp/receive");
        assert_eq!(bearer_token(&req).unwrap_err().status, 401);
        req.headers
            .push(("authorization".into(), b"Basic abc".to_vec()));
        assert_eq!(bearer_token(&req).unwrap_err().status, 401);
        req.headers[0].1 = b"bearer tok".to_vec();
        assert_eq!(bearer_token(&req).unwrap(), "tok");
        req.headers
            .push(("authorization".into(), b"Bearer other".to_vec()));
        assert_eq!(bearer_token(&req).unwrap_err().status, 401);
    }
}
