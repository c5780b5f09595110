//! The audit sink. Components write audit records as JSON lines on their standard output
//! (see `mcp_edge_domain::audit`); the runtime captures each instance's output line by line,
//! adds the id of the request being served, the component and the time, and appends the
//! records to the audit stream (`--audit-log PATH`, default stderr). Other guest output goes
//! to the log.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::SystemTime;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::Value;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::metrics;

pub struct AuditLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AuditLog {
    pub fn stderr() -> Self {
        Self {
            out: Mutex::new(Box::new(std::io::stderr())),
        }
    }

    /// Appends to `path`, creating it if needed.
    pub fn file(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open audit log {}", path.display()))?;
        Ok(Self {
            out: Mutex::new(Box::new(file)),
        })
    }

    /// Routes one instance's standard output; returns the audit records found in it.
    pub fn ingest(&self, request_id: &str, component: &str, output: &[u8]) -> Vec<Value> {
        let mut records = Vec::new();
        for line in output.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(mut record))
                    if record.get("audit").is_some_and(Value::is_string) =>
                {
                    record.insert("request_id".into(), request_id.into());
                    record.insert("component".into(), component.into());
                    record.insert(
                        "ts".into(),
                        humantime::format_rfc3339_millis(SystemTime::now())
                            .to_string()
                            .into(),
                    );
                    let record = Value::Object(record);
                    self.append(&record);
                    records.push(record);
                }
                _ => {
                    tracing::info!(component, request_id, output = %String::from_utf8_lossy(line), "guest output")
                }
            }
        }
        records
    }

    /// Appends a record the runtime itself made (the accounts CLI's changes), stamped like
    /// the components' records.
    pub fn record(&self, component: &str, record: &mcp_edge_domain::audit::AuditRecord) {
        if let Ok(line) = serde_json::to_vec(record) {
            let request_id = mcp_edge_domain::http::request_id(None);
            self.ingest(&request_id, component, &line);
        }
    }

    fn append(&self, record: &Value) {
        // One write per record: formatted straight into an unbuffered file, a record would
        // cost a system call per field (docs/performance.md).
        let mut line = serde_json::to_vec(record).unwrap_or_default();
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

/// Longest line kept waiting for its newline; a longer one is routed as it is.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// An instance's standard output. One instance may serve many requests one after another,
/// so each complete line is routed at once, attributed to the request being served when it
/// was written ([`AuditCapture::begin`] names it).
#[derive(Clone)]
pub struct AuditCapture {
    inner: Arc<Mutex<Capture>>,
}

struct Capture {
    log: Arc<AuditLog>,
    component: String,
    request_id: String,
    partial: Vec<u8>,
}

impl Capture {
    fn route(&mut self, line: &[u8]) {
        for record in self.log.ingest(&self.request_id, &self.component, line) {
            metrics::from_audit(&record);
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        if let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') {
            let lines: Vec<u8> = self.partial.drain(..=end).collect();
            self.route(&lines);
        }
        if self.partial.len() > MAX_LINE_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.route(&rest);
        }
    }
}

impl AuditCapture {
    pub fn new(log: Arc<AuditLog>, component: &str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Capture {
                log,
                component: component.to_owned(),
                request_id: String::new(),
                partial: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Capture> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the instance writes from now on belongs to `request_id` (an unfinished line of
    /// the previous request is routed first, under the previous id).
    pub fn begin(&self, request_id: &str) {
        let mut capture = self.lock();
        capture.flush();
        request_id.clone_into(&mut capture.request_id);
    }

    /// Routes an unfinished last line (the instance is gone).
    pub fn finish(&self) {
        self.lock().flush();
    }
}

impl IsTerminal for AuditCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for AuditCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for AuditCapture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.lock().write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_LINE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for AuditCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for AuditCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.lock().write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
