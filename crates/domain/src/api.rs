//! The HTTP API, written once: each function takes a platform-neutral [`Request`] plus the
//! capabilities its endpoint is granted, and returns the [`Response`] to send. Components
//! (and any other platform adapter) only convert requests and responses.

use serde::Serialize;

use crate::accounts::{Accounts, Action, Principal, Tokens, UserEntry, bearer_token};
use crate::audit::{AuditRecord, AuditSink};
use crate::config::{self, ConfigSource, DocsAccess};
use crate::cors::Cors;
use crate::docs::{self, SiteFiles, Visibility};
use crate::env::{Env, rfc3339_ms};
use crate::error::ApiError;
use crate::http::{Request, Response, respond, with_common_headers};
use crate::ids::validate_id;
use crate::messaging::log::Received;
use crate::messaging::members::Registration;
use crate::messaging::{
    self, Cleanup, DEFAULT_RECEIVE_LIMIT, LogLimits, MAX_RECEIVE_LIMIT, Messaging, message_key,
};
use crate::park::{Park, Parkable, Waiting};
use crate::ratelimit::{Limiter, Limits, PlatformLimiter, Policy, Scope, client_ip};
use crate::store::{KvStore, StoreError};

mod credentials;
mod mcp;
#[cfg(test)]
mod mcp_tests;
mod stream;
pub mod wire;
pub use credentials::{admin, login, logout, refresh, session};
pub use stream::stream;
use wire::{
    Liveness, Readiness, ReadinessChecks, ReceiveOut, RegisterBody, Registered, SendBody, Sent,
};

/// What the messaging endpoints are given.
pub struct Ctx<'a> {
    pub store: &'a dyn KvStore,
    pub config: &'a dyn ConfigSource,
    pub env: &'a dyn Env,
    pub audit: &'a dyn AuditSink,
}

/// The message log with the cleanup index and limits configured for this deployment.
fn messaging<'a>(ctx: &'a Ctx<'_>) -> Result<Messaging<'a>, ApiError> {
    let limits = LogLimits {
        bucket_ms: config::cleanup_bucket_ms(ctx.config)?,
        cap: config::number(
            ctx.config,
            config::keys::MAX_MESSAGES_PER_GROUP,
            config::DEFAULT_MAX_MESSAGES_PER_GROUP,
        )?,
        max_clients: config::number(
            ctx.config,
            config::keys::MAX_CLIENTS_PER_GROUP,
            config::DEFAULT_MAX_CLIENTS_PER_GROUP,
        )?,
        max_receive_bytes: config::max_receive_bytes(ctx.config)?,
    };
    Ok(Messaging::new(ctx.store, ctx.env).with_limits(limits))
}

/// The frame of every endpoint: CORS preflights are answered here, and CORS headers added to
/// whatever `handler` answers (nothing changes while CORS is off).
async fn endpoint(
    req: &Request,
    config: &dyn ConfigSource,
    methods: &[&str],
    handler: impl AsyncFnOnce() -> Response,
) -> Response {
    let cors = match Cors::from_config(config) {
        Ok(cors) => cors,
        Err(e) => return respond(Err(e)),
    };
    if let Some(preflight) = cors.preflight(req, methods) {
        return with_common_headers(preflight);
    }
    cors.decorate(req, handler().await)
}

/// The rate limiter and its policies, for one request.
struct Guard<'a> {
    limiter: Limiter<'a>,
    /// Where the request budgets are counted instead of the store, on a platform with a
    /// limiter of its own (failed logins are always counted in the store).
    platform: Option<&'a dyn PlatformLimiter>,
    limits: Limits,
    /// The caller's IP, when the platform tells it.
    addr: Option<String>,
}

impl<'a> Guard<'a> {
    fn new(req: &Request, ctx: &'a Ctx<'_>) -> Result<Self, ApiError> {
        Ok(Self {
            limiter: Limiter::new(
                ctx.store,
                ctx.env.now_ms(),
                config::cleanup_bucket_ms(ctx.config)?,
            ),
            platform: ctx.env.platform_limiter(),
            limits: Limits::from_config(ctx.config)?,
            addr: req.header("spin-client-addr").and_then(client_ip),
        })
    }

    /// One request under each of these request buckets: counted by the platform's limiter
    /// where there is one, else read at once from the store. A burst of 0 turns them off.
    async fn requests(&self, buckets: &[(Scope, &str)]) -> Result<(), ApiError> {
        let policy = self.limits.requests;
        if policy.burst == 0 || buckets.is_empty() {
            return Ok(());
        }
        match self.platform {
            Some(platform) => platform.take(buckets).await,
            None => {
                let buckets: Vec<(Scope, &str, Policy)> = buckets
                    .iter()
                    .map(|(scope, id)| (*scope, *id, policy))
                    .collect();
                self.limiter.take_each(&buckets).await
            }
        }
    }

    /// One request from this address.
    async fn address(&self) -> Result<(), ApiError> {
        match &self.addr {
            Some(ip) => self.requests(&[(Scope::Address, ip)]).await,
            None => Ok(()),
        }
    }

    /// One request from this address and one under this subject, both buckets read at once.
    async fn address_and_subject(&self, who: &Principal) -> Result<(), ApiError> {
        let mut buckets = Vec::with_capacity(2);
        if let Some(ip) = &self.addr {
            buckets.push((Scope::Address, ip.as_str()));
        }
        buckets.push((Scope::Subject, who.subject.as_str()));
        self.requests(&buckets).await
    }

    /// One request under this subject.
    async fn subject(&self, who: &Principal) -> Result<(), ApiError> {
        self.requests(&[(Scope::Subject, &who.subject)]).await
    }

    /// The (user name, address) bucket's id, when the platform tells the address.
    fn pair(&self, username: &str) -> Option<String> {
        self.addr.as_ref().map(|ip| format!("{username}@{ip}"))
    }

    /// Refuses a login while this user name has no failures left from this address, or from
    /// all addresses together. Failures elsewhere never refuse this address's first budget.
    async fn login_allowed(&self, username: &str) -> Result<(), ApiError> {
        if let Some(pair) = self.pair(username) {
            self.limiter
                .check(Scope::LoginFailurePair, &pair, self.limits.login_failures)
                .await?;
        }
        self.limiter
            .check(
                Scope::LoginFailureUser,
                username,
                self.limits.user_login_failures,
            )
            .await
    }

    /// Counts a failed login against both budgets (a successful one spends neither).
    async fn login_failed(&self, username: &str) {
        // Already refused above when empty; a race to zero only shortens the next wait.
        if let Some(pair) = self.pair(username) {
            let _ = self
                .limiter
                .take(Scope::LoginFailurePair, &pair, self.limits.login_failures)
                .await;
        }
        let _ = self
            .limiter
            .take(
                Scope::LoginFailureUser,
                username,
                self.limits.user_login_failures,
            )
            .await;
    }
}

/// Authenticates and rate-limits a messaging request: per address first (so floods of bad
/// credentials are limited too), then per subject. An access token is verified without the
/// store, so both buckets are then read in one batch call; an API key is looked up in the
/// store only once its address has been admitted.
async fn admit(req: &Request, ctx: &Ctx<'_>, action: Action) -> Result<Principal, ApiError> {
    let guard = Guard::new(req, ctx)?;
    let token = bearer_token(req).ok().filter(|c| {
        !c.starts_with(crate::accounts::API_KEY_PREFIX)
            && !c.starts_with(crate::accounts::REFRESH_TOKEN_PREFIX)
    });
    let who = match token {
        Some(token) => {
            let verified =
                Tokens::new(&config::jwt_secrets(ctx.config)?).verify(token, ctx.env.now_ms());
            match verified {
                Ok(who) => {
                    guard.address_and_subject(&who).await?;
                    who
                }
                Err(e) => {
                    guard.address().await?;
                    return Err(e);
                }
            }
        }
        None => {
            guard.address().await?;
            let who = principal(req, ctx).await?;
            guard.subject(&who).await?;
            who
        }
    };
    who.authorize(action)?;
    Ok(who)
}

/// An audited endpoint: within the [`endpoint`] frame, runs `handler`, then records its audit
/// entry under `action` with the status it ended with.
async fn audited(
    req: &Request,
    config: &dyn ConfigSource,
    methods: &[&str],
    audit: &dyn AuditSink,
    action: &'static str,
    handler: impl AsyncFnOnce(&mut AuditRecord) -> Result<Response, ApiError>,
) -> Response {
    endpoint(req, config, methods, async || {
        let mut record = AuditRecord::new(action);
        let resp = respond(handler(&mut record).await);
        // A parked request leaves its record when it is answered.
        if !Park::is_park(&resp) && !record.withheld {
            record.status = resp.status;
            audit.record(record);
        }
        resp
    })
    .await
}

/// The accounts of this deployment, without the seeds (what credential checks need).
fn accounts<'a>(ctx: &'a Ctx<'_>) -> Result<Accounts<'a>, ApiError> {
    Ok(Accounts::new(ctx.store, ctx.env)
        .with_refresh_ttl_seconds(config::refresh_token_ttl_seconds(ctx.config)?)
        .with_bucket_ms(config::cleanup_bucket_ms(ctx.config)?))
}

/// The users the `users` variable seeds (none when it is unset).
fn seeds(config: &dyn ConfigSource) -> Result<Vec<UserEntry>, ApiError> {
    config::text(config, config::keys::USERS)?
        .map(|raw| crate::accounts::parse_users(&raw))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Verifies the request's bearer credential: an access token or an API key.
async fn principal(req: &Request, ctx: &Ctx<'_>) -> Result<Principal, ApiError> {
    let credential = bearer_token(req)?;
    let tokens = Tokens::new(&config::jwt_secrets(ctx.config)?);
    accounts(ctx)?.authenticate(credential, &tokens).await
}

/// `POST /mcp/register`
pub async fn register(req: &Request, ctx: &Ctx<'_>) -> Response {
    audited(
        req,
        ctx.config,
        &["POST"],
        ctx.audit,
        "register",
        async |rec| {
            req.expect_method(&["POST"])?;
            let who = admit(req, ctx, Action::Register).await?;
            rec.subject = Some(who.subject.clone());
            let body: RegisterBody = req.json()?;
            rec.client_id = Some(body.client_id.clone());
            rec.group_id = Some(body.group_id.clone());
            let (status, resumed, record) = match messaging(ctx)?
                .register(&who.subject, &body.client_id, &body.group_id)
                .await?
            {
                Registration::Created(r) => (201, false, r),
                Registration::Resumed(r) => (201, true, r),
                Registration::Refreshed(r) => (200, false, r),
            };
            Ok(Response::json(
                status,
                &Registered {
                    client_id: body.client_id,
                    group_id: record.group_id,
                    registered_at: rfc3339_ms(record.registered_at_ms),
                    last_heartbeat: rfc3339_ms(record.last_heartbeat_ms),
                    resumed,
                    cursor: record.cursor,
                },
            ))
        },
    )
    .await
}

/// The header that names a send for safe retries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `POST /mcp/send`
pub async fn send(req: &Request, ctx: &Ctx<'_>) -> Response {
    audited(req, ctx.config, &["POST"], ctx.audit, "send", async |rec| {
        req.expect_method(&["POST"])?;
        let who = admit(req, ctx, Action::Send).await?;
        rec.subject = Some(who.subject.clone());
        let body: SendBody = req.json()?;
        rec.client_id = Some(body.sender_id.clone());
        rec.group_id = Some(body.group_id.clone());
        let payload = body
            .payload
            .ok_or_else(|| ApiError::bad_request("invalid_request", "missing field `payload`"))?;
        let limit = config::max_payload_bytes(ctx.config)?;
        let size = payload.get().len();
        if size > limit {
            return Err(ApiError::payload_too_large(format!(
                "payload is {size} bytes; the limit is {limit}"
            )));
        }
        let key = req.header(IDEMPOTENCY_KEY);
        let sent = messaging(ctx)?
            .send(&who.subject, &body.sender_id, &body.group_id, payload, key)
            .await?;
        rec.message_id = Some(sent.message_id.clone());
        let resp = Response::json(
            202,
            &Sent {
                message_id: sent.message_id,
                seq: sent.seq,
                timestamp: rfc3339_ms(sent.timestamp_ms),
            },
        );
        Ok(if sent.replayed {
            resp.with_header("idempotent-replayed", "true")
        } else {
            resp
        })
    })
    .await
}

fn receive_answer(got: &Received) -> Result<Response, ApiError> {
    Response::try_json(200, &ReceiveOut::from(got))
}

fn number_param(name: &str, raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("{name} must be a non-negative integer"),
        )
    })
}

/// A member's query (receive, stream): `client_id` and `group_id`, required and recorded in
/// `rec`, and `after`; any other parameter goes to `other`.
fn member_query(
    req: &Request,
    rec: &mut AuditRecord,
    mut other: impl FnMut(&str, &str) -> Result<(), ApiError>,
) -> Result<(String, String, Option<u64>), ApiError> {
    let (mut client_id, mut group_id, mut after) = (None, None, None);
    for (key, value) in req.query_params()? {
        match key.as_str() {
            "client_id" => client_id = Some(value),
            "group_id" => group_id = Some(value),
            "after" => after = Some(number_param("after", &value)?),
            _ => other(&key, &value)?,
        }
    }
    let missing = |name: &str| {
        ApiError::bad_request(
            "invalid_query",
            format!("query parameter {name} is required"),
        )
    };
    let client_id = client_id.ok_or_else(|| missing("client_id"))?;
    let group_id = group_id.ok_or_else(|| missing("group_id"))?;
    rec.client_id = Some(client_id.clone());
    rec.group_id = Some(group_id.clone());
    Ok((client_id, group_id, after))
}

/// `GET /mcp/receive?client_id=&group_id=[&after=SEQ][&limit=N][&wait=SECONDS]`: with
/// `wait`, an answer with no messages waits up to that long for one ([`crate::park`]): parked
/// by a host that can, else woken by the platform where it can, else polled with backoff here.
pub async fn receive(req: &Request, ctx: &Ctx<'_>) -> Response {
    audited(
        req,
        ctx.config,
        &["GET"],
        ctx.audit,
        "receive",
        async |rec| {
            req.expect_method(&["GET"])?;
            let who = admit(req, ctx, Action::Receive).await?;
            rec.subject = Some(who.subject.clone());
            let (mut limit, mut wait_s) = (DEFAULT_RECEIVE_LIMIT, 0);
            let (client_id, group_id, after) = member_query(req, rec, |key, value| {
                match key {
                    "limit" => {
                        limit = number_param("limit", value)?
                            .try_into()
                            .ok()
                            .filter(|l| (1..=MAX_RECEIVE_LIMIT).contains(l))
                            .ok_or_else(|| {
                                ApiError::bad_request(
                                    "invalid_query",
                                    format!("limit must be 1-{MAX_RECEIVE_LIMIT}"),
                                )
                            })?;
                    }
                    "wait" => wait_s = number_param("wait", value)?,
                    _ => {}
                }
                Ok(())
            })?;
            let max_wait_s = config::number(
                ctx.config,
                config::keys::RECEIVE_MAX_WAIT_SECONDS,
                config::DEFAULT_RECEIVE_MAX_WAIT_SECONDS,
            )?;
            if wait_s > max_wait_s {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("wait must be 0-{max_wait_s} seconds"),
                ));
            }
            let wait_ms = wait_s * 1000;
            let parkable = Parkable::of(req);
            let started = ctx.env.now_ms();
            let mut waiting = Waiting::new(ctx.env);
            loop {
                waiting.look();
                // The answer is built before the cursor moves past what it holds.
                let (count, resp, next) = messaging(ctx)?
                    .receive(&who.subject, &client_id, &group_id, after, limit, |got| {
                        // Where the next message this client may get will be written.
                        let next = (got.missed.is_none() && got.messages.is_empty())
                            .then(|| message_key(&group_id, got.next_after + 1));
                        Ok((got.messages.len(), receive_answer(got)?, next))
                    })
                    .await?;
                let waited =
                    parkable.map_or(0, |p| p.waited_ms) + ctx.env.now_ms().saturating_sub(started);
                let left = wait_ms.saturating_sub(waited);
                match next {
                    Some(key) if left > 0 => {
                        if parkable.is_some() {
                            let park = Park {
                                wait_ms: left,
                                key,
                                holder: format!("{group_id}/{client_id}"),
                                after: None,
                            };
                            return Ok(park.response());
                        }
                        let holder = format!("{group_id}/{client_id}");
                        if waiting.wait(&key, &holder, left).await? {
                            continue;
                        }
                    }
                    _ => {}
                }
                rec.message_count = Some(count);
                return Ok(resp);
            }
        },
    )
    .await
}

/// `POST /mcp`: the docs and the message groups to MCP clients ([`mcp`]). One audit record
/// per request names its JSON-RPC method (and tool or resource); a message tool's REST
/// handler leaves its own record as well.
pub async fn mcp(req: &Request, site: &dyn SiteFiles, ctx: &Ctx<'_>) -> Response {
    endpoint(req, ctx.config, &["POST"], async || {
        let mut record = AuditRecord::new("mcp");
        let resp = match mcp::allowed_hosts(ctx) {
            Ok(hosts) => {
                let server = mcp::EdgeMcp { site, ctx };
                let (resp, handled) = crate::mcp::handle(req, &server, &hosts).await;
                record.path = handled.method.map(|m| {
                    handled
                        .name
                        .map_or_else(|| m.clone(), |n| format!("{m} {n}"))
                });
                with_common_headers(resp)
            }
            Err(e) => respond(Err(e)),
        };
        // A parked request leaves its record when it is answered.
        if !Park::is_park(&resp) {
            record.status = resp.status;
            ctx.audit.record(record);
        }
        resp
    })
    .await
}

/// The route of the API's OpenAPI document, which the docs component also serves.
pub const OPENAPI_ROUTE: &str = "/openapi.json";

/// `GET /openapi.json`: the OpenAPI document of this API, the newest docs version's
/// `openapi.json` (`mcp-edge openapi`), public and cacheable whatever `docs_access` says:
/// the shape of the API is no secret.
pub async fn openapi(req: &Request, site: &dyn SiteFiles, ctx: &Ctx<'_>) -> Response {
    audited(
        req,
        ctx.config,
        &["GET", "HEAD"],
        ctx.audit,
        "docs",
        async |rec| {
            rec.path = Some(OPENAPI_ROUTE.to_owned());
            let file = Request {
                path: "/latest/openapi.json".to_owned(),
                ..req.clone()
            };
            docs::serve(&file, site, Visibility::Public).await
        },
    )
    .await
}

/// `GET /docs/{version}/{path}` (and `GET /docs` for the version list). The store is read
/// only when docs need a reader and the caller brings an API key. The docs component serves
/// [`OPENAPI_ROUTE`] too ([`openapi`]).
pub async fn docs(req: &Request, site: &dyn SiteFiles, ctx: &Ctx<'_>) -> Response {
    if req.header("spin-component-route") == Some(OPENAPI_ROUTE) {
        return openapi(req, site, ctx).await;
    }
    audited(
        req,
        ctx.config,
        &["GET", "HEAD"],
        ctx.audit,
        "docs",
        async |rec| {
            rec.path = Some(req.path.chars().take(docs::MAX_PATH_LEN).collect());
            let visibility = match config::docs_access(ctx.config)? {
                DocsAccess::Public => Visibility::Public,
                DocsAccess::Reader => {
                    let who = principal(req, ctx).await?;
                    rec.subject = Some(who.subject.clone());
                    rec.api_key = who.api_key.clone();
                    who.authorize(Action::ReadDocs)?;
                    Visibility::Private
                }
            };
            docs::serve(req, site, visibility).await
        },
    )
    .await
}

/// What a cleanup pass did: the message log's part, and the expired credentials it deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CleanupReport {
    #[serde(flatten)]
    pub messaging: messaging::Report,
    pub credentials_removed: u64,
}

/// One cleanup pass, recorded in the audit trail (the scheduled entry point): the message
/// log, then expired refresh tokens and sessions, each within `cleanup_batch`.
pub async fn run_cleanup(ctx: &Ctx<'_>) -> Result<CleanupReport, ApiError> {
    let mut record = AuditRecord::new("cleanup");
    let result = async {
        let settings = messaging::Settings::from_config(ctx.config)?;
        let mut budget = settings.budget;
        let mut report = Cleanup::new(ctx.store, ctx.env, settings).run().await?;
        let (credentials_removed, swept) = accounts(ctx)?.sweep(&mut budget).await?;
        report.complete &= swept;
        Ok::<_, ApiError>(CleanupReport {
            messaging: report,
            credentials_removed,
        })
    }
    .await;
    record.status = match &result {
        Ok(report) => {
            record.clients_removed = Some(report.messaging.clients_removed);
            record.messages_removed = Some(report.messaging.messages_removed);
            200
        }
        Err(e) => e.status,
    };
    ctx.audit.record(record);
    result
}

/// A group's own cleanup (`messaging::Cleanup::group`), run by the store that is the
/// group's storage when it is due: the group's Durable Object's alarm on Workers. What it
/// removed, or why it failed, goes to the audit trail (a run that removed nothing does
/// not, lest every active group log a line a minute).
pub async fn run_group_cleanup(
    ctx: &Ctx<'_>,
    group_id: &str,
) -> Result<messaging::GroupReport, ApiError> {
    let result = async {
        let settings = messaging::Settings::from_config(ctx.config)?;
        Cleanup::new(ctx.store, ctx.env, settings)
            .group(group_id)
            .await
    }
    .await;
    let mut record = AuditRecord::new("cleanup");
    record.group_id = Some(group_id.to_owned());
    match &result {
        Ok(run) if run.report.clients_removed + run.report.messages_removed == 0 => {
            return result;
        }
        Ok(run) => {
            record.status = 200;
            record.clients_removed = Some(run.report.clients_removed);
            record.messages_removed = Some(run.report.messages_removed);
        }
        Err(e) => record.status = e.status,
    }
    ctx.audit.record(record);
    result
}

/// The cleanup of one key that its store looks at by itself (`KvStore::schedule_cleanup`:
/// a failed-login budget or a credential, on Workers by its object's alarm): deleted when
/// due (a budget full again, a credential expired), else scheduled again for when it will
/// be. Returns whether it was deleted.
pub async fn expire_key(ctx: &Ctx<'_>, key: &str) -> Result<bool, ApiError> {
    if key.starts_with("ratelimit/") {
        let limits = Limits::from_config(ctx.config)?;
        let bucket_ms = config::cleanup_bucket_ms(ctx.config)?;
        return Limiter::new(ctx.store, ctx.env.now_ms(), bucket_ms)
            .expire(key, &limits)
            .await;
    }
    accounts(ctx)?.expire_credential(key).await
}

/// When a group that cleans itself up should next be cleaned, at the latest, after a
/// request at `now`: within a cleanup bucket, as the scheduled pass would.
pub fn group_cleanup_due(config: &dyn ConfigSource, now: u64) -> Result<u64, ApiError> {
    Ok(now.saturating_add(config::cleanup_bucket_ms(config)?))
}

/// `POST /admin/cleanup`: one cleanup pass on demand (admin only), for external schedulers.
pub async fn cleanup(req: &Request, ctx: &Ctx<'_>) -> Response {
    endpoint(req, ctx.config, &["POST"], async || {
        respond(
            async {
                req.expect_method(&["POST"])?;
                admit(req, ctx, Action::Cleanup).await?;
                let group = req
                    .query_params()?
                    .into_iter()
                    .find(|(name, _)| name == "group_id")
                    .map(|(_, g)| g);
                if let Some(g) = &group {
                    validate_id("group_id", g)?;
                }
                // Asked for one group, where the group cleans itself up (it is this store):
                // that group's cleanup. Anywhere else the whole pass covers it.
                let report = match group.filter(|g| ctx.store.group_local() == Some(g.as_str())) {
                    Some(g) => CleanupReport {
                        messaging: run_group_cleanup(ctx, &g).await?.report,
                        credentials_removed: 0,
                    },
                    None => run_cleanup(ctx).await?,
                };
                Ok(Response::json(200, &report))
            }
            .await,
        )
    })
    .await
}

/// A store round trip for readiness: a read of a key nothing else uses.
pub async fn store_round_trip(store: &dyn KvStore) -> Result<(), StoreError> {
    store.get("health/probe").await.map(|_| ())
}

/// `GET /health` (liveness) and `GET /health/ready` (readiness: `ready` runs a store round
/// trip). `req.path` is the part after `/health`.
pub async fn health(
    req: &Request,
    ready: impl AsyncFnOnce() -> Result<(), StoreError>,
) -> Response {
    respond(
        async {
            req.expect_method(&["GET", "HEAD"])?;
            match req.path.trim_end_matches('/') {
                "" => Ok(Response::json(200, &Liveness { status: "ok" })),
                "/ready" => match ready().await {
                    Ok(()) => Ok(Response::json(
                        200,
                        &Readiness {
                            status: "ready",
                            checks: ReadinessChecks { store: "ok" },
                        },
                    )),
                    Err(e) => {
                        Err(
                            ApiError::new(503, "not_ready", format!("store check failed: {e}"))
                                .with_header("retry-after", "5"),
                        )
                    }
                },
                _ => Err(ApiError::not_found(
                    "route_not_found",
                    "no such health check; try /health or /health/ready",
                )),
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests;
