//! Writes made by the other replicas on one Redis, for requests parked here to wake on
//! (`crate::kv::changes`): every replica publishes the keys it writes on one channel and
//! listens to it. Redis pub/sub delivers at most once, so this is best effort by nature: a
//! notice lost while a connection is down is made up for by waking every waiter here once the
//! subscription is back (each looks again), and at worst a waiting request finds its message
//! when its wait ends.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use super::changes::Changes;

/// The channel every replica publishes its writes on.
pub const CHANNEL: &str = "mcp-edge:changes";
/// Keys published in one round trip at most.
const BATCH: usize = 256;
/// The pause before connecting again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// This replica's side of the relay: what it writes goes out.
pub struct Relay {
    outbox: Sender<String>,
    origin: String,
}

/// A notice: who wrote, in which store, which key (NUL-separated: keys may hold anything
/// else).
fn notice(origin: &str, store: &str, key: &str) -> String {
    format!("{origin}\0{store}\0{key}")
}

fn parse(notice: &str) -> Option<(&str, &str, &str)> {
    let mut parts = notice.splitn(3, '\0');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

impl Relay {
    /// Starts publishing and listening on `client`'s server (a thread each); writes seen
    /// from other replicas are reported to `changes`.
    pub fn start(client: redis::Client, changes: Arc<Changes>) -> Relay {
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        let origin = hex::encode(id);
        let (outbox, queued) = channel();
        let publisher = client.clone();
        let spawned = std::thread::Builder::new()
            .name("kv-relay-out".into())
            .spawn(move || publish(&publisher, &queued));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the change relay's publisher");
        }
        let me = origin.clone();
        let spawned = std::thread::Builder::new()
            .name("kv-relay-in".into())
            .spawn(move || listen(&client, &me, &changes));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the change relay's listener");
        }
        Relay { outbox, origin }
    }

    /// Tells the other replicas that `key` of `store` was written.
    pub fn written(&self, store: &str, key: &str) {
        let _ = self.outbox.send(notice(&self.origin, store, key));
    }
}

/// Publishes queued notices, a batch per round trip, until the relay is dropped.
fn publish(client: &redis::Client, queued: &Receiver<String>) {
    let mut conn = None;
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        batch.extend(queued.try_iter().take(BATCH - 1));
        let mut pipe = redis::pipe();
        for notice in &batch {
            pipe.publish(CHANNEL, notice).ignore();
        }
        if conn.is_none() {
            conn = client
                .get_connection_with_timeout(Duration::from_secs(2))
                .ok();
        }
        let sent = conn
            .as_mut()
            .map(|c| pipe.query::<()>(c).is_ok())
            .unwrap_or(false);
        if !sent {
            // Lost notices only delay waiters elsewhere until their waits end.
            tracing::debug!(count = batch.len(), "change notices not published");
            conn = None;
        }
    }
}

/// Listens for other replicas' writes, reconnecting after failures, for the life of the
/// process.
fn listen(client: &redis::Client, me: &str, changes: &Changes) {
    loop {
        if let Err(e) = listen_once(client, me, changes) {
            tracing::warn!(error = %e, "change relay disconnected; reconnecting");
        }
        std::thread::sleep(RECONNECT_AFTER);
    }
}

fn listen_once(client: &redis::Client, me: &str, changes: &Changes) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut sub = conn.as_pubsub();
    sub.subscribe(CHANNEL)?;
    // Whatever was written while no subscription was open: every waiter looks again.
    changes.wake_all();
    loop {
        let msg = sub.get_message()?;
        let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else {
            continue;
        };
        if let Some((origin, store, key)) = parse(text)
            && origin != me
        {
            changes.written(store, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_their_writer_store_and_key() {
        let n = notice("ab12", "default", "group/g/msg/3");
        assert_eq!(parse(&n), Some(("ab12", "default", "group/g/msg/3")));
        assert_eq!(parse("no separators"), None);
    }
}
