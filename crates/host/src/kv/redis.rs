//! Redis/Valkey backend (`--kv redis://host:port`), for state shared beyond one machine.
//! Keys are namespaced `mcp-edge:{store}:{key}`. A broken connection is dropped and the next
//! call reconnects, so the store comes back by itself when the server does. Durability is
//! the server's: run it with `appendonly yes` and `appendfsync always` to acknowledge only
//! what is on disk, as the SQLite backend does.

use std::sync::Mutex;
use std::time::Duration;

use redis::{Commands, Connection, RedisResult};

use super::{Backend, KeyPage, KvError, KvResult};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Compare-and-swap in one atomic script: write ARGV[3] if the value is absent (ARGV[1] = "1")
/// or equals ARGV[2].
const SWAP_IF: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

pub struct RedisBackend {
    client: redis::Client,
    conn: Mutex<Option<Connection>>,
    swap_if: redis::Script,
}

fn key(store: &str, key: &str) -> String {
    format!("mcp-edge:{store}:{key}")
}

impl RedisBackend {
    /// Checks the URL; connects lazily (a server that is down at start-up is not fatal).
    pub fn new(url: &str) -> KvResult<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| KvError::Backend(format!("invalid Redis URL: {e}")))?;
        Ok(Self {
            client,
            conn: Mutex::new(None),
            swap_if: redis::Script::new(SWAP_IF),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> KvResult<T> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(TIMEOUT)
                .map_err(|e| KvError::Backend(format!("Redis unavailable: {e}")))?;
            conn.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| KvError::Backend(e.to_string()))?;
            conn.set_write_timeout(Some(TIMEOUT))
                .map_err(|e| KvError::Backend(e.to_string()))?;
            *guard = Some(conn);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(KvError::Backend("Redis unavailable".into()));
        };
        f(conn).map_err(|e| {
            // Reconnect on the next call rather than reuse a connection in an unknown state.
            *guard = None;
            KvError::Backend(format!("Redis: {e}"))
        })
    }
}

impl Backend for RedisBackend {
    fn get(&self, store: &str, k: &str) -> KvResult<Option<Vec<u8>>> {
        self.with(|c| c.get(key(store, k)))
    }

    fn set(&self, store: &str, k: &str, value: &[u8]) -> KvResult<()> {
        self.with(|c| c.set(key(store, k), value))
    }

    fn delete(&self, store: &str, k: &str) -> KvResult<()> {
        self.with(|c| c.del(key(store, k)))
    }

    fn exists(&self, store: &str, k: &str) -> KvResult<bool> {
        self.with(|c| c.exists(key(store, k)))
    }

    fn list_keys(&self, store: &str, cursor: Option<&str>) -> KvResult<KeyPage> {
        let prefix = key(store, "");
        let pattern = format!(
            "{}*",
            prefix
                .replace('\\', "\\\\")
                .replace('*', "\\*")
                .replace('?', "\\?")
                .replace('[', "\\[")
        );
        let start: u64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        let (next, keys): (u64, Vec<String>) = self.with(|c| {
            redis::cmd("SCAN")
                .arg(start)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(c)
        })?;
        let keys = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        Ok(KeyPage {
            keys,
            cursor: (next != 0).then(|| next.to_string()),
        })
    }

    fn get_many(&self, store: &str, keys: &[String]) -> KvResult<Vec<(String, Vec<u8>)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<String> = keys.iter().map(|k| key(store, k)).collect();
        let values: Vec<Option<Vec<u8>>> = self.with(|c| redis::cmd("MGET").arg(&full).query(c))?;
        Ok(keys
            .iter()
            .cloned()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    fn set_many(&self, store: &str, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let full: Vec<(String, &[u8])> = entries
            .iter()
            .map(|(k, v)| (key(store, k), v.as_slice()))
            .collect();
        self.with(|c| c.mset(&full))
    }

    fn delete_many(&self, store: &str, keys: &[String]) -> KvResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let full: Vec<String> = keys.iter().map(|k| key(store, k)).collect();
        self.with(|c| c.del(full))
    }

    fn increment(&self, store: &str, k: &str, delta: i64) -> KvResult<i64> {
        self.with(|c| c.incr(key(store, k), delta))
    }

    fn swap_if(&self, store: &str, k: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        let absent = if expected.is_none() { "1" } else { "0" };
        let swapped: i64 = self.with(|c| {
            self.swap_if
                .key(key(store, k))
                .arg(absent)
                .arg(expected.unwrap_or_default())
                .arg(new)
                .invoke(c)
        })?;
        Ok(swapped == 1)
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
