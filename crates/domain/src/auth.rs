//! Authentication and authorization: Argon2id password checks, HS256 access tokens
//! (`jwt-simple`), and the role rules.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jwt_simple::prelude::*;

use crate::config::UserEntry;
use crate::error::ApiError;
use crate::http::Request;

/// Roles, in increasing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

/// What a caller wants to do; each action has a least role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Receive,
    ReadDocs,
    Register,
    Send,
    Cleanup,
}

impl Action {
    pub fn least_role(self) -> Role {
        match self {
            Action::Receive | Action::ReadDocs => Role::Reader,
            Action::Register | Action::Send => Role::Writer,
            Action::Cleanup => Role::Admin,
        }
    }
}

/// The verified identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
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
                    match action {
                        Action::Receive => "receive",
                        Action::ReadDocs => "read docs",
                        Action::Register => "register",
                        Action::Send => "send",
                        Action::Cleanup => "run cleanup",
                    },
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

/// Issues and verifies access tokens with one HS256 key.
pub struct Tokens {
    key: HS256Key,
}

/// A freshly issued access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: HS256Key::from_bytes(secret),
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
        let token = self
            .key
            .authenticate(claims)
            .map_err(|e| ApiError::new(500, "token_error", format!("could not sign token: {e}")))?;
        Ok(IssuedToken {
            token,
            expires_in: ttl_seconds,
        })
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
            .key
            .verify_token::<RoleClaim>(token, Some(options))
            .map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
        if claims.expires_at.is_none() {
            return Err(ApiError::unauthorized("token has no expiry"));
        }
        let subject = claims
            .subject
            .ok_or_else(|| ApiError::unauthorized("token has no subject"))?;
        Ok(Principal {
            subject,
            role: claims.custom.role,
        })
    }
}

/// The bearer token of a request: exactly one `Authorization: Bearer <token>` header.
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

/// Authenticates the request's bearer token.
pub fn authenticate(req: &Request, tokens: &Tokens, now_ms: u64) -> Result<Principal, ApiError> {
    tokens.verify(bearer_token(req)?, now_ms)
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

fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks credentials. An unknown user costs one Argon2 verification too (against another
/// configured hash, or a fresh hash when none is configured) and gets the same error as a wrong
/// password, so neither the answer nor its timing tells which user names exist.
pub fn check_credentials<'a>(
    users: &'a [UserEntry],
    username: &str,
    password: &str,
) -> Result<&'a UserEntry, ApiError> {
    let user = users.iter().find(|u| u.username == username);
    let matched = match user.or(users.first()) {
        Some(candidate) => password_matches(password, &candidate.password_hash),
        None => {
            let _ = hash_password(password);
            false
        }
    };
    match user {
        Some(user) if matched => Ok(user),
        _ => Err(ApiError::new(
            401,
            "invalid_credentials",
            "unknown user or wrong password",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64_helpers::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
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

    fn issue(role: Role, now: u64) -> String {
        Tokens::new(SECRET)
            .issue("alice", role, 900, now, "jti-1".into())
            .unwrap()
            .token
    }

    #[test]
    fn round_trip_keeps_subject_and_role() {
        let p = Tokens::new(SECRET)
            .verify(&issue(Role::Writer, NOW), NOW)
            .unwrap();
        assert_eq!(
            p,
            Principal {
                subject: "alice".into(),
                role: Role::Writer
            }
        );
    }

    #[test]
    fn claims_carry_iat_exp_jti() {
        let token = issue(Role::Reader, NOW);
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&unb64(payload)).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["role"], "reader");
        assert_eq!(claims["jti"], "jti-1");
        assert_eq!(claims["iat"], NOW / 1000);
        assert_eq!(claims["exp"], NOW / 1000 + 900);
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let tokens = Tokens::new(SECRET);
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
        let other = Tokens::new(b"another secret of at least 32 bytes!!");
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
        assert_eq!(
            Tokens::new(SECRET).verify(&edited, NOW).unwrap_err().status,
            401
        );

        let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(
            Tokens::new(SECRET)
                .verify(&unsigned, NOW)
                .unwrap_err()
                .status,
            401
        );
        for garbage in ["", "abc", "a.b.c", "....."] {
            assert_eq!(
                Tokens::new(SECRET).verify(garbage, NOW).unwrap_err().status,
                401
            );
        }
    }

    #[test]
    fn roles_are_ordered_by_power() {
        let reader = Principal {
            subject: "r".into(),
            role: Role::Reader,
        };
        let writer = Principal {
            subject: "w".into(),
            role: Role::Writer,
        };
        let admin = Principal {
            subject: "a".into(),
            role: Role::Admin,
        };
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

    #[test]
    fn credentials_unknown_user_and_wrong_password_look_the_same() {
        let users = vec![UserEntry {
            username: "alice".into(),
            role: Role::Writer,
            password_hash: hash_password("correct horse").unwrap(),
        }];
        assert_eq!(
            check_credentials(&users, "alice", "correct horse")
                .unwrap()
                .role,
            Role::Writer
        );
        let wrong = check_credentials(&users, "alice", "nope").unwrap_err();
        let unknown = check_credentials(&users, "mallory", "correct horse").unwrap_err();
        assert_eq!(wrong, unknown);
        assert_eq!(wrong.status, 401);
        assert_eq!(check_credentials(&[], "alice", "x").unwrap_err(), wrong);
    }
}
