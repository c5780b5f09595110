//! `GET /mcp/stream?client_id=&group_id=[&after=SEQ]`: a member's messages as Server-Sent
//! Events, one event per message with its sequence number as the event id.
//!
//! A stream starts after `Last-Event-ID` (a reconnect), else after `after`, else at the
//! member's cursor, exactly as a receive with that `after` would; it moves the cursor as it
//! sends, like a receive. Where the host parks requests ([`crate::park`]) the stream is a
//! series of segments, each one dispatch of this handler: the events that are there, then a
//! park on the next slot of the log, or for the keepalive interval, whichever comes first. An
//! idle segment is a comment line. After the stream's lifetime the last segment ends it and
//! the client reconnects with `Last-Event-ID`. Where no host parks, one answer waits (woken by
//! the platform, [`crate::park::KeyWaiter`], else polling with backoff) until it has events or
//! the keepalive interval is over, then ends, and the client reconnects.

use super::wire::{MessageOut, MissedOut};
use super::{Ctx, admit, audited, member_query, messaging};
use crate::accounts::Action;
use crate::config;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::messaging::log::Received;
use crate::messaging::{MAX_RECEIVE_LIMIT, message_key};
use crate::park::{Park, Parkable, Waiting};

/// How long a client waits before it reconnects (the `retry:` field of the first segment).
pub const RETRY_MS: u64 = 1000;

/// The comment an idle stream sends every keepalive interval.
pub const KEEPALIVE: &str = ": keepalive\n\n";

fn encode_error(e: serde_json::Error) -> ApiError {
    ApiError::new(500, "serialization_error", e.to_string())
}

/// The events of one segment: the gap (`event: missed`), then each message (`event: message`),
/// each with the id to resume after.
fn events(got: &Received, opening: bool, out: &mut String) -> Result<(), ApiError> {
    if opening {
        out.push_str(&format!("retry: {RETRY_MS}\n\n"));
    }
    if let Some(missed) = got.missed {
        let data = serde_json::to_string(&MissedOut::from(missed)).map_err(encode_error)?;
        out.push_str(&format!(
            "id: {}\nevent: missed\ndata: {data}\n\n",
            missed.last_seq
        ));
    }
    for m in &got.messages {
        let data = serde_json::to_string(&MessageOut::from(m)).map_err(encode_error)?;
        out.push_str(&format!("id: {}\nevent: message\ndata: {data}\n\n", m.seq));
    }
    Ok(())
}

fn event_stream(body: String) -> Response {
    Response::new(200)
        .with_header("content-type", "text/event-stream")
        .with_header("cache-control", "no-store")
        .with_body(body.into_bytes())
}

/// Where a stream starts: `Last-Event-ID` (a reconnect), else `after`.
fn resume_point(req: &Request, after: Option<u64>) -> Result<Option<u64>, ApiError> {
    match req.header("last-event-id").map(str::trim) {
        None | Some("") => Ok(after),
        Some(id) => id.parse().map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                "Last-Event-ID must be a non-negative integer",
            )
        }),
    }
}

pub async fn stream(req: &Request, ctx: &Ctx<'_>) -> Response {
    audited(
        req,
        ctx.config,
        &["GET"],
        ctx.audit,
        "stream",
        async |rec| {
            req.expect_method(&["GET"])?;
            let parkable = Parkable::of(req);
            // A later segment of a stream the host holds, at this position.
            let continuing = parkable.and_then(|p| p.after);
            let (client_id, group_id, after) = member_query(req, rec, |_, _| Ok(()))?;
            let holder = format!("{group_id}/{client_id}");
            // Every segment is admitted as a receive is, rate limit included. A later segment
            // over the limit is not refused: the stream pauses until the budget refills.
            let who = match (admit(req, ctx, Action::Receive).await, continuing) {
                (Ok(who), _) => who,
                (Err(e), Some(position)) if e.status == 429 => {
                    rec.withheld = true;
                    let retry_s = e
                        .headers
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
                        .and_then(|(_, v)| v.parse::<u64>().ok())
                        .unwrap_or(1);
                    let pause = Park {
                        wait_ms: retry_s.max(1) * 1000,
                        key: String::new(),
                        holder,
                        after: Some(position),
                    };
                    return Ok(pause.segment(event_stream(String::new())));
                }
                (Err(e), _) => return Err(e),
            };
            rec.subject = Some(who.subject.clone());
            let resume = match continuing {
                Some(after) => Some(after),
                None => resume_point(req, after)?,
            };
            let seconds = |key, default| config::number(ctx.config, key, default);
            let lifetime_ms = 1000
                * seconds(
                    config::keys::STREAM_LIFETIME_SECONDS,
                    config::DEFAULT_STREAM_LIFETIME_SECONDS,
                )?;
            let keepalive_ms = 1000
                * seconds(
                    config::keys::STREAM_KEEPALIVE_SECONDS,
                    config::DEFAULT_STREAM_KEEPALIVE_SECONDS,
                )?
                .max(1);
            let started = ctx.env.now_ms();
            let mut waiting = Waiting::new(ctx.env);
            loop {
                waiting.look();
                let mut body = String::new();
                // `count`: the events sent (a gap is one), `delivered`: the messages among them.
                let (count, delivered, next_after, full) = messaging(ctx)?
                    .receive(
                        &who.subject,
                        &client_id,
                        &group_id,
                        resume,
                        MAX_RECEIVE_LIMIT,
                        |got| {
                            events(got, continuing.is_none(), &mut body)?;
                            let delivered = got.messages.len();
                            let count = delivered + usize::from(got.missed.is_some());
                            Ok((count, delivered, got.next_after, got.full))
                        },
                    )
                    .await?;
                rec.message_count = Some(delivered);
                let lived =
                    parkable.map_or(0, |p| p.waited_ms) + ctx.env.now_ms().saturating_sub(started);
                let left = lifetime_ms.saturating_sub(lived);
                if parkable.is_some() {
                    if count == 0 && continuing.is_some() {
                        body.push_str(KEEPALIVE);
                        rec.withheld = true;
                    }
                    if left == 0 {
                        return Ok(event_stream(body));
                    }
                    let park = Park {
                        // More is ready at once when the answer was full.
                        wait_ms: if full { 0 } else { keepalive_ms.min(left) },
                        key: message_key(&group_id, next_after + 1),
                        holder,
                        after: Some(next_after),
                    };
                    return Ok(park.segment(event_stream(body)));
                }
                // No host parks: this answer is the whole stream; it ends with events, or
                // with a keepalive once the interval is over, and the client reconnects.
                let idle_left = keepalive_ms.min(lifetime_ms).saturating_sub(lived);
                let key = message_key(&group_id, next_after + 1);
                if count == 0 && idle_left > 0 && waiting.wait(&key, &holder, idle_left).await? {
                    continue;
                }
                if count == 0 {
                    body.push_str(KEEPALIVE);
                }
                return Ok(event_stream(body));
            }
        },
    )
    .await
}
