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

use crate::http::{Request, Response};

/// The request header a parking host sets and the answer header a component parks with.
pub const PARK_HEADER: &str = "mcp-edge-park";

/// The first pause of a component that polls (where no host parks), doubled after each empty
/// look up to [`POLL_MAX_MS`].
pub const POLL_FIRST_MS: u64 = 25;
pub const POLL_MAX_MS: u64 = 1000;

/// What the host said about this request: it can park it, and it has waited this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parkable {
    pub waited_ms: u64,
}

impl Parkable {
    /// `None` where no host parks (the header is absent or not a number).
    pub fn of(req: &Request) -> Option<Self> {
        let waited_ms = req.header(PARK_HEADER)?.trim().parse().ok()?;
        Some(Self { waited_ms })
    }
}

/// A component's request to be parked: until `key` is written, for at most `wait_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Park {
    pub wait_ms: u64,
    pub key: String,
    pub holder: String,
}

impl Park {
    /// The answer that asks the host to park the request (never shown to a client).
    pub fn response(&self) -> Response {
        let mut resp = Response::new(204);
        resp.headers.push((
            PARK_HEADER.to_owned(),
            format!("{}; key={}; holder={}", self.wait_ms, self.key, self.holder),
        ));
        resp
    }

    /// Reads a park answer's header value (the host's side); `None` if it is malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';').map(str::trim);
        let wait_ms = parts.next()?.parse().ok()?;
        let (mut key, mut holder) = (None, None);
        for part in parts {
            match part.split_once('=') {
                Some(("key", k)) if !k.is_empty() => key = Some(k.to_owned()),
                Some(("holder", h)) => holder = Some(h.to_owned()),
                _ => return None,
            }
        }
        Some(Self {
            wait_ms,
            key: key?,
            holder: holder.unwrap_or_default(),
        })
    }

    /// Whether `resp` is a park answer.
    pub fn is_park(resp: &Response) -> bool {
        resp.status == 204 && resp.header(PARK_HEADER).is_some()
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
        };
        let resp = park.response();
        assert!(Park::is_park(&resp));
        let value = resp.header(PARK_HEADER).expect("header");
        assert_eq!(value, "2500; key=group/g-1/msg/7; holder=c-1");
        assert_eq!(Park::parse(value), Some(park));
    }

    #[test]
    fn malformed_park_answers_are_refused() {
        for bad in ["", "x; key=k", "10", "10; key=", "10; what=1; key=k"] {
            assert_eq!(Park::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_number_marks_a_request_parkable() {
        let req = |v: &str| Request {
            headers: vec![(PARK_HEADER.into(), v.as_bytes().to_vec())],
            ..Default::default()
        };
        assert_eq!(Parkable::of(&req("0")), Some(Parkable { waited_ms: 0 }));
        assert_eq!(
            Parkable::of(&req("1200")),
            Some(Parkable { waited_ms: 1200 })
        );
        assert_eq!(Parkable::of(&req("soon")), None);
        assert_eq!(Parkable::of(&Request::default()), None);
    }

    #[test]
    fn polling_backs_off_to_a_second_and_never_past_the_wait() {
        let mut b = PollBackoff::default();
        let pauses: Vec<u64> = (0..8).map(|_| b.next(10_000)).collect();
        assert_eq!(pauses, [25, 50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.next(300), 300);
    }
}
