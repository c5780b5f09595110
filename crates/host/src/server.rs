//! The HTTP trigger: HTTP/1.1 with keep-alive on hyper, Spin's routing and `spin-*`
//! headers, and component instances (reused, see `crate::dispatch`) with a per-request
//! deadline (epoch interruption), a memory cap (`StoreLimits`) and a request-body cap. A
//! guest that traps, loops or runs out of memory costs its own request only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use wasmtime::component::ResourceTable;
use wasmtime::{
    AsContextMut, Engine, Store, StoreContextMut, StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::cli::StdoutStream;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, ProxyHandler, ProxyPre};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use mcp_edge_domain::ApiError;
use mcp_edge_domain::http::{body_too_large, request_id as choose_request_id, respond};
use mcp_edge_domain::park::{PARK_HEADER, Park, Parkable};

use crate::body::{self, Gathered};
use crate::dispatch::{ComponentHandler, Gate, InstanceLimits, Shared, Ticket};
use crate::engine::EPOCH_TICK;
use crate::kv::changes::Woken;
use crate::kv::wasi::{KvGrant, KvView};
use crate::kv::{DEFAULT_STORE, SharedBackend};
use crate::manifest::Mount;
use crate::metrics;
use crate::router::{RouteMatch, Router};
use crate::variables::ComponentConfig;

/// Per-request and per-connection limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_limit_bytes: usize,
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers (a slow client is cut off).
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body once its headers are in.
    pub body_read_timeout: Duration,
    /// Connections open at once; beyond it new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Requests parked at once while they wait for a message (`crate::parking`).
    pub parking: crate::parking::ParkLimits,
}

/// What one request's `Store` holds.
pub struct InstanceState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    kv: KvGrant,
    config: ComponentConfig,
    limits: InstanceLimits,
    hooks: DenyOutbound,
    /// Epoch ticks the current request may still run (`arm_deadline`).
    ticks_left: u64,
}

/// No manifest component is granted outbound hosts (`allowed_outbound_hosts`), so outgoing
/// HTTP is refused, as Spin refuses it.
struct DenyOutbound;

type OutgoingIo =
    Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl wasmtime_wasi_http::WasiHttpHooks for DenyOutbound {
    /// The default set, checked directly: the default method builds its filter closure (an
    /// allocation) for every header of every request and response.
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: OutgoingIo,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (http::Response<wasmtime_wasi_http::WasiBody>, OutgoingIo),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl InstanceState {
    pub fn kv_view(&mut self) -> KvView<'_> {
        KvView {
            grant: &self.kv,
            table: &mut self.table,
        }
    }

    pub fn config_view(&mut self) -> &ComponentConfig {
        &self.config
    }
}

/// A component ready to serve: pre-instantiated, with its grants resolved once.
pub struct Prepared {
    pub id: String,
    pub proxy: ProxyPre<InstanceState>,
    /// The cron handler, for components that export one.
    pub cron: Option<crate::bindings::cron::SpinCronPre<InstanceState>>,
    pub config: ComponentConfig,
    pub kv: KvGrant,
    pub mounts: Vec<Mount>,
}

pub struct App {
    /// The engine, limits, pool slots and audit log every component's dispatcher shares.
    pub shared: Arc<Shared>,
    pub router: Arc<Router>,
    /// Request counts and latencies, by route.
    pub request_metrics: Arc<metrics::RequestMetrics>,
    /// Each component's dispatcher (instance reuse, `crate::dispatch`), by component id.
    pub handlers: std::collections::HashMap<String, ProxyHandler<ComponentHandler>>,
    pub metrics: Arc<MetricsEndpoint>,
    /// How `/metrics` is answered on the main listener.
    pub metrics_on_main: MetricsAccess,
}

/// Who may read `/metrics` on the main listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    /// A bearer credential with the admin role: an access token signed with one of these
    /// keys (the application's `jwt_secret`), or an admin API key (the default).
    Admin(Vec<Vec<u8>>),
    /// Anyone (`--public-metrics`).
    Public,
    /// Nobody: metrics have their own listener (`--metrics-listen`).
    Elsewhere,
}

/// Renders `/metrics`, refreshing the gauges read from the store first.
pub struct MetricsEndpoint {
    pub handle: metrics_exporter_prometheus::PrometheusHandle,
    pub backend: SharedBackend,
}

impl MetricsEndpoint {
    /// Checks the request's bearer credential, as the components do: an access token or an
    /// API key whose role is admin. (The domain's store calls are synchronous on this
    /// backend, so the check runs on a blocking thread.)
    async fn authorize(
        &self,
        req: &Request<Incoming>,
        secrets: &[Vec<u8>],
    ) -> Result<(), ApiError> {
        use mcp_edge_domain::accounts::{Accounts, Action, Tokens, bearer_token};
        let view = mcp_edge_domain::http::Request {
            headers: req
                .headers()
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .map(|v| ("authorization".to_owned(), v.as_bytes().to_vec()))
                .collect(),
            ..Default::default()
        };
        let (backend, secrets) = (self.backend.clone(), secrets.to_vec());
        tokio::task::spawn_blocking(move || {
            let store = crate::kv::native::BackendStore::new(backend, crate::kv::DEFAULT_STORE);
            let who = pollster::block_on(
                Accounts::new(&store, &mcp_edge_domain::env::SystemEnv)
                    .authenticate(bearer_token(&view)?, &Tokens::new(&secrets)),
            )?;
            who.authorize(Action::ReadMetrics)
        })
        .await
        .map_err(|_| ApiError::new(500, "internal", "the credential check failed"))?
    }

    pub async fn render(&self) -> Response<Body> {
        let backend = self.backend.clone();
        let clients = tokio::task::spawn_blocking(move || {
            mcp_edge_domain::messaging::registered_clients_keys()
                .iter()
                .try_fold(0i64, |sum, key| {
                    let n = backend.increment(crate::kv::DEFAULT_STORE, key, 0)?;
                    Ok::<i64, crate::kv::KvError>(sum.saturating_add(n))
                })
        })
        .await;
        if let Ok(Ok(count)) = clients {
            metrics::registered_clients(count);
        }
        let mut resp = Response::new(full(self.handle.render()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }
}

type Body = WasiBody;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A runtime-level error, in the same JSON shape and with the same headers the components
/// use (the domain's error model), so clients cannot tell who answered.
fn json_error(status: u16, code: &'static str, message: &str) -> Response<Body> {
    error_response(ApiError::new(status, code, message))
}

fn error_response(error: ApiError) -> Response<Body> {
    let domain = respond(Err(error));
    let mut resp = Response::new(full(domain.body));
    *resp.status_mut() =
        StatusCode::from_u16(domain.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in domain.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

fn request_id(req: &Request<Incoming>) -> String {
    choose_request_id(
        req.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    )
}

/// How a request ended without a response from its component.
fn classify_failure(
    error: &wasmtime::Error,
    past_deadline: bool,
) -> (u16, &'static str, &'static str) {
    if past_deadline
        || error.is::<ExpirationError>()
        || error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
    {
        (
            504,
            "timeout",
            "the component did not answer within the deadline",
        )
    } else if error.is::<InstantiationError<Arc<Ticket>>>() {
        (
            500,
            "instance_setup_failed",
            "the component could not be prepared",
        )
    } else if error.is::<ErrorCode>() {
        (500, "component_error", "the component reported an error")
    } else {
        (
            500,
            "component_failed",
            "the component failed while handling the request",
        )
    }
}

impl App {
    /// Serves one HTTP request end to end; never fails (errors become JSON responses).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: Peer,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let id = request_id(&req);
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        if path == "/metrics" {
            match &self.metrics_on_main {
                MetricsAccess::Public => return Ok(self.metrics.render().await),
                MetricsAccess::Admin(secrets) => {
                    return Ok(match self.metrics.authorize(&req, secrets).await {
                        Ok(()) => self.metrics.render().await,
                        Err(e) => error_response(e),
                    });
                }
                MetricsAccess::Elsewhere => {}
            }
        }
        let (mut resp, route) = match self.router.find(&path) {
            None => (
                json_error(404, "route_not_found", "no route matches this path"),
                None,
            ),
            Some(m) => {
                let route = (m.index, m.route);
                (self.dispatch(req, m, client, &id).await, Some(route))
            }
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-request-id", value);
        }
        // Whatever a component forgets, browsers must not sniff content types; and the
        // runtime names no software or version.
        resp.headers_mut()
            .entry("x-content-type-options")
            .or_insert(HeaderValue::from_static("nosniff"));
        resp.headers_mut().remove("server");
        resp.headers_mut().remove("x-powered-by");
        self.request_metrics.record(
            route.map(|(index, _)| index),
            resp.status().as_u16(),
            started.elapsed(),
        );
        let (route, component) = route.map_or(("", ""), |(_, r)| (&r.raw[..], &r.component[..]));
        tracing::info!(
            request_id = %id,
            method = %method,
            path = %path,
            route = %route,
            component = %component,
            status = resp.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        Ok(resp)
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: Request<Incoming>,
        route: RouteMatch<'_>,
        client: Peer,
        request_id: &str,
    ) -> Response<Body> {
        let Some(handler) = self.handlers.get(&route.route.component) else {
            return json_error(
                500,
                "component_missing",
                "the route's component is not loaded",
            );
        };
        let max = self.shared.limits.max_body_bytes;
        let too_large = || error_response(body_too_large(max));
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return too_large();
        }
        let (mut parts, body) = req.into_parts();
        // Most requests (every GET) have no body: nothing to wait for.
        let read = async {
            if hyper::body::Body::is_end_stream(&body) {
                return Ok(Ok(Bytes::new()));
            }
            tokio::time::timeout(
                self.shared.limits.body_read_timeout,
                Limited::new(body, max).collect(),
            )
            .await
            .map(|r| r.map(|c| c.to_bytes()))
        };
        let body = match read.await {
            Ok(Ok(collected)) => collected,
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return too_large();
            }
            Ok(Err(_)) => {
                return json_error(400, "unreadable_body", "the request body could not be read");
            }
            Err(_) => {
                let mut resp = json_error(
                    408,
                    "request_timeout",
                    "the request body did not arrive in time",
                );
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                return resp;
            }
        };
        set_spin_headers(&mut parts, &route, &client);
        self.run_parked(handler, parts, body, client.addr, request_id)
            .await
    }

    /// Runs a request; while its component asks to park it (`crate::parking`), holds it,
    /// with no instance, until the store key it names is written or its wait is over, and
    /// runs it again, telling the component how long it has waited.
    async fn run_parked(
        self: &Arc<Self>,
        handler: &ProxyHandler<ComponentHandler>,
        mut parts: http::request::Parts,
        body: Bytes,
        client: SocketAddr,
        request_id: &str,
    ) -> Response<Body> {
        let shared = &self.shared;
        let started = Instant::now();
        let mut held = None;
        let mut closing = false;
        loop {
            let parkable = Parkable {
                waited_ms: waited(started, closing),
                after: None,
            };
            let (resp, since) = self
                .dispatch_parkable(handler, &mut parts, &body, request_id, parkable)
                .await;
            let Some(park) = park_answer(&resp) else {
                return resp;
            };
            if closing {
                return json_error(503, "shutting_down", "the server is shutting down");
            }
            let place = match held.take() {
                Some(place) => place,
                None => match shared.parking.hold(client.ip(), &park.holder) {
                    Ok(place) => place,
                    Err(refused) => return error_response(refused),
                },
            };
            if resp.status() == StatusCode::OK {
                let stream = Stream {
                    handler: handler.clone(),
                    parts,
                    body,
                    request_id: request_id.to_owned(),
                    started,
                    _place: place,
                };
                return stream.start(self.clone(), resp, park, since);
            }
            held = Some(place);
            let until = Instant::now() + Duration::from_millis(park.wait_ms);
            closing = park_until(&shared.changes, &park, since, until).await == Woken::Closed;
        }
    }

    /// Dispatches the request (again), telling the component it can be parked and how long
    /// it has waited; returns the answer and the write count from before the dispatch, for
    /// the wait that may follow.
    async fn dispatch_parkable(
        &self,
        handler: &ProxyHandler<ComponentHandler>,
        parts: &mut http::request::Parts,
        body: &Bytes,
        request_id: &str,
        parkable: Parkable,
    ) -> (Response<Body>, u64) {
        if let Ok(value) = HeaderValue::from_str(&parkable.header_value()) {
            parts.headers.insert(PARK, value);
        }
        let since = self.shared.changes.now();
        let resp = self
            .run(handler, again(parts, body.clone()), request_id)
            .await;
        (resp, since)
    }

    /// The same application with dispatchers of its own (for another thread's runtime):
    /// the same components, engine, pool slots and audit log.
    pub fn replicate(&self) -> App {
        App {
            shared: self.shared.clone(),
            router: self.router.clone(),
            request_metrics: self.request_metrics.clone(),
            handlers: self
                .handlers
                .iter()
                .map(|(id, h)| {
                    let state = h.state();
                    let handler = ComponentHandler {
                        component: state.component.clone(),
                        shared: state.shared.clone(),
                    };
                    (id.clone(), ProxyHandler::new(handler))
                })
                .collect(),
            metrics: self.metrics.clone(),
            metrics_on_main: self.metrics_on_main.clone(),
        }
    }

    /// A loaded component, by id.
    pub fn component(&self, id: &str) -> Option<&Arc<Prepared>> {
        self.handlers.get(id).map(|h| &h.state().component)
    }

    async fn run(
        &self,
        handler: &ProxyHandler<ComponentHandler>,
        req: Request<Full<Bytes>>,
        request_id: &str,
    ) -> Response<Body> {
        let id = &handler.state().component.id;
        let ticket = Ticket::new(request_id);
        let req = req.map(|body| body.map_err(|never| match never {}).boxed_unsync());
        let started = Instant::now();
        // The epoch deadline ends runaway guest code; this backstop also covers a guest stuck
        // in a host call or a request waiting too long for an instance.
        let backstop = self.shared.limits.timeout + Duration::from_secs(1);
        let outcome = tokio::time::timeout(backstop, handler.handle(ticket.clone(), req)).await;
        let error = match outcome {
            Ok(Ok(resp)) => {
                let resp = resp.map(|body| ticket.watch(body));
                match body::gather(resp, started + backstop).await {
                    Gathered::Response(resp) => return resp,
                    Gathered::Failed => wasmtime::Error::msg("the response body failed"),
                }
            }
            Ok(Err(error)) => error,
            Err(_) => wasmtime::Error::from(ExpirationError),
        };
        ticket.fail();
        let (status, code, message) =
            classify_failure(&error, started.elapsed() >= self.shared.limits.timeout);
        if code == "instance_setup_failed" {
            tracing::error!(component = %id, error = ?error, "cannot prepare an instance");
        } else {
            tracing::warn!(component = %id, error = ?error, status, "component failed");
        }
        json_error(status, code, message)
    }
}

/// The time a request is told it has waited when the server shuts down: longer than any wait.
const WAIT_OVER_MS: u64 = 24 * 3600 * 1000;

/// How long a request parked since `started` has waited; at shutdown, longer than any wait,
/// so that the component answers now.
fn waited(started: Instant, closing: bool) -> u64 {
    if closing {
        WAIT_OVER_MS
    } else {
        started.elapsed().as_millis() as u64
    }
}

/// A stream the host holds between its segments (`mcp_edge_domain::park`): the request to
/// dispatch again, and its place among the parked for as long as it is open.
struct Stream {
    handler: ProxyHandler<ComponentHandler>,
    parts: http::request::Parts,
    body: Bytes,
    request_id: String,
    started: Instant,
    _place: crate::parking::Held,
}

impl Stream {
    /// Answers with the first segment's head and a body that the segments feed as they come.
    fn start(self, app: Arc<App>, first: Response<Body>, park: Park, since: u64) -> Response<Body> {
        let (mut head, first_body) = first.into_parts();
        head.headers.remove(PARK_HEADER);
        head.headers.remove(http::header::CONTENT_LENGTH);
        let (segments, body) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            if let Some(bytes) = body::collect(first_body).await
                && segments.send(bytes).await.is_ok()
            {
                self.follow(&app, &segments, park, since).await;
            }
        });
        Response::from_parts(head, body::Channel(body).boxed_unsync())
    }

    /// Parks, dispatches the next segment and sends it on, until a segment ends the stream,
    /// the client goes, or (at shutdown) the component has answered its last.
    async fn follow(
        mut self,
        app: &App,
        segments: &tokio::sync::mpsc::Sender<Bytes>,
        mut park: Park,
        mut since: u64,
    ) {
        let changes = &app.shared.changes;
        loop {
            let until = Instant::now() + Duration::from_millis(park.wait_ms);
            let woken = tokio::select! {
                woken = park_until(changes, &park, since, until) => woken,
                () = segments.closed() => return,
            };
            // A busy stream is woken by writes; it still ends at shutdown.
            let closing = woken == Woken::Closed || changes.is_closed();
            let parkable = Parkable {
                waited_ms: waited(self.started, closing),
                after: park.after,
            };
            let resp;
            (resp, since) = app
                .dispatch_parkable(
                    &self.handler,
                    &mut self.parts,
                    &self.body,
                    &self.request_id,
                    parkable,
                )
                .await;
            let next = park_answer(&resp);
            let ok = resp.status() == StatusCode::OK;
            let Some(bytes) = body::collect(resp.into_body()).await else {
                return;
            };
            // A refusal now (an expired credential, a client expired meanwhile) ends the
            // stream with it as an event; the client's reconnect gets it as an answer.
            let chunk = if ok { bytes } else { error_event(&bytes) };
            if segments.send(chunk).await.is_err() {
                return;
            }
            match next {
                Some(next) if ok && !closing => park = next,
                _ => return,
            }
        }
    }
}

/// Holds a parked request until its key is written after `since` (no key: only the time),
/// `until` passes, or the server shuts down.
async fn park_until(
    changes: &crate::kv::changes::Changes,
    park: &Park,
    since: u64,
    until: Instant,
) -> Woken {
    if park.key.is_empty() {
        changes.sleep(until).await
    } else {
        changes.wait(DEFAULT_STORE, &park.key, since, until).await
    }
}

/// An error answer's JSON body as a Server-Sent Event (`event: error`).
fn error_event(body: &[u8]) -> Bytes {
    let data = String::from_utf8_lossy(body).replace(['\r', '\n'], " ");
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

/// The same request again (its body was read once, into `body`).
fn again(parts: &http::request::Parts, body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}

/// A component's request to be parked (204), or a stream's segment with more to follow
/// (200), if that is what `resp` is.
fn park_answer(resp: &Response<Body>) -> Option<Park> {
    if resp.status() != StatusCode::NO_CONTENT && resp.status() != StatusCode::OK {
        return None;
    }
    Park::parse(resp.headers().get(PARK_HEADER)?.to_str().ok()?)
}

/// The epoch ticks of a deadline: never less than the deadline. The first tick may come at
/// once after the deadline is set, so one more tick is counted; an interrupt then always comes
/// past the deadline, and a request ended by it is told apart from a crash by its elapsed time
/// even when the handler reports only that its worker failed.
pub(crate) fn epoch_ticks(deadline: Duration) -> u64 {
    deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1
}

/// A store for one instance of `component`, with its grants, its memory cap and a deadline.
pub(crate) fn new_store(
    engine: &Engine,
    limits: &Limits,
    component: &Prepared,
    stdout: impl StdoutStream + 'static,
    gate: Option<Arc<Gate>>,
) -> Result<Store<InstanceState>> {
    let mut wasi = WasiCtx::builder();
    // File reads (the docs tree, read-only, small files) run on the calling thread: handing
    // each one to tokio's blocking pool cost more than the read (docs/performance.md).
    wasi.inherit_stderr()
        .stdout(stdout)
        .allow_blocking_current_thread(true);
    for mount in &component.mounts {
        wasi.preopened_dir(&mount.host, &mount.guest, FsPerms::ReadOnly)?;
    }
    let state = InstanceState {
        table: ResourceTable::new(),
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        kv: component.kv.clone(),
        config: component.config.clone(),
        limits: InstanceLimits {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_limit_bytes)
                .trap_on_grow_failure(false)
                .build(),
            gate,
        },
        hooks: DenyOutbound,
        ticks_left: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    // Guest code yields its thread at every epoch tick, so a guest that computes for long
    // (an Argon2 hash, a runaway loop) delays nobody else on its lane; past the deadline it
    // is interrupted.
    store.epoch_deadline_callback(|mut store| {
        let left = &mut store.data_mut().ticks_left;
        *left = left.saturating_sub(1);
        Ok(if *left == 0 {
            UpdateDeadline::Interrupt
        } else {
            // tokio's yield lets the event loop poll for I/O before the guest resumes.
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        })
    });
    arm_deadline(store.as_context_mut(), limits.timeout);
    Ok(store)
}

/// Starts a request's deadline: the guest is interrupted at the `epoch_ticks(deadline)`th
/// tick from now, and yields at each one before.
pub(crate) fn arm_deadline(mut store: StoreContextMut<'_, InstanceState>, deadline: Duration) {
    store.data_mut().ticks_left = epoch_ticks(deadline);
    store.set_epoch_deadline(1);
}

/// The header names the runtime sets, made once: a name given as a string is parsed and
/// copied on every insert.
const PARK: HeaderName = HeaderName::from_static(PARK_HEADER);
const SPIN_FULL_URL: HeaderName = HeaderName::from_static("spin-full-url");
const SPIN_PATH_INFO: HeaderName = HeaderName::from_static("spin-path-info");
const SPIN_MATCHED_ROUTE: HeaderName = HeaderName::from_static("spin-matched-route");
const SPIN_RAW_COMPONENT_ROUTE: HeaderName = HeaderName::from_static("spin-raw-component-route");
const SPIN_COMPONENT_ROUTE: HeaderName = HeaderName::from_static("spin-component-route");
const SPIN_BASE_PATH: HeaderName = HeaderName::from_static("spin-base-path");
const SPIN_CLIENT_ADDR: HeaderName = HeaderName::from_static("spin-client-addr");

/// Sets the headers Spin gives components, replacing any a client sent under those names.
fn set_spin_headers(parts: &mut http::request::Parts, route: &RouteMatch<'_>, client: &Peer) {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut full_url = String::with_capacity(7 + host.len() + path_and_query.len());
    for part in ["http://", host, path_and_query] {
        full_url.push_str(part);
    }
    let full_url = HeaderValue::from_str(&full_url);
    let spoofed: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    let headers = &mut parts.headers;
    for name in spoofed {
        headers.remove(name);
    }
    headers.reserve(7 + route.params.len());
    let values = [
        (SPIN_FULL_URL, full_url.ok()),
        (SPIN_PATH_INFO, HeaderValue::from_str(&route.path_info).ok()),
        (SPIN_MATCHED_ROUTE, route.route.raw_header.clone()),
        (SPIN_RAW_COMPONENT_ROUTE, route.route.raw_header.clone()),
        (
            SPIN_COMPONENT_ROUTE,
            route.route.component_route_header.clone(),
        ),
        (SPIN_BASE_PATH, Some(HeaderValue::from_static("/"))),
        (SPIN_CLIENT_ADDR, client.header.clone()),
    ];
    for (name, value) in values {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
    for (name, value) in &route.params {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(format!("spin-path-match-{name}")),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
}

/// Accepts connections until `shutdown` resolves and gives each to a lane
/// (`crate::lanes`); then stops accepting and lets the lanes drain their in-flight requests.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    lanes: crate::lanes::Lanes,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let connections = Arc::new(Semaphore::new(app.shared.limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // At the cap, stop accepting: new connections wait in the kernel's backlog until one
        // closes, instead of each costing a task and buffers here.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                lanes.assign(stream, client, permit);
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    // Parked requests are answered now, with what they have.
    app.shared.changes.close();
    lanes.finish().await;
    Ok(())
}

/// A connection's client, with its `spin-client-addr` value made once for all its requests.
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    header: Option<HeaderValue>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            header: HeaderValue::from_str(&addr.to_string()).ok(),
        }
    }
}

/// One HTTP/1.1 connection (keep-alive), on plain TCP or inside TLS.
pub(crate) async fn serve_http1<S>(
    app: Arc<App>,
    stream: S,
    client: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_read_timeout = app.shared.limits.header_read_timeout;
    let peer = Peer::new(client);
    let service = hyper::service::service_fn(move |req| app.clone().handle(req, peer.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    watcher.watch(conn).await
}

/// One HTTPS connection: the handshake (bounded like reading headers), then HTTP/2 or
/// HTTP/1.1 as ALPN agreed.
pub(crate) async fn serve_tls(
    app: Arc<App>,
    tls: TlsAcceptor,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let handshake = app.shared.limits.header_read_timeout;
    let stream = tokio::time::timeout(handshake, tls.accept(stream))
        .await
        .map_err(|_| "the TLS handshake timed out")??;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Ok(serve_http1(app, stream, client, watcher).await?);
    }
    let peer = Peer::new(client);
    let service = hyper::service::service_fn(move |req| app.clone().handle(req, peer.clone()));
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    Ok(watcher.watch(conn).await?)
}

/// Serves only `GET /metrics` (for `--metrics-listen`), until `shutdown` resolves.
pub async fn serve_metrics(
    endpoint: Arc<MetricsEndpoint>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let endpoint = endpoint.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let endpoint = endpoint.clone();
                    async move {
                        Ok::<_, Infallible>(if req.uri().path() == "/metrics" {
                            endpoint.render().await
                        } else {
                            json_error(404, "route_not_found", "this listener serves only /metrics")
                        })
                    }
                });
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
            () = &mut shutdown => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_deadline_never_ends_before_the_deadline() {
        for ms in [1, 9, 10, 11, 999, 1000, 1001, 30_000] {
            let deadline = Duration::from_millis(ms);
            // The first tick may come at once; the others come at least a tick apart.
            let earliest = EPOCH_TICK * (epoch_ticks(deadline) as u32 - 1);
            assert!(
                earliest >= deadline,
                "{ms} ms: interrupt as early as {earliest:?}"
            );
        }
    }
}
