//! A deterministic scheduler for the domain's interleaving tests. Every store operation
//! yields once before it runs, so a task advances by exactly one store call per poll; the
//! test decides, from a replayable list of choices, which task moves next, when time
//! passes, and which task dies between two of its steps (a crash: the process is gone, and
//! whatever it wrote so far stays written).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::store::{KvStore, StoreError};

/// Yields once: the scheduler's chance to run another task before the store call.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

fn step() -> YieldOnce {
    YieldOnce(false)
}

/// A store whose every operation is a scheduling point.
pub struct SteppedStore<'a> {
    pub inner: &'a dyn KvStore,
    /// Store calls made, for tests that bound the work.
    pub calls: Cell<u64>,
}

impl<'a> SteppedStore<'a> {
    pub fn new(inner: &'a dyn KvStore) -> Self {
        Self {
            inner,
            calls: Cell::new(0),
        }
    }

    async fn enter(&self) {
        step().await;
        self.calls.set(self.calls.get() + 1);
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for SteppedStore<'_> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.enter().await;
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.enter().await;
        self.inner.set(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.enter().await;
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.enter().await;
        self.inner.delete_many(keys).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.enter().await;
        self.inner.get_many(keys).await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.enter().await;
        self.inner.increment(key, delta).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.enter().await;
        self.inner.compare_and_swap(key, expected, new).await
    }

    fn group_local(&self) -> Option<&str> {
        self.inner.group_local()
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.enter().await;
        self.inner.keys_with_prefix(prefix).await
    }
}

pub type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What one scheduling choice does.
#[derive(Debug, Clone, Copy)]
pub enum Choice {
    /// Advance the `n`-th live task (modulo their number) by one step.
    Run(usize),
    /// Kill the `n`-th live crashable task between two steps.
    Crash(usize),
    /// Let this many milliseconds pass.
    Wait(u64),
}

/// How a task ended.
pub enum Ended<T> {
    Done(T),
    Crashed,
}

/// Runs `tasks` to the end under `choices` (then round-robin once they run out), and returns
/// how each ended, in order. `crashable[i]` says whether task `i` may be killed; `wait`
/// lets time pass.
pub fn run<'a, T>(
    tasks: Vec<(Task<'a, T>, bool)>,
    choices: &mut impl Iterator<Item = Choice>,
    mut wait: impl FnMut(u64),
) -> Vec<Ended<T>> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut slots: Vec<Option<(Task<'a, T>, bool)>> = tasks.into_iter().map(Some).collect();
    let mut ended: Vec<Option<Ended<T>>> = slots.iter().map(|_| None).collect();
    let mut next = 0usize;
    // Each store call takes two polls at most; a bound that a live-lock cannot pass.
    for _ in 0..1_000_000 {
        let live: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].is_some()).collect();
        if live.is_empty() {
            break;
        }
        let target = match choices.next() {
            Some(Choice::Run(n)) => live[n % live.len()],
            Some(Choice::Crash(n)) => {
                let crashable: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|&i| slots[i].as_ref().is_some_and(|(_, c)| *c))
                    .collect();
                if let Some(&i) = crashable.get(n % crashable.len().max(1)) {
                    slots[i] = None;
                    ended[i] = Some(Ended::Crashed);
                }
                continue;
            }
            Some(Choice::Wait(ms)) => {
                wait(ms);
                continue;
            }
            None => {
                next += 1;
                live[next % live.len()]
            }
        };
        if let Some((task, _)) = slots[target].as_mut()
            && let Poll::Ready(value) = task.as_mut().poll(&mut cx)
        {
            slots[target] = None;
            ended[target] = Some(Ended::Done(value));
        }
    }
    assert!(
        slots.iter().all(Option::is_none),
        "a task never finished: a live-lock"
    );
    ended
        .into_iter()
        .map(|e| e.unwrap_or(Ended::Crashed))
        .collect()
}
