//! Token and identity attacks, one row per attack, each refused with the right status.

use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use serde_json::{Value, json};

use crate::support::{self, SECRET, Server};

fn b64(data: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(data).expect("base64")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A JWT with exactly this header and these claims, HMAC-SHA256-signed with `key` whatever
/// the header claims.
fn forge(header: Value, claims: Value, key: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mac = hmac_sha256::HMAC::mac(signing_input.as_bytes(), key);
    format!("{signing_input}.{}", b64(&mac))
}

fn hs256() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

fn claims(sub: &str, role: &str) -> Value {
    let t = now();
    json!({"sub": sub, "role": role, "iat": t, "nbf": t, "exp": t + 600, "jti": "forged"})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().expect("object").remove(key);
    v
}

struct Row {
    attack: &'static str,
    method: &'static str,
    path: String,
    authorization: Option<String>,
    body: Option<Value>,
    status: u16,
    code: &'static str,
}

fn run(server: &Server, row: &Row) {
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &row.authorization {
        headers.push(("authorization", a));
    }
    let body = row.body.as_ref().map(|b| b.to_string().into_bytes());
    let reply = server.request(row.method, &row.path, &headers, body.as_deref());
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (row.status, row.code),
        "{}: {}",
        row.attack,
        reply.text()
    );
}

#[test]
fn every_token_and_identity_attack_is_refused_with_the_right_status() {
    let server = support::app();
    let wendy = server.token("wendy");
    let will = server.token("will");
    let rita = server.token("rita");
    assert_eq!(server.register(&wendy, "tk-wendy", "team-a").status, 201);
    assert_eq!(server.register(&will, "tk-will", "team-b").status, 201);
    let secret = SECRET.as_bytes();

    // A genuine reader token with its role edited to admin, signature untouched.
    let parts: Vec<&str> = rita.split('.').collect();
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("rita", "admin").to_string().as_bytes()),
        parts[2]
    );
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims("wendy", "admin").to_string().as_bytes())
    );
    // Credentials of the accounts wing: a refresh token, API keys (one to forge from, one
    // revoked), and a user disabled after getting a key and a session.
    let admin = server.token("admin");
    let as_admin = |method: &str, path: &str, body: Value| {
        let auth = format!("Bearer {admin}");
        let reply = server.request(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body.to_string().as_bytes()),
        );
        assert!(reply.status < 300, "{method} {path}: {}", reply.text());
        reply
    };
    let new_key = |user: &str| {
        let r = as_admin(
            "POST",
            "/admin/api-keys",
            json!({"name": "attack fixture", "role": "writer", "user": user}),
        );
        let body = r.json();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    };
    let login_reply = server.post_json(
        "/login",
        None,
        &json!({"username": "wendy", "password": "wendy-pw"}),
    );
    let refresh_token = login_reply.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, wendy_key) = new_key("wendy");
    let mut forged_key = wendy_key.clone();
    let last = forged_key.pop().unwrap();
    forged_key.push(if last == '0' { '1' } else { '0' });
    let truncated_key = wendy_key[..wendy_key.len() - 8].to_owned();
    let (revoked_id, revoked_key) = new_key("wendy");
    as_admin(
        "DELETE",
        &format!("/admin/api-keys/{revoked_id}"),
        json!({}),
    );
    as_admin(
        "POST",
        "/admin/users",
        json!({"username": "dora", "password": "dora-pass-1", "role": "writer"}),
    );
    let dora_session = server.post_json(
        "/login",
        None,
        &json!({"username": "dora", "password": "dora-pass-1"}),
    );
    let dora_refresh = dora_session.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, dora_key) = new_key("dora");
    as_admin("PATCH", "/admin/users/dora", json!({"disabled": true}));

    let t = now();
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let receive =
        |client: &str, group: &str| format!("/mcp/receive?client_id={client}&group_id={group}");
    let send_body = |sender: &str, group: &str| {
        Some(json!({"sender_id": sender, "group_id": group, "payload": "x"}))
    };
    let refresh_body = |token: &str| Some(json!({ "refresh_token": token }));
    let rows = vec![
        Row {
            attack: "a refresh token used as an access token",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&refresh_token),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "an access token used as a refresh token",
            method: "POST",
            path: "/token/refresh".into(),
            authorization: None,
            body: refresh_body(&wendy),
            status: 401,
            code: "invalid_refresh_token",
        },
        Row {
            attack: "a forged API key (last digit changed)",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&forged_key),
            body: None,
            status: 401,
            code: "invalid_api_key",
        },
        Row {
            attack: "a truncated API key",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&truncated_key),
            body: None,
            status: 401,
            code: "invalid_api_key",
        },
        Row {
            attack: "a revoked API key",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&revoked_key),
            body: None,
            status: 401,
            code: "invalid_api_key",
        },
        Row {
            attack: "a disabled user's API key",
            method: "POST",
            path: "/mcp/register".into(),
            authorization: bearer(&dora_key),
            body: Some(json!({"client_id": "tk-dora", "group_id": "team-d"})),
            status: 401,
            code: "invalid_api_key",
        },
        Row {
            attack: "a disabled user's refresh token",
            method: "POST",
            path: "/token/refresh".into(),
            authorization: None,
            body: refresh_body(&dora_refresh),
            status: 401,
            code: "session_revoked",
        },
        Row {
            attack: "a disabled user's password",
            method: "POST",
            path: "/login".into(),
            authorization: None,
            body: Some(json!({"username": "dora", "password": "dora-pass-1"})),
            status: 401,
            code: "user_disabled",
        },
        Row {
            attack: "a writer manages users",
            method: "POST",
            path: "/admin/users".into(),
            authorization: bearer(&wendy),
            body: Some(json!({"username": "eve", "password": "eve-pass-1", "role": "admin"})),
            status: 403,
            code: "insufficient_role",
        },
        Row {
            attack: "a writer's API key mints itself an admin key",
            method: "POST",
            path: "/admin/api-keys".into(),
            authorization: bearer(&wendy_key),
            body: Some(json!({"name": "escalate", "role": "admin"})),
            status: 403,
            code: "insufficient_role",
        },
        Row {
            attack: "no token",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: None,
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "garbage token",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer("not.a.jwt"),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "wrong scheme",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: Some(format!("Basic {wendy}")),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "alg none",
            method: "POST",
            path: "/admin/cleanup".into(),
            authorization: bearer(&unsigned),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "HS256 signed with another secret",
            method: "POST",
            path: "/admin/cleanup".into(),
            authorization: bearer(&forge(
                hs256(),
                claims("admin", "admin"),
                b"some-other-secret-some-other-secret-000",
            )),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "algorithm confusion: RS256 header, HMAC with the secret",
            method: "POST",
            path: "/admin/cleanup".into(),
            authorization: bearer(&forge(
                json!({"alg": "RS256", "typ": "JWT"}),
                claims("admin", "admin"),
                secret,
            )),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "algorithm confusion: HS512 header",
            method: "POST",
            path: "/admin/cleanup".into(),
            authorization: bearer(&forge(
                json!({"alg": "HS512", "typ": "JWT"}),
                claims("admin", "admin"),
                secret,
            )),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "expired",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&forge(
                hs256(),
                json!({"sub": "wendy", "role": "writer", "iat": t - 4000, "nbf": t - 4000, "exp": t - 3000}),
                secret,
            )),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "nbf in the future beyond the leeway",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&forge(
                hs256(),
                with(claims("wendy", "writer"), "nbf", json!(t + 600)),
                secret,
            )),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "iat in the future beyond the leeway",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&forge(
                hs256(),
                with(claims("wendy", "writer"), "iat", json!(t + 600)),
                secret,
            )),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "no expiry",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&forge(
                hs256(),
                without(claims("wendy", "writer"), "exp"),
                secret,
            )),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "no subject",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&forge(
                hs256(),
                without(claims("wendy", "writer"), "sub"),
                secret,
            )),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "unknown role",
            method: "POST",
            path: "/admin/cleanup".into(),
            authorization: bearer(&forge(hs256(), claims("wendy", "root"), secret)),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "role edited without re-signing",
            method: "POST",
            path: "/admin/cleanup".into(),
            authorization: bearer(&edited),
            body: None,
            status: 401,
            code: "unauthorized",
        },
        Row {
            attack: "reader sends",
            method: "POST",
            path: "/mcp/send".into(),
            authorization: bearer(&rita),
            body: send_body("tk-wendy", "team-a"),
            status: 403,
            code: "insufficient_role",
        },
        Row {
            attack: "reader registers",
            method: "POST",
            path: "/mcp/register".into(),
            authorization: bearer(&rita),
            body: Some(json!({"client_id": "rita-1", "group_id": "team-a"})),
            status: 403,
            code: "insufficient_role",
        },
        Row {
            attack: "writer runs the admin cleanup",
            method: "POST",
            path: "/admin/cleanup".into(),
            authorization: bearer(&wendy),
            body: None,
            status: 403,
            code: "insufficient_role",
        },
        Row {
            attack: "another subject sends as my client",
            method: "POST",
            path: "/mcp/send".into(),
            authorization: bearer(&will),
            body: send_body("tk-wendy", "team-a"),
            status: 403,
            code: "client_owned_by_other",
        },
        Row {
            attack: "another subject receives as my client",
            method: "GET",
            path: receive("tk-wendy", "team-a"),
            authorization: bearer(&will),
            body: None,
            status: 403,
            code: "client_owned_by_other",
        },
        Row {
            attack: "another subject takes over my client by registering it",
            method: "POST",
            path: "/mcp/register".into(),
            authorization: bearer(&will),
            body: Some(json!({"client_id": "tk-wendy", "group_id": "team-b"})),
            status: 403,
            code: "client_owned_by_other",
        },
        Row {
            attack: "a client of group A reads group B",
            method: "GET",
            path: receive("tk-wendy", "team-b"),
            authorization: bearer(&wendy),
            body: None,
            status: 403,
            code: "not_in_group",
        },
        Row {
            attack: "a client of group A sends to group B",
            method: "POST",
            path: "/mcp/send".into(),
            authorization: bearer(&wendy),
            body: send_body("tk-wendy", "team-b"),
            status: 403,
            code: "not_in_group",
        },
    ];
    for row in &rows {
        run(&server, row);
    }
    // The same requests with the rightful token succeed, so every refusal above was the attack.
    assert_eq!(
        server
            .send(&wendy, "tk-wendy", "team-a", json!("ok"))
            .status,
        202
    );
    assert_eq!(
        server.receive(&wendy, "tk-wendy", "team-a", None).status,
        200
    );
    assert_eq!(
        server.receive(&will, "tk-will", "team-b", None).json()["messages"],
        json!([])
    );
    assert_eq!(
        server.register(&wendy_key, "tk-wendy-key", "team-a").status,
        201,
        "the genuine key works"
    );
    let admin_like = forge(hs256(), claims("admin", "admin"), secret);
    let ok = server.request(
        "POST",
        "/admin/cleanup",
        &[("authorization", &format!("Bearer {admin_like}"))],
        None,
    );
    assert_eq!(
        ok.status,
        200,
        "a correctly signed admin token: {}",
        ok.text()
    );
}

#[test]
fn login_answers_the_same_for_unknown_users_and_wrong_passwords() {
    let server = support::app();
    let attempt = |user: &str, password: &str| {
        server.post_json(
            "/login",
            None,
            &json!({"username": user, "password": password}),
        )
    };
    let wrong = attempt("wendy", "not-her-password");
    let unknown = attempt("nobody-here", "wendy-pw");
    assert_eq!(wrong.status, 401);
    assert_eq!(
        (wrong.status, wrong.text()),
        (unknown.status, unknown.text())
    );
    assert_eq!(wrong.error_code(), "invalid_credentials");
    assert_eq!(
        wrong.header("www-authenticate"),
        unknown.header("www-authenticate")
    );
}

/// Login guessing, as an attacker would spread it: from one address it locks out only that
/// address (for that user name), from many it runs into the user name's own budget; a
/// successful login spends neither. Twelve loopback addresses stand in for a botnet.
#[test]
fn login_guessing_is_bounded_per_address_and_per_user_without_locking_out_the_user_elsewhere() {
    let server = support::server("spin.toml")
        .env("SPIN_VARIABLE_LOGIN_FAILURE_REFILL_MS", "3600000")
        .env("SPIN_VARIABLE_LOGIN_USER_FAILURE_BURST", "12")
        .env("SPIN_VARIABLE_LOGIN_USER_FAILURE_REFILL_MS", "3600000")
        .start();
    let attempt = |from: &str, password: &str| {
        server
            .post_json_from(
                from,
                "/login",
                &json!({"username": "wendy", "password": password}),
            )
            .status
    };
    // One stranger: five failures, then even the right password is refused there ...
    for _ in 0..5 {
        assert_eq!(attempt("127.0.0.2", "guess"), 401);
    }
    assert_eq!(attempt("127.0.0.2", "wendy-pw"), 429);
    // ... and only there.
    assert_eq!(attempt("127.0.0.3", "wendy-pw"), 200);
    // A botnet: one guess from each of seven more addresses empties the user's budget (12).
    for i in 10..17 {
        assert_eq!(attempt(&format!("127.0.0.{i}"), "guess"), 401, "bot {i}");
    }
    assert_eq!(attempt("127.0.0.20", "guess"), 429);
    assert_eq!(attempt("127.0.0.21", "wendy-pw"), 429);
    // Other users are untouched.
    let rita = server.post_json_from(
        "127.0.0.2",
        "/login",
        &json!({"username": "rita", "password": "rita-pw"}),
    );
    assert_eq!(rita.status, 200, "{}", rita.raw);
}
