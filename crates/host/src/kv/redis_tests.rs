//! The Redis backend's own promises, against real redis-servers: reads stay reads (they work
//! on a read replica), a restarted server costs no call a failure, and the password may come
//! from outside the URL.

use std::time::{Duration, Instant};

use mcp_edge_provision::redis::Redis;

use super::Backend;
use super::redis::{RedisBackend, redacted};

fn start(args: &[&str]) -> Redis {
    Redis::start(args).unwrap_or_else(|e| panic!("{e}"))
}

fn backend(redis: &Redis) -> RedisBackend {
    RedisBackend::new(&redis.url(), None).unwrap()
}

#[test]
fn reads_work_on_a_read_replica_where_writes_are_refused() {
    let primary = start(&[]);
    let replica = start(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    let p = backend(&primary);
    p.set("s", "k", b"v").unwrap();
    p.increment("s", "n", 5).unwrap();
    let r = backend(&replica);
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.get("s", "k").ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the replica never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every read, counters included, is a read command.
    assert_eq!(r.increment("s", "n", 0).unwrap(), 5);
    assert_eq!(r.increment("s", "absent", 0).unwrap(), 0);
    assert!(r.exists("s", "k").unwrap());
    assert_eq!(r.get_many("s", &["k".into()]).unwrap().len(), 1);
    assert_eq!(r.list_keys("s", None).unwrap().keys.len(), 2);
    // The replica refuses writes: the test would pass for nothing if it took them.
    assert!(r.increment("s", "n", 1).is_err());
    assert!(r.set("s", "k", b"w").is_err());
}

#[test]
fn a_counter_read_of_a_value_that_is_no_counter_fails() {
    let redis = start(&[]);
    let b = backend(&redis);
    b.set("s", "text", b"hello").unwrap();
    assert!(b.increment("s", "text", 0).is_err());
    assert!(b.increment("s", "text", 1).is_err());
}

/// A backend call that says whether it succeeded.
type Call = dyn Fn(&RedisBackend) -> bool;

#[test]
fn after_a_restart_no_call_fails_whatever_its_kind() {
    let mut redis = start(&[]);
    let b = std::sync::Arc::new(backend(&redis));
    // Several pooled connections, all of them left pointing at the old server.
    let fill = |b: &std::sync::Arc<RedisBackend>| {
        std::thread::scope(|s| {
            for t in 0..8 {
                let b = b.clone();
                s.spawn(move || {
                    for i in 0..20 {
                        b.set("s", &format!("k{t}-{i}"), b"v").unwrap();
                    }
                });
            }
        });
    };
    let calls: [(&str, &Call); 5] = [
        ("get", &|b| b.get("s", "k").is_ok()),
        ("set", &|b| b.set("s", "k", b"v").is_ok()),
        ("increment", &|b| b.increment("s", "n", 1).is_ok()),
        ("compare-and-swap", &|b| {
            b.swap_if("s", "c", None, b"1").is_ok()
        }),
        ("counter read", &|b| b.increment("s", "n", 0).is_ok()),
    ];
    for (name, call) in calls {
        fill(&b);
        redis.restart().unwrap_or_else(|e| panic!("{e}"));
        // Past the idle check, as any call after an outage is.
        std::thread::sleep(Duration::from_millis(150));
        assert!(call(&b), "the first {name} after a restart failed");
        // And every pooled connection after it works too.
        fill(&b);
    }
}

#[test]
fn the_password_comes_from_the_url_or_from_outside_it() {
    let redis = start(&["--requirepass", "s3cret"]);
    let port = redis.port();
    let none = RedisBackend::new(&format!("redis://127.0.0.1:{port}"), None).unwrap();
    assert!(none.get("s", "k").is_err(), "no password, no access");
    let outside =
        RedisBackend::new(&format!("redis://127.0.0.1:{port}"), Some("s3cret".into())).unwrap();
    outside.set("s", "k", b"v").unwrap();
    let in_url = RedisBackend::new(
        &format!("redis://:s3cret@127.0.0.1:{port}"),
        Some("wrong".into()),
    )
    .unwrap();
    assert_eq!(in_url.get("s", "k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn logs_never_show_a_password() {
    assert_eq!(
        redacted("rediss://app:s3cret@cache.internal:6380/0"),
        "rediss://app:***@cache.internal:6380/0"
    );
    assert_eq!(redacted("redis://:s3cret@h:1"), "redis://:***@h:1");
    assert_eq!(redacted("redis://h:1"), "redis://h:1");
}
