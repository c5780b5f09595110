//! Zero-configuration first run. When the manifest declares `jwt_secret` or `users` and the
//! operator supplied neither, `mcp-edge` generates them into the data directory and reuses
//! them on every later start: a random 256-bit secret, and an `admin` user with a random
//! password that is printed once (only its Argon2id hash is stored). Nothing is hard-coded.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use mcp_edge_domain::auth::hash_password;
use mcp_edge_domain::config::keys;

const SECRET_FILE: &str = "jwt_secret";
const USERS_FILE: &str = "users.json";

/// What the data directory contributes, and the admin password if one was just created.
pub struct Bootstrap {
    pub generated: BTreeMap<String, String>,
    pub new_admin_password: Option<String>,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no entropy source: {e}"))?;
    Ok(hex::encode(buf))
}

/// Writes a file readable only by its owner, atomically (temp file + rename).
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}

/// `declared(name)`: the manifest has the variable; `supplied(name)`: the operator gave it.
pub fn prepare(
    data_dir: &Path,
    declared: impl Fn(&str) -> bool,
    supplied: impl Fn(&str) -> bool,
) -> Result<Bootstrap> {
    let mut generated = BTreeMap::new();
    let mut new_admin_password = None;

    if declared(keys::JWT_SECRET) && !supplied(keys::JWT_SECRET) {
        let path = data_dir.join(SECRET_FILE);
        let secret = match fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                let s = random_hex(32)?;
                write_private(&path, &s)?;
                tracing::info!(path = %path.display(), "generated a new JWT signing secret");
                s
            }
        };
        generated.insert(keys::JWT_SECRET.to_owned(), secret);
    }

    if declared(keys::USERS) && !supplied(keys::USERS) {
        let path = data_dir.join(USERS_FILE);
        let users = match fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => s,
            _ => {
                let password = random_hex(12)?;
                let hash =
                    hash_password(&password).map_err(|e| anyhow::anyhow!("{}", e.message))?;
                let users = serde_json::json!([{ "username": "admin", "role": "admin", "password_hash": hash }]).to_string();
                write_private(&path, &users)?;
                new_admin_password = Some(password);
                users
            }
        };
        generated.insert(keys::USERS.to_owned(), users);
    }
    Ok(Bootstrap {
        generated,
        new_admin_password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let first = prepare(dir.path(), |_| true, |_| false).unwrap();
        let password = first.new_admin_password.clone().unwrap();
        let users_json = &first.generated[keys::USERS];
        assert!(!users_json.contains(&password), "only the hash is stored");
        let users = mcp_edge_domain::config::parse_users(users_json).unwrap();
        assert!(mcp_edge_domain::auth::check_credentials(&users, "admin", &password).is_ok());
        assert_eq!(first.generated[keys::JWT_SECRET].len(), 64);

        let second = prepare(dir.path(), |_| true, |_| false).unwrap();
        assert!(second.new_admin_password.is_none());
        assert_eq!(second.generated, first.generated);
    }

    #[test]
    fn supplied_values_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let boot = prepare(dir.path(), |_| true, |_| true).unwrap();
        assert!(boot.generated.is_empty());
        assert!(!dir.path().join(SECRET_FILE).exists());
    }
}
