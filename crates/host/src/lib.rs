//! The `mcp-edge` runtime: runs a Spin manifest's HTTP components on wasmtime, with the
//! capabilities they import implemented by the host, one module per capability:
//! `wasi:http` ([`server`], via `wasmtime-wasi-http`), `wasi:keyvalue` ([`kv`]),
//! `wasi:config` ([`variables`]) and `wasi:filesystem` mounts ([`manifest`] `files`).

pub mod accounts;
pub mod audit;
pub(crate) mod bindings;
pub mod body;
pub mod builder;
pub mod dispatch;
pub mod docs_site;
pub mod engine;
pub mod first_run;
pub mod kv;
pub mod lanes;
pub mod manifest;
pub mod metrics;
pub mod parking;
pub mod router;
pub mod scheduler;
pub mod server;
pub mod tls;
pub mod variables;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime_wasi_http::handler::ProxyHandler;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::engine::EngineOptions;
use crate::kv::SharedBackend;
use crate::kv::wasi::KvGrant;
use crate::manifest::Manifest;
use crate::router::Router;
use crate::server::{App, InstanceState, Limits, Prepared};
use mcp_edge_domain::config::keys;

/// Which key-value backend serves `wasi:keyvalue`.
#[derive(Clone, PartialEq, Eq)]
pub enum KvBackendKind {
    /// SQLite in the data directory (durable; the default).
    Sqlite,
    /// Process memory (tests, throwaway runs).
    Memory,
    /// A Redis or Valkey server (`redis://host:port`, `rediss://` for TLS), shared by several
    /// runtimes.
    Redis(String),
}

/// Shown in logs: a password in a Redis URL never is.
impl std::fmt::Debug for KvBackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("sqlite"),
            Self::Memory => f.write_str("memory"),
            Self::Redis(url) => f.write_str(&kv::redis::redacted(url)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub manifest: PathBuf,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub kv: KvBackendKind,
    pub limits: Limits,
    pub max_instances: u32,
    /// Threads that serve connections, each with its own event loop and dispatchers
    /// (`--threads`; 0: one per CPU core).
    pub threads: usize,
    /// When an instance serves another request (`--max-instance-reuse-count`,
    /// `--idle-instance-timeout`).
    pub reuse: dispatch::Reuse,
    pub runtime_config: Option<PathBuf>,
    pub build: bool,
    pub cache_dir: Option<PathBuf>,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
    /// Audit log file (default: stderr).
    pub audit_log: Option<PathBuf>,
    /// Serve `/metrics` on this address (to anyone who reaches it) instead of the main
    /// listener, where it needs an admin credential.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve `/metrics` on the main listener to anyone.
    pub public_metrics: bool,
    /// Serve this docs tree instead of the one the manifest mounts for the docs route.
    pub docs_dir: Option<PathBuf>,
    /// Cron expression on which to run the cleanup component's cron handler (`None`: never).
    pub cleanup_schedule: Option<String>,
    /// Serve HTTPS with this PEM certificate chain and private key (`--tls-cert`, `--tls-key`).
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The component `mcp-edge` schedules for cleanup.
pub const CLEANUP_COMPONENT: &str = "cleanup";

fn manifest_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Loads the manifest and builds its stale components (`mcp-edge build`).
pub fn build(manifest_path: &Path) -> Result<Manifest> {
    let manifest = Manifest::load(manifest_path)?;
    builder::build(&manifest, &manifest_dir(manifest_path))?;
    Ok(manifest)
}

/// `[variables]` of the runtime-config file, if one was given.
pub(crate) fn runtime_config_variables(path: Option<&Path>) -> Result<BTreeMap<String, String>> {
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    #[derive(serde::Deserialize)]
    struct RuntimeConfig {
        #[serde(default)]
        variables: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read runtime config {}", path.display()))?;
    let parsed: RuntimeConfig = toml::from_str(&text)
        .with_context(|| format!("invalid runtime config {}", path.display()))?;
    Ok(parsed.variables)
}

/// Opens the configured key-value backend (SQLite lives in `data_dir`).
pub fn open_backend(kind: &KvBackendKind, data_dir: &Path) -> Result<SharedBackend> {
    Ok(match kind {
        KvBackendKind::Redis(url) => Arc::new(kv::redis::RedisBackend::new(
            url,
            std::env::var(kv::redis::PASSWORD_ENV).ok(),
        )?),
        KvBackendKind::Memory => Arc::new(kv::memory::MemoryBackend::new()),
        KvBackendKind::Sqlite => {
            let path = data_dir.join("kv.sqlite3");
            Arc::new(
                kv::sqlite::SqliteBackend::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            )
        }
    })
}

/// The mounts of component `id`, with `--docs DIR`'s site in place of the site the manifest
/// mounts at `/` for `/docs/...`, in every component that mounts that site (the docs and MCP
/// components). The site is built once, on first need, into `built`.
fn docs_override(
    manifest: &Manifest,
    base: &Path,
    mut mounts: Vec<manifest::Mount>,
    opts: &UpOptions,
    built: &std::cell::OnceCell<PathBuf>,
) -> Result<Vec<manifest::Mount>> {
    let Some(dir) = &opts.docs_dir else {
        return Ok(mounts);
    };
    let root = |mounts: &[manifest::Mount]| {
        mounts
            .iter()
            .find(|m| m.guest == "/")
            .map(|m| m.host.clone())
    };
    let mut sites = Vec::new();
    for t in manifest
        .trigger
        .http
        .iter()
        .filter(|t| t.route.starts_with("/docs"))
    {
        if let Some(decl) = manifest.component.get(&t.component) {
            sites.extend(root(&manifest.mounts(base, decl)?));
        }
    }
    if !root(&mounts).is_some_and(|host| sites.contains(&host)) {
        return Ok(mounts);
    }
    let host = match built.get() {
        Some(host) => host.clone(),
        None => {
            let host = docs_override_site(
                dir,
                &opts.data_dir,
                &format!("http://{}/docs/", opts.listen),
            )?;
            built.get_or_init(|| host).clone()
        }
    };
    mounts.retain(|m| m.guest != "/");
    mounts.push(manifest::Mount {
        host,
        guest: "/".to_owned(),
    });
    Ok(mounts)
}

/// Builds the site of `--docs DIR` into `<data-dir>/docs-site` (what `up --docs` mounts).
pub fn docs_override_site(dir: &Path, data_dir: &Path, base_url: &str) -> Result<PathBuf> {
    let out = data_dir.join("docs-site");
    docs_site::build(dir, &out, base_url).with_context(|| format!("--docs {}", dir.display()))?;
    out.canonicalize()
        .with_context(|| format!("--docs {}", dir.display()))
}

/// Everything `up` prepares before it listens.
pub struct Startup {
    pub app: Arc<App>,
    pub new_admin_password: Option<String>,
}

/// Prepares the application: variables, first-run bootstrap, store, engine, and every
/// component compiled and pre-instantiated.
pub fn prepare(
    opts: &UpOptions,
    manifest: Manifest,
    metrics_handle: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<Startup> {
    let base = manifest_dir(&opts.manifest);
    first_run::create_data_dir(&opts.data_dir)?;

    let file = runtime_config_variables(opts.runtime_config.as_deref())?;
    let env_has = |name: &str| std::env::var_os(variables::env_name(name)).is_some();
    let boot = first_run::prepare(
        &opts.data_dir,
        |name| manifest.variables.contains_key(name),
        |name| env_has(name) || file.contains_key(name),
    )?;
    let sources = variables::Sources {
        env: Some(Box::new(|name| std::env::var(name).ok())),
        file,
        generated: boot.generated,
    };
    let values = variables::resolve(&manifest, &sources)?;

    // Routes first: a manifest whose routes cannot be served is refused before any work.
    let router = Router::from_manifest(&manifest)?;
    // Every write is reported, so that requests parked on a key wake when it changes.
    let changes = Arc::new(kv::changes::Changes::default());
    // Replicas on one Redis tell each other what they wrote.
    let relay = match &opts.kv {
        KvBackendKind::Redis(url) => Some(kv::relay::Relay::start(
            kv::redis::client(url, std::env::var(kv::redis::PASSWORD_ENV).ok())?,
            changes.clone(),
        )),
        _ => None,
    };
    let backend: SharedBackend = Arc::new(kv::changes::Watched::new(
        open_backend(&opts.kv, &opts.data_dir)?,
        changes.clone(),
        relay,
    ));
    let engine = engine::new_engine(&EngineOptions {
        memory_limit_bytes: opts.limits.memory_limit_bytes,
        max_instances: opts.max_instances,
    })?;
    engine::start_epoch_ticker(&engine);

    let mut linker: Linker<InstanceState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    kv::wasi::add_to_linker(&mut linker, InstanceState::kv_view)?;
    variables::add_to_linker(&mut linker, InstanceState::config_view)?;
    // Types-only interface of the cron plugin's world: nothing to provide but its name.
    linker.instance("fermyon:spin-cron/cron-types@2.0.0")?;

    let cache_dir = opts
        .cache_dir
        .clone()
        .unwrap_or_else(|| engine::default_cache_dir(&opts.data_dir));
    let mut components = HashMap::new();
    let override_site = std::cell::OnceCell::new();
    for trigger in &manifest.trigger.http {
        if components.contains_key(&trigger.component) {
            continue;
        }
        let id = trigger.component.clone();
        let decl = &manifest.component[&id];
        let source = base.join(&decl.source);
        if !source.is_file() {
            bail!(
                "component {id}: source {} does not exist (run `mcp-edge build`)",
                source.display()
            );
        }
        let component = engine::load_component(&engine, &source, &cache_dir)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component {id} cannot be linked"))?;
        let cron = bindings::cron::SpinCronPre::new(instance_pre.clone()).ok();
        let proxy = ProxyPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("component {id} does not export wasi:http/incoming-handler")
            })?;
        let prepared = Prepared {
            config: variables::component_config(&id, &decl.variables, &values)?,
            kv: KvGrant {
                backend: backend.clone(),
                labels: decl.key_value_stores.clone().into(),
            },
            mounts: docs_override(
                &manifest,
                &base,
                manifest.mounts(&base, decl)?,
                opts,
                &override_site,
            )?,
            proxy: wasmtime_wasi_http::handler::ProxyPre::P2(proxy),
            cron,
            id: id.clone(),
        };
        components.insert(id, Arc::new(prepared));
    }
    engine::release_compiler_memory();
    for other in manifest.trigger.other.keys() {
        tracing::warn!(trigger = %other, "mcp-edge serves only HTTP triggers; ignoring [[trigger.{other}]]");
    }
    let audit = match &opts.audit_log {
        Some(path) => audit::AuditLog::file(path)?,
        None => audit::AuditLog::stderr(),
    };
    let shared = Arc::new(dispatch::Shared {
        engine,
        limits: opts.limits.clone(),
        reuse: opts.reuse.clone(),
        slots: Arc::new(Semaphore::new(opts.max_instances as usize)),
        audit: Arc::new(audit),
        pressure: Arc::default(),
        changes,
        parking: Arc::new(parking::Parking::new(opts.limits.parking.clone())),
    });
    let handlers = components
        .into_iter()
        .map(|(id, component)| {
            let handler = dispatch::ComponentHandler {
                component,
                shared: shared.clone(),
            };
            (id, ProxyHandler::new(handler))
        })
        .collect();
    let app = App {
        shared,
        request_metrics: Arc::new(metrics::RequestMetrics::new(router.routes())),
        router: Arc::new(router),
        handlers,
        metrics: Arc::new(server::MetricsEndpoint {
            handle: metrics_handle,
            backend,
        }),
        metrics_on_main: if opts.metrics_listen.is_some() {
            server::MetricsAccess::Elsewhere
        } else if opts.public_metrics {
            server::MetricsAccess::Public
        } else {
            // The application's signing keys, parsed as the components parse them (none
            // when the manifest has no `jwt_secret`: then only API keys are accepted).
            server::MetricsAccess::Admin(
                mcp_edge_domain::config::jwt_secrets(&HashMap::from_iter(
                    values
                        .get(keys::JWT_SECRET)
                        .map(|v| (keys::JWT_SECRET.to_owned(), v.clone())),
                ))
                .unwrap_or_default(),
            )
        },
    };
    Ok(Startup {
        app: Arc::new(app),
        new_admin_password: boot.new_admin_password,
    })
}

/// `mcp-edge up`: build, prepare, print the route table, serve until `shutdown`.
pub async fn up(
    opts: UpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let manifest = if opts.build {
        let path = opts.manifest.clone();
        tokio::task::spawn_blocking(move || build(&path)).await??
    } else {
        Manifest::load(&opts.manifest)?
    };
    let app_name = manifest.application.name.clone();
    let metrics_handle = metrics::install()?;
    let prepared = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || prepare(&opts, manifest, metrics_handle)).await??
    };
    if let Some(password) = &prepared.new_admin_password {
        println!("Created user `admin` with password: {password}");
        println!(
            "  (shown only this once; its Argon2id hash is in {})",
            opts.data_dir.join("users.json").display()
        );
    }
    // One shutdown signal, fanned out to every listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let tls = match &opts.tls {
        Some(files) => Some(tls::acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    match opts.metrics_listen {
        Some(metrics_addr) => {
            let metrics_listener = TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("cannot listen on {metrics_addr} for metrics"))?;
            println!(
                "Metrics on http://{}/metrics",
                metrics_listener.local_addr()?
            );
            let endpoint = prepared.app.metrics.clone();
            tokio::spawn(server::serve_metrics(
                endpoint,
                metrics_listener,
                wait(stopped.clone()),
            ));
        }
        None if opts.public_metrics => println!("Metrics on {scheme}://{addr}/metrics (public)"),
        None => println!("Metrics on {scheme}://{addr}/metrics (with an admin token or API key)"),
    }
    if let Some(expr) = &opts.cleanup_schedule {
        let schedule = scheduler::parse_schedule(expr)?;
        match prepared.app.component(CLEANUP_COMPONENT) {
            Some(c) if c.cron.is_some() => {
                println!("Cleanup scheduled: {expr}");
                let app = prepared.app.clone();
                tokio::spawn(scheduler::run_schedule(
                    app,
                    CLEANUP_COMPONENT.to_owned(),
                    schedule,
                    wait(stopped.clone()),
                ));
            }
            _ => tracing::warn!(
                "no `{CLEANUP_COMPONENT}` component with a cron handler; cleanup is not scheduled"
            ),
        }
    }
    // Printed last: "Serving" means every listener is up.
    println!("Available routes:");
    for route in prepared.app.router.routes() {
        println!("  {}: {scheme}://{addr}{}", route.component, route.raw);
    }
    println!("Serving {app_name} on {scheme}://{addr}");
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    tracing::info!(%addr, kv = ?opts.kv, "listening");
    let lanes = lanes::Lanes::start(&prepared.app, opts.threads, tls, opts.drain)?;
    server::serve(prepared.app, listener, lanes, wait(stopped)).await
}

/// `mcp-edge cleanup`: one cleanup pass over the data directory; returns its audit records.
pub async fn cleanup_once(opts: UpOptions) -> Result<Vec<serde_json::Value>> {
    let manifest = Manifest::load(&opts.manifest)?;
    let metrics_handle = metrics::install()?;
    let prepared = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || prepare(&opts, manifest, metrics_handle)).await??
    };
    scheduler::run_once(&prepared.app, CLEANUP_COMPONENT).await
}
