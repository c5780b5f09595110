//! Abuse limits: token buckets per client address and per subject, and harsher buckets for
//! failed logins: per user name and address (so that a stranger's failures never lock a user
//! out elsewhere), and a larger one per user name from anywhere (against guessing spread over
//! many addresses). A successful login spends neither. Buckets live in the key-value store (not in process memory), so every
//! instance of every component, on every platform, shares them.
//!
//! | key | value |
//! |---|---|
//! | `ratelimit/{scope}/{id}` | [`Bucket`] (JSON): milli-tokens left and when that was computed |
//!
//! A bucket that has refilled completely is indistinguishable from an absent one, so the
//! scheduled cleanup deletes it. The hot path lists a bucket in [`index::RATE_LIMITS`] only
//! when it creates it (an append that cannot lose a race); cleanup lists buckets that are not
//! full yet again under the time they will be.
//!
//! Addresses are limited per IPv4 address and per IPv6 /64: one IPv6 customer is handed a
//! whole /64, so a per-address bucket would give it 2^64 fresh buckets.

use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigSource};
use crate::error::ApiError;
use crate::index;
use crate::store::KvStore;

const MAX_CAS_ATTEMPTS: usize = 16;
const MILLI: u64 = 1000;

/// A token bucket's shape: `burst` tokens, one more every `refill_ms`. `burst == 0` turns the
/// limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub burst: u64,
    pub refill_ms: u64,
}

impl Policy {
    pub const OFF: Policy = Policy {
        burst: 0,
        refill_ms: 1,
    };

    fn capacity(&self) -> u64 {
        self.burst.saturating_mul(MILLI)
    }

    /// Milli-tokens in a bucket last seen at `at_ms` holding `tokens`, at `now_ms`.
    fn refilled(&self, tokens: u64, at_ms: u64, now_ms: u64) -> u64 {
        let gained = now_ms.saturating_sub(at_ms).saturating_mul(MILLI) / self.refill_ms;
        tokens.saturating_add(gained).min(self.capacity())
    }

    /// When a bucket holding `tokens` at `now_ms` is full again.
    fn full_at(&self, tokens: u64, now_ms: u64) -> u64 {
        let missing = self.capacity().saturating_sub(tokens);
        now_ms.saturating_add(missing.saturating_mul(self.refill_ms).div_ceil(MILLI))
    }

    /// Whole seconds until a bucket holding `tokens` has one token.
    fn retry_after_seconds(&self, tokens: u64) -> u64 {
        let missing = MILLI.saturating_sub(tokens);
        missing
            .saturating_mul(self.refill_ms)
            .div_ceil(MILLI)
            .div_ceil(1000)
            .max(1)
    }
}

/// The configured policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Every API request, per client address and again per token subject.
    pub requests: Policy,
    /// Failed logins for one user name from one client address.
    pub login_failures: Policy,
    /// Failed logins for one user name from all addresses together: a larger budget that
    /// stops guessing spread over many addresses.
    pub user_login_failures: Policy,
}

pub const DEFAULT_REQUESTS: Policy = Policy {
    burst: 60,
    refill_ms: 100,
};
pub const DEFAULT_LOGIN_FAILURES: Policy = Policy {
    burst: 5,
    refill_ms: 60_000,
};
/// 100 an hour.
pub const DEFAULT_USER_LOGIN_FAILURES: Policy = Policy {
    burst: 100,
    refill_ms: 36_000,
};

impl Limits {
    pub fn from_config(src: &dyn ConfigSource) -> Result<Self, ApiError> {
        let policy = |burst_key: &str, refill_key: &str, default: Policy| {
            let burst = config::number(src, burst_key, default.burst)?;
            let refill_ms = config::number(src, refill_key, default.refill_ms)?;
            if refill_ms == 0 {
                return Err(ApiError::misconfigured(format!(
                    "configuration variable {refill_key} must be positive"
                )));
            }
            Ok(Policy { burst, refill_ms })
        };
        Ok(Self {
            requests: policy(
                config::keys::RATE_LIMIT_BURST,
                config::keys::RATE_LIMIT_REFILL_MS,
                DEFAULT_REQUESTS,
            )?,
            login_failures: policy(
                config::keys::LOGIN_FAILURE_BURST,
                config::keys::LOGIN_FAILURE_REFILL_MS,
                DEFAULT_LOGIN_FAILURES,
            )?,
            user_login_failures: policy(
                config::keys::LOGIN_USER_FAILURE_BURST,
                config::keys::LOGIN_USER_FAILURE_REFILL_MS,
                DEFAULT_USER_LOGIN_FAILURES,
            )?,
        })
    }
}

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Requests from one client address.
    Address,
    /// Requests under one token subject.
    Subject,
    /// Failed logins for one user name from one client address (`{user}@{address}`).
    LoginFailurePair,
    /// Failed logins for one user name from anywhere.
    LoginFailureUser,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Address => "addr",
            Scope::Subject => "sub",
            Scope::LoginFailurePair => "login-pair",
            Scope::LoginFailureUser => "login-user",
        }
    }
}

/// A platform's own limiter for the request budgets (per address and per subject), where it
/// has one: Cloudflare's Rate Limiting binding counts them beside the Worker, so a request's
/// budget costs no call to the store (there, a Durable Object per bucket). It counts requests
/// in fixed windows per location; the store's buckets refill continuously and are one count
/// everywhere. Failed-login budgets always stay in the store: they outlast any window a
/// platform limiter has.
#[async_trait::async_trait(?Send)]
pub trait PlatformLimiter {
    /// One request under each bucket, in order; `429 rate_limited` with `Retry-After` when a
    /// bucket has none left (the later ones are left alone).
    async fn take(&self, buckets: &[(Scope, &str)]) -> Result<(), ApiError>;
}

/// The `429` a platform limiter answers with: the wait is at most its window.
pub fn platform_refusal(scope: Scope, window_seconds: u64) -> ApiError {
    too_many(scope, window_seconds.max(1))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Milli-tokens left at `at`.
    pub t: u64,
    /// Milliseconds since the epoch when `t` was computed.
    pub at: u64,
}

/// The client address to limit by, from `spin-client-addr` (`ip:port`, `[ip]:port` or a bare
/// IP) without the port, which changes with every connection: the IPv4 address, or the
/// IPv6 /64 network (`2001:db8:1:2::/64`). IPv4-mapped IPv6 addresses count as IPv4.
pub fn client_ip(addr: &str) -> Option<String> {
    use std::net::{IpAddr, Ipv6Addr, SocketAddr};
    let ip = match addr.parse::<SocketAddr>() {
        Ok(sock) => sock.ip(),
        Err(_) => addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()?,
    };
    Some(match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(network))
            }
        },
    })
}

pub struct Limiter<'a> {
    store: &'a dyn KvStore,
    now_ms: u64,
    index_bucket_ms: u64,
}

fn parse(bytes: &[u8]) -> Option<Bucket> {
    serde_json::from_slice(bytes).ok()
}

fn bucket_key(scope: Scope, id: &str) -> String {
    format!("ratelimit/{}/{id}", scope.name())
}

fn too_many(scope: Scope, retry_after: u64) -> ApiError {
    let (code, what) = match scope {
        Scope::Address => ("rate_limited", "too many requests from this address"),
        Scope::Subject => ("rate_limited", "too many requests for this user"),
        Scope::LoginFailurePair => (
            "too_many_login_failures",
            "too many failed logins for this user from this address",
        ),
        Scope::LoginFailureUser => (
            "too_many_login_failures",
            "too many failed logins for this user",
        ),
    };
    ApiError::new(429, code, format!("{what}; retry in {retry_after} s"))
        .with_header("retry-after", retry_after.to_string())
}

impl<'a> Limiter<'a> {
    pub fn new(store: &'a dyn KvStore, now_ms: u64, index_bucket_ms: u64) -> Self {
        Self {
            store,
            now_ms,
            index_bucket_ms: index_bucket_ms.max(1),
        }
    }

    async fn load(&self, key: &str) -> Result<Option<Bucket>, ApiError> {
        Ok(self.store.get(key).await?.as_deref().and_then(parse))
    }

    /// Takes one token for `id` in `scope`, or answers 429 with `Retry-After`.
    pub async fn take(&self, scope: Scope, id: &str, policy: Policy) -> Result<(), ApiError> {
        if policy.burst == 0 {
            return Ok(());
        }
        let key = bucket_key(scope, id);
        self.take_at(scope, &key, policy, None).await
    }

    /// Takes a token from each bucket, in order (the first that is empty answers 429 and the
    /// later ones are left alone), reading them all in one batch call.
    pub async fn take_each(&self, buckets: &[(Scope, &str, Policy)]) -> Result<(), ApiError> {
        let live: Vec<(Scope, String, Policy)> = buckets
            .iter()
            .filter(|(_, _, policy)| policy.burst > 0)
            .map(|(scope, id, policy)| (*scope, bucket_key(*scope, id), *policy))
            .collect();
        let keys: Vec<String> = live.iter().map(|(_, key, _)| key.clone()).collect();
        let values = self.store.get_many(&keys).await?;
        for ((scope, key, policy), value) in live.iter().zip(values) {
            self.take_at(*scope, key, *policy, Some(value)).await?;
        }
        Ok(())
    }

    /// Takes a token from the bucket at `key`; `read`: its value, if already read.
    async fn take_at(
        &self,
        scope: Scope,
        key: &str,
        policy: Policy,
        mut read: Option<Option<Vec<u8>>>,
    ) -> Result<(), ApiError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let raw = match read.take() {
                Some(raw) => raw,
                None => self.store.get(key).await?,
            };
            // An unreadable bucket counts as full (and is replaced): limits must never lock
            // anyone out for good.
            let tokens = match raw.as_deref().and_then(parse) {
                Some(b) => policy.refilled(b.t, b.at, self.now_ms),
                None => policy.capacity(),
            };
            if tokens < MILLI {
                return Err(too_many(scope, policy.retry_after_seconds(tokens)));
            }
            let next = Bucket {
                t: tokens - MILLI,
                at: self.now_ms,
            };
            let bytes = serde_json::to_vec(&next).unwrap_or_default();
            if self
                .store
                .compare_and_swap(key, raw.as_deref(), &bytes)
                .await?
            {
                if raw.is_none() {
                    self.list(key, policy.full_at(next.t, self.now_ms)).await?;
                }
                return Ok(());
            }
        }
        // Every failed swap means another request took a token meanwhile, and an empty bucket
        // refuses without writing, so contention only happens while tokens are left: letting
        // this one through overdraws the bucket by at most the requests in flight.
        Ok(())
    }

    /// Whether `id` has a token left in `scope`, without taking it.
    pub async fn check(&self, scope: Scope, id: &str, policy: Policy) -> Result<(), ApiError> {
        if policy.burst == 0 {
            return Ok(());
        }
        if let Some(b) = self.load(&bucket_key(scope, id)).await? {
            let tokens = policy.refilled(b.t, b.at, self.now_ms);
            if tokens < MILLI {
                return Err(too_many(scope, policy.retry_after_seconds(tokens)));
            }
        }
        Ok(())
    }

    async fn list(&self, key: &str, full_at: u64) -> Result<(), ApiError> {
        if self.store.schedule_cleanup(key, full_at).await? {
            return Ok(()); // its object looks at it then
        }
        let bucket = full_at / self.index_bucket_ms;
        Ok(index::RATE_LIMITS.add(self.store, bucket, key).await?)
    }

    /// For cleanup: deletes the bucket at `key` if it is full again by now (whatever its
    /// policy: a bucket is full when refilling could add nothing, which the stored time says),
    /// or lists it again under the time it will be. Returns whether it was deleted.
    pub(crate) async fn expire(&self, key: &str, policies: &Limits) -> Result<bool, ApiError> {
        let Some(b) = self.load(key).await? else {
            self.store.delete(key).await?;
            return Ok(true);
        };
        let policy = if key.starts_with("ratelimit/login-user/") {
            policies.user_login_failures
        } else if key.starts_with("ratelimit/login-") {
            policies.login_failures
        } else {
            policies.requests
        };
        let full_at = if policy.burst == 0 {
            self.now_ms
        } else {
            policy.full_at(policy.refilled(b.t, b.at, self.now_ms), self.now_ms)
        };
        if full_at <= self.now_ms {
            self.store.delete(key).await?;
            Ok(true)
        } else {
            self.list(key, full_at).await?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const P: Policy = Policy {
        burst: 3,
        refill_ms: 1000,
    };

    #[pollster::test]
    async fn burst_then_refill_then_429_with_retry_after() {
        let store = MemoryStore::new();
        let at = |ms| Limiter::new(&store, ms, 60_000);
        for _ in 0..3 {
            at(0).take(Scope::Address, "1.2.3.4", P).await.unwrap();
        }
        let err = at(0).take(Scope::Address, "1.2.3.4", P).await.unwrap_err();
        assert_eq!((err.status, err.code), (429, "rate_limited"));
        assert!(err.headers.contains(&("retry-after", "1".into())));
        // Another address and another scope have their own buckets.
        at(0).take(Scope::Address, "5.6.7.8", P).await.unwrap();
        at(0).take(Scope::Subject, "1.2.3.4", P).await.unwrap();
        // Half a token later: still limited, told to wait the rest.
        assert_eq!(
            at(500)
                .take(Scope::Address, "1.2.3.4", P)
                .await
                .unwrap_err()
                .status,
            429
        );
        at(1000).take(Scope::Address, "1.2.3.4", P).await.unwrap();
        assert_eq!(
            at(1000)
                .take(Scope::Address, "1.2.3.4", P)
                .await
                .unwrap_err()
                .status,
            429
        );
        // A long pause refills to the burst, never beyond.
        for _ in 0..3 {
            at(100_000)
                .take(Scope::Address, "1.2.3.4", P)
                .await
                .unwrap();
        }
        assert!(
            at(100_000)
                .take(Scope::Address, "1.2.3.4", P)
                .await
                .is_err()
        );
    }

    #[pollster::test]
    async fn check_does_not_spend_and_off_means_off() {
        let store = MemoryStore::new();
        let limiter = Limiter::new(&store, 0, 60_000);
        let one = Policy {
            burst: 1,
            refill_ms: 60_000,
        };
        limiter
            .check(Scope::LoginFailureUser, "alice", one)
            .await
            .unwrap();
        limiter
            .check(Scope::LoginFailureUser, "alice", one)
            .await
            .unwrap();
        limiter
            .take(Scope::LoginFailureUser, "alice", one)
            .await
            .unwrap();
        let err = limiter
            .check(Scope::LoginFailureUser, "alice", one)
            .await
            .unwrap_err();
        assert_eq!(err.code, "too_many_login_failures");
        assert!(err.headers.contains(&("retry-after", "60".into())));
        for _ in 0..1000 {
            limiter
                .take(Scope::Address, "x", Policy::OFF)
                .await
                .unwrap();
        }
        assert!(store.get("ratelimit/addr/x").await.unwrap().is_none());
    }

    /// A store on which some other request always wins the swap.
    struct AlwaysRaced(MemoryStore);

    #[async_trait::async_trait(?Send)]
    impl KvStore for AlwaysRaced {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
            self.0.get(key).await
        }
        async fn set(&self, key: &str, value: &[u8]) -> Result<(), crate::store::StoreError> {
            self.0.set(key, value).await
        }
        async fn delete(&self, key: &str) -> Result<(), crate::store::StoreError> {
            self.0.delete(key).await
        }
        async fn get_many(
            &self,
            keys: &[String],
        ) -> Result<Vec<Option<Vec<u8>>>, crate::store::StoreError> {
            self.0.get_many(keys).await
        }
        async fn increment(&self, key: &str, delta: i64) -> Result<i64, crate::store::StoreError> {
            self.0.increment(key, delta).await
        }
        async fn compare_and_swap(
            &self,
            _: &str,
            _: Option<&[u8]>,
            _: &[u8],
        ) -> Result<bool, crate::store::StoreError> {
            Ok(false)
        }
    }

    #[pollster::test]
    async fn contention_while_tokens_are_left_is_not_a_refusal() {
        let store = AlwaysRaced(MemoryStore::new());
        Limiter::new(&store, 0, 60_000)
            .take(Scope::Subject, "busy", P)
            .await
            .unwrap();
        // An empty bucket refuses without trying to write.
        let empty = serde_json::to_vec(&Bucket { t: 0, at: 0 }).unwrap();
        store.0.set("ratelimit/sub/busy", &empty).await.unwrap();
        assert_eq!(
            Limiter::new(&store, 0, 60_000)
                .take(Scope::Subject, "busy", P)
                .await
                .unwrap_err()
                .status,
            429
        );
    }

    #[pollster::test]
    async fn client_ip_drops_the_port_and_groups_ipv6_by_64() {
        assert_eq!(client_ip("127.0.0.1:5000").as_deref(), Some("127.0.0.1"));
        assert_eq!(client_ip("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(client_ip("[::1]:80").as_deref(), Some("::/64"));
        assert_eq!(
            client_ip("[::ffff:10.1.2.3]:80").as_deref(),
            Some("10.1.2.3")
        );
        // Every address of one /64 is one client; the next /64 is another.
        let net = Some("2001:db8:1:2::/64");
        assert_eq!(client_ip("[2001:db8:1:2::1]:443").as_deref(), net);
        assert_eq!(
            client_ip("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1").as_deref(),
            net
        );
        assert_eq!(client_ip("2001:db8:1:2:abcd::9").as_deref(), net);
        assert_eq!(client_ip("[2001:db8:1:2::9]").as_deref(), net);
        assert_eq!(
            client_ip("[2001:db8:1:3::1]:443").as_deref(),
            Some("2001:db8:1:3::/64")
        );
        assert_eq!(client_ip("not an address"), None);
    }

    #[pollster::test]
    async fn one_ipv6_64_shares_one_bucket() {
        let store = MemoryStore::new();
        let limiter = Limiter::new(&store, 0, 60_000);
        for host in 1..=3 {
            let ip = client_ip(&format!("[2001:db8::{host}]:5000")).unwrap();
            limiter.take(Scope::Address, &ip, P).await.unwrap();
        }
        let ip = client_ip("[2001:db8::ffff]:6000").unwrap();
        let err = limiter.take(Scope::Address, &ip, P).await.unwrap_err();
        assert_eq!(err.status, 429);
    }

    #[pollster::test]
    async fn buckets_are_indexed_once_and_expire_when_full() {
        let store = MemoryStore::new();
        let limits = Limits {
            requests: P,
            login_failures: DEFAULT_LOGIN_FAILURES,
            user_login_failures: DEFAULT_USER_LOGIN_FAILURES,
        };
        Limiter::new(&store, 0, 1000)
            .take(Scope::Address, "a", P)
            .await
            .unwrap();
        Limiter::new(&store, 10, 1000)
            .take(Scope::Address, "a", P)
            .await
            .unwrap();
        let listed = async |bucket| {
            let shard = index::shard_of("ratelimit/addr/a");
            index::RATE_LIMITS
                .read(&store, bucket, shard)
                .await
                .unwrap()
                .ids
        };
        // Created at 0 with 2 of 3 left: full at 1000 -> listed in bucket 1 only.
        assert_eq!(listed(1).await, [Some("ratelimit/addr/a".to_owned())]);
        assert!(listed(0).await.is_empty());
        // At 1000 it is not full (the second take happened at 10): listed again.
        assert!(
            !Limiter::new(&store, 1000, 1000)
                .expire("ratelimit/addr/a", &limits)
                .await
                .unwrap()
        );
        assert_eq!(listed(2).await.len(), 1);
        assert!(
            Limiter::new(&store, 2010, 1000)
                .expire("ratelimit/addr/a", &limits)
                .await
                .unwrap()
        );
        assert!(store.get("ratelimit/addr/a").await.unwrap().is_none());
    }
}
