//! The audit trail on `wasi:cli/stdout`, written with the stream's own call: std's `stdout`
//! goes through wasi-libc, which takes five host calls a line (subscribe, check-write, write,
//! blocking-flush and the pollable's drop) where one `blocking-write-and-flush` does.

use mcp_edge_domain::audit::{AuditRecord, AuditSink};

use crate::http::MOST_PER_FLUSHED_WRITE;

/// Writes each record as one JSON line on standard output (as the domain's `StdoutAudit`).
pub struct WasiStdoutAudit;

impl AuditSink for WasiStdoutAudit {
    fn record(&self, record: AuditRecord) {
        let Some(line) = record.line() else { return };
        let out = wasi::cli::stdout::get_stdout();
        for chunk in line.chunks(MOST_PER_FLUSHED_WRITE) {
            // A lost audit line must not fail the request it describes.
            if out.blocking_write_and_flush(chunk).is_err() {
                return;
            }
        }
    }
}
