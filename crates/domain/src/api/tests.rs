use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::accounts::{Role, hash_password};
use crate::audit::MemoryAudit;
use crate::config::keys;
use crate::env::testing::FakeEnv;
use crate::messaging::testing::ObjectStore;
use crate::store::MemoryStore;

const T0: u64 = 1_800_000_000_000;
const SECRET: &str = "test-secret-test-secret-test-secret!";

/// A deployment in memory: a store, configuration with three users, a clock, an audit trail.
pub(super) struct World {
    /// Shared, so that a test's sleep hook can write to it in the middle of a request.
    pub(super) store: std::sync::Arc<MemoryStore>,
    pub(super) config: HashMap<String, String>,
    pub(super) env: FakeEnv,
    pub(super) audit: MemoryAudit,
}

impl World {
    pub(super) fn new() -> Self {
        let users = json!([
            {"username": "wendy", "role": "writer", "password_hash": hash_password("wendy-pw").unwrap()},
            {"username": "will", "role": "writer", "password_hash": hash_password("will-pw").unwrap()},
            {"username": "rita", "role": "reader", "password_hash": hash_password("rita-pw").unwrap()},
        ]);
        let config = HashMap::from([
            (keys::JWT_SECRET.to_string(), SECRET.to_string()),
            (keys::USERS.to_string(), users.to_string()),
            (keys::MAX_PAYLOAD_BYTES.to_string(), "100".to_string()),
        ]);
        Self {
            store: std::sync::Arc::new(MemoryStore::new()),
            config,
            env: FakeEnv::at(T0),
            audit: MemoryAudit::default(),
        }
    }

    pub(super) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: &*self.store,
            config: &self.config,
            env: &self.env,
            audit: &self.audit,
        }
    }

    /// An access token: `rita` is a reader, everyone else a writer.
    pub(super) fn token(&self, user: &str) -> String {
        let role = match user {
            "rita" => Role::Reader,
            _ => Role::Writer,
        };
        Tokens::new(&[SECRET.as_bytes().to_vec()])
            .issue(user, role, 900, self.env.now_ms(), "j".into())
            .unwrap()
            .token
    }
}

fn post(path: &str, token: Option<&str>, body: Value) -> Request {
    let mut req = Request {
        method: "POST".into(),
        path: path.into(),
        body: body.to_string().into_bytes(),
        ..Default::default()
    };
    req.headers
        .push(("content-type".into(), b"application/json".to_vec()));
    if let Some(t) = token {
        req.headers
            .push(("authorization".into(), format!("Bearer {t}").into_bytes()));
    }
    req
}

fn get(path: &str, query: &str, token: Option<&str>) -> Request {
    let mut req = Request::get(path);
    req.query = Some(query.into());
    if let Some(t) = token {
        req.headers
            .push(("authorization".into(), format!("Bearer {t}").into_bytes()));
    }
    req
}

fn body(resp: &Response) -> Value {
    serde_json::from_slice(&resp.body).unwrap()
}

fn code(resp: &Response) -> String {
    body(resp)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[pollster::test]
async fn login_issues_a_bearer_token_with_the_role() {
    let w = World::new();
    let resp = login(
        &post(
            "/login",
            None,
            json!({"username": "rita", "password": "rita-pw"}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(resp.status, 200);
    let b = body(&resp);
    assert_eq!(
        (
            b["token_type"].as_str(),
            b["expires_in"].as_u64(),
            b["role"].as_str()
        ),
        (Some("Bearer"), Some(900), Some("reader"))
    );
    let principal = Tokens::new(&[SECRET.as_bytes().to_vec()])
        .verify(b["access_token"].as_str().unwrap(), T0)
        .unwrap();
    assert_eq!(principal.subject, "rita");
}

#[pollster::test]
async fn login_failures() {
    let w = World::new();
    let wrong = login(
        &post(
            "/login",
            None,
            json!({"username": "rita", "password": "nope"}),
        ),
        &w.ctx(),
    )
    .await;
    let unknown = login(
        &post(
            "/login",
            None,
            json!({"username": "nobody", "password": "rita-pw"}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.body.clone()),
        (unknown.status, unknown.body.clone())
    );
    assert_eq!(wrong.status, 401);
    let bad_name = login(
        &post("/login", None, json!({"username": "a/b", "password": "x"})),
        &w.ctx(),
    )
    .await;
    assert_eq!(bad_name.status, 400);
    let missing = login(&post("/login", None, json!({"username": "rita"})), &w.ctx()).await;
    assert_eq!(
        (missing.status, code(&missing).as_str()),
        (400, "invalid_request")
    );
    let mut get_req = post("/login", None, json!({}));
    get_req.method = "GET".into();
    assert_eq!(login(&get_req, &w.ctx()).await.status, 405);
    let mut no_secret = w.config.clone();
    no_secret.remove(keys::JWT_SECRET);
    let resp = login(
        &post(
            "/login",
            None,
            json!({"username": "rita", "password": "rita-pw"}),
        ),
        &Ctx {
            config: &no_secret,
            ..w.ctx()
        },
    )
    .await;
    assert_eq!(
        (resp.status, code(&resp).as_str()),
        (500, "server_misconfigured")
    );
}

#[pollster::test]
async fn full_flow_through_the_handlers() {
    let w = World::new();
    let (wendy, will) = (w.token("wendy"), w.token("will"));
    let r = register(
        &post(
            "/mcp/register",
            Some(&wendy),
            json!({"client_id": "a", "group_id": "g"}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = register(
        &post(
            "/mcp/register",
            Some(&wendy),
            json!({"client_id": "a", "group_id": "g"}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        register(
            &post(
                "/mcp/register",
                Some(&will),
                json!({"client_id": "b", "group_id": "g"})
            ),
            &w.ctx()
        )
        .await
        .status,
        201
    );

    let s = send(
        &post(
            "/mcp/send",
            Some(&wendy),
            json!({"sender_id": "a", "group_id": "g", "payload": {"k": [1, 2]}}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(s.status, 202);
    let sb = body(&s);
    assert_eq!(sb["seq"], 1);
    assert!(sb["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        send(
            &post(
                "/mcp/send",
                Some(&wendy),
                json!({"sender_id": "a", "group_id": "g", "payload": null})
            ),
            &w.ctx()
        )
        .await
        .status,
        202
    );

    let r = receive(
        &get(
            "/mcp/receive",
            "client_id=b&group_id=g&after=0",
            Some(&will),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 200);
    let rb = body(&r);
    assert_eq!(rb["messages"][0]["payload"], json!({"k": [1, 2]}));
    assert_eq!(rb["messages"][0]["message_id"], sb["message_id"]);
    assert_eq!(rb["messages"][1]["payload"], Value::Null);
    assert_eq!(rb["next_after"], 2);
}

#[pollster::test]
async fn auth_table_for_messaging() {
    let w = World::new();
    let wendy = w.token("wendy");
    let rita = w.token("rita");
    register(
        &post(
            "/mcp/register",
            Some(&wendy),
            json!({"client_id": "a", "group_id": "g"}),
        ),
        &w.ctx(),
    )
    .await;
    let reg = async |t: Option<&str>| {
        register(
            &post(
                "/mcp/register",
                t,
                json!({"client_id": "c", "group_id": "g"}),
            ),
            &w.ctx(),
        )
        .await
        .status
    };
    assert_eq!(reg(None).await, 401);
    assert_eq!(reg(Some("garbage")).await, 401);
    assert_eq!(reg(Some(&rita)).await, 403);
    let snd = send(
        &post(
            "/mcp/send",
            Some(&rita),
            json!({"sender_id": "a", "group_id": "g", "payload": 1}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(snd.status, 403);
    let other = send(
        &post(
            "/mcp/send",
            Some(&w.token("will")),
            json!({"sender_id": "a", "group_id": "g", "payload": 1}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(
        (other.status, code(&other).as_str()),
        (403, "client_owned_by_other")
    );
    let expired_env = FakeEnv::at(T0 + 3_600_000);
    let ctx = Ctx {
        store: &*w.store,
        config: &w.config,
        env: &expired_env,
        audit: &w.audit,
    };
    assert_eq!(
        receive(
            &get("/mcp/receive", "client_id=a&group_id=g", Some(&wendy)),
            &ctx
        )
        .await
        .status,
        401
    );
}

#[pollster::test]
async fn validation_errors() {
    let w = World::new();
    let t = w.token("wendy");
    register(
        &post(
            "/mcp/register",
            Some(&t),
            json!({"client_id": "a", "group_id": "g"}),
        ),
        &w.ctx(),
    )
    .await;
    let too_big = send(
        &post(
            "/mcp/send",
            Some(&t),
            json!({"sender_id": "a", "group_id": "g", "payload": "x".repeat(200)}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(
        (too_big.status, code(&too_big).as_str()),
        (413, "payload_too_large")
    );
    let no_payload = send(
        &post(
            "/mcp/send",
            Some(&t),
            json!({"sender_id": "a", "group_id": "g"}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(no_payload.status, 400);
    for q in [
        "group_id=g",
        "client_id=a",
        "client_id=a&group_id=g&limit=0",
        "client_id=a&group_id=g&limit=1001",
        "client_id=a&group_id=g&after=-1",
        "client_id=a&group_id=g&after=x",
        "client_id=a&client_id=b&group_id=g",
        "client_id=%2F&group_id=g",
    ] {
        let r = receive(&get("/mcp/receive", q, Some(&t)), &w.ctx()).await;
        assert_eq!(r.status, 400, "{q}");
    }
    let r = receive(
        &get("/mcp/receive", "client_id=nobody&group_id=g", Some(&t)),
        &w.ctx(),
    )
    .await;
    assert_eq!((r.status, code(&r).as_str()), (404, "client_not_found"));
}

#[pollster::test]
async fn health_and_readiness() {
    let mut req = Request::get("");
    assert_eq!(health(&req, async || unreachable!()).await.status, 200);
    req.path = "/ready".into();
    assert_eq!(health(&req, async || Ok(())).await.status, 200);
    let down = health(&req, async || Err(StoreError::Other("disk gone".into()))).await;
    assert_eq!((down.status, code(&down).as_str()), (503, "not_ready"));
    req.path = "/nope".into();
    assert_eq!(health(&req, async || Ok(())).await.status, 404);
}

#[pollster::test]
async fn every_action_leaves_an_audit_record_without_secrets() {
    let w = World::new();
    let mut req = post(
        "/login",
        None,
        json!({"username": "wendy", "password": "wendy-pw"}),
    );
    req.headers
        .push(("spin-client-addr".into(), b"127.0.0.1:5555".to_vec()));
    let answer = body(&login(&req, &w.ctx()).await);
    let token = answer["access_token"].as_str().unwrap().to_string();
    let refresh_token = answer["refresh_token"].as_str().unwrap().to_string();
    login(
        &post(
            "/login",
            None,
            json!({"username": "wendy", "password": "guess"}),
        ),
        &w.ctx(),
    )
    .await;
    register(
        &post(
            "/mcp/register",
            Some(&token),
            json!({"client_id": "a", "group_id": "g"}),
        ),
        &w.ctx(),
    )
    .await;
    register(
        &post(
            "/mcp/register",
            Some(&w.token("will")),
            json!({"client_id": "b", "group_id": "g"}),
        ),
        &w.ctx(),
    )
    .await;
    send(
        &post(
            "/mcp/send",
            Some(&token),
            json!({"sender_id": "a", "group_id": "g", "payload": "top secret payload"}),
        ),
        &w.ctx(),
    )
    .await;
    receive(
        &get(
            "/mcp/receive",
            "client_id=b&group_id=g",
            Some(&w.token("will")),
        ),
        &w.ctx(),
    )
    .await;
    receive(
        &get("/mcp/receive", "client_id=b&group_id=g", None),
        &w.ctx(),
    )
    .await;
    // The session routes, through the login component's dispatch.
    let mut refresh_req = post("/", None, json!({ "refresh_token": refresh_token.clone() }));
    refresh_req
        .headers
        .push(("spin-component-route".into(), b"/token/refresh".to_vec()));
    let next = body(&session(&refresh_req, &w.ctx()).await)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut logout_req = post("/", None, json!({ "refresh_token": next.clone() }));
    logout_req
        .headers
        .push(("spin-component-route".into(), b"/logout".to_vec()));
    assert_eq!(session(&logout_req, &w.ctx()).await.status, 204);
    let records = w.audit.records();
    let kinds: Vec<(&str, u16)> = records.iter().map(|r| (r.audit, r.status)).collect();
    assert_eq!(
        kinds,
        vec![
            ("login", 200),
            ("login", 401),
            ("register", 201),
            ("register", 201),
            ("send", 202),
            ("receive", 200),
            ("receive", 401),
            ("token_refresh", 200),
            ("logout", 204),
        ]
    );
    assert_eq!(records[8].user.as_deref(), Some("wendy"));
    assert_eq!(records[0].client_addr.as_deref(), Some("127.0.0.1:5555"));
    assert_eq!(records[0].user.as_deref(), Some("wendy"));
    assert_eq!(records[1].outcome(), "failure");
    assert_eq!(records[4].message_id.as_deref().map(str::len), Some(32));
    assert_eq!(
        (records[5].subject.as_deref(), records[5].message_count),
        (Some("will"), Some(1))
    );
    let all = serde_json::to_string(&records).unwrap();
    for secret in [
        "wendy-pw",
        "guess",
        "top secret payload",
        &token,
        SECRET,
        &refresh_token,
        &next,
    ] {
        assert!(!all.contains(secret), "audit trail leaked {secret}");
    }
}

fn from_addr(mut req: Request, addr: &str) -> Request {
    req.headers
        .push(("spin-client-addr".into(), addr.as_bytes().to_vec()));
    req
}

/// A platform limiter that allows `limit` requests per bucket and records what it counted.
struct CountingLimiter {
    limit: usize,
    counted: std::cell::RefCell<Vec<String>>,
}

#[async_trait::async_trait(?Send)]
impl crate::ratelimit::PlatformLimiter for CountingLimiter {
    async fn take(&self, buckets: &[(Scope, &str)]) -> Result<(), ApiError> {
        for (scope, id) in buckets {
            let key = format!("{}:{id}", scope.name());
            let mut counted = self.counted.borrow_mut();
            if counted.iter().filter(|k| **k == key).count() >= self.limit {
                return Err(crate::ratelimit::platform_refusal(*scope, 60));
            }
            counted.push(key);
        }
        Ok(())
    }
}

/// [`FakeEnv`] on a platform with a limiter of its own.
struct LimitedEnv<'a>(&'a FakeEnv, &'a CountingLimiter);

impl crate::env::Env for LimitedEnv<'_> {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn random_id(&self) -> String {
        self.0.random_id()
    }
    fn platform_limiter(&self) -> Option<&dyn crate::ratelimit::PlatformLimiter> {
        Some(self.1)
    }
}

#[pollster::test]
async fn a_platform_limiter_counts_the_request_budgets_and_the_store_holds_none() {
    let w = World::new();
    let limiter = CountingLimiter {
        limit: 2,
        counted: Default::default(),
    };
    let env = LimitedEnv(&w.env, &limiter);
    let ctx = Ctx {
        env: &env,
        ..w.ctx()
    };
    let wendy = w.token("wendy");
    let poll = async |addr: &str| {
        receive(
            &from_addr(
                get("/mcp/receive", "client_id=c&group_id=g", Some(&wendy)),
                addr,
            ),
            &ctx,
        )
        .await
    };
    assert_eq!(poll("10.0.0.1:1").await.status, 404);
    assert_eq!(poll("10.0.0.2:1").await.status, 404);
    let limited = poll("10.0.0.3:1").await;
    assert_eq!(
        (limited.status, code(&limited).as_str()),
        (429, "rate_limited")
    );
    assert_eq!(limited.header("retry-after"), Some("60"));
    assert_eq!(
        *limiter.counted.borrow(),
        [
            "addr:10.0.0.1",
            "sub:wendy",
            "addr:10.0.0.2",
            "sub:wendy",
            "addr:10.0.0.3"
        ]
    );
    assert!(
        w.store.keys().iter().all(|k| !k.starts_with("ratelimit/")),
        "{:?}",
        w.store.keys()
    );
    // A burst of 0 still turns the request budgets off.
    let mut off = World::new();
    off.config.insert(keys::RATE_LIMIT_BURST.into(), "0".into());
    let ctx = Ctx {
        env: &env,
        ..off.ctx()
    };
    let token = off.token("wendy");
    let reply = receive(
        &from_addr(
            get("/mcp/receive", "client_id=c&group_id=g", Some(&token)),
            "10.0.0.3:2",
        ),
        &ctx,
    )
    .await;
    assert_eq!(reply.status, 404);
}

#[pollster::test]
async fn a_subject_is_limited_across_addresses_and_an_address_across_subjects() {
    let mut w = World::new();
    w.config.insert(keys::RATE_LIMIT_BURST.into(), "3".into());
    w.config
        .insert(keys::RATE_LIMIT_REFILL_MS.into(), "60000".into());
    let (wendy, will) = (w.token("wendy"), w.token("will"));
    let poll = async |token: &str, addr: &str| {
        receive(
            &from_addr(
                get("/mcp/receive", "client_id=c&group_id=g", Some(token)),
                addr,
            ),
            &w.ctx(),
        )
        .await
    };
    // Wendy from three addresses: her own bucket runs out, though no address's does.
    for addr in ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"] {
        assert_eq!(poll(&wendy, addr).await.status, 404); // not registered, but admitted
    }
    let limited = poll(&wendy, "10.0.0.4:1").await;
    assert_eq!(
        (limited.status, code(&limited).as_str()),
        (429, "rate_limited")
    );
    assert_eq!(limited.header("retry-after"), Some("60"));
    // Will from the first address is admitted (address 10.0.0.1 has 2 left)...
    assert_eq!(poll(&will, "10.0.0.1:2").await.status, 404);
    assert_eq!(poll(&will, "10.0.0.1:3").await.status, 404);
    // ...until that address's bucket is empty, whoever asks.
    assert_eq!(poll(&will, "10.0.0.1:4").await.status, 429);
    // Time refills both.
    w.env.advance(60_000);
    assert_eq!(poll(&wendy, "10.0.0.1:5").await.status, 404);
}

#[pollster::test]
async fn failed_logins_never_lock_a_user_out_from_another_address() {
    let mut w = World::new();
    w.config
        .insert(keys::LOGIN_USER_FAILURE_BURST.into(), "8".into());
    let attempt = async |user: &str, password: &str, addr: &str| {
        login(
            &from_addr(
                post(
                    "/login",
                    None,
                    json!({"username": user, "password": password}),
                ),
                addr,
            ),
            &w.ctx(),
        )
        .await
    };
    // A stranger spends wendy's budget at 10.1.0.1 ...
    for port in 0..5 {
        let resp = attempt("wendy", "guess", &format!("10.1.0.1:{port}")).await;
        assert_eq!(resp.status, 401);
    }
    let locked = attempt("wendy", "wendy-pw", "10.1.0.1:9").await;
    assert_eq!(
        (locked.status, code(&locked).as_str()),
        (429, "too_many_login_failures")
    );
    assert_eq!(locked.header("retry-after"), Some("60"));
    // ... which refuses nobody elsewhere: wendy from her own address logs in, repeatedly
    // (successes spend neither budget).
    for port in 0..10 {
        let ok = attempt("wendy", "wendy-pw", &format!("10.2.0.1:{port}")).await;
        assert_eq!(ok.status, 200, "{:?}", body(&ok));
    }
    // Guessing spread over addresses runs into the per-user budget (8 here; 5 spent).
    for i in 0..3 {
        let resp = attempt("wendy", "guess", &format!("10.3.0.{i}:1")).await;
        assert_eq!(resp.status, 401);
    }
    let spread = attempt("wendy", "wendy-pw", "10.4.0.1:1").await;
    assert_eq!(
        (spread.status, code(&spread).as_str()),
        (429, "too_many_login_failures")
    );
    assert!(
        body(&spread)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("for this user;")
    );
    // Other users are unaffected.
    assert_eq!(attempt("rita", "rita-pw", "10.1.0.1:10").await.status, 200);
    // Time refills both budgets.
    w.env.advance(60 * 60_000);
    assert_eq!(
        attempt("wendy", "wendy-pw", "10.1.0.1:11").await.status,
        200
    );
}

/// Counts a store's calls by kind, for the per-request figures in docs/performance.md.
#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    calls: std::sync::Mutex<std::collections::BTreeMap<&'static str, usize>>,
}

impl CountingStore {
    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
    }

    fn take(&self) -> std::collections::BTreeMap<&'static str, usize> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.count("get");
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.count("set");
        self.inner.set(key, value).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count("delete");
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.count("delete_many");
        self.inner.delete_many(keys).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.count("get_many");
        self.inner.get_many(keys).await
    }
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.count("increment");
        self.inner.increment(key, delta).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.count("compare_and_swap");
        self.inner.compare_and_swap(key, expected, new).await
    }
}

/// The store calls of each messaging request in its steady state (the client and its group
/// exist, the rate-limit buckets too), as docs/performance.md lists them. The bounds are a
/// regression guard: a change that adds a round trip to the hot path has to say so here.
#[pollster::test]
async fn store_calls_per_request_in_the_steady_state() {
    let w = World::new();
    let store = CountingStore::default();
    let ctx = Ctx {
        store: &store,
        config: &w.config,
        env: &w.env,
        audit: &w.audit,
    };
    let wendy = w.token("wendy");
    let from = |req| from_addr(req, "10.0.0.1:1");
    let register_req = || {
        from(post(
            "/mcp/register",
            Some(&wendy),
            json!({"client_id": "a", "group_id": "g"}),
        ))
    };
    let send_req = || {
        from(post(
            "/mcp/send",
            Some(&wendy),
            json!({"sender_id": "a", "group_id": "g", "payload": "x"}),
        ))
    };
    let receive_req = || from(get("/mcp/receive", "client_id=a&group_id=g", Some(&wendy)));
    // Warm up: the first of each creates what later ones find.
    assert_eq!(register(&register_req(), &ctx).await.status, 201);
    assert_eq!(send(&send_req(), &ctx).await.status, 202);
    assert_eq!(receive(&receive_req(), &ctx).await.status, 200);
    store.take();

    let mut report = Vec::new();
    for (name, bound) in [("register", 5), ("send", 7), ("receive", 7)] {
        let resp = match name {
            "register" => register(&register_req(), &ctx).await,
            "send" => send(&send_req(), &ctx).await,
            _ => receive(&receive_req(), &ctx).await,
        };
        assert!(resp.status < 300, "{name}: {}", resp.status);
        let calls = store.take();
        let total: usize = calls.values().sum();
        report.push(format!("{name}: {total} {calls:?}"));
        assert!(
            total <= bound,
            "{name} makes {total} store calls: {calls:?}"
        );
    }
    println!("{}", report.join("\n"));
}

#[pollster::test]
async fn credentials_and_failed_login_budgets_can_be_cleaned_up_by_their_own_objects() {
    let w = World::new();
    let backing = MemoryStore::new();
    let store = ObjectStore::scheduling(&backing);
    let ctx = Ctx {
        store: &store,
        config: &w.config,
        env: &w.env,
        audit: &w.audit,
    };
    let creds = json!({"username": "wendy", "password": "wendy-pw"});
    assert_eq!(login(&post("/login", None, creds), &ctx).await.status, 200);
    let wrong = json!({"username": "wendy", "password": "guess"});
    assert_eq!(login(&post("/login", None, wrong), &ctx).await.status, 401);
    assert!(
        backing.keys().iter().all(|k| !k.starts_with("index/")),
        "nothing listed globally: {:?}",
        backing.keys()
    );
    let scheduled = store.scheduled();
    let kinds = |prefix: &str| {
        scheduled
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .count()
    };
    assert_eq!(kinds("refresh/token/"), 1, "{scheduled:?}");
    assert_eq!(kinds("refresh/session/"), 1, "{scheduled:?}");
    assert!(kinds("ratelimit/login-") >= 1, "{scheduled:?}");
    // Looked at when due, each goes: budgets once full again, credentials once expired.
    let last = scheduled.iter().map(|(_, at)| *at).max().unwrap();
    w.env.advance(last.saturating_sub(w.env.now_ms()));
    for (key, _) in &scheduled {
        assert!(expire_key(&ctx, key).await.unwrap(), "{key}");
        assert!(backing.get(key).await.unwrap().is_none(), "{key}");
    }
    // Looked at too early, a key is kept and scheduled again.
    let creds = json!({"username": "will", "password": "will-pw"});
    assert_eq!(login(&post("/login", None, creds), &ctx).await.status, 200);
    let token = store
        .scheduled()
        .into_iter()
        .rev()
        .find(|(k, _)| k.starts_with("refresh/token/"))
        .unwrap();
    let before = store.scheduled().len();
    assert!(!expire_key(&ctx, &token.0).await.unwrap());
    assert_eq!(store.scheduled().len(), before + 1);
    assert_eq!(store.scheduled().last(), Some(&token));
}

/// Registers `a` (wendy) and `b` (will) in group `g`; returns their tokens.
async fn two_members(w: &World) -> (String, String) {
    let (wendy, will) = (w.token("wendy"), w.token("will"));
    for (token, client) in [(&wendy, "a"), (&will, "b")] {
        let r = register(
            &post(
                "/mcp/register",
                Some(token),
                json!({"client_id": client, "group_id": "g"}),
            ),
            &w.ctx(),
        )
        .await;
        assert!(r.status == 200 || r.status == 201, "{}", r.status);
    }
    (wendy, will)
}

fn parked_get(query: &str, token: &str, waited_ms: Option<u64>) -> Request {
    let mut req = get("/mcp/receive", query, Some(token));
    if let Some(ms) = waited_ms {
        req.headers
            .push((crate::park::PARK_HEADER.into(), ms.to_string().into_bytes()));
    }
    req
}

#[pollster::test]
async fn a_waiting_receive_is_parked_on_the_next_slot_where_the_host_parks() {
    let w = World::new();
    let (wendy, will) = two_members(&w).await;
    let q = "client_id=b&group_id=g&wait=5";
    let audited_before = w.audit.records().len();

    let r = receive(&parked_get(q, &will, Some(0)), &w.ctx()).await;
    assert_eq!(r.status, 204);
    let park = crate::park::Park::parse(r.header(crate::park::PARK_HEADER).unwrap()).unwrap();
    assert_eq!(park.wait_ms, 5000);
    assert_eq!(park.key, crate::messaging::message_key("g", 1));
    assert_eq!(park.holder, "g/b");
    assert_eq!(
        w.audit.records().len(),
        audited_before,
        "a park leaves no record"
    );

    let s = send(
        &post(
            "/mcp/send",
            Some(&wendy),
            json!({"sender_id": "a", "group_id": "g", "payload": "hi"}),
        ),
        &w.ctx(),
    )
    .await;
    assert_eq!(s.status, 202);
    // Dispatched again after 1.2 s: the message is there.
    let r = receive(&parked_get(q, &will, Some(1200)), &w.ctx()).await;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["messages"][0]["payload"], "hi");
    let records = w.audit.records();
    let last = records.last().unwrap();
    assert_eq!((last.audit, last.message_count), ("receive", Some(1)));

    // Acknowledged: the next wait parks on the slot after it.
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=5&after=1", &will, Some(0)),
        &w.ctx(),
    )
    .await;
    let park = crate::park::Park::parse(r.header(crate::park::PARK_HEADER).unwrap()).unwrap();
    assert_eq!(park.key, crate::messaging::message_key("g", 2));
    // The time is up: an empty answer, not another park.
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=5&after=1", &will, Some(5000)),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["messages"], json!([]));
}

#[pollster::test]
async fn a_waiting_receive_polls_with_backoff_where_no_host_parks() {
    let w = World::new();
    let (wendy, will) = two_members(&w).await;
    // Another member sends once the receive has waited 300 ms.
    let (store, config, start) = (w.store.clone(), w.config.clone(), w.env.now_ms());
    let mut sent = false;
    w.env.on_sleep(move |now| {
        if !sent && now >= start + 300 {
            sent = true;
            let env = FakeEnv::at(now);
            let audit = MemoryAudit::default();
            let ctx = Ctx {
                store: &*store,
                config: &config,
                env: &env,
                audit: &audit,
            };
            let req = post(
                "/mcp/send",
                Some(&wendy),
                json!({"sender_id": "a", "group_id": "g", "payload": "late"}),
            );
            assert_eq!(pollster::block_on(send(&req, &ctx)).status, 202);
        }
    });
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=10", &will, None),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["messages"][0]["payload"], "late");
    assert_eq!(*w.env.sleeps.lock().unwrap(), [25, 50, 100, 200]);

    // Nothing comes: the answer is empty once the wait is over, never later.
    let before = w.env.now_ms();
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=2&after=1", &will, None),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["messages"], json!([]));
    assert_eq!(w.env.now_ms() - before, 2000);
}

#[pollster::test]
async fn a_wait_beyond_the_maximum_is_refused() {
    let mut w = World::new();
    let (_, will) = two_members(&w).await;
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=31", &will, None),
        &w.ctx(),
    )
    .await;
    assert_eq!((r.status, code(&r).as_str()), (400, "invalid_query"));
    w.config
        .insert(keys::RECEIVE_MAX_WAIT_SECONDS.into(), "60".into());
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=31", &will, Some(31_000)),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 200);
}

/// A dispatch of `GET /mcp/stream` as a parking host makes it: `park` is the value of its park
/// header (`None`: no host parks).
fn stream_get(
    query: &str,
    token: &str,
    park: Option<&str>,
    last_event_id: Option<&str>,
) -> Request {
    let mut req = get("/mcp/stream", query, Some(token));
    if let Some(p) = park {
        req.headers
            .push((crate::park::PARK_HEADER.into(), p.as_bytes().to_vec()));
    }
    if let Some(id) = last_event_id {
        req.headers
            .push(("last-event-id".into(), id.as_bytes().to_vec()));
    }
    req
}

/// The `(id, payload)` of each message event of a stream's body, in order.
fn stream_events(resp: &Response) -> Vec<(u64, Value)> {
    let text = String::from_utf8_lossy(&resp.body);
    text.split("\n\n")
        .filter(|e| e.contains("event: message"))
        .map(|e| {
            let field = |name: &str| {
                e.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            let data: Value = serde_json::from_str(&field("data: ")).unwrap();
            (field("id: ").parse().unwrap(), data["payload"].clone())
        })
        .collect()
}

async fn send_text(w: &World, token: &str, text: &str) {
    let req = post(
        "/mcp/send",
        Some(token),
        json!({"sender_id": "a", "group_id": "g", "payload": text}),
    );
    assert_eq!(send(&req, &w.ctx()).await.status, 202);
}

#[pollster::test]
async fn a_stream_is_segments_parked_between_and_resumes_after_the_last_event_id() {
    let w = World::new();
    let (wendy, will) = two_members(&w).await;
    send_text(&w, &wendy, "one").await;
    send_text(&w, &wendy, "two").await;
    let q = "client_id=b&group_id=g&after=0";
    let streams = |w: &World| {
        w.audit
            .records()
            .iter()
            .filter(|r| r.audit == "stream")
            .map(|r| r.message_count)
            .collect::<Vec<_>>()
    };

    // Opening: what is there, then a park on the next slot for the keepalive interval.
    let r = stream(&stream_get(q, &will, Some("0"), None), &w.ctx()).await;
    assert!(crate::park::Park::is_segment(&r), "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(String::from_utf8_lossy(&r.body).starts_with("retry: 1000\n\n"));
    assert_eq!(stream_events(&r), [(1, json!("one")), (2, json!("two"))]);
    let park = crate::park::Park::parse(r.header(crate::park::PARK_HEADER).unwrap()).unwrap();
    assert_eq!(
        (park.wait_ms, park.key, park.after),
        (15_000, crate::messaging::message_key("g", 3), Some(2))
    );
    assert_eq!(streams(&w), [Some(2)]);

    // Woken with nothing new (the keepalive interval): a comment, and no audit record.
    let r = stream(
        &stream_get(q, &will, Some("15000; after=2"), None),
        &w.ctx(),
    )
    .await;
    assert!(crate::park::Park::is_segment(&r));
    assert_eq!(r.body, stream::KEEPALIVE.as_bytes());
    assert_eq!(streams(&w), [Some(2)]);

    // Woken by a send: the next event only; the query's after no longer counts.
    send_text(&w, &wendy, "three").await;
    let r = stream(
        &stream_get(q, &will, Some("16000; after=2"), None),
        &w.ctx(),
    )
    .await;
    assert_eq!(stream_events(&r), [(3, json!("three"))]);
    assert_eq!(streams(&w), [Some(2), Some(1)]);

    // The lifetime is over: a last segment that ends the stream.
    let r = stream(
        &stream_get(q, &will, Some("300000; after=3"), None),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header(crate::park::PARK_HEADER).is_none());

    // The client reconnects with the last id it got: exactly what follows it.
    let r = stream(&stream_get(q, &will, Some("0"), Some("1")), &w.ctx()).await;
    assert_eq!(stream_events(&r), [(2, json!("two")), (3, json!("three"))]);
}

#[pollster::test]
async fn a_full_segment_asks_to_be_dispatched_again_at_once() {
    let mut w = World::new();
    w.config.insert(keys::MAX_RECEIVE_BYTES.into(), "1".into());
    let (wendy, will) = two_members(&w).await;
    send_text(&w, &wendy, "one").await;
    send_text(&w, &wendy, "two").await;
    let q = "client_id=b&group_id=g&after=0";
    let r = stream(&stream_get(q, &will, Some("0"), None), &w.ctx()).await;
    assert_eq!(stream_events(&r), [(1, json!("one"))]);
    let park = crate::park::Park::parse(r.header(crate::park::PARK_HEADER).unwrap()).unwrap();
    assert_eq!((park.wait_ms, park.after), (0, Some(1)));
    let r = stream(&stream_get(q, &will, Some("1; after=1"), None), &w.ctx()).await;
    assert_eq!(stream_events(&r), [(2, json!("two"))]);
    let park = crate::park::Park::parse(r.header(crate::park::PARK_HEADER).unwrap()).unwrap();
    assert_eq!((park.wait_ms, park.after), (15_000, Some(2)));
}

#[pollster::test]
async fn a_stream_where_no_host_parks_polls_then_ends_for_the_client_to_reconnect() {
    let w = World::new();
    let (_, will) = two_members(&w).await;
    let before = w.env.now_ms();
    let r = stream(
        &stream_get("client_id=b&group_id=g", &will, None, None),
        &w.ctx(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header(crate::park::PARK_HEADER).is_none());
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("retry: 1000\n\n{}", stream::KEEPALIVE)
    );
    // It polled for the keepalive interval, backing off, and no longer.
    assert_eq!(w.env.now_ms() - before, 15_000);
    assert_eq!(w.env.sleeps.lock().unwrap()[..3], [25, 50, 100]);
}

#[pollster::test]
async fn a_stream_checks_what_a_receive_checks() {
    let w = World::new();
    let (wendy, will) = two_members(&w).await;
    let cases = [
        (
            stream_get("group_id=g", &will, Some("0"), None),
            400,
            "invalid_query",
        ),
        (
            stream_get("client_id=b&group_id=g", &will, Some("0"), Some("x")),
            400,
            "invalid_query",
        ),
        (
            stream_get("client_id=b&group_id=g", &wendy, Some("0"), None),
            403,
            "client_owned_by_other",
        ),
        (
            stream_get("client_id=b&group_id=h", &will, Some("0"), None),
            403,
            "not_in_group",
        ),
        (
            stream_get("client_id=b&group_id=g", "forged", Some("0"), None),
            401,
            "unauthorized",
        ),
        // a later segment's credential is checked again
        (
            stream_get(
                "client_id=b&group_id=g",
                "forged",
                Some("10; after=0"),
                None,
            ),
            401,
            "unauthorized",
        ),
    ];
    for (req, status, expected) in cases {
        let r = stream(&req, &w.ctx()).await;
        assert_eq!((r.status, code(&r).as_str()), (status, expected), "{req:?}");
    }
}

#[pollster::test]
async fn a_stream_over_its_rate_limit_pauses_instead_of_failing() {
    let mut w = World::new();
    let (wendy, will) = two_members(&w).await;
    send_text(&w, &wendy, "one").await;
    // From here on, one request per address and subject, refilled after a minute.
    w.config.insert(keys::RATE_LIMIT_BURST.into(), "1".into());
    w.config
        .insert(keys::RATE_LIMIT_REFILL_MS.into(), "60000".into());
    let q = "client_id=b&group_id=g&after=0";
    let r = stream(&stream_get(q, &will, Some("0"), None), &w.ctx()).await;
    assert_eq!(stream_events(&r), [(1, json!("one"))]);
    let records = w.audit.records().len();
    // The next segment is over the limit: no events and no error, a pause at the same place.
    let r = stream(&stream_get(q, &will, Some("40; after=1"), None), &w.ctx()).await;
    assert!(crate::park::Park::is_segment(&r), "{r:?}");
    assert!(r.body.is_empty());
    let park = crate::park::Park::parse(r.header(crate::park::PARK_HEADER).unwrap()).unwrap();
    assert_eq!((park.key.as_str(), park.after), ("", Some(1)));
    assert!(park.wait_ms >= 1000, "{park:?}");
    assert_eq!(w.audit.records().len(), records);
    // A new stream over the limit is refused as a receive is.
    let r = stream(&stream_get(q, &will, Some("0"), None), &w.ctx()).await;
    assert_eq!((r.status, code(&r).as_str()), (429, "rate_limited"));
}

/// A platform that wakes waiting requests itself (a Durable Object): it records the waits it
/// is asked for; during the first, another request sends.
struct WakingEnv<'a> {
    inner: &'a FakeEnv,
    waits: std::sync::Mutex<Vec<(String, u64)>>,
    during_first: std::sync::Mutex<Option<Box<dyn FnOnce() + 'a>>>,
}

impl crate::env::Env for WakingEnv<'_> {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    fn random_id(&self) -> String {
        self.inner.random_id()
    }

    fn waiter(&self) -> Option<&dyn crate::park::KeyWaiter> {
        Some(self)
    }
}

#[async_trait::async_trait(?Send)]
impl crate::park::KeyWaiter for WakingEnv<'_> {
    fn now(&self) -> u64 {
        0
    }

    async fn wait(&self, key: &str, holder: &str, _since: u64, ms: u64) -> Result<(), ApiError> {
        if ms == 7000 {
            return Err(crate::park::too_many_waiting(Some(holder)));
        }
        self.waits.lock().unwrap().push((key.to_owned(), ms));
        let during = self.during_first.lock().unwrap().take();
        match during {
            // Woken by the send, 100 ms in.
            Some(send) => {
                self.inner.advance(100);
                send();
            }
            None => self.inner.advance(ms),
        }
        Ok(())
    }
}

#[pollster::test]
async fn a_waiting_receive_is_woken_by_the_platform_where_it_can() {
    let w = World::new();
    let (wendy, will) = two_members(&w).await;
    let world = &w;
    let env = WakingEnv {
        inner: &w.env,
        waits: Default::default(),
        during_first: std::sync::Mutex::new(Some(Box::new(move || {
            pollster::block_on(send_text(world, &wendy, "late"));
        }))),
    };
    let ctx = Ctx {
        store: &*w.store,
        config: &w.config,
        env: &env,
        audit: &w.audit,
    };
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=5", &will, None),
        &ctx,
    )
    .await;
    assert_eq!(body(&r)["messages"][0]["payload"], "late");
    // Nothing more: the wait runs out, empty, with no polling.
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=2&after=1", &will, None),
        &ctx,
    )
    .await;
    assert_eq!(body(&r)["messages"], json!([]));
    let key = crate::messaging::message_key;
    assert_eq!(
        *env.waits.lock().unwrap(),
        [(key("g", 1), 5000), (key("g", 2), 2000)]
    );
    assert!(w.env.sleeps.lock().unwrap().is_empty());
    // A stream's answer waits the same way, for the keepalive interval.
    let r = stream(
        &stream_get("client_id=b&group_id=g&after=1", &will, None, None),
        &ctx,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        env.waits.lock().unwrap().last(),
        Some(&(key("g", 2), 15_000))
    );
    // A wait the platform refuses (its caps) is the receive's answer.
    let r = receive(
        &parked_get("client_id=b&group_id=g&wait=7&after=1", &will, None),
        &ctx,
    )
    .await;
    assert_eq!((r.status, code(&r).as_str()), (429, "too_many_waiting"));
}

#[pollster::test]
async fn a_stream_reports_a_trimmed_gap_as_an_event_before_what_follows() {
    let mut w = World::new();
    w.config
        .insert(keys::MAX_MESSAGES_PER_GROUP.into(), "2".into());
    let (wendy, will) = two_members(&w).await;
    for text in ["one", "two", "three"] {
        send_text(&w, &wendy, text).await;
    }
    // The cap is 2: a cleanup pass trims the oldest.
    w.env.advance(120_000);
    run_cleanup(&w.ctx()).await.expect("cleanup");
    let r = stream(
        &stream_get("client_id=b&group_id=g&after=0", &will, Some("0"), None),
        &w.ctx(),
    )
    .await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let gap = text
        .split("\n\n")
        .find(|e| e.contains("event: missed"))
        .unwrap_or_else(|| panic!("no missed event in {text:?}"));
    assert!(gap.starts_with("id: 1\n"), "{gap}");
    assert!(gap.contains(r#""first_seq":1,"last_seq":1"#), "{gap}");
    assert_eq!(
        stream_events(&r),
        [(2, json!("two")), (3, json!("three"))],
        "{text}"
    );
    // The audit record counts the messages only.
    let last = w.audit.records().last().cloned().unwrap();
    assert_eq!((last.audit, last.message_count), ("stream", Some(2)));
}
