//! Which keys were written: the store's side of parked requests (`crate::parking`). Every
//! write through [`Watched`] wakes the requests waiting on that key.
//!
//! A request is parked only after its component looked at the store, so a write can fall
//! between the component's read and the park. Each write is therefore also recorded
//! ([`RecentWrites`]: per hash slot, the last few writes and their keys' hashes); a park that
//! finds its own key written since the dispatch began, or its slot overflowed since, returns
//! at once (one more dispatch, never a lost wake).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mcp_edge_domain::park::RecentWrites;
use tokio::sync::Notify;

use super::relay::Relay;
use super::{Backend, KeyPage, KvResult, SharedBackend};

/// Slots for the recent writes.
const STAMP_SLOTS: usize = 4096;

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The key was written.
    Written,
    /// The time ran out.
    TimedOut,
    /// The server is shutting down.
    Closed,
}

/// Who waits on each key (an id per wait and what wakes it), and the recent writes.
struct Registry {
    waiters: HashMap<String, Vec<(u64, Arc<Notify>)>>,
    recent: RecentWrites,
}

pub struct Changes {
    writes: AtomicU64,
    /// The count at the latest [`Changes::wake_all`]: a stamp on every key at once.
    everything: AtomicU64,
    hasher: RandomState,
    registry: Mutex<Registry>,
    next_waiter: AtomicU64,
    closed: AtomicBool,
    on_close: Notify,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            writes: AtomicU64::new(0),
            everything: AtomicU64::new(0),
            hasher: RandomState::new(),
            registry: Mutex::new(Registry {
                waiters: HashMap::new(),
                recent: RecentWrites::new(STAMP_SLOTS),
            }),
            next_waiter: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            on_close: Notify::new(),
        }
    }
}

fn scoped(store: &str, key: &str) -> String {
    format!("{store}\0{key}")
}

impl Changes {
    /// The count of writes so far: taken before a dispatch, handed to [`Changes::wait`].
    pub fn now(&self) -> u64 {
        self.writes.load(SeqCst)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `key` of `store` was written (after the write is durable) and wakes its
    /// waiters.
    pub fn written(&self, store: &str, key: &str) {
        let key = scoped(store, key);
        let hash = self.hasher.hash_one(&key);
        let mut registry = self.registry();
        let count = self.writes.fetch_add(1, SeqCst) + 1;
        registry.recent.record(hash, count);
        for (_, notify) in registry.waiters.get(&key).into_iter().flatten() {
            notify.notify_one();
        }
    }

    /// Whether the key of `hash` may have been written after `since`.
    fn written_since(&self, registry: &Registry, hash: u64, since: u64) -> bool {
        self.everything.load(SeqCst) > since || registry.recent.written_since(hash, since)
    }

    /// Waits until `key` of `store` is written after `since` (a [`Changes::now`]), `until`
    /// passes, or the server shuts down.
    pub async fn wait(&self, store: &str, key: &str, since: u64, until: Instant) -> Woken {
        let key = scoped(store, key);
        let notify = Arc::new(Notify::new());
        let id = self.next_waiter.fetch_add(1, SeqCst);
        {
            let hash = self.hasher.hash_one(&key);
            let mut registry = self.registry();
            // Under the lock a writer records under: a write is either seen here or finds
            // this waiter registered.
            if self.written_since(&registry, hash, since) {
                return Woken::Written;
            }
            registry
                .waiters
                .entry(key.clone())
                .or_default()
                .push((id, notify.clone()));
        }
        let _registered = Registered {
            changes: self,
            key: &key,
            id,
        };
        self.watch(until, notify.notified()).await
    }

    /// Waits until `until` passes or the server shuts down (a park on no key).
    pub async fn sleep(&self, until: Instant) -> Woken {
        self.watch(until, std::future::pending()).await
    }

    /// Waits for `written`, `until`, or the shutdown, whichever comes first.
    async fn watch(&self, until: Instant, written: impl Future<Output = ()>) -> Woken {
        let closed = self.on_close.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if self.closed.load(SeqCst) {
            return Woken::Closed;
        }
        tokio::select! {
            () = written => Woken::Written,
            () = tokio::time::sleep_until(until.into()) => Woken::TimedOut,
            () = closed => Woken::Closed,
        }
    }

    /// Wakes every waiter, and every park whose dispatch began before now, to look again
    /// (writes may have gone unseen: `crate::kv::relay`).
    pub fn wake_all(&self) {
        let count = self.writes.fetch_add(1, SeqCst) + 1;
        self.everything.fetch_max(count, SeqCst);
        for (_, notify) in self.registry().waiters.values().flatten() {
            notify.notify_one();
        }
    }

    /// Ends every wait, now and later (shutdown).
    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        self.on_close.notify_waiters();
    }

    /// Whether the server is shutting down ([`Changes::close`]).
    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.registry().waiters.values().map(Vec::len).sum()
    }
}

/// Removes a waiter when its wait ends, however it ends.
struct Registered<'a> {
    changes: &'a Changes,
    key: &'a str,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let waiters = &mut self.changes.registry().waiters;
        if let Some(list) = waiters.get_mut(self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                waiters.remove(self.key);
            }
        }
    }
}

/// A backend whose writes are reported to [`Changes`], and to the other replicas where
/// there are any ([`Relay`]).
pub struct Watched {
    inner: SharedBackend,
    changes: Arc<Changes>,
    relay: Option<Relay>,
}

impl Watched {
    pub fn new(inner: SharedBackend, changes: Arc<Changes>, relay: Option<Relay>) -> Self {
        Self {
            inner,
            changes,
            relay,
        }
    }

    fn written(&self, store: &str, key: &str) {
        self.changes.written(store, key);
        if let Some(relay) = &self.relay {
            relay.written(store, key);
        }
    }
}

impl Backend for Watched {
    fn get(&self, store: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.inner.get(store, key)
    }

    fn set(&self, store: &str, key: &str, value: &[u8]) -> KvResult<()> {
        self.inner.set(store, key, value)?;
        self.written(store, key);
        Ok(())
    }

    fn delete(&self, store: &str, key: &str) -> KvResult<()> {
        self.inner.delete(store, key)?;
        self.written(store, key);
        Ok(())
    }

    fn exists(&self, store: &str, key: &str) -> KvResult<bool> {
        self.inner.exists(store, key)
    }

    fn list_keys(&self, store: &str, cursor: Option<&str>) -> KvResult<KeyPage> {
        self.inner.list_keys(store, cursor)
    }

    fn get_many(&self, store: &str, keys: &[String]) -> KvResult<Vec<(String, Vec<u8>)>> {
        self.inner.get_many(store, keys)
    }

    fn set_many(&self, store: &str, entries: &[(String, Vec<u8>)]) -> KvResult<()> {
        self.inner.set_many(store, entries)?;
        for (key, _) in entries {
            self.written(store, key);
        }
        Ok(())
    }

    fn delete_many(&self, store: &str, keys: &[String]) -> KvResult<()> {
        self.inner.delete_many(store, keys)?;
        for key in keys {
            self.written(store, key);
        }
        Ok(())
    }

    fn increment(&self, store: &str, key: &str, delta: i64) -> KvResult<i64> {
        let value = self.inner.increment(store, key, delta)?;
        // Adding 0 is how a counter is read: nothing changed.
        if delta != 0 {
            self.written(store, key);
        }
        Ok(value)
    }

    fn swap_if(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool> {
        let swapped = self.inner.swap_if(store, key, expected, new)?;
        if swapped {
            self.written(store, key);
        }
        Ok(swapped)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn reads_are_local(&self) -> bool {
        self.inner.reads_are_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::memory::MemoryBackend;
    use std::time::Duration;

    fn watched() -> (Arc<Changes>, Watched) {
        let changes = Arc::new(Changes::default());
        let backend: SharedBackend = Arc::new(MemoryBackend::new());
        (changes.clone(), Watched::new(backend, changes, None))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn a_write_wakes_the_waiters_of_its_key_only() {
        let (changes, store) = watched();
        let since = changes.now();
        let short = Instant::now() + Duration::from_millis(300);
        let (a, b, ()) = tokio::join!(
            changes.wait("default", "k", since, soon()),
            changes.wait("default", "other", since, short),
            async {
                while changes.waiting() < 2 {
                    tokio::task::yield_now().await;
                }
                store.set("default", "k", b"v").unwrap();
            }
        );
        assert_eq!((a, b), (Woken::Written, Woken::TimedOut));
        assert_eq!(changes.waiting(), 0);
    }

    #[tokio::test]
    async fn reading_a_counter_is_no_write() {
        let (changes, store) = watched();
        let since = changes.now();
        assert_eq!(store.increment("default", "n", 0).unwrap(), 0);
        let short = Instant::now() + Duration::from_millis(200);
        assert_eq!(
            changes.wait("default", "n", since, short).await,
            Woken::TimedOut
        );
        assert_eq!(store.increment("default", "n", 1).unwrap(), 1);
        assert_eq!(
            changes.wait("default", "n", since, soon()).await,
            Woken::Written
        );
    }

    #[tokio::test]
    async fn a_write_between_the_look_and_the_park_is_not_missed() {
        let (changes, store) = watched();
        let since = changes.now();
        // The component looked; then the key was written; then the host parks.
        assert!(store.swap_if("default", "k", None, b"v").unwrap());
        assert_eq!(
            changes.wait("default", "k", since, soon()).await,
            Woken::Written
        );
        // A write to another label or a failed swap wakes nobody.
        let since = changes.now();
        store.set("other-label", "k", b"v").unwrap();
        assert!(!store.swap_if("default", "k", None, b"w").unwrap());
        let until = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            changes.wait("default", "k", since, until).await,
            Woken::TimedOut
        );
    }

    /// Keys other than `key` whose writes land in its slot.
    fn slot_mates(changes: &Changes, key: &str, n: usize) -> Vec<String> {
        let slot = |k: &str| changes.hasher.hash_one(scoped("default", k)) as usize % STAMP_SLOTS;
        (0..)
            .map(|i| format!("other-{i}"))
            .filter(|k| slot(k) == slot(key))
            .take(n)
            .collect()
    }

    #[tokio::test]
    async fn another_key_of_the_same_slot_wakes_no_one_unless_the_slot_overflows() {
        let (changes, store) = watched();
        let mates = slot_mates(&changes, "k", RecentWrites::WAYS);
        let brief = || Instant::now() + Duration::from_millis(50);
        let since = changes.now();
        store.set("default", &mates[0], b"v").unwrap();
        assert_eq!(
            changes.wait("default", "k", since, brief()).await,
            Woken::TimedOut
        );
        // Written, then pushed out of its slot by others: still seen.
        let since = changes.now();
        store.set("default", "k", b"v").unwrap();
        for mate in &mates {
            store.set("default", mate, b"v").unwrap();
        }
        assert_eq!(
            changes.wait("default", "k", since, soon()).await,
            Woken::Written
        );
        // Written, with fewer others after it than the slot keeps: seen.
        let since = changes.now();
        store.set("default", "k", b"w").unwrap();
        store.set("default", &mates[1], b"w").unwrap();
        assert_eq!(
            changes.wait("default", "k", since, soon()).await,
            Woken::Written
        );
    }

    #[tokio::test]
    async fn closing_ends_every_wait() {
        let (changes, _store) = watched();
        let since = changes.now();
        let (woken, ()) = tokio::join!(changes.wait("default", "k", since, soon()), async {
            while changes.waiting() < 1 {
                tokio::task::yield_now().await;
            }
            changes.close();
        });
        assert_eq!(woken, Woken::Closed);
        assert_eq!(
            changes.wait("default", "k", changes.now(), soon()).await,
            Woken::Closed
        );
    }
}
