//! Every backend keeps the same contract; run it against each.

use mcp_edge_provision::redis::Redis;

use super::memory::MemoryBackend;
use super::redis::RedisBackend;
use super::sqlite::SqliteBackend;
use super::{Backend, LIST_PAGE};

/// What the backends need while they run: the SQLite file's directory and a throwaway
/// redis-server (Debian package `redis-server`), both gone with the fixture.
struct Fixture {
    _dir: tempfile::TempDir,
    _redis: Redis,
}

fn backends() -> (Fixture, Vec<Box<dyn Backend>>) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteBackend::open(&dir.path().join("kv.sqlite3")).unwrap();
    let redis = Redis::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let redis_backend = RedisBackend::new(&redis.url(), None).unwrap();
    let fixture = Fixture {
        _dir: dir,
        _redis: redis,
    };
    (
        fixture,
        vec![
            Box::new(MemoryBackend::new()),
            Box::new(sqlite),
            Box::new(redis_backend),
        ],
    )
}

#[test]
fn point_operations_and_store_isolation() {
    let (_dir, backends) = backends();
    for b in backends {
        assert_eq!(b.get("default", "k").unwrap(), None);
        b.set("default", "k", b"v").unwrap();
        assert_eq!(b.get("default", "k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(b.exists("default", "k").unwrap());
        assert_eq!(b.get("other", "k").unwrap(), None, "{}", b.name());
        b.delete("default", "k").unwrap();
        assert!(!b.exists("default", "k").unwrap());
    }
}

#[test]
fn counters_and_compare_and_swap() {
    let (_dir, backends) = backends();
    for b in backends {
        assert_eq!(b.increment("s", "c", 0).unwrap(), 0);
        assert_eq!(b.increment("s", "c", 5).unwrap(), 5);
        assert_eq!(b.increment("s", "c", -2).unwrap(), 3);
        assert!(b.swap_if("s", "x", None, b"1").unwrap());
        assert!(!b.swap_if("s", "x", None, b"2").unwrap());
        assert!(b.swap_if("s", "x", Some(b"1"), b"2").unwrap());
        assert_eq!(b.get("s", "x").unwrap().as_deref(), Some(&b"2"[..]));
        b.set("s", "text", b"not a number").unwrap();
        assert!(b.increment("s", "text", 1).is_err(), "{}", b.name());
    }
}

#[test]
fn batches_and_listing() {
    let (_dir, backends) = backends();
    for b in backends {
        let entries: Vec<(String, Vec<u8>)> = (0..LIST_PAGE + 5)
            .map(|i| (format!("k{i:05}"), vec![1]))
            .collect();
        b.set_many("s", &entries).unwrap();
        let got = b
            .get_many("s", &["k00001".into(), "missing".into(), "k00000".into()])
            .unwrap();
        assert_eq!(
            got.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            vec!["k00001", "k00000"]
        );
        // Walk every page: each key once, whatever the backend's page size.
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = None;
        for _ in 0..100 {
            let page = b.list_keys("s", cursor.as_deref()).unwrap();
            assert!(page.keys.len() <= LIST_PAGE.max(2000), "{}", b.name());
            seen.extend(page.keys);
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), LIST_PAGE + 5, "{}", b.name());
        b.delete_many("s", &["k00000".into(), "k00001".into()])
            .unwrap();
        assert!(b.get_many("s", &["k00000".into()]).unwrap().is_empty());
    }
}

#[test]
fn concurrent_increments_never_lose_an_update() {
    let (_dir, backends) = backends();
    for b in backends {
        let b: std::sync::Arc<dyn Backend> = b.into();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let b = b.clone();
                s.spawn(move || {
                    for _ in 0..50 {
                        b.increment("s", "n", 1).unwrap();
                    }
                });
            }
        });
        assert_eq!(b.increment("s", "n", 0).unwrap(), 400, "{}", b.name());
    }
}

#[test]
fn sqlite_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.sqlite3");
    {
        let b = SqliteBackend::open(&path).unwrap();
        b.set("default", "k", b"durable").unwrap();
        b.increment("default", "n", 7).unwrap();
    }
    let b = SqliteBackend::open(&path).unwrap();
    assert_eq!(
        b.get("default", "k").unwrap().as_deref(),
        Some(&b"durable"[..])
    );
    assert_eq!(b.increment("default", "n", 0).unwrap(), 7);
}

#[test]
fn sqlite_group_commit_keeps_every_concurrent_write_and_isolates_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.sqlite3");
    {
        let b = SqliteBackend::open(&path).unwrap();
        std::thread::scope(|scope| {
            for t in 0..8 {
                let b = &b;
                scope.spawn(move || {
                    for i in 0..50 {
                        b.increment("default", "n", 1).unwrap();
                        b.set("default", &format!("k{t}-{i}"), b"v").unwrap();
                        assert!(
                            b.swap_if("default", &format!("once{t}-{i}"), None, b"1")
                                .unwrap()
                        );
                    }
                });
            }
        });
        // A failing operation (not a counter) fails alone; the batch around it commits.
        b.set("default", "text", b"not a counter").unwrap();
        assert!(b.increment("default", "text", 1).is_err());
        b.set("default", "after", b"ok").unwrap();
    }
    let b = SqliteBackend::open(&path).unwrap();
    assert_eq!(b.increment("default", "n", 0).unwrap(), 400);
    assert_eq!(
        b.get("default", "k7-49").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        b.get("default", "after").unwrap().as_deref(),
        Some(&b"ok"[..])
    );
    assert_eq!(
        b.get("default", "text").unwrap().as_deref(),
        Some(&b"not a counter"[..])
    );
}
