//! A group's object wakes its waiting receives and streams when a key of its log is written:
//! the Durable Object's side of [`mcp_edge_domain::park::KeyWaiter`]. A waiter awaits a timer
//! or its key, which lets the object take other requests meanwhile (a send among them). Each
//! write is recorded ([`RecentWrites`]), so a write that falls between a receive's look and
//! its wait is seen at once, as on the `mcp-edge` host (`kv::changes`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::future::{Either, select};
use mcp_edge_domain::ApiError;
use mcp_edge_domain::park::{KeyWaiter, MAX_WAITING_PER_CLIENT, RecentWrites, too_many_waiting};

/// Hash slots of the recent writes.
const SLOTS: usize = 256;

/// Requests that may wait at once in one group's object (per client:
/// [`MAX_WAITING_PER_CLIENT`]).
pub const MAX_WAITING: usize = 1000;

/// One waiting request's wake-up.
#[derive(Default)]
struct Signal {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

struct Fired(Rc<Signal>);

impl Future for Fired {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.fired.get() {
            return Poll::Ready(());
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The object's waiters, by key, and its write stamps.
pub struct Waiters {
    writes: Cell<u64>,
    recent: RefCell<RecentWrites>,
    waiting: RefCell<HashMap<String, Vec<Rc<Signal>>>>,
    /// Waiting requests per client of the group (`group/client`).
    holders: RefCell<HashMap<String, usize>>,
}

/// A waiting request's place, given back when dropped.
struct Place<'a> {
    waiters: &'a Waiters,
    holder: String,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut holders = self.waiters.holders.borrow_mut();
        if let Some(n) = holders.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                holders.remove(&self.holder);
            }
        }
    }
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            writes: Cell::new(0),
            recent: RefCell::new(RecentWrites::new(SLOTS)),
            waiting: RefCell::default(),
            holders: RefCell::default(),
        }
    }
}

fn hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Waiters {
    /// `key` was written: its waiters wake.
    pub fn written(&self, key: &str) {
        let count = self.writes.get() + 1;
        self.writes.set(count);
        self.recent.borrow_mut().record(hash(key), count);
        if let Some(signals) = self.waiting.borrow_mut().remove(key) {
            for signal in signals {
                signal.fire();
            }
        }
    }

    /// Whether `key` may have been written after `since`.
    fn written_since(&self, key: &str, since: u64) -> bool {
        self.recent.borrow().written_since(hash(key), since)
    }

    /// A place for one more waiting request of `holder`, or the refusal.
    fn hold(&self, holder: &str) -> Result<Place<'_>, ApiError> {
        let mut holders = self.holders.borrow_mut();
        if holders.values().sum::<usize>() >= MAX_WAITING {
            return Err(too_many_waiting(None));
        }
        let n = holders.entry(holder.to_owned()).or_default();
        if *n >= MAX_WAITING_PER_CLIENT {
            return Err(too_many_waiting(Some("this client")));
        }
        *n += 1;
        Ok(Place {
            waiters: self,
            holder: holder.to_owned(),
        })
    }

    fn register(&self, key: &str) -> Rc<Signal> {
        let signal = Rc::new(Signal::default());
        self.waiting
            .borrow_mut()
            .entry(key.to_owned())
            .or_default()
            .push(signal.clone());
        signal
    }

    fn forget(&self, key: &str, signal: &Rc<Signal>) {
        let mut waiting = self.waiting.borrow_mut();
        if let Some(signals) = waiting.get_mut(key) {
            signals.retain(|s| !Rc::ptr_eq(s, signal));
            if signals.is_empty() {
                waiting.remove(key);
            }
        }
    }
}

#[async_trait::async_trait(?Send)]
impl KeyWaiter for Waiters {
    fn now(&self) -> u64 {
        self.writes.get()
    }

    async fn wait(&self, key: &str, holder: &str, since: u64, ms: u64) -> Result<(), ApiError> {
        if self.written_since(key, since) {
            return Ok(());
        }
        let _place = self.hold(holder)?;
        let signal = self.register(key);
        let timer = worker::Delay::from(Duration::from_millis(ms));
        if let Either::Left(_) = select(timer, Fired(signal.clone())).await {
            self.forget(key, &signal);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys other than `key` whose writes land in its slot.
    fn slot_mates(key: &str, n: usize) -> Vec<String> {
        let slot = |k: &str| hash(k) % SLOTS as u64;
        (0..)
            .map(|i| format!("other-{i}"))
            .filter(|k| slot(k) == slot(key))
            .take(n)
            .collect()
    }

    #[test]
    fn a_write_since_the_look_is_seen_and_another_keys_is_not() {
        let w = Waiters::default();
        let mates = slot_mates("k", RecentWrites::WAYS);
        let since = w.now();
        w.written(&mates[0]);
        assert!(!w.written_since("k", since));
        w.written("k");
        assert!(w.written_since("k", since));
        // Pushed out of its slot by later writes: still counted as written.
        let since = w.now();
        w.written("k");
        for mate in &mates {
            w.written(mate);
        }
        assert!(w.written_since("k", since));
        assert!(!w.written_since("k", w.now()));
    }

    #[test]
    fn waits_are_capped_per_client_and_in_all() {
        let w = Waiters::default();
        let held: Vec<_> = (0..MAX_WAITING_PER_CLIENT)
            .map(|_| w.hold("g/a").expect("a place"))
            .collect();
        let refused = w.hold("g/a").err().expect("refused");
        assert_eq!((refused.status, refused.code), (429, "too_many_waiting"));
        drop(held);
        let others: Vec<_> = (0..MAX_WAITING)
            .map(|i| w.hold(&format!("g/{i}")).expect("a place"))
            .collect();
        assert_eq!(w.hold("g/a").err().expect("refused").status, 503);
        drop(others);
        assert!(w.hold("g/a").is_ok() && w.holders.borrow().is_empty());
    }

    #[test]
    fn a_write_wakes_the_waiters_of_its_key() {
        let w = Waiters::default();
        let (a, b) = (w.register("k"), w.register("other"));
        w.written("k");
        assert!(a.fired.get() && !b.fired.get());
        w.forget("other", &b);
        assert!(w.waiting.borrow().is_empty());
    }
}
