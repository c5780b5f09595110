//! The scheduled cleanup: stale clients and expired messages go, live clients and recent
//! messages stay. On the runtime its schedule does it; on Workers the group's object does,
//! by its alarm (the Cron Trigger's pass no longer lists anything of a group: were the
//! alarm not to run, nothing here would expire).

use std::time::Duration;

use serde_json::json;

use crate::deployment::{Deployment, Kind, eventually};

pub fn scheduled_cleanup_expires_stale_clients_and_old_messages_only(kind: Kind) {
    let s = Deployment::start_scheduled(
        kind,
        &[
            ("client_timeout_seconds", "2"),
            ("message_retention_seconds", "3"),
            ("cleanup_bucket_seconds", "1"),
        ],
    );
    let t = s.token("wendy");
    for c in ["stale", "live", "sender"] {
        assert_eq!(s.register(&t, c, "g").status, 201);
    }
    for i in 0..3 {
        assert_eq!(s.send(&t, "sender", "g", json!({"old": i})).status, 202);
    }
    // `live` and `sender` keep heartbeating past the timeout and the retention.
    let mut live_cursor = 0;
    for _ in 0..20 {
        let r = s.receive(&t, "live", "g", Some(live_cursor));
        assert_eq!(r.status, 200, "{}", r.text());
        live_cursor = r.json()["next_after"].as_u64().unwrap_or(0);
        assert_eq!(s.register(&t, "sender", "g").status, 200);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        live_cursor, 3,
        "the live client got the messages while they lived"
    );
    assert_eq!(s.send(&t, "sender", "g", json!("fresh")).status, 202);

    s.fire_cron();
    let gone = eventually(Duration::from_secs(15), || {
        s.receive(&t, "live", "g", Some(live_cursor));
        matches!(s.receive(&t, "stale", "g", Some(0)).status, 404 | 410)
    });
    assert!(gone, "the stale client was not expired");
    let stale = s.receive(&t, "stale", "g", Some(0));
    // Expired (410), or, past the retention too, forgotten (404): either way not live.
    assert!(
        matches!(
            (stale.status, stale.error_code().as_str()),
            (410, "client_expired") | (404, "client_not_found")
        ),
        "{}",
        stale.text()
    );
    let live = s.receive(&t, "live", "g", Some(live_cursor)).json();
    assert_eq!(live["messages"][0]["payload"], "fresh");
    // The old messages are deleted for anyone reading from the start.
    let from_start = s.receive(&t, "live", "g", Some(0)).json();
    let payloads: Vec<_> = from_start["messages"]
        .as_array()
        .map(|m| m.iter().map(|m| m["payload"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        payloads,
        vec![json!("fresh")],
        "expired messages were deleted"
    );
    // ... and whoever asks for them is told what it missed.
    assert_eq!(
        from_start["missed"],
        json!({"first_seq": 1, "last_seq": 3, "count": 3, "first_held_seq": 4}),
        "{from_start}"
    );
}
