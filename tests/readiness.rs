//! Readiness follows the store: 503 while it is unreachable, 200 again once it is back,
//! without a restart. Uses the Redis backend with a real redis-server that the test stops
//! and starts.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{RedisServer, server};

fn wait_for_status(s: &support::Server, path: &str, status: u16) -> support::Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.get(path, &[]);
        if r.status == status || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readiness_reports_an_unavailable_store_and_recovers_by_itself() {
    let redis = RedisServer::start();
    let port = redis.port();
    let s = server("spin.toml")
        .arg("--kv")
        .arg(&redis.url())
        .arg("--cleanup-schedule")
        .arg("off")
        .start();
    let t = s.token("wendy");
    assert_eq!(s.get("/health/ready", &[]).status, 200);
    assert_eq!(s.register(&t, "a", "g").status, 201);
    assert_eq!(s.register(&t, "b", "g").status, 201);
    assert_eq!(s.send(&t, "a", "g", json!("over redis")).status, 202);
    assert_eq!(
        s.receive(&t, "b", "g", Some(0)).json()["messages"][0]["payload"],
        "over redis"
    );

    drop(redis);
    let down = wait_for_status(&s, "/health/ready", 503);
    assert_eq!(
        (down.status, down.error_code().as_str()),
        (503, "not_ready")
    );
    assert_eq!(
        s.get("/health", &[]).status,
        200,
        "liveness does not depend on the store"
    );
    let failed = s.register(&t, "c", "g");
    assert_eq!(
        (failed.status, failed.error_code().as_str()),
        (503, "store_unavailable")
    );

    let _redis = RedisServer::start_on(port);
    let up = wait_for_status(&s, "/health/ready", 200);
    assert_eq!(up.status, 200, "readiness recovered without a restart");
    assert_eq!(s.register(&t, "c", "g").status, 201);
}
