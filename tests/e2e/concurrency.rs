//! Many clients sending and receiving at once through the runtime: no message is lost or
//! duplicated, and each sender's messages arrive in order.

use std::collections::HashMap;

use serde_json::json;

use crate::deployment::{Deployment, Kind};

pub fn concurrent_senders_and_receivers_lose_and_duplicate_nothing(kind: Kind) {
    const SENDERS: usize = 6;
    const PER_SENDER: u64 = 25;
    const RECEIVERS: usize = 3;
    let s = Deployment::start(kind, &[]);
    let token = s.token("wendy");
    for r in 0..RECEIVERS {
        assert_eq!(s.register(&token, &format!("r{r}"), "crowd").status, 201);
    }
    for w in 0..SENDERS {
        assert_eq!(s.register(&token, &format!("s{w}"), "crowd").status, 201);
    }
    std::thread::scope(|scope| {
        for w in 0..SENDERS {
            let (s, token) = (&s, &token);
            scope.spawn(move || {
                for i in 0..PER_SENDER {
                    let r = s.send(token, &format!("s{w}"), "crowd", json!([w, i]));
                    assert_eq!(r.status, 202, "{}", r.text());
                }
            });
        }
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|r| {
                let (s, token) = (&s, &token);
                scope.spawn(move || {
                    let mut after = 0;
                    let mut got = Vec::new();
                    for _ in 0..5_000 {
                        let reply = s.receive(token, &format!("r{r}"), "crowd", Some(after));
                        assert_eq!(reply.status, 200, "{}", reply.text());
                        let body = reply.json();
                        after = body["next_after"].as_u64().unwrap();
                        got.extend(
                            body["messages"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|m| m["payload"].clone()),
                        );
                        if got.len() >= SENDERS * PER_SENDER as usize {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    got
                })
            })
            .collect();
        for handle in receivers {
            let got = handle.join().unwrap();
            assert_eq!(got.len(), SENDERS * PER_SENDER as usize, "exactly once");
            let mut next: HashMap<u64, u64> = HashMap::new();
            for p in got {
                let (w, i) = (p[0].as_u64().unwrap(), p[1].as_u64().unwrap());
                let expected = next.entry(w).or_insert(0);
                assert_eq!(i, *expected, "sender {w} in order");
                *expected += 1;
            }
        }
    });
}
