//! Connections served on a few threads of their own ("lanes"), one per CPU core by default.
//! Each lane is a single-threaded event loop with its own dispatchers (`App::replicate`), so
//! a request's hops (connection → instance worker → connection) stay on one thread: no
//! wakeups across threads, no work stealing, no cross-core cache traffic per request. The
//! engine, the pool's slots, the store and the audit log are shared.
//!
//! The listener's thread accepts and gives the connections to the lanes in turn, so
//! keep-alive connections spread evenly. (By fewest open connections instead, a burst of new
//! connections arriving while earlier ones were still closing went mostly to one lane: the
//! login benchmark ran at half speed on one core.) A guest that computes for long
//! yields its lane every epoch tick (`server::new_store`), so the lane's other connections
//! are served meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

use crate::server::{self, App};

/// An accepted connection on its way to a lane.
struct Connection {
    stream: std::net::TcpStream,
    client: SocketAddr,
    /// The connection cap's permit, held while the connection is open.
    permit: OwnedSemaphorePermit,
}

struct Lane {
    to_lane: mpsc::UnboundedSender<Connection>,
    drained: oneshot::Receiver<()>,
}

pub struct Lanes {
    lanes: Vec<Lane>,
    /// The lane that takes the next connection.
    next: AtomicUsize,
}

/// One lane per core when `threads` is 0.
pub fn lane_count(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Lanes {
    /// Starts `lane_count(threads)` lanes serving `app`'s routes (over TLS with `tls`). When
    /// told to finish, each lets its in-flight requests end for up to `drain`.
    pub fn start(
        app: &App,
        threads: usize,
        tls: Option<TlsAcceptor>,
        drain: Duration,
    ) -> Result<Self> {
        let mut lanes = Vec::new();
        for n in 0..lane_count(threads) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start a serving thread's event loop")?;
            let (to_lane, connections) = mpsc::unbounded_channel();
            let (done, drained) = oneshot::channel();
            let (app, tls) = (Arc::new(app.replicate()), tls.clone());
            std::thread::Builder::new()
                .name(format!("lane-{n}"))
                .spawn(move || {
                    runtime.block_on(run(app, tls, connections, drain));
                    let _ = done.send(());
                })
                .context("cannot start a serving thread")?;
            lanes.push(Lane { to_lane, drained });
        }
        Ok(Self {
            lanes,
            next: AtomicUsize::new(0),
        })
    }

    /// Gives an accepted connection to the next lane.
    pub fn assign(
        &self,
        stream: tokio::net::TcpStream,
        client: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) {
        let turn = self.next.fetch_add(1, Relaxed);
        let Some(lane) = self.lanes.get(turn % self.lanes.len().max(1)) else {
            return;
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, %client, "cannot hand a connection to a lane");
                return;
            }
        };
        let connection = Connection {
            stream,
            client,
            permit,
        };
        if lane.to_lane.send(connection).is_err() {
            tracing::warn!(%client, "a serving thread has ended; connection dropped");
        }
    }

    /// Tells every lane to finish and waits until each has drained.
    pub async fn finish(self) {
        let drained: Vec<_> = self
            .lanes
            .into_iter()
            .map(|lane| {
                drop(lane.to_lane);
                lane.drained
            })
            .collect();
        for lane in drained {
            let _ = lane.await;
        }
    }
}

/// A lane's event loop: serves the connections it is given until the acceptor is done with
/// it, then lets them finish their requests.
async fn run(
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    mut connections: mpsc::UnboundedReceiver<Connection>,
    drain: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    while let Some(Connection {
        stream,
        client,
        permit,
    }) = connections.recv().await
    {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, %client, "a lane cannot take a connection");
                continue;
            }
        };
        let (app, tls, watcher) = (app.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let ended = match tls {
                None => server::serve_http1(app, stream, client, watcher)
                    .await
                    .map_err(Into::into),
                Some(tls) => server::serve_tls(app, tls, stream, client, watcher).await,
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %client, "connection ended with an error");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}
