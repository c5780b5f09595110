//! The load generator: closed-loop workers, each on its own keep-alive HTTP/1.1 connection
//! (`hyper` client), recording every request's latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request to send.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: "GET",
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn post_json(path: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: "POST",
            path: path.into(),
            headers: vec![("content-type", "application/json".into())],
            body: Bytes::from(body.to_string()),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
}

/// An answer: status, headers and body.
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no connection"))
    }

    pub async fn send(&mut self, req: &Req) -> anyhow::Result<Answer> {
        let addr = self.addr;
        let sender = self.connect().await?;
        sender.ready().await?;
        let mut builder = hyper::Request::builder()
            .method(req.method)
            .uri(&req.path)
            .header("host", addr.to_string());
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        let resp = sender
            .send_request(builder.body(Full::new(req.body.clone()))?)
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// Latencies (µs) and errors of one measured run.
#[derive(Default)]
pub struct Sample {
    pub latencies_us: Vec<u64>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Sample {
    pub fn merge(&mut self, other: Sample) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
    }

    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.latencies_us.len()) - 1;
        self.latencies_us[idx] as f64 / 1000.0
    }

    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            self.latencies_us.len() as f64 / secs
        }
    }
}

/// What a worker sends next: `(worker, iteration) -> request`.
pub type MakeReq = Arc<dyn Fn(usize, u64) -> Req + Send + Sync>;

/// `concurrency` workers send requests back to back for `warmup + duration`; only requests
/// started after the warm-up count. An answer whose status is not in `expect` is an error.
/// Worker `w` talks to `addrs[w % addrs.len()]` (several replicas: round-robin by worker).
pub async fn closed_loop(
    addrs: &[SocketAddr],
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    expect: &'static [u16],
    make: MakeReq,
) -> Sample {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let make = make.clone();
        let addr = addrs[worker % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut sample = Sample::default();
            let mut i = 0u64;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let req = make(worker, i);
                i += 1;
                let ok = matches!(conn.send(&req).await, Ok(a) if expect.contains(&a.status));
                if began >= measure_from {
                    if ok {
                        sample.latencies_us.push(began.elapsed().as_micros() as u64);
                    } else {
                        sample.errors += 1;
                    }
                }
            }
            sample
        }));
    }
    let mut total = Sample::default();
    for task in tasks {
        if let Ok(sample) = task.await {
            total.merge(sample);
        }
    }
    total.elapsed = duration;
    total
}
