//! The native baseline: the same domain handlers the components call, served by a plain
//! `hyper` server over the same SQLite backend, routed by the runtime's router from the same
//! spin.toml, configured from the same variables. The gap between this and `mcp-edge up` is what WebAssembly costs.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mcp_edge_domain::ApiError;
use mcp_edge_domain::api::{self, Ctx};
use mcp_edge_domain::audit::StdoutAudit;
use mcp_edge_domain::docs::FsSite;
use mcp_edge_domain::env::SystemEnv;
use mcp_edge_domain::http::{Request, Response, respond};
use mcp_edge_host::kv::native::BackendStore;
use mcp_edge_host::manifest::Manifest;
use mcp_edge_host::router::Router;
use mcp_edge_host::{KvBackendKind, open_backend, variables};

const MAX_BODY: usize = 1024 * 1024;

struct Native {
    router: Router,
    store: BackendStore,
    config: HashMap<String, String>,
    docs: FsSite,
}

impl Native {
    /// Calls the handler of the component spin.toml routes to.
    fn handle(&self, req: &Request, component: &str) -> Response {
        let ctx = Ctx {
            store: &self.store,
            config: &self.config,
            env: &SystemEnv,
            audit: &StdoutAudit,
        };
        // The store's calls return at once (SQLite, synchronously), so the domain's futures
        // are ready when first polled, as inside a component.
        pollster::block_on(async {
            match component {
                "login" => api::session(req, &ctx).await,
                "admin" => api::admin(req, &ctx).await,
                "register" => api::register(req, &ctx).await,
                "send" => api::send(req, &ctx).await,
                "receive" => api::receive(req, &ctx).await,
                "cleanup" => api::cleanup(req, &ctx).await,
                "docs" => api::docs(req, &self.docs, &ctx).await,
                "mcp" => api::mcp(req, &self.docs, &ctx).await,
                "health" => {
                    api::health(req, async || api::store_round_trip(&self.store).await).await
                }
                _ => respond(Err(ApiError::not_found(
                    "route_not_found",
                    "no route matches this path",
                ))),
            }
        })
    }
}

async fn serve_one(
    app: Arc<Native>,
    req: hyper::Request<Incoming>,
    client: SocketAddr,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let (component, path_info) = match app.router.find(parts.uri.path()) {
        Some(m) => (m.route.component.clone(), m.path_info),
        None => (String::new(), String::new()),
    };
    let resp = match Limited::new(body, MAX_BODY).collect().await {
        Err(_) => respond(Err(ApiError::payload_too_large("request body over 1 MiB"))),
        Ok(collected) => {
            let mut headers: Vec<(String, Vec<u8>)> = parts
                .headers
                .iter()
                .filter(|(n, _)| !n.as_str().starts_with("spin-"))
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            headers.push(("spin-client-addr".into(), client.to_string().into_bytes()));
            let domain_req = Request {
                method: parts.method.as_str().to_owned(),
                path: path_info,
                query: parts.uri.query().map(str::to_owned),
                headers,
                body: collected.to_bytes().to_vec(),
            };
            let app = app.clone();
            // Handlers block on SQLite, as a component's store calls do on the runtime's
            // blocking pool.
            tokio::task::spawn_blocking(move || app.handle(&domain_req, &component))
                .await
                .unwrap_or_else(|e| {
                    respond(Err(ApiError::new(500, "handler_failed", e.to_string())))
                })
        }
    };
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() = hyper::StatusCode::from_u16(resp.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in resp.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::try_from(name),
            hyper::header::HeaderValue::try_from(value),
        ) {
            out.headers_mut().append(n, v);
        }
    }
    Ok(out)
}

/// `native-server --listen ADDR --data-dir DIR --manifest FILE --docs SITE`: prints
/// `Serving on http://ADDR` on stderr (stdout carries the audit records) and serves forever.
pub fn serve_from_args(args: &[String]) -> Result<()> {
    let arg = |name: &str| -> Result<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .with_context(|| format!("native-server needs {name}"))
    };
    let listen: SocketAddr = arg("--listen")?.parse()?;
    let data_dir = PathBuf::from(arg("--data-dir")?);
    let manifest = Manifest::load(&PathBuf::from(arg("--manifest")?))?;
    let values: BTreeMap<String, String> = variables::resolve(
        &manifest,
        &variables::Sources {
            env: Some(Box::new(|name| std::env::var(name).ok())),
            ..Default::default()
        },
    )?;
    std::fs::create_dir_all(&data_dir)?;
    let backend = open_backend(&KvBackendKind::Sqlite, &data_dir)?;
    let router = Router::from_manifest(&manifest)?;
    let app = Arc::new(Native {
        router,
        store: BackendStore::new(backend, "default"),
        config: values.into_iter().collect(),
        docs: FsSite::at(arg("--docs")?),
    });
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        eprintln!("Serving on http://{}", listener.local_addr()?);
        loop {
            let (stream, client) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let service =
                hyper::service::service_fn(move |req| serve_one(app.clone(), req, client));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    })
}
