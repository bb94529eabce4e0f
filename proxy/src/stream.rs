//! One stream on a tunnel, driven with `h2` from the front-end request's own task: the request
//! head leaves from there and the response head and body are read there, with no task or
//! channel in between (hyper's HTTP/2 client spawned a task and crossed two channels for every
//! request). Only a request body gets a task of its own, which moves it as the origin's window
//! allows.

use crate::origins::ToOrigin;
use bytes::Bytes;
use common::h2body::{Received, Sent};
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, DropGuard};

/// A stream whose head has been sent: the response to await and, for a request with a body,
/// a guard to keep for as long as the exchange matters (see [`send_body`]).
pub struct Opened {
    pub response: ResponseFuture,
    pub upload: Option<DropGuard>,
}

/// Open a stream on a tunnel that [`SendRequest::ready`] said is open, and send the head. A
/// body (if any) is sent by a task of its own; the response is the caller's to await. On an
/// error nothing was sent, and the body is handed back.
pub fn open(
    sender: &mut SendRequest<Bytes>,
    head: Request<()>,
    body: ToOrigin,
) -> Result<Opened, (h2::Error, ToOrigin)> {
    let empty = body.is_end_stream();
    match sender.send_request(head, empty) {
        Ok((response, send)) => {
            let upload = (!empty).then(|| {
                let abandoned = CancellationToken::new();
                tokio::spawn(send_body(body, send, abandoned.clone()));
                abandoned.drop_guard()
            });
            Ok(Opened { response, upload })
        }
        Err(e) => Err((e, body)),
    }
}

/// Move a request body to the origin until it ends, the origin resets the stream, or the
/// exchange is `abandoned` (the guard from [`open`] was dropped: the front-end request went
/// away, or its response is over). Then the stream is reset, so the origin sees the upload end
/// rather than wait on it, and this task ends even while the origin's window is shut.
async fn send_body(mut body: ToOrigin, mut send: SendStream<Bytes>, abandoned: CancellationToken) {
    let reset = {
        let copy = common::h2body::send_body(&mut body, &mut send);
        tokio::select! {
            _ = abandoned.cancelled() => true,
            sent = copy => sent == Sent::BodyFailed,
        }
    };
    if reset {
        send.send_reset(Reason::CANCEL);
    }
}

/// An origin's response body ([`Received`]): DATA frames as they arrive, then the trailers.
/// Each frame's bytes go back to the stream's flow-control window as it is handed on. While
/// its front-end client is away the stall check drains it ([`OriginBody::drain`]).
#[derive(Debug)]
pub struct OriginBody(Received);

/// Dropping a body frees the frames it held (a stalled download that is reset or left holds
/// up to a stream window): counted as work, so the memory is given back once quiet again.
impl Drop for OriginBody {
    fn drop(&mut self) {
        common::memory::worked();
    }
}

impl OriginBody {
    pub fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        OriginBody(Received::new(recv, headers))
    }

    /// Bytes the origin has sent that are not yet handed on: the share of the tunnel's
    /// window this stream holds.
    pub fn held(&mut self) -> u64 {
        self.0.held()
    }

    /// See [`Received::drain`]: only while the front end was handed a frame and has not come
    /// back for the next.
    pub fn drain(&mut self) -> usize {
        self.0.drain()
    }

    /// See [`Received::wake_drainer`].
    pub fn wake_drainer(&mut self, waker: std::task::Waker) {
        self.0.wake_drainer(waker);
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let polled = Pin::new(&mut self.0).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = polled {
            common::memory::worked();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
