//! Response bodies. A component sets its response's head before it writes the body, so
//! passed straight on, the head, each chunk and the end of a small answer leave in separate
//! writes and TCP segments. Instead the runtime gathers a body up to `GATHER_LIMIT` and, when
//! it ends within it, answers with one `Content-Length` write; a larger body streams on after
//! what was gathered. A body that fails before the head went out becomes a clean 500.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::WasiBody;

/// Largest body gathered before the head is sent.
pub const GATHER_LIMIT: usize = 64 * 1024;

/// How gathering ended.
pub enum Gathered {
    /// The response, complete or streaming on.
    Response(Response<WasiBody>),
    /// The body failed (or did not end by the deadline) before anything was sent.
    Failed,
}

/// Gathers the start of `response`'s body until `deadline`.
pub async fn gather(response: Response<WasiBody>, deadline: Instant) -> Gathered {
    let (parts, mut body) = response.into_parts();
    let mut gathered = BytesMut::new();
    let read = async {
        while gathered.len() <= GATHER_LIMIT {
            match body.frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => gathered.extend_from_slice(&data),
                    Err(trailers) => return Ok(Some(trailers)),
                },
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(Some(Frame::data(Bytes::new())))
    };
    let outcome = tokio::time::timeout_at(deadline.into(), read).await;
    let next = match outcome {
        Ok(Ok(None)) => {
            let full = http_body_util::Full::new(gathered.freeze())
                .map_err(|never| match never {})
                .boxed_unsync();
            return Gathered::Response(Response::from_parts(parts, full));
        }
        Ok(Ok(Some(frame))) => frame,
        Ok(Err(_)) | Err(_) => return Gathered::Failed,
    };
    let resumed = Resumed {
        first: Some(Frame::data(gathered.freeze())),
        second: Some(next).filter(|f| !f.data_ref().is_some_and(Bytes::is_empty)),
        rest: body,
    };
    Gathered::Response(Response::from_parts(parts, resumed.boxed_unsync()))
}

/// What was gathered, then the rest of the body.
struct Resumed {
    first: Option<Frame<Bytes>>,
    second: Option<Frame<Bytes>>,
    rest: WasiBody,
}

impl Body for Resumed {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.first.take().or_else(|| self.second.take()) {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.second.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A body whose chunks come through a channel as they are produced (a stream's segments); it
/// ends when the sender is dropped, and the sender sees the client go when it is dropped.
pub struct Channel(pub tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// All of a body (a stream's segment), or `None` if it failed.
pub async fn collect(body: WasiBody) -> Option<Bytes> {
    body.collect().await.ok().map(|c| c.to_bytes())
}
