//! The accounts of a data directory, for `mcp-edge user …` and `mcp-edge api-key …`: the
//! domain's accounts wing run natively on the same store the components use (SQLite takes
//! the CLI beside a running server; so does Redis), with the same seed users, and every
//! change written to the audit stream.

use std::path::Path;

use anyhow::Result;
use mcp_edge_domain::accounts::{Accounts, UserEntry, parse_users};
use mcp_edge_domain::audit::AuditRecord;
use mcp_edge_domain::config::keys;
use mcp_edge_domain::env::SystemEnv;

use crate::audit::AuditLog;
use crate::kv::native::BackendStore;
use crate::{KvBackendKind, first_run, open_backend, runtime_config_variables, variables};

pub struct AccountsStore {
    store: BackendStore,
    seeds: Vec<UserEntry>,
    audit: AuditLog,
}

/// Opens the store of `data_dir` with the `users` seeds `up` would use: the environment
/// (`SPIN_VARIABLE_USERS`), the runtime config file, or the first run's `users.json`.
pub fn open(
    data_dir: &Path,
    kv: &KvBackendKind,
    runtime_config: Option<&Path>,
    audit_log: Option<&Path>,
) -> Result<AccountsStore> {
    first_run::create_data_dir(data_dir)?;
    let file = runtime_config_variables(runtime_config)?;
    let raw = match std::env::var(variables::env_name(keys::USERS)) {
        Ok(v) => Some(v),
        Err(_) => match file.get(keys::USERS) {
            Some(v) => Some(v.clone()),
            None => first_run::read_existing(&data_dir.join(first_run::USERS_FILE))?,
        },
    };
    let seeds = match raw {
        Some(raw) => parse_users(&raw).map_err(|e| anyhow::anyhow!("{}", e.message))?,
        None => Vec::new(),
    };
    let backend = open_backend(kv, data_dir)?;
    Ok(AccountsStore {
        store: BackendStore::new(backend, crate::kv::DEFAULT_STORE),
        seeds,
        audit: match audit_log {
            Some(path) => AuditLog::file(path)?,
            None => AuditLog::stderr(),
        },
    })
}

impl AccountsStore {
    pub fn accounts(&self) -> Accounts<'_> {
        Accounts::new(&self.store, &SystemEnv).with_seeds(&self.seeds)
    }

    /// Records an account change made from the command line.
    pub fn audit(&self, action: &'static str, target: &str, status: u16) {
        let mut record = AuditRecord::new(action);
        record.status = status;
        record.subject = std::env::var("USER").ok().map(|u| format!("cli:{u}"));
        record.target = Some(target.to_owned());
        self.audit.record("cli", &record);
    }
}
