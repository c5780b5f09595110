//! The default, durable backend: SQLite (bundled) in the data directory, in WAL mode with
//! `synchronous = FULL`, so every committed write is on disk before the call returns and
//! therefore before the component's response goes out.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Backend, KeyPage, KvError, KvResult, LIST_PAGE, add, encode_counter, memory::page,
    parse_counter,
};

pub struct SqliteBackend {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    pub fn open(path: &Path) -> KvResult<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            ) WITHOUT ROWID;",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error>,
    ) -> KvResult<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| KvError::Backend("connection lock poisoned".into()))?;
        f(&mut conn).map_err(KvError::from)
    }
}

fn read(conn: &Connection, store: &str, key: &str) -> Result<Option<Vec<u8>>, rusqlite::Error> {
    conn.prepare_cached("SELECT value FROM kv WHERE store = ?1 AND key = ?2")?
        .query_row(params![store, key], |row| row.get(0))
        .optional()
}

fn write(conn: &Connection, store: &str, key: &str, value: &[u8]) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("INSERT INTO kv (store, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (store, key) DO UPDATE SET value = excluded.value")?
        .execute(params![store, key, value])
        .map(|_| ())
}

fn remove(conn: &Connection, store: &str, key: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("DELETE FROM kv WHERE store = ?1 AND key = ?2")?
        .execute(params![store, key])
        .map(|_| ())
}

impl Backend for SqliteBackend {
    fn get(&self, store: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.with(|c| read(c, store, key))
    }

    fn set(&self, store: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.with(|c| write(c, store, key, value))
    }

    fn delete(&self, store: &str, key: &str) -> KvResult<()> {
        self.with(|c| remove(c, store, key))
    }

    fn exists(&self, store: &str, key: &str) -> KvResult<bool> {
        self.with(|c| {
            c.prepare_cached("SELECT 1 FROM kv WHERE store = ?1 AND key = ?2")?
                .exists(params![store, key])
        })
    }

    fn list_keys(&self, store: &str, cursor: Option<&str>) -> KvResult<KeyPage> {
        let keys = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key FROM kv WHERE store = ?1 AND (?2 IS NULL OR key > ?2) ORDER BY key LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![store, cursor, (LIST_PAGE + 1) as i64], |row| row.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()
        })?;
        Ok(page(keys))
    }

    fn get_many(&self, store: &str, keys: &[String]) -> KvResult<Vec<(String, Vec<u8>)>> {
        self.with(|c| {
            let mut found = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(value) = read(c, store, key)? {
                    found.push((key.clone(), value));
                }
            }
            Ok(found)
        })
    }

    fn set_many(&self, store: &str, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (key, value) in entries {
                write(&tx, store, key, value)?;
            }
            tx.commit()
        })
    }

    fn delete_many(&self, store: &str, keys: &[String]) -> KvResult<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for key in keys {
                remove(&tx, store, key)?;
            }
            tx.commit()
        })
    }

    fn increment(&self, store: &str, key: &str, delta: i64) -> KvResult<i64> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| KvError::Backend("connection lock poisoned".into()))?;
        let current = parse_counter(read(&conn, store, key)?.as_deref())?;
        if delta == 0 {
            // A read: no transaction, no fsync.
            return Ok(current);
        }
        let next = add(current, delta)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        write(&tx, store, key, &encode_counter(next))?;
        tx.commit()?;
        Ok(next)
    }

    fn swap_if(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if read(&tx, store, key)?.as_deref() != expected {
                return Ok(false);
            }
            write(&tx, store, key, new)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}
