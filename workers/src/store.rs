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

fn blob(b: &[u8]) -> SqlStorageValue {
    SqlStorageValue::Blob(b.to_vec())
}

/// The rows of a cursor, each as its column values.
fn rows(cursor: SqlCursor) -> Result<Vec<Vec<SqlStorageValue>>, StoreError> {
    cursor.raw().map(|row| row.map_err(failed)).collect()
}

impl SqlKv {
    /// Opens the store, creating its tables on first use.
    pub fn open(sql: SqlStorage) -> Result<Self, StoreError> {
        sql.exec(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
            None,
        )
        .map_err(failed)?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            None,
        )
        .map_err(failed)?;
        Ok(Self { sql })
    }

    fn exec(&self, query: &str, args: Vec<SqlStorageValue>) -> Result<SqlCursor, StoreError> {
        self.sql.exec(query, args).map_err(failed)
    }
}

impl SqlKv {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let found = rows(self.exec("SELECT value FROM kv WHERE key = ?", vec![text(key)])?)?;
        match found.into_iter().next().and_then(|r| r.into_iter().next()) {
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

    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let found = rows(self.exec(
            "INSERT INTO counters (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = value + excluded.value RETURNING value",
            vec![text(key), SqlStorageValue::Integer(delta)],
        )?)?;
        match found.into_iter().next().and_then(|r| r.into_iter().next()) {
            Some(SqlStorageValue::Integer(n)) => Ok(n),
            Some(SqlStorageValue::Float(f)) => Ok(f as i64),
            other => Err(StoreError::Other(format!(
                "counter {key} read back as {other:?}"
            ))),
        }
    }

    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        // RETURNING tells whether a row was written (rows_written also counts index rows).
        let written = match expected {
            None => rows(self.exec(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING 1",
                vec![text(key), blob(new)],
            )?)?,
            Some(old) => rows(self.exec(
                "UPDATE kv SET value = ? WHERE key = ? AND value = ? RETURNING 1",
                vec![blob(new), text(key), blob(old)],
            )?)?,
        };
        Ok(!written.is_empty())
    }
}
