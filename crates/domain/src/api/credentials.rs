//! The endpoints of the accounts wing: login, refresh and logout (one component, see
//! [`session`]), and the admin API for users and API keys (see [`admin`]).

use super::wire::{
    KeyList, KeyOut, LoginBody, NewKeyBody, NewUserBody, RefreshBody, TokenGrant, UserList, UserOut,
};
use super::{Ctx, Guard, accounts, admit, audited, seeds};
use crate::accounts::{
    Action, IssuedRefresh, NewKey, Principal, Role, Tokens, UserPatch, UserRecord,
};
use crate::config;
use crate::error::ApiError;
use crate::http::{Request, Response, respond};
use crate::ids::validate_id;

use crate::accounts::users::MAX_PASSWORD_LEN;

/// The login component's routes, told apart by the route they matched (Spin's
/// `spin-component-route`, which `mcp-edge` and the Worker set too): `/login`,
/// `/token/refresh`, `/logout`. They share one contract: the same imports, the same
/// secrets, and the session rules between them.
pub async fn session(req: &Request, ctx: &Ctx<'_>) -> Response {
    match req.header("spin-component-route") {
        Some("/token/refresh") => refresh(req, ctx).await,
        Some("/logout") => logout(req, ctx).await,
        _ => login(req, ctx).await,
    }
}

/// An access token and the session's next refresh token, as login and refresh answer.
fn grant(ctx: &Ctx<'_>, user: &UserRecord, refresh: IssuedRefresh) -> Result<Response, ApiError> {
    let tokens = Tokens::new(&config::jwt_secrets(ctx.config)?);
    let issued = tokens.issue(
        &user.username,
        user.role,
        config::token_ttl_seconds(ctx.config)?,
        ctx.env.now_ms(),
        ctx.env.random_id(),
    )?;
    Ok(Response::json(
        200,
        &TokenGrant {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            role: user.role,
            refresh_token: refresh.token,
            refresh_expires_in: refresh.expires_in,
        },
    )
    .with_header("cache-control", "no-store"))
}

/// `POST /login`
pub async fn login(req: &Request, ctx: &Ctx<'_>) -> Response {
    audited(
        req,
        ctx.config,
        &["POST"],
        ctx.audit,
        "login",
        async |rec| {
            rec.client_addr = req.header("spin-client-addr").map(str::to_owned);
            req.expect_method(&["POST"])?;
            let guard = Guard::new(req, ctx)?;
            guard.address().await?;
            let body: LoginBody = req.json()?;
            validate_id("username", &body.username)?;
            rec.user = Some(body.username.clone());
            if body.password.is_empty() || body.password.len() > MAX_PASSWORD_LEN {
                return Err(ApiError::bad_request(
                    "invalid_password",
                    format!("password must be 1-{MAX_PASSWORD_LEN} bytes"),
                ));
            }
            guard.login_allowed(&body.username).await?;
            let seeds = seeds(ctx.config)?;
            let accounts = accounts(ctx)?.with_seeds(&seeds);
            let user = match accounts
                .check_password(&body.username, &body.password)
                .await
            {
                Ok(user) => user,
                Err(e) => {
                    if e.code == "invalid_credentials" {
                        guard.login_failed(&body.username).await;
                    }
                    return Err(e);
                }
            };
            let refresh = accounts.start_session(&user).await?;
            grant(ctx, &user, refresh)
        },
    )
    .await
}

/// `POST /token/refresh`: a refresh token for a new access token and the next refresh token.
pub async fn refresh(req: &Request, ctx: &Ctx<'_>) -> Response {
    audited(
        req,
        ctx.config,
        &["POST"],
        ctx.audit,
        "token_refresh",
        async |rec| {
            rec.client_addr = req.header("spin-client-addr").map(str::to_owned);
            req.expect_method(&["POST"])?;
            Guard::new(req, ctx)?.address().await?;
            let body: RefreshBody = req.json()?;
            let (user, next) = accounts(ctx)?.rotate(&body.refresh_token).await?;
            rec.user = Some(user.username.clone());
            grant(ctx, &user, next)
        },
    )
    .await
}

/// `POST /logout`: ends the session of the presented refresh token.
pub async fn logout(req: &Request, ctx: &Ctx<'_>) -> Response {
    audited(
        req,
        ctx.config,
        &["POST"],
        ctx.audit,
        "logout",
        async |rec| {
            rec.client_addr = req.header("spin-client-addr").map(str::to_owned);
            req.expect_method(&["POST"])?;
            Guard::new(req, ctx)?.address().await?;
            let body: RefreshBody = req.json()?;
            rec.user = Some(accounts(ctx)?.end_session(&body.refresh_token).await?);
            Ok(Response::new(204))
        },
    )
    .await
}

/// What an admin request asks for, from its path below `/admin`.
enum AdminRoute<'p> {
    Users,
    User(&'p str),
    Keys,
    Key(&'p str),
}

fn admin_route(path: &str) -> Result<AdminRoute<'_>, ApiError> {
    let path = path.trim_end_matches('/');
    let unknown = || {
        ApiError::not_found(
            "route_not_found",
            "no such admin route; try /admin/users or /admin/api-keys",
        )
    };
    match path {
        "/users" => Ok(AdminRoute::Users),
        "/api-keys" => Ok(AdminRoute::Keys),
        _ => {
            if let Some(name) = path.strip_prefix("/users/") {
                Ok(AdminRoute::User(name))
            } else if let Some(id) = path.strip_prefix("/api-keys/") {
                Ok(AdminRoute::Key(id))
            } else {
                Err(unknown())
            }
        }
    }
}

/// Admits an admin request: an admin credential whose user still exists and is enabled
/// (checked here too, not only at the token's expiry, since these routes change accounts).
async fn admin_principal(
    req: &Request,
    ctx: &Ctx<'_>,
    accounts: &crate::accounts::Accounts<'_>,
) -> Result<Principal, ApiError> {
    let who = admit(req, ctx, Action::ManageAccounts).await?;
    match accounts.user(&who.subject).await? {
        Some(user) if user.active() => Ok(who),
        _ => Err(ApiError::unauthorized(
            "this credential's user is disabled or removed",
        )),
    }
}

/// The path below `/admin`: the matched route (`spin-component-route`, e.g.
/// `/admin/api-keys`) and the path info after it, or the path as given where no route is
/// named (the Worker passes `/api-keys/…`).
fn admin_path(req: &Request) -> String {
    let full = format!(
        "{}{}",
        req.header("spin-component-route").unwrap_or_default(),
        req.path
    );
    match full.strip_prefix("/admin") {
        Some(rest) => rest.to_owned(),
        None => full,
    }
}

/// `/admin/users[/{name}]` and `/admin/api-keys[/{id}]` (admin only).
pub async fn admin(req: &Request, ctx: &Ctx<'_>) -> Response {
    let path = admin_path(req);
    let route = match admin_route(&path) {
        Ok(route) => route,
        Err(e) => return respond(Err(e)),
    };
    let post = req.method == "POST";
    let (methods, action): (&[&str], &'static str) = match &route {
        AdminRoute::Users => (
            &["GET", "POST"],
            if post { "user_add" } else { "user_list" },
        ),
        AdminRoute::Keys => (
            &["GET", "POST"],
            if post {
                "api_key_create"
            } else {
                "api_key_list"
            },
        ),
        AdminRoute::User(_) if req.method == "DELETE" => (&["PATCH", "DELETE"], "user_remove"),
        AdminRoute::User(_) => (&["PATCH", "DELETE"], "user_update"),
        AdminRoute::Key(_) => (&["DELETE"], "api_key_revoke"),
    };
    audited(req, ctx.config, methods, ctx.audit, action, async |rec| {
        req.expect_method(methods)?;
        let seeds = seeds(ctx.config)?;
        let accounts = accounts(ctx)?.with_seeds(&seeds);
        let who = admin_principal(req, ctx, &accounts).await?;
        rec.subject = Some(who.subject.clone());
        rec.api_key = who.api_key.clone();
        let now = ctx.env.now_ms();
        match (route, req.method.as_str()) {
            (AdminRoute::Users, "GET") => {
                let users = accounts.list_users().await?;
                let users = users.iter().map(UserOut::from).collect();
                Ok(Response::json(200, &UserList { users }))
            }
            (AdminRoute::Users, _) => {
                let body: NewUserBody = req.json()?;
                rec.target = Some(body.username.clone());
                let user = accounts
                    .add_user(&body.username, &body.password, body.role)
                    .await?;
                Ok(Response::json(201, &UserOut::from(&user)))
            }
            (AdminRoute::User(name), method) => {
                validate_id("username", name)?;
                rec.target = Some(name.to_owned());
                if method == "DELETE" {
                    accounts.remove_user(name).await?;
                    return Ok(Response::new(204));
                }
                let patch: UserPatch = req.json()?;
                let user = accounts.update_user(name, &patch).await?;
                Ok(Response::json(200, &UserOut::from(&user)))
            }
            (AdminRoute::Keys, "GET") => {
                let keys = accounts.list_keys().await?;
                let api_keys = keys.iter().map(|k| KeyOut::of(k, now)).collect();
                Ok(Response::json(200, &KeyList { api_keys }))
            }
            (AdminRoute::Keys, _) => {
                let body: NewKeyBody = req.json()?;
                let owner_name = body.user.as_deref().unwrap_or(&who.subject);
                validate_id("user", owner_name)?;
                let owner = accounts.user(owner_name).await?.ok_or_else(|| {
                    ApiError::not_found("user_not_found", format!("no user {owner_name}"))
                })?;
                let (record, key) = accounts
                    .create_key(&NewKey {
                        name: &body.name,
                        role: body.role.unwrap_or(Role::Reader),
                        owner: &owner,
                        created_by: &who.subject,
                        expires_in_seconds: body.expires_in_seconds,
                    })
                    .await?;
                rec.target = Some(record.id.clone());
                let out = KeyOut {
                    key: Some(key),
                    ..KeyOut::of(&record, now)
                };
                Ok(Response::json(201, &out).with_header("cache-control", "no-store"))
            }
            (AdminRoute::Key(id), _) => {
                rec.target = Some(id.chars().take(64).collect());
                accounts.revoke_key(id).await?;
                Ok(Response::new(204))
            }
        }
    })
    .await
}
