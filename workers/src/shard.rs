//! The key-value state on Durable Objects: the keyspace is split over objects of the
//! `KvShard` class by what the keys belong to, and each key-value operation of the domain is
//! one call to the object that holds its key, or none when the domain's handler runs inside
//! that object (a group's message routes, [`crate::group`]).
//!
//! | keys | object | |
//! |---|---|---|
//! | `group/{g}/…` (log slots, head, tail, member records and list) | `group/{g}`: one per group | a group's log and members live together |
//! | `client/{c}` (the ID's claim: owner, group) | `client/{c}`: one per client | written on register only |
//! | `ratelimit/{scope}/{id}` | one per bucket | |
//! | `refresh/token/{digest}`, `refresh/session/{id}` | one per token, one per session | |
//! | `accounts/…` (users, API keys, their rosters) | `accounts` | few, read per API-key request |
//! | `index/{name}/{shard}/…`, `index/capcheck/{shard}` | one per index shard | appends that cannot lose a race |
//! | `stats/{name}/{shard}` | one per counter shard | |
//! | `health/probe/{n}` | one of [`PROBES`] | readiness, spread so that no object takes every probe |
//! | `index/{name}/cursor`, anything else | `registry` | read on the hot path, written once a bucket |
//!
//! Every object is strongly consistent and runs one operation at a time, so each key keeps
//! the atomic reads, writes, counters and compare-and-swap that `wasi:keyvalue` gives the
//! components: the domain's algorithms, written for exactly that, hold unchanged.

use std::cell::Cell;
use std::rc::Rc;

use mcp_edge_domain::store::{KvStore, StoreError};
use serde::{Deserialize, Serialize};
use worker::{
    DurableObject, Env, ObjectNamespace, Request, RequestInit, Response, Result, State,
    durable_object,
};

use crate::store::SqlKv;

/// The binding of the shards' namespace (`[[durable_objects.bindings]]` in wrangler.toml).
pub const BINDING: &str = "MCP_KV";

/// How many objects readiness probes are spread over.
pub const PROBES: u32 = 64;

/// The key a readiness probe reads: one of [`PROBES`], each in an object of its own.
pub fn probe_key(n: u32) -> String {
    format!("health/probe/{}", n % PROBES)
}

/// The object that holds `key`.
pub fn shard_for(key: &str) -> &str {
    let owner = |prefix: &str| {
        key.strip_prefix(prefix)
            .map(|rest| &key[..prefix.len() + rest.find('/').unwrap_or(rest.len())])
    };
    // `index/{name}/{shard}/…` and `stats/{name}/{shard}`: the first three segments, when
    // the third is a shard number.
    let sharded = |prefix: &str| {
        let rest = key.strip_prefix(prefix)?;
        let name_end = rest.find('/')?;
        let after = &rest[name_end + 1..];
        let shard_len = after.find('/').unwrap_or(after.len());
        let shard = &after[..shard_len];
        (!shard.is_empty() && shard.bytes().all(|b| b.is_ascii_digit()))
            .then(|| &key[..prefix.len() + name_end + 1 + shard_len])
    };
    owner("group/")
        .or_else(|| owner("client/"))
        .or_else(|| key.starts_with("ratelimit/").then_some(key))
        .or_else(|| key.starts_with("refresh/").then_some(key))
        .or_else(|| key.starts_with("health/probe/").then_some(key))
        .or_else(|| key.starts_with("accounts/").then_some("accounts"))
        .or_else(|| sharded("index/"))
        .or_else(|| sharded("stats/"))
        .unwrap_or("registry")
}

/// One key-value operation, as sent to a shard. Values travel hex-encoded.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    GetMany {
        keys: Vec<String>,
    },
    Set {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    Increment {
        key: String,
        delta: i64,
    },
    CompareAndSwap {
        key: String,
        expected: Option<String>,
        value: String,
    },
    /// Have the object's alarm look at `key` at `at` (`KvStore::schedule_cleanup`).
    Schedule {
        key: String,
        at: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Values { values: Vec<Option<String>> },
    Counter { counter: i64 },
    Swapped { swapped: bool },
    Done { done: bool },
    Failed { error: String },
}

fn unhex(s: &str) -> std::result::Result<Vec<u8>, StoreError> {
    hex::decode(s).map_err(|e| StoreError::Other(format!("shard protocol: {e}")))
}

fn apply(kv: &SqlKv, op: Op) -> std::result::Result<Reply, StoreError> {
    Ok(match op {
        Op::GetMany { keys } => Reply::Values {
            values: kv
                .get_many(&keys)?
                .into_iter()
                .map(|v| v.map(hex::encode))
                .collect(),
        },
        Op::Set { key, value } => {
            kv.set(&key, &unhex(&value)?)?;
            Reply::Done { done: true }
        }
        Op::Delete { key } => {
            kv.delete(&key)?;
            Reply::Done { done: true }
        }
        Op::Schedule { key, at } => {
            kv.schedule(&key, at)?;
            Reply::Done { done: true }
        }
        Op::Increment { key, delta } => Reply::Counter {
            counter: kv.increment(&key, delta)?,
        },
        Op::CompareAndSwap {
            key,
            expected,
            value,
        } => Reply::Swapped {
            swapped: kv.compare_and_swap(
                &key,
                expected.map(|e| unhex(&e)).transpose()?.as_deref(),
                &unhex(&value)?,
            )?,
        },
    })
}

#[durable_object]
pub struct KvShard {
    kv: SqlKv,
    /// For a group's object: its alarm, which runs the group's cleanup.
    state: State,
    /// Whether this instance has made sure its tables exist (once, not per operation).
    tables_ready: Cell<bool>,
    /// For the handlers a group's object runs ([`crate::group`]): configuration and the
    /// other objects.
    env: Env,
    /// The group's waiting receives and streams, woken by its writes.
    waiters: Rc<crate::waiters::Waiters>,
}

impl KvShard {
    /// The object's own rows, their tables made sure of.
    fn kv(&self) -> std::result::Result<&SqlKv, StoreError> {
        if !self.tables_ready.get() {
            self.kv.create_tables()?;
            self.tables_ready.set(true);
        }
        Ok(&self.kv)
    }

    fn run(&self, op: Op) -> std::result::Result<Reply, StoreError> {
        apply(self.kv()?, op)
    }
}

impl DurableObject for KvShard {
    fn new(state: State, env: Env) -> Self {
        Self {
            kv: SqlKv::new(state.storage().sql()),
            state,
            tables_ready: Cell::new(false),
            env,
            waiters: Rc::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path() == crate::group::PATH {
            let kv = self
                .kv()
                .map_err(|e| worker::Error::RustError(e.to_string()))?;
            let waiters = self.waiters.clone();
            return crate::group::serve(kv, &self.state, &self.env, waiters, req).await;
        }
        let reply = match req.json::<Op>().await {
            Err(e) => Reply::Failed {
                error: format!("shard protocol: {e}"),
            },
            Ok(op) => {
                let scheduled = match &op {
                    Op::Schedule { at, .. } => Some(*at),
                    _ => None,
                };
                let reply = self.run(op).unwrap_or_else(|e| Reply::Failed {
                    error: e.to_string(),
                });
                if let (Some(at), Reply::Done { .. }) = (scheduled, &reply) {
                    let now = js_sys::Date::now() as u64;
                    crate::alarm::arm(&self.state, now, at.max(now)).await?;
                }
                reply
            }
        };
        Response::from_json(&reply)
    }

    async fn alarm(&self) -> Result<Response> {
        let kv = self
            .kv()
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        crate::alarm::run(kv, &self.state, &self.env).await
    }
}

/// Whether a shard is one object for the whole deployment (the registry, the accounts, a
/// shard of an index or a counter) rather than one per group, client, bucket or token.
pub fn is_global(shard: &str) -> bool {
    ![
        "group/",
        "client/",
        "ratelimit/",
        "refresh/",
        "health/probe/",
    ]
    .iter()
    .any(|p| shard.starts_with(p))
}

/// Durable Object calls one request made: all of them, and those to global objects.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    pub all: u32,
    pub global: u32,
    /// Calls to global objects that change them (every operation but a read).
    pub global_writes: u32,
}

/// The domain's store seam over the shards, used by the Worker. It counts its calls, for the
/// request's log line.
pub struct ShardedKv {
    namespace: ObjectNamespace,
    calls: Cell<Calls>,
}

impl ShardedKv {
    pub fn open(env: &Env) -> std::result::Result<Self, StoreError> {
        env.durable_object(BINDING)
            .map(|namespace| Self {
                namespace,
                calls: Cell::new(Calls::default()),
            })
            .map_err(|e| StoreError::Other(format!("durable object binding {BINDING}: {e}")))
    }

    /// The calls made so far.
    pub fn calls(&self) -> Calls {
        self.calls.get()
    }

    /// One call of `req` to the object `shard`, counted.
    pub async fn fetch(
        &self,
        shard: &str,
        req: Request,
    ) -> std::result::Result<Response, StoreError> {
        let mut calls = self.calls.get();
        calls.all += 1;
        calls.global += u32::from(is_global(shard));
        self.calls.set(calls);
        let failed = |e: worker::Error| StoreError::Other(format!("shard {shard}: {e}"));
        let stub = self.namespace.get_by_name(shard).map_err(failed)?;
        stub.fetch_with_request(req).await.map_err(failed)
    }

    async fn call(&self, shard: &str, op: &Op) -> std::result::Result<Reply, StoreError> {
        let failed = |e: worker::Error| StoreError::Other(format!("shard {shard}: {e}"));
        let body = serde_json::to_string(op).map_err(|e| StoreError::Other(e.to_string()))?;
        let mut init = RequestInit::new();
        init.with_method(worker::Method::Post)
            .with_body(Some(body.into()));
        let req = Request::new_with_init("https://shard/op", &init).map_err(failed)?;
        if is_global(shard) && !matches!(op, Op::GetMany { .. }) {
            let mut calls = self.calls.get();
            calls.global_writes += 1;
            self.calls.set(calls);
        }
        let mut resp = self.fetch(shard, req).await?;
        match resp.json::<Reply>().await.map_err(failed)? {
            Reply::Failed { error } => Err(StoreError::Other(format!("shard {shard}: {error}"))),
            reply => Ok(reply),
        }
    }
}

fn unexpected(reply: Reply) -> StoreError {
    StoreError::Other(format!("shard protocol: unexpected reply {reply:?}"))
}

#[async_trait::async_trait(?Send)]
impl KvStore for ShardedKv {
    async fn get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, StoreError> {
        let mut values = self.get_many(&[key.to_owned()]).await?;
        Ok(values.pop().flatten())
    }

    async fn set(&self, key: &str, value: &[u8]) -> std::result::Result<(), StoreError> {
        let op = Op::Set {
            key: key.to_owned(),
            value: hex::encode(value),
        };
        self.call(shard_for(key), &op).await.map(drop)
    }

    async fn delete(&self, key: &str) -> std::result::Result<(), StoreError> {
        let op = Op::Delete {
            key: key.to_owned(),
        };
        self.call(shard_for(key), &op).await.map(drop)
    }

    /// One call per shard involved (a group's slots are all in one).
    async fn get_many(
        &self,
        keys: &[String],
    ) -> std::result::Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut shards: Vec<&str> = keys.iter().map(|k| shard_for(k)).collect();
        shards.sort_unstable();
        shards.dedup();
        // One call per object, all in flight at once: a batch over many objects (a group's
        // members' records) waits about one round trip, not one per object. The platform
        // queues what exceeds its limit of connections open at once.
        let calls = shards.into_iter().map(|shard| async move {
            let (positions, wanted): (Vec<usize>, Vec<String>) = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| shard_for(k) == shard)
                .map(|(i, k)| (i, k.clone()))
                .unzip();
            match self.call(shard, &Op::GetMany { keys: wanted }).await? {
                Reply::Values { values } if values.len() == positions.len() => {
                    Ok((positions, values))
                }
                other => Err(unexpected(other)),
            }
        });
        let mut out = vec![None; keys.len()];
        for (positions, values) in futures_util::future::try_join_all(calls).await? {
            for (i, value) in positions.into_iter().zip(values) {
                out[i] = value.map(|v| unhex(&v)).transpose()?;
            }
        }
        Ok(out)
    }

    async fn increment(&self, key: &str, delta: i64) -> std::result::Result<i64, StoreError> {
        let op = Op::Increment {
            key: key.to_owned(),
            delta,
        };
        match self.call(shard_for(key), &op).await? {
            Reply::Counter { counter } => Ok(counter),
            other => Err(unexpected(other)),
        }
    }

    /// Failed-login budgets and credentials are objects of their own: each one's alarm
    /// looks at it (one call to that object, never to a global one).
    async fn schedule_cleanup(
        &self,
        key: &str,
        at_ms: u64,
    ) -> std::result::Result<bool, StoreError> {
        if !(key.starts_with("ratelimit/") || key.starts_with("refresh/")) {
            return Ok(false);
        }
        let op = Op::Schedule {
            key: key.to_owned(),
            at: at_ms,
        };
        self.call(shard_for(key), &op).await.map(|_| true)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> std::result::Result<bool, StoreError> {
        let op = Op::CompareAndSwap {
            key: key.to_owned(),
            expected: expected.map(hex::encode),
            value: hex::encode(new),
        };
        match self.call(shard_for(key), &op).await? {
            Reply::Swapped { swapped } => Ok(swapped),
            other => Err(unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PROBES, is_global, probe_key, shard_for};

    #[test]
    fn keys_go_to_the_object_of_what_they_belong_to() {
        assert_eq!(shard_for("group/g1/msg/42"), "group/g1");
        assert_eq!(shard_for("group/g1/head"), "group/g1");
        assert_eq!(shard_for("client/alice"), "client/alice");
        assert_eq!(
            shard_for("ratelimit/addr/1.2.3.4"),
            "ratelimit/addr/1.2.3.4"
        );
        assert_eq!(
            shard_for("index/heartbeat/3/29000000/n"),
            "index/heartbeat/3"
        );
        assert_eq!(
            shard_for("index/messages/0/29000000/17"),
            "index/messages/0"
        );
        assert_eq!(shard_for("index/capcheck/5"), "index/capcheck/5");
        assert_eq!(shard_for("index/heartbeat/cursor"), "registry");
        assert_eq!(
            shard_for("stats/registered_clients/2"),
            "stats/registered_clients/2"
        );
        assert_eq!(shard_for("health/probe"), "registry");
        assert_eq!(shard_for(&probe_key(7)), "health/probe/7");
        assert_eq!(probe_key(PROBES + 1), probe_key(1));
        assert_eq!(shard_for("refresh/token/ab12"), "refresh/token/ab12");
        assert_eq!(shard_for("accounts/user/ann"), "accounts");
        assert_eq!(shard_for("accounts/keys"), "accounts");
    }

    #[test]
    fn objects_of_the_whole_deployment_are_told_apart() {
        for shard in [
            "registry",
            "accounts",
            "index/heartbeat/3",
            "stats/registered_clients/2",
        ] {
            assert!(is_global(shard), "{shard}");
        }
        for shard in [
            "group/g1",
            "client/alice",
            "ratelimit/addr/1.2.3.4",
            "refresh/token/ab",
            "health/probe/3",
        ] {
            assert!(!is_global(shard), "{shard}");
        }
    }
}
