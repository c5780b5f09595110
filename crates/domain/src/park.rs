//! Waiting for messages without holding an instance: the contract between a component and a
//! host that parks requests (`mcp-edge`), and what a component does where no host parks
//! (Spin: a bounded poll with backoff, [`PollBackoff`]).
//!
//! A host that can park a request sets the request header [`PARK_HEADER`] to the
//! milliseconds the request has already waited (`0` on its first dispatch), replacing any a
//! client sent. A component with nothing to answer yet then answers with a [`Park`]: status
//! 204 and its own [`PARK_HEADER`], `<ms>; key=<store key>; holder=<client>`. The host holds
//! the request, with no instance, until that key of the default store is written or the
//! milliseconds run out, and dispatches it again with the time waited so far. The holder is
//! who waits, for the host's per-client cap. The host never shows a park answer to a client.
//!
//! A stream is parked between its segments: a component answers a segment with status 200,
//! its events as the body and the same header with `; after=<seq>`. The host sends the head
//! and body of the first segment to the client, the body of each later one, and dispatches
//! the request again, once the key is written or the milliseconds run out, with
//! `<ms waited>; after=<seq>` in the request header, so that the component reads on from
//! there. A segment without the header ends the stream.

use crate::env::Env;
use crate::error::ApiError;
use crate::http::{Request, Response};

/// The request header a parking host sets and the answer header a component parks with.
pub const PARK_HEADER: &str = "mcp-edge-park";

/// A platform that wakes a waiting request itself when a key of the store is written, with
/// no host that parks it (a Cloudflare Durable Object, whose requests interleave while one
/// awaits): the request waits inside its own call instead of polling.
#[async_trait::async_trait(?Send)]
pub trait KeyWaiter {
    /// A stamp for [`KeyWaiter::wait`], taken before a look at the store.
    fn now(&self) -> u64;
    /// Returns once `key` is written after `since` (at once if it already was), or after `ms`;
    /// refused (`too_many_waiting`) when `holder` (a group's client) or the platform already
    /// has as many waiting as it may.
    async fn wait(&self, key: &str, holder: &str, since: u64, ms: u64) -> Result<(), ApiError>;
}

/// Waiting requests at once: per client of a group, and in all (where the platform counts
/// them, as a Durable Object does for its group; `mcp-edge` counts per server).
pub const MAX_WAITING_PER_CLIENT: usize = 4;

/// The refusal of a wait beyond a cap: 429 for one client's, 503 for everyone's.
pub fn too_many_waiting(whose: Option<&str>) -> ApiError {
    match whose {
        Some(whose) => ApiError::new(
            429,
            "too_many_waiting",
            format!("{whose} already has as many waiting requests as it may"),
        ),
        None => ApiError::new(
            503,
            "too_many_waiting",
            "the server holds as many waiting requests as it may; try again shortly",
        ),
    }
    .with_header("retry-after", "1")
}

/// What a platform that wakes waiters remembers of recent writes, so that a write falling
/// between a request's look at the store and its wait is not missed: per hash slot, the last
/// [`RecentWrites::WAYS`] writes, each its key's hash and its count. A wait for a key ends at
/// once if that key was written since the look, or if its slot saw more writes since than it
/// keeps; another key's write to the slot does not end it (with many waiters whose own
/// requests write, that would wake them in turn forever).
pub struct RecentWrites {
    slots: Box<[[(u64, u64); RecentWrites::WAYS]]>,
}

impl RecentWrites {
    pub const WAYS: usize = 4;

    pub fn new(slots: usize) -> Self {
        Self {
            slots: vec![[(0, 0); Self::WAYS]; slots.max(1)].into_boxed_slice(),
        }
    }

    fn slot(&self, hash: u64) -> usize {
        (hash % self.slots.len() as u64) as usize
    }

    /// The key of `hash` was written, as write number `count` (counts only grow, from 1).
    pub fn record(&mut self, hash: u64, count: u64) {
        let i = self.slot(hash);
        let slot = &mut self.slots[i];
        // In place of this key's earlier write, else of the slot's oldest.
        let way = slot
            .iter()
            .position(|&(h, _)| h == hash)
            .or_else(|| (0..Self::WAYS).min_by_key(|&w| slot[w].1))
            .unwrap_or(0);
        slot[way] = (hash, count);
    }

    /// Whether the key of `hash` may have been written after write number `since`.
    pub fn written_since(&self, hash: u64, since: u64) -> bool {
        let slot = &self.slots[self.slot(hash)];
        slot.iter().any(|&(h, count)| h == hash && count > since)
            // Every way was written since: this key's write may have been pushed out.
            || slot.iter().all(|&(_, count)| count > since)
    }
}

/// The first pause of a component that polls (where no host parks), doubled after each empty
/// look up to [`POLL_MAX_MS`].
pub const POLL_FIRST_MS: u64 = 25;
pub const POLL_MAX_MS: u64 = 1000;

/// What the host said about this request: it can park it, it has waited this long, and (a
/// stream's later dispatch) its last segment ended after this sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parkable {
    pub waited_ms: u64,
    pub after: Option<u64>,
}

impl Parkable {
    /// `None` where no host parks (the header is absent or malformed).
    pub fn of(req: &Request) -> Option<Self> {
        let mut parts = req.header(PARK_HEADER)?.split(';').map(str::trim);
        let waited_ms = parts.next()?.parse().ok()?;
        let after = match parts.next().map(|p| p.split_once('=')) {
            None => None,
            Some(Some(("after", n))) => Some(n.parse().ok()?),
            Some(_) => return None,
        };
        Some(Self { waited_ms, after })
    }

    /// The request header value the host sends.
    pub fn header_value(&self) -> String {
        match self.after {
            Some(after) => format!("{}; after={after}", self.waited_ms),
            None => self.waited_ms.to_string(),
        }
    }
}

/// A component's request to be parked: until `key` is written, for at most `wait_ms` (with no
/// key, for `wait_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Park {
    pub wait_ms: u64,
    pub key: String,
    pub holder: String,
    /// A stream's position: where the next dispatch reads on.
    pub after: Option<u64>,
}

impl Park {
    fn header_value(&self) -> String {
        let mut value = self.wait_ms.to_string();
        if !self.key.is_empty() {
            value.push_str(&format!("; key={}", self.key));
        }
        value.push_str(&format!("; holder={}", self.holder));
        if let Some(after) = self.after {
            value.push_str(&format!("; after={after}"));
        }
        value
    }

    /// The answer that asks the host to park the request (never shown to a client).
    pub fn response(&self) -> Response {
        let mut resp = Response::new(204);
        resp.headers
            .push((PARK_HEADER.to_owned(), self.header_value()));
        resp
    }

    /// A stream's segment: `resp` goes to the client (its head only with the first), then
    /// the request is parked.
    pub fn segment(&self, mut resp: Response) -> Response {
        resp.headers
            .push((PARK_HEADER.to_owned(), self.header_value()));
        resp
    }

    /// Reads a park answer's header value (the host's side); `None` if it is malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';').map(str::trim);
        let wait_ms = parts.next()?.parse().ok()?;
        let (mut key, mut holder, mut after) = (None, None, None);
        for part in parts {
            match part.split_once('=') {
                Some(("key", k)) if !k.is_empty() => key = Some(k.to_owned()),
                Some(("holder", h)) => holder = Some(h.to_owned()),
                Some(("after", n)) => after = Some(n.parse().ok()?),
                _ => return None,
            }
        }
        Some(Self {
            wait_ms,
            key: key.unwrap_or_default(),
            holder: holder.unwrap_or_default(),
            after,
        })
    }

    /// Whether `resp` is a park answer.
    pub fn is_park(resp: &Response) -> bool {
        resp.status == 204 && resp.header(PARK_HEADER).is_some()
    }

    /// Whether `resp` is a stream's segment with more to follow.
    pub fn is_segment(resp: &Response) -> bool {
        resp.status == 200 && resp.header(PARK_HEADER).is_some()
    }
}

/// How a request waits for the next message where no host parks it: woken by the platform
/// where it can be ([`KeyWaiter`], a Durable Object), else polling with [`PollBackoff`].
pub struct Waiting<'a> {
    env: &'a dyn Env,
    since: Option<u64>,
    backoff: PollBackoff,
}

impl<'a> Waiting<'a> {
    pub fn new(env: &'a dyn Env) -> Self {
        Self {
            env,
            since: None,
            backoff: PollBackoff::default(),
        }
    }

    /// Called before each look at the store: writes from here on end the next wait.
    pub fn look(&mut self) {
        self.since = self.env.waiter().map(|w| w.now());
    }

    /// After a look that found nothing: waits up to `left_ms` for `key` to be written, as
    /// `holder`. `Ok(false)`: the platform cannot wait, answer now.
    pub async fn wait(&mut self, key: &str, holder: &str, left_ms: u64) -> Result<bool, ApiError> {
        if let (Some(waiter), Some(since)) = (self.env.waiter(), self.since) {
            waiter.wait(key, holder, since, left_ms).await?;
            return Ok(true);
        }
        Ok(self.env.sleep_ms(self.backoff.next(left_ms)))
    }
}

/// The pauses of a component that polls: 25 ms, doubling, at most a second, never past the
/// end of the wait.
#[derive(Debug)]
pub struct PollBackoff {
    next_ms: u64,
}

impl Default for PollBackoff {
    fn default() -> Self {
        Self {
            next_ms: POLL_FIRST_MS,
        }
    }
}

impl PollBackoff {
    /// The next pause, with `left_ms` of the wait remaining.
    pub fn next(&mut self, left_ms: u64) -> u64 {
        let pause = self.next_ms.min(left_ms);
        self.next_ms = (self.next_ms * 2).min(POLL_MAX_MS);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_park_answer_reads_back_as_written() {
        let park = Park {
            wait_ms: 2500,
            key: "group/g-1/msg/7".into(),
            holder: "c-1".into(),
            after: None,
        };
        let resp = park.response();
        assert!(Park::is_park(&resp));
        let value = resp.header(PARK_HEADER).expect("header");
        assert_eq!(value, "2500; key=group/g-1/msg/7; holder=c-1");
        assert_eq!(Park::parse(value), Some(park.clone()));

        let park = Park {
            after: Some(6),
            ..park
        };
        let resp = park.segment(Response::new(200));
        assert!(Park::is_segment(&resp) && !Park::is_park(&resp));
        let value = resp.header(PARK_HEADER).expect("header");
        assert_eq!(value, "2500; key=group/g-1/msg/7; holder=c-1; after=6");
        assert_eq!(Park::parse(value), Some(park.clone()));

        // Parked for the time only.
        let park = Park {
            key: String::new(),
            ..park
        };
        let value = park.header_value();
        assert_eq!(value, "2500; holder=c-1; after=6");
        assert_eq!(Park::parse(&value), Some(park));
    }

    #[test]
    fn malformed_park_answers_are_refused() {
        for bad in [
            "",
            "x; key=k",
            "10; key=",
            "10; what=1; key=k",
            "10; key=k; after=x",
        ] {
            assert_eq!(Park::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_number_marks_a_request_parkable() {
        let req = |v: &str| Request {
            headers: vec![(PARK_HEADER.into(), v.as_bytes().to_vec())],
            ..Default::default()
        };
        let parkable = |waited_ms, after| Some(Parkable { waited_ms, after });
        assert_eq!(Parkable::of(&req("0")), parkable(0, None));
        assert_eq!(Parkable::of(&req("1200")), parkable(1200, None));
        assert_eq!(Parkable::of(&req("1200; after=9")), parkable(1200, Some(9)));
        for p in [parkable(0, None), parkable(15, Some(3))] {
            assert_eq!(Parkable::of(&req(&p.unwrap().header_value())), p);
        }
        for bad in ["soon", "5; after=", "5; before=2", "5;after=x"] {
            assert_eq!(Parkable::of(&req(bad)), None, "{bad:?}");
        }
        assert_eq!(Parkable::of(&Request::default()), None);
    }

    #[test]
    fn recent_writes_tell_a_keys_write_from_another_in_its_slot() {
        let mut recent = RecentWrites::new(8);
        let (key, mates) = (3, [11, 19, 27, 35]); // all in slot 3
        recent.record(mates[0], 1);
        assert!(!recent.written_since(key, 0));
        recent.record(key, 2);
        assert!(recent.written_since(key, 1) && !recent.written_since(key, 2));
        // Pushed out of its slot by later writes: still counted as written.
        for (i, mate) in mates.iter().enumerate() {
            recent.record(*mate, 3 + i as u64);
        }
        assert!(recent.written_since(key, 2));
        assert!(!recent.written_since(key, 6));
    }

    #[test]
    fn polling_backs_off_to_a_second_and_never_past_the_wait() {
        let mut b = PollBackoff::default();
        let pauses: Vec<u64> = (0..8).map(|_| b.next(10_000)).collect();
        assert_eq!(pauses, [25, 50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.next(300), 300);
    }
}
