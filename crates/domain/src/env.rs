//! Time and randomness, behind a trait so that tests control them. The system
//! implementation uses `std` time and `getrandom`, which map to `wasi:clocks` and
//! `wasi:random` inside a component.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Env {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// A fresh random identifier (128 bits, hex).
    fn random_id(&self) -> String;
    /// The platform's own limiter for request budgets, if it has one (else they are buckets
    /// in the store, [`crate::ratelimit::Limiter`]).
    fn platform_limiter(&self) -> Option<&dyn crate::ratelimit::PlatformLimiter> {
        None
    }
    /// The platform's own wake-ups on store writes, if it has them ([`crate::park::KeyWaiter`]):
    /// how a request waits where no host parks it, before any polling.
    fn waiter(&self) -> Option<&dyn crate::park::KeyWaiter> {
        None
    }
    /// Blocks for `ms` milliseconds: how a request waits where no host parks it
    /// ([`crate::park`]). `false` where the platform cannot block (the wait then ends).
    fn sleep_ms(&self, _ms: u64) -> bool {
        false
    }
}

pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn random_id(&self) -> String {
        let mut bytes = [0u8; 16];
        // getrandom fails only on a platform without an entropy source; IDs then still stay
        // unique within the process (time + counter), which is all message IDs need.
        if getrandom::fill(&mut bytes).is_err() {
            static FALLBACK: AtomicU64 = AtomicU64::new(0);
            bytes[..8].copy_from_slice(&self.now_ms().to_le_bytes());
            bytes[8..].copy_from_slice(&FALLBACK.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        }
        hex::encode(bytes)
    }

    /// A component's thread is its own (inside Spin, `wasi:clocks` blocks it, not the host).
    fn sleep_ms(&self, ms: u64) -> bool {
        std::thread::sleep(Duration::from_millis(ms));
        true
    }
}

/// RFC 3339 UTC timestamp with millisecond precision, as the API returns it.
pub fn rfc3339_ms(ms: u64) -> String {
    // The format ends at the year 9999 (and panics past it): later times show as its end.
    const LAST_MS: u64 = 253_402_300_799_999;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.min(LAST_MS)))
        .to_string()
}

#[cfg(any(test, feature = "fuzzing"))]
pub mod testing {
    use super::Env;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock tests move by hand, with sequential IDs. Sleeping moves the clock and runs
    /// the test's hook, if any, with the time after the sleep.
    pub struct FakeEnv {
        pub now: AtomicU64,
        next_id: AtomicU64,
        #[allow(clippy::type_complexity)]
        on_sleep: Mutex<Option<Box<dyn FnMut(u64) + Send>>>,
        pub sleeps: Mutex<Vec<u64>>,
    }

    impl FakeEnv {
        pub fn at(ms: u64) -> Self {
            Self {
                now: AtomicU64::new(ms),
                next_id: AtomicU64::new(1),
                on_sleep: Mutex::new(None),
                sleeps: Mutex::new(Vec::new()),
            }
        }

        pub fn on_sleep(&self, hook: impl FnMut(u64) + Send + 'static) {
            *self.on_sleep.lock().expect("hook") = Some(Box::new(hook));
        }

        pub fn advance(&self, ms: u64) {
            self.now.fetch_add(ms, Ordering::SeqCst);
        }
    }

    impl Env for FakeEnv {
        fn now_ms(&self) -> u64 {
            self.now.load(Ordering::SeqCst)
        }

        fn random_id(&self) -> String {
            format!("{:032x}", self.next_id.fetch_add(1, Ordering::SeqCst))
        }

        fn sleep_ms(&self, ms: u64) -> bool {
            self.advance(ms);
            self.sleeps.lock().expect("sleeps").push(ms);
            if let Some(hook) = self.on_sleep.lock().expect("hook").as_mut() {
                hook(self.now_ms());
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn any_time_formats_without_a_panic() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(SystemEnv.random_id(), SystemEnv.random_id());
        assert_eq!(SystemEnv.random_id().len(), 32);
    }
}
