//! The tunnel's HTTP/2 settings, built in one place for both ends, and its keep-alive: the
//! proxy runs the HTTP/2 client and the origin the server, both with `h2` directly, and the
//! limits each enforces must agree with what the other may send (see [`crate::tuning`]).

use crate::tuning;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The proxy's end: an `h2` client over the upgraded tunnel connection. Keep-alive pings are
/// the caller's to send ([`keepalive`]); `h2` answers the other end's by itself.
pub fn client_builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .max_send_buffer_size(tuning::MAX_SEND_BUFFER)
        .max_header_list_size(tuning::MAX_HEADER_LIST_SIZE)
        .max_local_error_reset_streams(None)
        .max_concurrent_reset_streams(tuning::MAX_REMEMBERED_RESETS)
        // Until the origin's SETTINGS arrive, as many streams as any server allows.
        .initial_max_send_streams(100)
        .enable_push(false);
    builder
}

/// The origin's end: an `h2` server over its side of the tunnel. Keep-alive pings are the
/// caller's to send, as at the proxy.
pub fn server_builder() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .max_send_buffer_size(tuning::MAX_SEND_BUFFER)
        .max_header_list_size(tuning::MAX_HEADER_LIST_SIZE)
        .max_local_error_reset_streams(None)
        .max_concurrent_streams(tuning::MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(tuning::MAX_PENDING_ACCEPT_RESETS);
    builder
}

/// Why a tunnel's keep-alive gave up.
#[derive(Debug, thiserror::Error)]
pub enum KeepaliveError {
    #[error("nothing heard for {0:?} after a ping: the other end is gone or frozen")]
    Timeout(std::time::Duration),
    #[error("ping failed: {0}")]
    Ping(#[from] h2::Error),
}

/// How many reads on a connection have brought bytes: anything heard from the other end shows
/// it alive, so the keep-alive only asks (pings) when it has heard nothing for a while.
#[derive(Clone, Debug, Default)]
pub struct Heard(Arc<AtomicU64>);

impl Heard {
    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A connection whose reads count into a [`Heard`].
#[derive(Debug)]
pub struct Hearing<T> {
    io: T,
    heard: Heard,
}

impl<T> Hearing<T> {
    pub fn new(io: T, heard: Heard) -> Self {
        Hearing { io, heard }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Hearing<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.0.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Hearing<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Keep-alive for one end of a tunnel (both ends run it). After `interval` in which nothing
/// was heard from the other end, ping it; give up when, after the ping, nothing at all (the
/// answer or anything else) arrives for `timeout`: the connection is dead even if TCP has not
/// noticed. A busy tunnel is not pinged, and an answer stuck behind a slow link's queue of
/// data is waited for as long as that data keeps arriving. Runs beside the connection (whose
/// task must be polled for the answer to arrive). Without `pings` (the connection's were taken
/// already) it never returns.
pub async fn keepalive(
    pings: Option<h2::PingPong>,
    heard: Heard,
    interval: std::time::Duration,
    timeout: std::time::Duration,
) -> KeepaliveError {
    let Some(mut pings) = pings else { return std::future::pending().await };
    let mut seen = heard.count();
    loop {
        tokio::time::sleep(interval).await;
        if heard.count() != seen {
            seen = heard.count();
            continue;
        }
        let ping = pings.ping(h2::Ping::opaque());
        tokio::pin!(ping);
        loop {
            match tokio::time::timeout(timeout, &mut ping).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => return e.into(),
                Err(_) if heard.count() == seen => return KeepaliveError::Timeout(timeout),
                Err(_) => seen = heard.count(),
            }
        }
        seen = heard.count();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response};

    #[tokio::test(start_paused = true)]
    async fn keepalive_gives_up_on_a_peer_that_never_answers() {
        use std::time::Duration;
        // The far end of the pipe is held open but never read: a tunnel whose other end froze.
        let (client_io, _frozen) = tokio::io::duplex(64 * 1024);
        let (_sender, mut conn) = client_builder().handshake::<_, Bytes>(client_io).await.unwrap();
        let pings = conn.ping_pong().unwrap();
        let keepalive = keepalive(Some(pings), Heard::default(), Duration::from_secs(5), Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let gave_up = tokio::select! {
            e = keepalive => Some(e),
            _ = &mut conn => None,
        };
        assert!(matches!(gave_up, Some(KeepaliveError::Timeout(_))), "{gave_up:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(10), "one interval, then the timeout");
    }

    /// A client and server with the tunnel's settings over an in-memory pipe. The server
    /// answers each request with the size of its header values.
    async fn pair() -> h2::client::SendRequest<Bytes> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut conn = server_builder().handshake::<_, Bytes>(server_io).await.unwrap();
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                let size: usize = req.headers().values().map(|v| v.len()).sum();
                let body = Bytes::from(size.to_string());
                if let Ok(mut send) = respond.send_response(Response::new(()), false) {
                    let _ = send.send_data(body, true);
                }
            }
        });
        let (sender, conn) = client_builder().handshake(client_io).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    async fn get(sender: &h2::client::SendRequest<Bytes>, req: Request<()>) -> (http::StatusCode, Bytes) {
        let mut sender = sender.clone().ready().await.unwrap();
        let (response, _) = sender.send_request(req, true).unwrap();
        let resp = response.await.unwrap();
        let status = resp.status();
        let mut body = resp.into_body();
        let mut all = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            all.extend_from_slice(&chunk);
        }
        (status, Bytes::from(all))
    }

    #[tokio::test]
    async fn the_largest_head_the_front_end_admits_crosses_even_in_the_worst_encoding() {
        let sender = pair().await;
        // Bytes 0x80-0xff take up to 30 bits each in HPACK's Huffman code.
        let worst = http::HeaderValue::from_bytes(&vec![0xff; tuning::MAX_REQUEST_HEAD - 100]).unwrap();
        let req = Request::get("http://origin/").header("x-worst", worst).body(()).unwrap();
        assert_eq!(get(&sender, req).await.0, 200);
        // And the connection is still fine for the next request.
        let (status, body) = get(&sender, Request::get("http://origin/").body(()).unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"0");
    }

    #[tokio::test]
    async fn thousands_of_abandoned_streams_do_not_end_the_connection() {
        let sender = pair().await;
        for _ in 0..3000 {
            let mut ready = sender.clone().ready().await.unwrap();
            let (response, _) = ready.send_request(Request::get("http://origin/").body(()).unwrap(), true).unwrap();
            let pending = tokio::spawn(response);
            tokio::task::yield_now().await;
            pending.abort();
        }
        let (status, _) = get(&sender, Request::get("http://origin/").body(()).unwrap()).await;
        assert_eq!(status, 200);
    }
}
