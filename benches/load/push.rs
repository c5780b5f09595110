//! Delivery without polling: the round trip (a send, until the receiver holds the message)
//! with 10 ms polling, with long-poll receives and with the event stream; and what a thousand
//! idle waiting clients cost the server (resident memory and CPU while they wait).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::generator::{Conn, Sample};
use crate::scenarios::{Plan, receive_req, register, send_req};
use crate::targets::Target;

/// How the receiver learns of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A receive every 10 ms.
    Poll,
    /// A receive that waits (`wait=5`) again as soon as it is answered.
    LongPoll,
    /// One `GET /mcp/stream`.
    Stream,
}

impl Delivery {
    pub fn scenario(self) -> &'static str {
        match self {
            Delivery::Poll => "round trip, 10 ms poll",
            Delivery::LongPoll => "round trip, long-poll",
            Delivery::Stream => "round trip, stream",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Delivery::Poll => "rt-poll",
            Delivery::LongPoll => "rt-long",
            Delivery::Stream => "rt-stream",
        }
    }
}

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn note(seen: &Seen, id: &str, at: Instant) {
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.to_owned(), at);
}

fn note_receive_answer(body: &[u8], received: &Seen) -> Option<u64> {
    let now = Instant::now();
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    for m in body["messages"].as_array().into_iter().flatten() {
        if let Some(id) = m["message_id"].as_str() {
            note(received, id, now);
        }
    }
    body["next_after"].as_u64()
}

/// A sender sends one message every 20 ms; the receiver gets them by `delivery`. Each sample
/// is the time from the start of the send until the receiver holds the message.
pub async fn round_trip(
    addr: SocketAddr,
    token: &str,
    plan: &Plan,
    delivery: Delivery,
) -> Result<Sample> {
    let group = delivery.group();
    register(addr, token, "rt-sender", group).await?;
    register(addr, token, "rt-receiver", group).await?;
    let sent: Seen = Arc::default();
    let received: Seen = Arc::default();
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let stop_receiving = end + Duration::from_secs(2);

    let receiver = {
        let (token, received) = (token.to_owned(), received.clone());
        tokio::spawn(async move {
            match delivery {
                Delivery::Stream => stream_receiver(addr, &token, group, &received, stop_receiving)
                    .await
                    .unwrap_or(1),
                _ => poll_receiver(addr, &token, group, delivery, &received, stop_receiving).await,
            }
        })
    };
    // The stream or the first wait is open before the first send.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sender = {
        let (token, sent) = (token.to_owned(), sent.clone());
        tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut errors = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while Instant::now() < end {
                tick.tick().await;
                let began = Instant::now();
                let req = send_req(&token, "rt-sender", group, json!("ping"));
                match conn.send(&req).await {
                    Ok(a) if a.status == 202 => {
                        let body: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                        if let Some(id) = body["message_id"].as_str() {
                            note(&sent, id, began);
                        }
                    }
                    _ => errors += 1,
                }
            }
            errors
        })
    };
    let errors = sender.await? + receiver.await?;
    let sent = sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let received = received.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut sample = Sample {
        errors,
        elapsed: plan.duration,
        ..Default::default()
    };
    for (id, at) in &sent {
        if *at < measure_from {
            continue;
        }
        match received.get(id) {
            Some(got) => sample
                .latencies_us
                .push(got.saturating_duration_since(*at).as_micros() as u64),
            // Never delivered within 2 s of the run's end: a loss.
            None => sample.errors += 1,
        }
    }
    Ok(sample)
}

async fn poll_receiver(
    addr: SocketAddr,
    token: &str,
    group: &str,
    delivery: Delivery,
    received: &Seen,
    stop: Instant,
) -> u64 {
    let mut conn = Conn::new(addr);
    let mut errors = 0u64;
    let mut after = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < stop {
        let mut req = receive_req(token, "rt-receiver", group, after);
        if delivery == Delivery::LongPoll {
            req.path.push_str("&wait=5");
        } else {
            tick.tick().await;
        }
        match conn.send(&req).await {
            Ok(a) if a.status == 200 => after = note_receive_answer(&a.body, received).or(after),
            _ => errors += 1,
        }
    }
    errors
}

/// Opens `client`'s event stream in `group` (on its own connection).
async fn open_stream(
    addr: SocketAddr,
    token: &str,
    client: &str,
    group: &str,
) -> Result<hyper::body::Incoming> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("/mcp/stream?client_id={client}&group_id={group}"))
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    if resp.status() != 200 {
        bail!("stream of {client}: {}", resp.status());
    }
    Ok(resp.into_body())
}

/// Reads the receiver's stream until `stop`, noting each message's arrival; the errors.
async fn stream_receiver(
    addr: SocketAddr,
    token: &str,
    group: &str,
    received: &Seen,
    stop: Instant,
) -> Result<u64> {
    let mut body = open_stream(addr, token, "rt-receiver", group).await?;
    let mut text = String::new();
    loop {
        let frame = match tokio::time::timeout_at(stop.into(), body.frame()).await {
            Err(_) => return Ok(0),
            Ok(Some(Ok(frame))) => frame,
            // The stream ended or failed before the run did.
            Ok(_) => return Ok(1),
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let now = Instant::now();
        text.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = text.find("\n\n") {
            for line in text[..end].lines() {
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                let message: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                if let Some(id) = message["message_id"].as_str() {
                    note(received, id, now);
                }
            }
            text.drain(..end + 2);
        }
    }
}

/// What `clients` idle waiters cost the server.
pub struct Idle {
    pub how: &'static str,
    pub clients: usize,
    /// Resident memory before they connect and while they wait, in KiB (the first replica).
    pub rss_before_kib: u64,
    pub rss_waiting_kib: u64,
    /// The server's CPU time over `window` of waiting, and over as long with no one waiting.
    pub cpu_ms: u64,
    pub cpu_alone_ms: u64,
    pub window: Duration,
    /// From one send to the group until every waiter held it.
    pub wake_all: Duration,
}

impl Idle {
    pub fn per_client_kib(&self) -> f64 {
        self.rss_waiting_kib.saturating_sub(self.rss_before_kib) as f64 / self.clients as f64
    }

    pub fn markdown(&self) -> String {
        format!(
            "| {} idle {} | {:.0} → {:.0} MiB | {:.1} KiB | {} ms in {} s ({:.2} %; {} ms with none) | {:.0} ms |",
            self.clients,
            self.how,
            self.rss_before_kib as f64 / 1024.0,
            self.rss_waiting_kib as f64 / 1024.0,
            self.per_client_kib(),
            self.cpu_ms,
            self.window.as_secs(),
            self.cpu_ms as f64 / self.window.as_millis() as f64 * 100.0,
            self.cpu_alone_ms,
            self.wake_all.as_secs_f64() * 1000.0
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "scenario": format!("{} idle {}", self.clients, self.how),
            "rss_before_mib": self.rss_before_kib as f64 / 1024.0,
            "rss_waiting_mib": self.rss_waiting_kib as f64 / 1024.0,
            "per_client_kib": self.per_client_kib(),
            "cpu_ms": self.cpu_ms,
            "cpu_alone_ms": self.cpu_alone_ms,
            "window_s": self.window.as_secs(),
            "wake_all_ms": self.wake_all.as_secs_f64() * 1000.0,
        })
    }
}

pub const IDLE_HEADER: &str = "| idle clients | server RSS | per client | server CPU while idle | one send wakes all |\n\
     |---|---:|---:|---:|---:|";

/// `clients` members of one group wait (long-poll receives of 30 s, or streams) for `window`;
/// then one message to the group wakes them all.
pub async fn idle_waiters(
    target: &Target,
    token: &str,
    clients: usize,
    delivery: Delivery,
    window: Duration,
) -> Result<Idle> {
    let addr = target.addr;
    let group = match delivery {
        Delivery::Stream => "idle-stream",
        _ => "idle-wait",
    };
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            for client in (worker..clients).step_by(4) {
                register(addr, &token, &format!("{group}-{client}"), group).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    register(addr, token, &format!("{group}-sender"), group).await?;
    target.settle().await;
    let rss_before_kib = target.rss_kib();
    // The server's own idle cost, for comparison.
    let cpu_alone_before = target.cpu_ms();
    tokio::time::sleep(window).await;
    let cpu_alone_ms = target.cpu_ms().saturating_sub(cpu_alone_before);
    let woken: Seen = Arc::default();
    let mut waiters = Vec::new();
    for client in 0..clients {
        let (token, woken) = (token.to_owned(), woken.clone());
        let client = format!("{group}-{client}");
        waiters.push(tokio::spawn(async move {
            match delivery {
                Delivery::Stream => {
                    let mut body = open_stream(addr, &token, &client, group).await?;
                    // The opening (`retry:`), then anything but a keepalive is the message.
                    while let Some(frame) = body.frame().await {
                        let frame = frame?;
                        if frame
                            .data_ref()
                            .is_some_and(|d| String::from_utf8_lossy(d).contains("event: message"))
                        {
                            note(&woken, &client, Instant::now());
                            return anyhow::Ok(());
                        }
                    }
                    bail!("the stream of {client} ended")
                }
                _ => {
                    let mut req = receive_req(&token, &client, group, Some(0));
                    req.path.push_str("&wait=30");
                    let answer = Conn::new(addr).send(&req).await?;
                    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
                    if answer.status != 200 || body["messages"].as_array().is_none_or(Vec::is_empty)
                    {
                        bail!("{client}: {} {body}", answer.status);
                    }
                    note(&woken, &client, Instant::now());
                    anyhow::Ok(())
                }
            }
        }));
    }
    // Connected and parked, then measured while nothing happens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_before = target.cpu_ms();
    tokio::time::sleep(window).await;
    let cpu_ms = target.cpu_ms().saturating_sub(cpu_before);
    let rss_waiting_kib = target.rss_kib();
    let began = Instant::now();
    let mut conn = Conn::new(addr);
    let sent = conn
        .send(&send_req(
            token,
            &format!("{group}-sender"),
            group,
            json!("wake"),
        ))
        .await?;
    if sent.status != 202 {
        bail!("the wake-up send: {}", sent.status);
    }
    let mut failed = 0;
    for waiter in waiters {
        if !matches!(waiter.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {clients} idle clients did not get the message");
    }
    let last = woken
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .max()
        .copied()
        .unwrap_or(began);
    Ok(Idle {
        how: match delivery {
            Delivery::Stream => "streams",
            _ => "long-poll receives",
        },
        clients,
        rss_before_kib,
        rss_waiting_kib,
        cpu_ms,
        cpu_alone_ms,
        window,
        wake_all: last.saturating_duration_since(began),
    })
}
