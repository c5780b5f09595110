//! Redis/Valkey backend (`--kv redis://host:port`, or `rediss://` for TLS), for state shared
//! by several runtimes. Keys are namespaced `mcp-edge:{store}:{key}`. Durability is the
//! server's: run it with `appendonly yes` and `appendfsync always` to acknowledge only what is
//! on disk, as the SQLite backend does (docs/operations.md).
//!
//! Calls run on a small pool of connections. A connection that failed is never reused, and
//! a failure marks every pooled connection as suspect (the server they point at may have
//! restarted), so that after an outage each call starts on a fresh connection. Reads and
//! writes whose repetition changes nothing are tried once more on a fresh connection when a
//! pooled one turns out to be dead; an increment or a compare-and-swap never is (its first
//! try may have been applied), and a pooled connection is checked with `PING` before one of
//! those if it sat idle, so that no request fails after the store has recovered.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::{Commands, Connection, IntoConnectionInfo, RedisError, RedisResult};

use super::{Backend, KeyPage, KvError, KvResult};

/// The environment variable a password may come from, so that no secret sits on a command
/// line; a password in the URL wins.
pub const PASSWORD_ENV: &str = "MCP_EDGE_REDIS_PASSWORD";

const TIMEOUT: Duration = Duration::from_secs(2);
/// Connections kept open between calls (more are opened under load, then closed).
const POOL: usize = 32;
/// A pooled connection idle longer than this is checked before a call that cannot be retried.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(100);

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

struct Pooled {
    conn: Connection,
    /// The failure count when it was opened: a later failure makes it suspect.
    epoch: u64,
    idle_since: Instant,
}

pub struct RedisBackend {
    client: redis::Client,
    pool: Mutex<Vec<Pooled>>,
    /// Connection failures seen so far.
    failures: AtomicU64,
    swap_if: redis::Script,
}

/// A client for `url` (not yet connected); `password` is used when the URL has none.
pub fn client(url: &str, password: Option<String>) -> KvResult<redis::Client> {
    let mut info = url
        .into_connection_info()
        .map_err(|e| KvError::Backend(format!("invalid Redis URL: {e}")))?;
    if info.redis.password.is_none() {
        info.redis.password = password;
    }
    redis::Client::open(info).map_err(|e| KvError::Backend(format!("invalid Redis URL: {e}")))
}

/// Whether repeating a call after an unknown outcome is harmless.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    Safe,
    Never,
}

/// `url` with any password in it replaced by `***`, for logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

fn key(store: &str, key: &str) -> String {
    format!("mcp-edge:{store}:{key}")
}

/// Whether the connection itself failed (rather than the server refusing one command).
fn connection_failed(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

fn unavailable(e: RedisError) -> KvError {
    KvError::Backend(format!("Redis unavailable: {e}"))
}

impl RedisBackend {
    /// Checks the URL; connects lazily (a server that is down at start-up is not fatal).
    /// `password` is used when the URL has none (see [`PASSWORD_ENV`]).
    pub fn new(url: &str, password: Option<String>) -> KvResult<Self> {
        let client = client(url, password)?;
        Ok(Self {
            client,
            pool: Mutex::new(Vec::new()),
            failures: AtomicU64::new(0),
            swap_if: redis::Script::new(SWAP_IF),
        })
    }

    fn open(&self) -> KvResult<Pooled> {
        let epoch = self.failures.load(Ordering::SeqCst);
        let conn = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(unavailable)?;
        conn.set_read_timeout(Some(TIMEOUT)).map_err(unavailable)?;
        conn.set_write_timeout(Some(TIMEOUT)).map_err(unavailable)?;
        Ok(Pooled {
            conn,
            epoch,
            idle_since: Instant::now(),
        })
    }

    /// A connection for one call, and whether it was opened for it.
    fn checkout(&self, retry: Retry) -> KvResult<(Pooled, bool)> {
        let epoch = self.failures.load(Ordering::SeqCst);
        loop {
            let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut pooled) = pooled else {
                return Ok((self.open()?, true));
            };
            if pooled.epoch != epoch {
                continue;
            }
            if retry == Retry::Never
                && pooled.idle_since.elapsed() > CHECK_AFTER_IDLE
                && redis::cmd("PING")
                    .query::<String>(&mut pooled.conn)
                    .is_err()
            {
                self.failures.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            return Ok((pooled, false));
        }
    }

    fn checkin(&self, mut pooled: Pooled) {
        if pooled.epoch != self.failures.load(Ordering::SeqCst) {
            return;
        }
        pooled.idle_since = Instant::now();
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL {
            pool.push(pooled);
        }
    }

    fn with<T>(&self, retry: Retry, f: impl Fn(&mut Connection) -> RedisResult<T>) -> KvResult<T> {
        let (mut pooled, fresh) = self.checkout(retry)?;
        match f(&mut pooled.conn) {
            Ok(value) => {
                self.checkin(pooled);
                Ok(value)
            }
            Err(e) if connection_failed(&e) => {
                // Every pooled connection may be as dead as this one.
                self.failures.fetch_add(1, Ordering::SeqCst);
                if retry == Retry::Never || fresh {
                    return Err(unavailable(e));
                }
                let mut pooled = self.open()?;
                match f(&mut pooled.conn) {
                    Ok(value) => {
                        self.checkin(pooled);
                        Ok(value)
                    }
                    Err(e) => {
                        if connection_failed(&e) {
                            self.failures.fetch_add(1, Ordering::SeqCst);
                        } else {
                            self.checkin(pooled);
                        }
                        Err(unavailable(e))
                    }
                }
            }
            Err(e) => {
                // The server answered (e.g. a value that is not a counter): the connection
                // is in a known state.
                self.checkin(pooled);
                Err(KvError::Backend(format!("Redis: {e}")))
            }
        }
    }
}

impl Backend for RedisBackend {
    fn get(&self, store: &str, k: &str) -> KvResult<Option<Vec<u8>>> {
        self.with(Retry::Safe, |c| c.get(key(store, k)))
    }

    fn set(&self, store: &str, k: &str, value: &[u8]) -> KvResult<()> {
        self.with(Retry::Safe, |c| c.set(key(store, k), value))
    }

    fn delete(&self, store: &str, k: &str) -> KvResult<()> {
        self.with(Retry::Safe, |c| c.del(key(store, k)))
    }

    fn exists(&self, store: &str, k: &str) -> KvResult<bool> {
        self.with(Retry::Safe, |c| c.exists(key(store, k)))
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
        let (next, keys): (u64, Vec<String>) = self.with(Retry::Safe, |c| {
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
        let values: Vec<Option<Vec<u8>>> =
            self.with(Retry::Safe, |c| redis::cmd("MGET").arg(&full).query(c))?;
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
        self.with(Retry::Safe, |c| c.mset(&full))
    }

    fn delete_many(&self, store: &str, keys: &[String]) -> KvResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let full: Vec<String> = keys.iter().map(|k| key(store, k)).collect();
        self.with(Retry::Safe, |c| c.del(&full))
    }

    fn increment(&self, store: &str, k: &str, delta: i64) -> KvResult<i64> {
        if delta == 0 {
            // A read stays a read: `INCRBY 0` would fail on a read replica and cost an fsync
            // under `appendfsync always`.
            let value: Option<Vec<u8>> = self.with(Retry::Safe, |c| c.get(key(store, k)))?;
            return match value {
                None => Ok(0),
                Some(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| KvError::Backend("value is not a counter".into())),
            };
        }
        self.with(Retry::Never, |c| c.incr(key(store, k), delta))
    }

    fn swap_if(&self, store: &str, k: &str, expected: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        let absent = if expected.is_none() { "1" } else { "0" };
        let swapped: i64 = self.with(Retry::Never, |c| {
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
