//! Accounts end to end, on every runtime: sessions of rotating refresh tokens, logout, API
//! keys, users managed by an admin, and signing-key rotation.

use serde_json::{Value, json};

use crate::deployment::{Deployment, Kind};
use crate::support::{self, Reply};

fn bearer(credential: &str) -> String {
    format!("Bearer {credential}")
}

fn login(server: &Deployment, user: &str, password: &str) -> Reply {
    server.post_json(
        "/login",
        None,
        &json!({"username": user, "password": password}),
    )
}

fn refresh(server: &Deployment, token: &str) -> Reply {
    server.post_json("/token/refresh", None, &json!({ "refresh_token": token }))
}

fn field(reply: &Reply, name: &str) -> String {
    reply.json()[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {}", reply.text()))
        .to_owned()
}

fn admin_call(server: &Deployment, method: &str, path: &str, body: Option<Value>) -> Reply {
    let token = server.token("admin");
    let auth = bearer(&token);
    let body = body.map(|b| b.to_string());
    server.request(
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_deref().map(str::as_bytes),
    )
}

fn with_key(server: &Deployment, key: &str, client: &str) -> Reply {
    server.register(key, client, "keyed")
}

pub fn refresh_tokens_rotate_and_a_reused_one_revokes_the_session(kind: Kind) {
    let server = Deployment::start(kind, &[]);
    let first = login(&server, "wendy", "wendy-pw");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let body = first.json();
    assert_eq!(body["refresh_expires_in"], 2_592_000);
    let r1 = field(&first, "refresh_token");
    assert!(r1.starts_with("mcpr_"), "{r1}");

    let second = refresh(&server, &r1);
    assert_eq!(second.status, 200, "{}", second.text());
    let (a2, r2) = (
        field(&second, "access_token"),
        field(&second, "refresh_token"),
    );
    assert_ne!(r2, r1);
    assert_eq!(server.register(&a2, "c-refresh", "g").status, 201);
    let third = refresh(&server, &r2);
    assert_eq!(third.status, 200, "{}", third.text());
    let r3 = field(&third, "refresh_token");

    // r1 again: someone else holds it. The session ends, r3 with it.
    let reused = refresh(&server, &r1);
    assert_eq!(
        (reused.status, reused.error_code().as_str()),
        (401, "refresh_token_reused")
    );
    let after = refresh(&server, &r3);
    assert_eq!(
        (after.status, after.error_code().as_str()),
        (401, "session_revoked")
    );
    // A refresh token is no access token, and the other way round.
    let wrong_kind = server.register(&r3, "c-x", "g");
    assert_eq!(wrong_kind.status, 401, "{}", wrong_kind.text());
    let access_as_refresh = refresh(&server, &a2);
    assert_eq!(
        (
            access_as_refresh.status,
            access_as_refresh.error_code().as_str()
        ),
        (401, "invalid_refresh_token")
    );
    // Other sessions of the same user go on.
    let other = field(&login(&server, "wendy", "wendy-pw"), "refresh_token");
    assert_eq!(refresh(&server, &other).status, 200);
}

pub fn logout_ends_the_session(kind: Kind) {
    let server = Deployment::start(kind, &[]);
    let r = field(&login(&server, "rita", "rita-pw"), "refresh_token");
    let out = server.post_json("/logout", None, &json!({ "refresh_token": r }));
    assert_eq!(out.status, 204, "{}", out.text());
    let again = refresh(&server, &r);
    assert_eq!(
        (again.status, again.error_code().as_str()),
        (401, "session_revoked")
    );
    let unknown = server.post_json(
        "/logout",
        None,
        &json!({ "refresh_token": format!("mcpr_{}", "0".repeat(64)) }),
    );
    assert_eq!(unknown.status, 401);
}

pub fn api_keys_act_until_revoked(kind: Kind) {
    let server = Deployment::start(kind, &[]);
    let created = admin_call(
        &server,
        "POST",
        "/admin/api-keys",
        Some(json!({"name": "ci deploy", "role": "writer", "user": "wendy"})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let (id, key) = (field(&created, "id"), field(&created, "key"));
    assert!(key.starts_with("mcpe_"), "{key}");
    assert_eq!(with_key(&server, &key, "k1").status, 201);
    let sent = server.send(&key, "k1", "keyed", json!("by key"));
    assert_eq!(sent.status, 202, "{}", sent.text());

    // Listed without its secret.
    let list = admin_call(&server, "GET", "/admin/api-keys", None);
    assert_eq!(list.status, 200);
    assert!(!list.text().contains(&key[22..]), "{}", list.text());
    let listed = list.json()["api_keys"]
        .as_array()
        .expect("api_keys")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned()
        .expect("the new key is listed");
    assert_eq!(
        (listed["user"].as_str(), listed["status"].as_str()),
        (Some("wendy"), Some("active"))
    );
    // A key cannot do more than its user.
    let too_much = admin_call(
        &server,
        "POST",
        "/admin/api-keys",
        Some(json!({"name": "x", "role": "admin", "user": "wendy"})),
    );
    assert_eq!(
        (too_much.status, too_much.error_code().as_str()),
        (400, "role_exceeds_user")
    );
    // Only admins manage keys.
    let wendy = server.token("wendy");
    let denied = server.get("/admin/api-keys", &[("authorization", &bearer(&wendy))]);
    assert_eq!(denied.status, 403);
    assert_eq!(server.get("/admin/api-keys", &[]).status, 401);

    let revoked = admin_call(&server, "DELETE", &format!("/admin/api-keys/{id}"), None);
    assert_eq!(revoked.status, 204, "{}", revoked.text());
    let refused = with_key(&server, &key, "k2");
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (401, "invalid_api_key")
    );
    let gone = admin_call(&server, "DELETE", "/admin/api-keys/0123456789abcdef", None);
    assert_eq!(gone.status, 404);
}

pub fn an_admin_adds_disables_and_removes_users(kind: Kind) {
    let server = Deployment::start(kind, &[]);
    let added = admin_call(
        &server,
        "POST",
        "/admin/users",
        Some(json!({"username": "carl", "password": "carl-pass-1", "role": "writer"})),
    );
    assert_eq!(added.status, 201, "{}", added.text());
    let again = admin_call(
        &server,
        "POST",
        "/admin/users",
        Some(json!({"username": "carl", "password": "carl-pass-1", "role": "writer"})),
    );
    assert_eq!(again.status, 409);
    let session = login(&server, "carl", "carl-pass-1");
    assert_eq!(session.status, 200, "{}", session.text());
    let carl_refresh = field(&session, "refresh_token");
    let key = field(
        &admin_call(
            &server,
            "POST",
            "/admin/api-keys",
            Some(json!({"name": "carl's bot", "role": "writer", "user": "carl"})),
        ),
        "key",
    );
    assert_eq!(with_key(&server, &key, "carl-1").status, 201);

    let disabled = admin_call(
        &server,
        "PATCH",
        "/admin/users/carl",
        Some(json!({"disabled": true})),
    );
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    assert_eq!(disabled.json()["disabled"], true);
    assert_eq!(refresh(&server, &carl_refresh).status, 401);
    let by_key = with_key(&server, &key, "carl-2");
    assert_eq!(
        (by_key.status, by_key.error_code().as_str()),
        (401, "invalid_api_key")
    );
    let no_login = login(&server, "carl", "carl-pass-1");
    assert_eq!(
        (no_login.status, no_login.error_code().as_str()),
        (401, "user_disabled")
    );
    let users = admin_call(&server, "GET", "/admin/users", None);
    let carl = users.json()["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["username"] == "carl")
        .cloned()
        .expect("carl listed");
    assert_eq!(carl["disabled"], true);
    assert!(!users.text().contains("argon2"), "{}", users.text());

    assert_eq!(
        admin_call(&server, "DELETE", "/admin/users/carl", None).status,
        204
    );
    let removed = login(&server, "carl", "carl-pass-1");
    assert_eq!(
        (removed.status, removed.error_code().as_str()),
        (401, "invalid_credentials")
    );
    // The last admin stays.
    let demote = admin_call(
        &server,
        "PATCH",
        "/admin/users/admin",
        Some(json!({"role": "writer"})),
    );
    assert_eq!(
        (demote.status, demote.error_code().as_str()),
        (409, "last_admin")
    );
    // A new password ends the user's sessions; the new one works.
    let r = field(&login(&server, "will", "will-pw"), "refresh_token");
    let changed = admin_call(
        &server,
        "PATCH",
        "/admin/users/will",
        Some(json!({"password": "will-new-pw"})),
    );
    assert_eq!(changed.status, 200);
    assert_eq!(refresh(&server, &r).status, 401);
    assert_eq!(login(&server, "will", "will-new-pw").status, 200);
    assert_eq!(login(&server, "will", "will-pw").status, 401);
}

/// The suite's secret signs tokens the deployment accepts while it is listed after the
/// current key, and not once it is taken off.
pub fn tokens_signed_with_a_previous_key_verify_until_it_is_removed(kind: Kind) {
    let current = "a-new-signing-key-of-at-least-32-bytes";
    let rotated = format!("{current},{}", support::SECRET);
    let old_token = {
        let server = Deployment::start(kind, &[]);
        server.token("wendy")
    };
    let server = Deployment::start(kind, &[("jwt_secret", &rotated)]);
    let ok = server.register(&old_token, "rot-1", "g");
    assert_eq!(ok.status, 201, "{}", ok.text());
    let new_token = server.token("wendy");
    let kid = {
        use jwt_simple::prelude::Token;
        Token::decode_metadata(&new_token)
            .expect("a JWT")
            .key_id()
            .map(str::to_owned)
    };
    assert_eq!(
        kid.as_deref(),
        Some(mcp_edge_domain::accounts::tokens::key_id(current.as_bytes()).as_str())
    );
    drop(server);
    let server = Deployment::start(kind, &[("jwt_secret", current)]);
    let refused = server.register(&old_token, "rot-2", "g");
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(server.register(&new_token, "rot-3", "g").status, 201);
}
