//! The audit trail: one structured record per security-relevant action (every login attempt,
//! token refresh and logout, account change, register, send, receive and docs access), with
//! its outcome. Records name who did what to
//! which client and group; they never carry passwords, tokens or payloads.
//!
//! Components write each record as one JSON line on standard output (`wasi:cli/stdout`),
//! which every runtime captures: `mcp-edge` routes the lines to its audit log with the
//! request id added; Spin writes them to the component's log.

use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// The action: `login`, `token_refresh`, `logout`, `register`, `send`, `receive`, `stream`,
    /// `docs`, `cleanup`, and the account changes `user_add`, `user_update`, `user_remove`,
    /// `api_key_create`, `api_key_revoke` (with the listings `user_list`, `api_key_list`).
    pub audit: &'static str,
    /// The HTTP status the action ended with.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients_removed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_removed: Option<u64>,
    /// What an account change acted on: a user name or an API key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The API key a request authenticated with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Set by a handler whose answer leaves no record (a stream's keepalive).
    #[serde(skip)]
    pub withheld: bool,
}

impl AuditRecord {
    pub fn new(audit: &'static str) -> Self {
        Self {
            audit,
            ..Default::default()
        }
    }

    /// The record as one JSON line, newline included.
    pub fn line(&self) -> Option<Vec<u8>> {
        let mut line = serde_json::to_vec(self).ok()?;
        line.push(b'\n');
        Some(line)
    }

    pub fn outcome(&self) -> &'static str {
        if self.status < 400 {
            "success"
        } else {
            "failure"
        }
    }
}

pub trait AuditSink {
    fn record(&self, record: AuditRecord);
}

/// Writes each record as one JSON line on standard output.
pub struct StdoutAudit;

impl AuditSink for StdoutAudit {
    fn record(&self, record: AuditRecord) {
        use std::io::Write;
        if let Some(line) = record.line() {
            let mut out = std::io::stdout().lock();
            // One write of the whole line (a formatted `writeln!` writes it in pieces). A lost
            // audit line must not fail the request it describes.
            let _ = out.write_all(&line).and_then(|()| out.flush());
        }
    }
}

/// Keeps records in memory (tests).
#[derive(Default)]
pub struct MemoryAudit(Mutex<Vec<AuditRecord>>);

impl MemoryAudit {
    pub fn records(&self) -> Vec<AuditRecord> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, record: AuditRecord) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }
}
