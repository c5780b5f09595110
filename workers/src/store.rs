//! One shard's keys in a Durable Object's SQLite storage: the operations of the domain's
//! key-value seam, each run synchronously (`ctx.storage.sql` is synchronous and the object
//! single-threaded, so each operation is atomic), durable before the object answers
//! (Cloudflare's output gate). Values and counters are kept apart, as in every other backend.

use mcp_edge_domain::store::StoreError;
use worker::{SqlCursor, SqlStorage, SqlStorageValue};

pub struct SqlKv {
    sql: SqlStorage,
}

fn failed(e: worker::Error) -> StoreError {
    StoreError::Other(format!("durable object storage: {e}"))
}

fn text(s: &str) -> SqlStorageValue {
    SqlStorageValue::String(s.to_owned())
}

/// A time in ms as SQLite's integer (times beyond `i64` do not occur).
fn clamp(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn blob(b: &[u8]) -> SqlStorageValue {
    SqlStorageValue::Blob(b.to_vec())
}

/// The first column of the first row of a cursor, if any.
fn first_value(cursor: SqlCursor) -> Result<Option<SqlStorageValue>, StoreError> {
    cursor
        .raw()
        .next()
        .transpose()
        .map(|row| row.and_then(|r| r.into_iter().next()))
        .map_err(failed)
}

impl SqlKv {
    /// The store over an object's SQL storage; [`SqlKv::create_tables`] once per object
    /// instance before the first operation.
    pub fn new(sql: SqlStorage) -> Self {
        Self { sql }
    }

    pub fn create_tables(&self) -> Result<(), StoreError> {
        self.exec(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
            vec![],
        )?;
        self.exec(
            "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            vec![],
        )?;
        // Keys to be looked at by the object's alarm, and when (`KvStore::schedule_cleanup`).
        self.exec(
            "CREATE TABLE IF NOT EXISTS due (key TEXT PRIMARY KEY, at INTEGER NOT NULL)",
            vec![],
        )
        .map(drop)
    }

    /// Has `key` looked at by the alarm at `at_ms` (the latest request wins).
    pub fn schedule(&self, key: &str, at_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO due (key, at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET at = excluded.at",
            vec![text(key), SqlStorageValue::Integer(clamp(at_ms))],
        )
        .map(drop)
    }

    /// The keys due by `now_ms`, taken off the schedule.
    pub fn take_due(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        let keys = self
            .exec(
                "DELETE FROM due WHERE at <= ? RETURNING key",
                vec![SqlStorageValue::Integer(clamp(now_ms))],
            )?
            .raw()
            .map(|row| match row.map_err(failed)?.into_iter().next() {
                Some(SqlStorageValue::String(key)) => Ok(key),
                other => Err(StoreError::Other(format!(
                    "due key of unexpected type: {other:?}"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(keys)
    }

    /// When the next scheduled key is due, if any.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        match first_value(self.exec("SELECT min(at) FROM due", vec![])?)? {
            Some(SqlStorageValue::Integer(at)) => Ok(Some(u64::try_from(at).unwrap_or(0))),
            _ => Ok(None),
        }
    }

    fn exec(&self, query: &str, args: Vec<SqlStorageValue>) -> Result<SqlCursor, StoreError> {
        self.sql.exec(query, args).map_err(failed)
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match first_value(self.exec("SELECT value FROM kv WHERE key = ?", vec![text(key)])?)? {
            None => Ok(None),
            Some(SqlStorageValue::Blob(bytes)) => Ok(Some(bytes)),
            Some(SqlStorageValue::String(s)) => Ok(Some(s.into_bytes())),
            Some(other) => Err(StoreError::Other(format!(
                "value at {key} has an unexpected type: {other:?}"
            ))),
        }
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO kv (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![text(key), blob(value)],
        )
        .map(drop)
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM kv WHERE key = ?", vec![text(key)])?;
        self.exec("DELETE FROM counters WHERE key = ?", vec![text(key)])
            .map(drop)
    }

    /// The keys under `prefix`, in order (one object's rows: a group's, for its cleanup).
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.exec(
            "SELECT key FROM kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
            vec![text(prefix)],
        )?
        .raw()
        .map(|row| match row.map_err(failed)?.into_iter().next() {
            Some(SqlStorageValue::String(key)) => Ok(key),
            other => Err(StoreError::Other(format!(
                "key of unexpected type: {other:?}"
            ))),
        })
        .collect()
    }

    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Read, add and write in one synchronous step: the object runs nothing in between, and
    /// an overflow fails without writing, as in every other backend.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let current = match first_value(
            self.exec("SELECT value FROM counters WHERE key = ?", vec![text(key)])?,
        )? {
            None => 0,
            Some(SqlStorageValue::Integer(n)) => n,
            Some(other) => {
                return Err(StoreError::Other(format!(
                    "counter {key} has an unexpected type: {other:?}"
                )));
            }
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StoreError::Other(format!("counter {key} overflowed")))?;
        if delta != 0 {
            self.exec(
                "INSERT INTO counters (key, value) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vec![text(key), SqlStorageValue::Integer(next)],
            )?;
        }
        Ok(next)
    }

    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        // RETURNING tells whether a row was written (rows_written also counts index rows).
        let written = match expected {
            None => first_value(self.exec(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING 1",
                vec![text(key), blob(new)],
            )?)?,
            Some(old) => first_value(self.exec(
                "UPDATE kv SET value = ? WHERE key = ? AND value = ? RETURNING 1",
                vec![blob(new), text(key), blob(old)],
            )?)?,
        };
        Ok(written.is_some())
    }
}
