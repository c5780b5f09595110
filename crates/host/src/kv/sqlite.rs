//! The default, durable backend: SQLite (bundled) in the data directory, in WAL mode with
//! `synchronous = FULL`, so every committed write is on disk before the call returns and
//! therefore before the component's response goes out.
//!
//! Writes use group commit on a writer thread of their own: a write is queued with whom to
//! tell; the thread takes every write queued meanwhile, runs them in one transaction (each
//! inside its own savepoint, so a failing one leaves no trace), commits once and then answers
//! each. So concurrent writers share one fsync, each is answered only after the commit that
//! made its write durable, and a caller that can wait asynchronously (the components' store
//! calls, [`Backend::queue_write`]) holds no thread meanwhile. Reads use their own
//! connections and see every committed write.

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Backend, KeyPage, KvError, KvResult, LIST_PAGE, Write, WriteDone, Written, add, encode_counter,
    memory::page, parse_counter,
};

/// A queued write: the store label, the write, and whom to tell.
struct Job {
    store: String,
    write: Write,
    done: WriteDone,
}

/// Read connections: WAL lets them read beside each other and beside the writer.
const READERS: usize = 4;

pub struct SqliteBackend {
    readers: Vec<Mutex<Connection>>,
    /// To the writer thread, which ends once this is dropped and the queue is drained.
    jobs: Sender<Job>,
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

fn writer_gone() -> KvError {
    KvError::Backend("the SQLite writer thread has stopped".into())
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
        let readers = (0..READERS)
            .map(|_| open_connection(path).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        let (jobs, queued) = channel();
        std::thread::Builder::new()
            .name("kv-sqlite-writer".into())
            .spawn(move || run_writer(writer, &queued))
            .map_err(|e| KvError::Backend(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self { readers, jobs })
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

    /// Queues `write` and waits (blocking) until the commit that includes it is durable.
    fn write(&self, store: &str, write: Write) -> KvResult<Written> {
        let (tell, told) = sync_channel(1);
        let done: WriteDone = Box::new(move |result| {
            let _ = tell.send(result);
        });
        self.queue_write(store, write, done)
            .map_err(|_| writer_gone())?;
        told.recv().map_err(|_| writer_gone())?
    }
}

/// The writer thread: commits whatever is queued, a batch per transaction, until the
/// backend is dropped.
fn run_writer(mut conn: Connection, queued: &Receiver<Job>) {
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        batch.extend(queued.try_iter());
        commit_batch(&mut conn, batch);
    }
}

/// Runs every write in one transaction (each in a savepoint, so a failing one leaves no
/// trace), commits once, then answers each.
fn commit_batch(conn: &mut Connection, batch: Vec<Job>) {
    let run = |conn: &mut Connection, batch: &[Job]| -> KvResult<Vec<KvResult<Written>>> {
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            let sp = tx.savepoint()?;
            let result = apply(&sp, &job.store, &job.write);
            if result.is_ok() {
                sp.commit()?;
            } else {
                drop(sp); // rolls back this write only
            }
            results.push(result);
        }
        tx.commit()?;
        Ok(results)
    };
    match run(conn, &batch) {
        Ok(results) => {
            for (job, result) in batch.into_iter().zip(results) {
                (job.done)(result);
            }
        }
        Err(e) => {
            for job in batch {
                (job.done)(Err(KvError::Backend(format!("commit failed: {e}"))));
            }
        }
    }
}

/// Runs one write inside the writer's transaction.
fn apply(tx: &Connection, store: &str, write: &Write) -> KvResult<Written> {
    match write {
        Write::Set { key, value } => write_value(tx, store, key, value)?,
        Write::Delete { key } => remove(tx, store, key)?,
        Write::SetMany(entries) => {
            for (key, value) in entries {
                write_value(tx, store, key, value)?;
            }
        }
        Write::DeleteMany(keys) => {
            for key in keys {
                remove(tx, store, key)?;
            }
        }
        Write::Increment { key, delta } => {
            let next = add(parse_counter(read(tx, store, key)?.as_deref())?, *delta)?;
            write_value(tx, store, key, &encode_counter(next))?;
            return Ok(Written::Counter(next));
        }
        Write::SwapIf { key, expected, new } => {
            if read(tx, store, key)?.as_deref() != expected.as_deref() {
                return Ok(Written::Swapped(false));
            }
            write_value(tx, store, key, new)?;
            return Ok(Written::Swapped(true));
        }
    }
    Ok(Written::Unit)
}

fn read(conn: &Connection, store: &str, key: &str) -> Result<Option<Vec<u8>>, rusqlite::Error> {
    conn.prepare_cached("SELECT value FROM kv WHERE store = ?1 AND key = ?2")?
        .query_row(params![store, key], |row| row.get(0))
        .optional()
}

fn write_value(
    conn: &Connection,
    store: &str,
    key: &str,
    value: &[u8],
) -> Result<(), rusqlite::Error> {
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
        let (key, value) = (key.to_owned(), value.to_vec());
        self.write(store, Write::Set { key, value }).map(|_| ())
    }

    fn delete(&self, store: &str, key: &str) -> KvResult<()> {
        let key = key.to_owned();
        self.write(store, Write::Delete { key }).map(|_| ())
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
        self.write(store, Write::SetMany(entries.to_vec()))
            .map(|_| ())
    }

    fn delete_many(&self, store: &str, keys: &[String]) -> KvResult<()> {
        self.write(store, Write::DeleteMany(keys.to_vec()))
            .map(|_| ())
    }

    fn increment(&self, store: &str, key: &str, delta: i64) -> KvResult<i64> {
        if delta == 0 {
            // A read: no transaction, no fsync.
            return parse_counter(self.get(store, key)?.as_deref());
        }
        let key = key.to_owned();
        match self.write(store, Write::Increment { key, delta })? {
            Written::Counter(n) => Ok(n),
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
        let write = Write::SwapIf {
            key: key.to_owned(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.to_vec(),
        };
        match self.write(store, write)? {
            Written::Swapped(b) => Ok(b),
            _ => Err(KvError::Backend("swap returned no outcome".into())),
        }
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn reads_are_local(&self) -> bool {
        true
    }

    fn queue_write(&self, store: &str, write: Write, done: WriteDone) -> Result<(), Write> {
        let job = Job {
            store: store.to_owned(),
            write,
            done,
        };
        // Should the writer have stopped, the write goes back to run the blocking way,
        // which then reports the failure.
        self.jobs.send(job).map_err(|failed| failed.0.write)
    }
}
