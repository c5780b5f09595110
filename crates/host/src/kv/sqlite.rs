//! The default, durable backend: SQLite (bundled) in the data directory, in WAL mode with
//! `synchronous = FULL`, so every committed write is on disk before the call returns and
//! therefore before the component's response goes out.
//!
//! Writes use group commit: a writer queues its operation, then takes the write connection;
//! whoever holds it runs every queued operation (its own and those of writers that queued
//! meanwhile) in one transaction, each inside its own savepoint, and commits once. So many
//! concurrent writers share one fsync, and each still returns only after the commit that made
//! its write durable. Reads use their own connections and see every committed write.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Backend, KeyPage, KvError, KvResult, LIST_PAGE, add, encode_counter, memory::page,
    parse_counter,
};

/// What a write operation returns.
enum Done {
    Unit,
    Counter(i64),
    Swapped(bool),
}

type WriteOp = Box<dyn FnOnce(&Connection) -> KvResult<Done> + Send>;

/// Where the committing writer leaves an operation's result.
type Slot = Arc<Mutex<Option<KvResult<Done>>>>;

/// Read connections: WAL lets them read beside each other and beside the writer.
const READERS: usize = 4;

pub struct SqliteBackend {
    readers: Vec<Mutex<Connection>>,
    writer: Mutex<Connection>,
    queue: Mutex<Vec<(WriteOp, Slot)>>,
}

fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Pages are read with `pread`, not memory-mapped (`mmap_size` stays 0): measured with
    // reads on the calling thread (docs/performance.md), mapping the file made sends and the
    // mixed workload about a fifth slower and counted every touched page of the file in the
    // server's resident memory.
    Ok(conn)
}

fn lock<T>(m: &Mutex<T>) -> KvResult<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| KvError::Backend("sqlite lock poisoned".into()))
}

/// Creates the database file readable only by its owner (SQLite gives its `-wal` and `-shm`
/// files the database's permissions), and tightens an existing one.
fn make_private(path: &Path) -> KvResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |e: std::io::Error| KvError::Backend(format!("{}: {e}", path.display()));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
        }
    }
    Ok(())
}

impl SqliteBackend {
    pub fn open(path: &Path) -> KvResult<Self> {
        make_private(path)?;
        let writer = open_connection(path)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            ) WITHOUT ROWID;",
        )?;
        Ok(Self {
            readers: (0..READERS)
                .map(|_| open_connection(path).map(Mutex::new))
                .collect::<Result<_, _>>()?,
            writer: Mutex::new(writer),
            queue: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on an idle read connection (or waits for the first one).
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> KvResult<T> {
        let idle = self.readers.iter().find_map(|r| r.try_lock().ok());
        let conn = match idle {
            Some(conn) => conn,
            None => lock(&self.readers[0])?,
        };
        f(&conn).map_err(KvError::from)
    }

    /// Queues `op` and returns once the commit that includes it is durable.
    fn write(
        &self,
        op: impl FnOnce(&Connection) -> KvResult<Done> + Send + 'static,
    ) -> KvResult<Done> {
        let slot: Slot = Arc::default();
        lock(&self.queue)?.push((Box::new(op), slot.clone()));
        let mut conn = lock(&self.writer)?;
        if let Some(done) = lock(&slot)?.take() {
            // A writer that held the connection before us committed our operation.
            return done;
        }
        let batch = std::mem::take(&mut *lock(&self.queue)?);
        let committed = commit_batch(&mut conn, batch);
        drop(conn);
        committed?;
        lock(&slot)?
            .take()
            .unwrap_or_else(|| Err(KvError::Backend("write was not committed".into())))
    }
}

/// Runs every operation in one transaction (each in a savepoint, so a failing one leaves no
/// trace), commits once, and hands out the results.
fn commit_batch(conn: &mut Connection, batch: Vec<(WriteOp, Slot)>) -> KvResult<()> {
    let run = |conn: &mut Connection,
               batch: Vec<(WriteOp, Slot)>|
     -> KvResult<Vec<(Slot, KvResult<Done>)>> {
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        for (op, slot) in batch {
            let sp = tx.savepoint()?;
            let result = op(&sp);
            if result.is_ok() {
                sp.commit()?;
            } else {
                drop(sp); // rolls back this operation only
            }
            results.push((slot, result));
        }
        tx.commit()?;
        Ok(results)
    };
    let slots: Vec<Slot> = batch.iter().map(|(_, s)| s.clone()).collect();
    match run(conn, batch) {
        Ok(results) => {
            for (slot, result) in results {
                *lock(&slot)? = Some(result);
            }
            Ok(())
        }
        Err(e) => {
            for slot in slots {
                *lock(&slot)? = Some(Err(KvError::Backend(format!("commit failed: {e}"))));
            }
            Err(e)
        }
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
        self.with_reader(|c| read(c, store, key))
    }

    fn set(&self, store: &str, key: &str, value: &[u8]) -> KvResult<()> {
        let (store, key, value) = (store.to_owned(), key.to_owned(), value.to_vec());
        self.write(move |tx| {
            write(tx, &store, &key, &value)?;
            Ok(Done::Unit)
        })
        .map(|_| ())
    }

    fn delete(&self, store: &str, key: &str) -> KvResult<()> {
        let (store, key) = (store.to_owned(), key.to_owned());
        self.write(move |tx| {
            remove(tx, &store, &key)?;
            Ok(Done::Unit)
        })
        .map(|_| ())
    }

    fn exists(&self, store: &str, key: &str) -> KvResult<bool> {
        self.with_reader(|c| {
            c.prepare_cached("SELECT 1 FROM kv WHERE store = ?1 AND key = ?2")?
                .exists(params![store, key])
        })
    }

    fn list_keys(&self, store: &str, cursor: Option<&str>) -> KvResult<KeyPage> {
        let keys = self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key FROM kv WHERE store = ?1 AND (?2 IS NULL OR key > ?2) ORDER BY key LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![store, cursor, (LIST_PAGE + 1) as i64], |row| row.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()
        })?;
        Ok(page(keys))
    }

    fn get_many(&self, store: &str, keys: &[String]) -> KvResult<Vec<(String, Vec<u8>)>> {
        self.with_reader(|c| {
            // One read transaction for the batch: one consistent snapshot, and the WAL's
            // read lock (an `fcntl` each way) taken once instead of once per key.
            let tx = c.unchecked_transaction()?;
            let mut found = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(value) = read(&tx, store, key)? {
                    found.push((key.clone(), value));
                }
            }
            tx.commit()?;
            Ok(found)
        })
    }

    fn set_many(&self, store: &str, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        let (store, entries) = (store.to_owned(), entries.to_vec());
        self.write(move |tx| {
            for (key, value) in &entries {
                write(tx, &store, key, value)?;
            }
            Ok(Done::Unit)
        })
        .map(|_| ())
    }

    fn delete_many(&self, store: &str, keys: &[String]) -> KvResult<()> {
        let (store, keys) = (store.to_owned(), keys.to_vec());
        self.write(move |tx| {
            for key in &keys {
                remove(tx, &store, key)?;
            }
            Ok(Done::Unit)
        })
        .map(|_| ())
    }

    fn increment(&self, store: &str, key: &str, delta: i64) -> KvResult<i64> {
        if delta == 0 {
            // A read: no transaction, no fsync.
            return parse_counter(self.get(store, key)?.as_deref());
        }
        let (store, key) = (store.to_owned(), key.to_owned());
        match self.write(move |tx| {
            let next = add(parse_counter(read(tx, &store, &key)?.as_deref())?, delta)?;
            write(tx, &store, &key, &encode_counter(next))?;
            Ok(Done::Counter(next))
        })? {
            Done::Counter(n) => Ok(n),
            _ => Err(KvError::Backend("increment returned no counter".into())),
        }
    }

    fn swap_if(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool> {
        let (store, key) = (store.to_owned(), key.to_owned());
        let (expected, new) = (expected.map(<[u8]>::to_vec), new.to_vec());
        match self.write(move |tx| {
            if read(tx, &store, &key)?.as_deref() != expected.as_deref() {
                return Ok(Done::Swapped(false));
            }
            write(tx, &store, &key, &new)?;
            Ok(Done::Swapped(true))
        })? {
            Done::Swapped(b) => Ok(b),
            _ => Err(KvError::Backend("swap returned no outcome".into())),
        }
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn reads_are_local(&self) -> bool {
        true
    }
}
