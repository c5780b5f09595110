//! The audit sink. Components write audit records as JSON lines on their standard output
//! (see `mcp_edge_domain::audit`); the runtime captures each instance's output, adds the
//! request id, component and time, and appends the records to the audit stream
//! (`--audit-log PATH`, default stderr). Other guest output goes to the log.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::Value;

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
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(out, "{record}").and_then(|()| out.flush()) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}
