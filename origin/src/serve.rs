//! The origin's end of a tunnel: an HTTP/2 server, with `h2` directly, that hands each
//! stream's request to the app and sends its answer back as the proxy's window allows.
//!
//! `h2` directly rather than hyper's server, for one reason: a request body whose app has
//! stopped reading must be drained out of `h2` ([`common::h2body`]), or a front-end client
//! uploading in 1-byte chunks ends the tunnel; hyper's body gives no way to do that without
//! also giving the window back. The rest is what hyper's server did: a task per stream, the
//! app's work dropped when the proxy resets the stream, connection-specific headers removed
//! and `content-length` set from an exact body size, keep-alive pings, and a graceful end.

use crate::config::App;
use crate::preface::PrefaceDeadline;
use bytes::Bytes;
use common::coalesce::{Coalesce, Preparing, PreparingGuard};
use common::h2body::{DrainedBody, Drains, Received, Sent, DRAIN_TICK};
use common::tuning;
use common::tunnel::{keepalive, Heard, Hearing};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How a tunnel ended, when it was not closed in good order.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    H2(#[from] h2::Error),
    #[error(transparent)]
    Keepalive(#[from] common::tunnel::KeepaliveError),
}

/// A request's body as the app reads it: nothing, or what the proxy sends on the stream,
/// drained out of `h2` while the app is not reading ([`Drains`]).
#[derive(Debug)]
pub struct RequestBody(Option<DrainedBody>);

impl RequestBody {
    pub fn empty() -> Self {
        RequestBody(None)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Serve HTTP/2 over the upgraded tunnel until it ends. On shutdown, stop taking new streams
/// (GOAWAY) and give in-flight ones [`tuning::SHUTDOWN_GRACE`] to finish.
/// The proxy must start speaking HTTP/2 within [`tuning::HANDSHAKE_TIMEOUT`] ([`crate::preface`]).
pub async fn serve_tunnel<I>(upgraded: I, app: App, shutdown: &CancellationToken) -> Result<(), TunnelError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Answers being prepared: while there are any, the tunnel gathers the ready ones into one
    // write ([`Coalesce`]).
    let preparing = Preparing::default();
    let heard = Heard::default();
    let io = Hearing::new(TokioIo::new(upgraded), heard.clone());
    let io = Coalesce::new(PrefaceDeadline::new(io, tuning::HANDSHAKE_TIMEOUT), preparing.clone());
    let mut conn = tokio::select! {
        conn = common::tunnel::server_builder().handshake::<_, Bytes>(io) => conn?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let keepalive = keepalive(conn.ping_pong(), heard, tuning::KEEPALIVE_INTERVAL, tuning::KEEPALIVE_TIMEOUT);
    tokio::pin!(keepalive);
    let drains = Arc::new(Drains::default());
    let mut drain_tick = tokio::time::interval(DRAIN_TICK);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    let answer = answer(app.clone(), req, respond, &drains, preparing.start());
                    tokio::spawn(answer);
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            e = &mut keepalive => return Err(e.into()),
            _ = drain_tick.tick(), if !drains.is_empty() => drains.tick(),
            bodies = drains.woken() => drains.drain_all(bodies),
            _ = shutdown.cancelled(), if grace.is_none() => {
                info!("shutting down: finishing in-flight streams");
                conn.graceful_shutdown();
                grace = Some(Box::pin(tokio::time::sleep(tuning::SHUTDOWN_GRACE)));
            }
            _ = async { if let Some(grace) = grace.as_mut() { grace.await } }, if grace.is_some() => {
                warn!(grace = ?tuning::SHUTDOWN_GRACE, "streams still open after the grace period; closing the tunnel");
                return Ok(());
            }
        }
    }
}

/// One stream: the request to the app, its answer back. The app's work is dropped if the
/// proxy resets the stream first (its front-end client went away).
fn answer(
    app: App,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    drains: &Arc<Drains>,
    preparing: PreparingGuard,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (parts, recv) = req.into_parts();
    let body = if recv.is_end_stream() {
        RequestBody::empty()
    } else {
        RequestBody(Some(drains.watch(Received::new(recv, &parts.headers))))
    };
    let head_only = parts.method == Method::HEAD;
    async move {
        let handled = app.handle(Request::from_parts(parts, body));
        tokio::pin!(handled);
        let resp = poll_fn(|cx| match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => handled.as_mut().poll(cx).map(Some),
        })
        .await;
        drop(preparing);
        let Some(resp) = resp else { return };
        let (mut head, mut body) = resp.into_parts();
        tidy_head(&mut head, &body);
        let bodyless = head_only || body.is_end_stream();
        match respond.send_response(Response::from_parts(head, ()), bodyless) {
            Ok(mut send) if !bodyless => {
                if common::h2body::send_body(&mut body, &mut send).await == Sent::BodyFailed {
                    // The proxy must not take a cut answer for a whole one.
                    send.send_reset(Reason::INTERNAL_ERROR);
                }
            }
            Ok(_) => {}
            Err(e) => {
                debug!(error = %e, "answer not sent");
                respond.send_reset(Reason::INTERNAL_ERROR);
            }
        }
    }
}

/// What HTTP/2 requires of an answer's head: no connection-specific headers (`h2` refuses to
/// send them); and, as hyper's server did, its length when a body is to follow and its size is
/// known (an empty body gets none: a HEAD answer or an empty one says nothing it does not know).
fn tidy_head<B: Body>(head: &mut http::response::Parts, body: &B) {
    common::headers::remove_hop_by_hop(&mut head.headers);
    head.headers.remove("proxy-connection");
    let lengthless = head.status.is_informational()
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED;
    if !lengthless && !body.is_end_stream() && !head.headers.contains_key(header::CONTENT_LENGTH) {
        if let Some(len) = body.size_hint().exact() {
            head.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
}
