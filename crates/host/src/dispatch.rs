//! Instance reuse. Each component's requests go through wasmtime-wasi-http's `ProxyHandler`
//! (the dispatcher `wasmtime serve` uses), which keeps an instance for the next request
//! instead of creating one per request. This module is the policy it asks:
//! - one request at a time per instance (WASI 0.2 handlers are not reentrant), at most
//!   `max_requests` in its life (`--max-instance-reuse-count`; 1 is a fresh instance each);
//! - never again after it trapped (the store is poisoned and the worker ends), ran past its
//!   deadline, hit its memory limit, answered without a response or left its response body
//!   unfinished: the next request gets a fresh instance;
//! - the deadline and the memory cap hold per request: the epoch deadline is set anew as each
//!   request starts;
//! - an idle instance is dropped after `idle_timeout` (`--idle-instance-timeout`), or at
//!   once while another instance waits for a slot of the allocation pool; one whose memory
//!   grew past `RETIRE_ABOVE_BYTES` is dropped after its request.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use wasmtime::component::GuestTaskId;
use wasmtime::{AsContextMut, ResourceLimiter, Store, StoreContextMut, StoreLimits};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

use crate::audit::{AuditCapture, AuditLog};
use crate::metrics;
use crate::server::{InstanceState, Limits, Prepared, arm_deadline, new_store};

/// When an instance may serve another request.
#[derive(Debug, Clone)]
pub struct Reuse {
    /// Requests one instance serves before it is dropped (1: a fresh instance per request).
    pub max_requests: usize,
    /// How long an idle instance is kept for the next request.
    pub idle_timeout: Duration,
}

/// What every component's dispatcher shares: the engine, the limits and the pool's slots.
pub struct Shared {
    pub engine: wasmtime::Engine,
    pub limits: Limits,
    pub reuse: Reuse,
    /// One permit per live instance (the allocation pool's size).
    pub slots: Arc<Semaphore>,
    pub audit: Arc<AuditLog>,
    pub pressure: Arc<Pressure>,
    /// Writes to the store, for parked requests to wake on.
    pub changes: Arc<crate::kv::changes::Changes>,
    pub parking: Arc<crate::parking::Parking>,
}

impl Shared {
    /// A slot for a new instance. When none is free, idle instances are asked to leave.
    pub async fn slot(&self) -> wasmtime::Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = self.pressure.raise();
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| wasmtime::format_err!("the server is shutting down"))
    }
}

/// The request data the dispatcher threads to the instance that takes a request; the
/// instance leaves its handle here so the caller can tell it how the response ended.
pub struct Ticket {
    pub request_id: String,
    worker: OnceLock<Arc<Gate>>,
}

impl Ticket {
    pub fn new(request_id: &str) -> Arc<Self> {
        Arc::new(Self {
            request_id: request_id.to_owned(),
            worker: OnceLock::new(),
        })
    }

    /// The request failed: its instance (if one took it) serves nobody else.
    pub fn fail(&self) {
        if let Some(gate) = self.worker.get() {
            gate.settle(false);
        }
    }

    /// The response's body, which tells the instance when the response is complete.
    pub fn watch(&self, body: WasiBody) -> WasiBody {
        match self.worker.get() {
            Some(gate) => WatchedBody {
                inner: body,
                gate: Some(gate.clone()),
            }
            .boxed_unsync(),
            None => body,
        }
    }
}

/// One instance's reuse state, shared by its worker, its expiration, its memory limiter
/// and the request it is serving.
#[derive(Default)]
pub struct Gate {
    /// The current request's response is not yet complete.
    awaiting: AtomicBool,
    /// The instance takes no more requests.
    retired: AtomicBool,
    /// Something above changed since the worker last looked.
    changed: AtomicBool,
    /// The instance's linear memory, in bytes, as last grown.
    memory_bytes: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn settle(&self, reusable: bool) {
        if !reusable {
            self.retired.store(true, SeqCst);
        }
        self.awaiting.store(false, SeqCst);
        self.nudge();
    }

    fn nudge(&self) {
        self.changed.store(true, SeqCst);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// Instances waiting for a pool slot. While any waits, idle instances leave.
#[derive(Default)]
pub struct Pressure {
    waiting: AtomicUsize,
    gates: Mutex<Vec<Weak<Gate>>>,
}

/// Counts one waiting instance until dropped.
pub struct Waiting(Arc<Pressure>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, SeqCst);
    }
}

impl Pressure {
    fn register(&self, gate: &Arc<Gate>) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.retain(|g| g.strong_count() > 0);
        gates.push(Arc::downgrade(gate));
    }

    fn raise(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, SeqCst);
        let gates: Vec<Arc<Gate>> = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for gate in gates {
            gate.nudge();
        }
        Waiting(self.clone())
    }

    fn is_high(&self) -> bool {
        self.waiting.load(SeqCst) > 0
    }
}

/// The memory cap (`StoreLimits`); an instance that reached it is retired.
pub struct InstanceLimits {
    pub limits: StoreLimits,
    pub gate: Option<Arc<Gate>>,
}

/// An instance whose memory grew past this (a large answer, say) is dropped after its
/// request rather than kept, so that one large request does not keep its memory resident
/// for the instance's remaining life.
pub const RETIRE_ABOVE_BYTES: usize = 16 * 1024 * 1024;

impl InstanceLimits {
    fn refused(&self, allowed: bool) -> bool {
        if !allowed && let Some(gate) = &self.gate {
            gate.retired.store(true, SeqCst);
        }
        allowed
    }
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed && let Some(gate) = &self.gate {
            gate.memory_bytes.fetch_max(desired, SeqCst);
        }
        Ok(self.refused(allowed))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        Ok(self.refused(allowed))
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The dispatcher's application state for one component.
pub struct ComponentHandler {
    pub component: Arc<Prepared>,
    pub shared: Arc<Shared>,
}

fn http_view(state: &mut InstanceState) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
    use wasmtime_wasi_http::WasiHttpView;
    state.http()
}

impl HandlerState for ComponentHandler {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiry, Worker>> {
        let shared = &self.shared;
        let permit = shared.slot().await?;
        let gate = Arc::new(Gate::default());
        let audit = AuditCapture::new(shared.audit.clone(), &self.component.id);
        let mut store = new_store(
            &shared.engine,
            &shared.limits,
            &self.component,
            audit.clone(),
            Some(gate.clone()),
        )
        .map_err(|e| wasmtime::format_err!("{e:#}"))?;
        let started = Instant::now();
        let proxy = self.component.proxy.instantiate_async(&mut store).await?;
        metrics::instantiation(&self.component.id, started.elapsed());
        shared.pressure.register(&gate);
        Ok(Instance {
            store,
            proxy,
            view: http_view,
            expiration: Expiry {
                gate: gate.clone(),
                pressure: shared.pressure.clone(),
                idle_timeout: shared.reuse.idle_timeout,
                // The epoch deadline ends runaway guest code; this backstop also covers a
                // guest stuck in a host call.
                backstop: shared.limits.timeout + Duration::from_secs(1),
                timer: None,
            },
            state: Worker {
                gate,
                audit,
                component: self.component.id.clone(),
                max_requests: shared.reuse.max_requests.max(1),
                timeout: shared.limits.timeout,
                _slot: permit,
            },
        })
    }
}

/// One instance's worker.
pub struct Worker {
    gate: Arc<Gate>,
    audit: AuditCapture,
    component: String,
    max_requests: usize,
    timeout: Duration,
    _slot: OwnedSemaphorePermit,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = Arc<Ticket>;

    fn should_accept_request(&self, concurrent_count: usize, total_count: usize) -> ShouldAccept {
        if self.gate.retired.load(SeqCst)
            || total_count >= self.max_requests
            || self.gate.memory_bytes.load(SeqCst) > RETIRE_ABOVE_BYTES
        {
            ShouldAccept::Never
        } else if concurrent_count > 0 || self.gate.awaiting.load(SeqCst) {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, InstanceState>,
        ticket: Arc<Ticket>,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + 'static + Send + Sync>> {
        self.gate.awaiting.store(true, SeqCst);
        let _ = ticket.worker.set(self.gate.clone());
        arm_deadline(store.as_context_mut(), self.timeout);
        self.audit.begin(&ticket.request_id);
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        drop(store);
        self.audit.finish();
        if let Err(e) = result {
            tracing::debug!(component = %self.component, error = ?e, "instance ended after a failure");
        }
    }
}

/// When an instance is dropped: idle too long, idle while a slot is wanted, or busy past the
/// backstop.
pub struct Expiry {
    gate: Arc<Gate>,
    pressure: Arc<Pressure>,
    idle_timeout: Duration,
    backstop: Duration,
    timer: Option<(WorkerStatus, Instant, Pin<Box<Sleep>>)>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        this.gate.register(cx.waker());
        if this.gate.changed.swap(false, SeqCst) {
            // The worker decides again (a response completed, or a slot is wanted).
            cx.waker().wake_by_ref();
        }
        let limit = match status {
            WorkerStatus::Idle if this.pressure.is_high() => return Poll::Ready(()),
            WorkerStatus::Idle => this.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => this.backstop,
        };
        let deadline = start + limit;
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        match &mut this.timer {
            Some((s, t, sleep)) if *s == status && *t == start => sleep.as_mut().poll(cx),
            _ => {
                let mut sleep = Box::pin(tokio::time::sleep_until(deadline.into()));
                let poll = sleep.as_mut().poll(cx);
                this.timer = Some((status, start, sleep));
                poll
            }
        }
    }
}

/// A response body that tells its instance when the response is complete: at its end (or
/// when the client stops reading) the instance may serve again; a body that ends in an error
/// (the guest dropped it unfinished) retires it.
struct WatchedBody {
    inner: WasiBody,
    gate: Option<Arc<Gate>>,
}

impl WatchedBody {
    fn settle(&mut self, reusable: bool) {
        if let Some(gate) = self.gate.take() {
            gate.settle(reusable);
        }
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(None) => self.settle(true),
            Poll::Ready(Some(Err(_))) => self.settle(false),
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        // The client went away (or hyper knew the end from the length): nothing the guest
        // did wrong.
        self.settle(true);
    }
}
