//! One stream on a tunnel, driven with `h2` from the front-end request's own task: the request
//! head leaves from there and the response head and body are read there, with no task or
//! channel in between (hyper's HTTP/2 client spawned a task and crossed two channels for every
//! request). Only a request body gets a task of its own, which moves it as the origin's window
//! allows. Also the tunnel's keep-alive, which hyper's client used to send.

use crate::origins::ToOrigin;
use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::{header, HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
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
        let copy = copy_body(&mut body, &mut send);
        tokio::select! {
            _ = abandoned.cancelled() => true,
            failed = copy => failed,
        }
    };
    if reset {
        send.send_reset(Reason::CANCEL);
    }
}

/// Wait for window, then send one frame of the body, so at most one frame beyond the window
/// is buffered. Returns whether the body failed (the front-end client broke off the upload).
async fn copy_body(body: &mut ToOrigin, send: &mut SendStream<Bytes>) -> bool {
    loop {
        // One byte asked for: h2 grants what the window allows and buffers the frame beyond it.
        send.reserve_capacity(1);
        while send.capacity() == 0 {
            let window = poll_fn(|cx| match send.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => send.poll_capacity(cx),
            })
            .await;
            match window {
                Some(Ok(_)) => {}
                // The stream was reset or closed: nobody wants the rest.
                Some(Err(_)) | None => return false,
            }
        }
        let frame = poll_fn(|cx| match send.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Pin::new(&mut *body).poll_frame(cx).map(Some),
        })
        .await;
        let Some(frame) = frame else { return false };
        let sent = match frame {
            None => send.send_data(Bytes::new(), true),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => send.send_data(data, body.is_end_stream()),
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => send.send_trailers(trailers),
                    Err(_) => Ok(()),
                },
            },
            Some(Err(_)) => return true,
        };
        if sent.is_err() || body.is_end_stream() {
            return false;
        }
    }
}

/// An origin's response body: DATA frames as they arrive, then the trailers. Each frame's
/// bytes go back to the stream's flow-control window as it is handed on.
#[derive(Debug)]
pub struct OriginBody {
    recv: RecvStream,
    /// `content-length` minus what has arrived, when the origin gave one.
    remaining: Option<u64>,
    data_done: bool,
}

/// Dropping a body frees the frames it held (a stalled download that is reset or left holds
/// up to a stream window): counted as work, so the memory is given back once quiet again.
impl Drop for OriginBody {
    fn drop(&mut self) {
        common::memory::worked();
    }
}

impl OriginBody {
    pub fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        let remaining =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        OriginBody { recv, remaining, data_done: false }
    }

    /// Bytes the origin has sent that are not yet handed on: the share of the tunnel's
    /// window this stream holds.
    pub fn held(&mut self) -> u64 {
        self.recv.flow_control().used_capacity() as u64
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    common::memory::worked();
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = self.remaining.as_mut() {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

/// Why a tunnel's keep-alive gave up.
#[derive(Debug, thiserror::Error)]
pub enum KeepaliveError {
    #[error("the origin did not answer a ping within {0:?}")]
    Timeout(Duration),
    #[error("ping failed: {0}")]
    Ping(#[from] h2::Error),
}

/// Ping the origin every `interval`, busy or idle, and return when one goes unanswered for
/// `timeout`: the connection is dead even if TCP has not noticed. Runs beside the connection
/// (whose task must be polled for the answer to arrive).
pub async fn keepalive(mut pings: h2::PingPong, interval: Duration, timeout: Duration) -> KeepaliveError {
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, pings.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return e.into(),
            Err(_) => return KeepaliveError::Timeout(timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keepalive_gives_up_on_an_origin_that_never_answers() {
        // The far end of the pipe is held open but never read: a tunnel whose origin froze.
        let (client_io, _frozen) = tokio::io::duplex(64 * 1024);
        let (_sender, mut conn) = common::tunnel::client_builder().handshake::<_, Bytes>(client_io).await.unwrap();
        let pings = conn.ping_pong().unwrap();
        let keepalive = keepalive(pings, Duration::from_secs(5), Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let gave_up = tokio::select! {
            e = keepalive => Some(e),
            _ = &mut conn => None,
        };
        assert!(matches!(gave_up, Some(KeepaliveError::Timeout(_))), "{gave_up:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(10), "one interval, then the timeout");
    }
}
