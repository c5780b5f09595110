//! Zero-configuration first run. When the manifest declares `jwt_secret` or `users` and the
//! operator supplied neither, `mcp-edge` generates them into the data directory and reuses
//! them on every later start: a random 256-bit secret, and an `admin` user with a random
//! password that is printed once (only its Argon2id hash is stored). Nothing is hard-coded.
//!
//! An existing file is never overwritten: one that cannot be read (permissions, I/O) or is
//! empty stops start-up with an error that names it. The data directory is created `0700`
//! and the files `0600`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use mcp_edge_domain::accounts::hash_password;
use mcp_edge_domain::config::keys;

const SECRET_FILE: &str = "jwt_secret";
pub const USERS_FILE: &str = "users.json";

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

/// Creates the data directory, readable only by its owner (an existing one is left as it is).
pub fn create_data_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// The contents of a generated file, `None` if it does not exist yet.
pub fn read_existing(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => anyhow::bail!(
            "{} is empty; restore it, or delete it to generate a new one",
            path.display()
        ),
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::from(e).context(format!(
            "cannot read {} (it is kept as it is; fix its permissions or restore it)",
            path.display()
        ))),
    }
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
        let secret = match read_existing(&path)? {
            Some(s) => s.trim().to_owned(),
            None => {
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
        let users = match read_existing(&path)? {
            Some(s) => s,
            None => {
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
        let users = mcp_edge_domain::accounts::parse_users(users_json).unwrap();
        assert!(mcp_edge_domain::accounts::users::password_matches(
            &password,
            &users[0].password_hash
        ));
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

    #[cfg(unix)]
    #[test]
    fn files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        create_data_dir(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        prepare(&dir, |_| true, |_| false).unwrap();
        assert_eq!(mode(&dir.join(SECRET_FILE)), 0o600);
        assert_eq!(mode(&dir.join(USERS_FILE)), 0o600);

        // Empty: refused, left alone.
        fs::write(dir.join(SECRET_FILE), "").unwrap();
        let err = prepare(&dir, |_| true, |_| false).err().unwrap();
        assert!(format!("{err:#}").contains("is empty"), "{err:#}");
        assert_eq!(fs::read_to_string(dir.join(SECRET_FILE)).unwrap(), "");

        // Unreadable (a directory where the file should be): refused, left alone.
        fs::remove_file(dir.join(SECRET_FILE)).unwrap();
        fs::create_dir(dir.join(SECRET_FILE)).unwrap();
        let err = prepare(&dir, |_| true, |_| false).err().unwrap();
        assert!(format!("{err:#}").contains("cannot read"), "{err:#}");
        assert!(dir.join(SECRET_FILE).is_dir());
    }
}
