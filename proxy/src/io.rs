//! Front-end connection I/O: reading the first bytes under a deadline to choose between
//! HTTP/1.1 and HTTP/2 (then replaying them to the HTTP server), telling plain HTTP sent to
//! the TLS front end to use https://, and a send deadline that fails the connection when the
//! client takes no data for too long.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a front-end connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Why a connection ended before its protocol was known.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("no bytes within {0:?}")]
    Timeout(Duration),
    #[error("closed before sending anything")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Read until the bytes decide the protocol: the whole HTTP/2 preface, or anything that
/// differs from it (an HTTP/1.1 request differs at its first byte, so a short request is
/// never waited on). Everything must arrive within `deadline`. Returns the bytes read.
pub async fn read_prefix<T: AsyncRead + Unpin>(io: &mut T, deadline: Duration) -> Result<Bytes, DetectError> {
    let mut buf = BytesMut::with_capacity(H2_PREFACE.len());
    let read = async {
        while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
            let mut chunk = [0u8; 24];
            let want = H2_PREFACE.len() - buf.len();
            let n = io.read(&mut chunk[..want]).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, io::Error>(())
    };
    match tokio::time::timeout(deadline, read).await {
        Err(_) => Err(DetectError::Timeout(deadline)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(())) if buf.is_empty() => Err(DetectError::Closed),
        Ok(Ok(())) => Ok(buf.freeze()),
    }
}

/// The protocol the first bytes announce (on a connection without ALPN).
pub fn sniff(prefix: &[u8]) -> Protocol {
    if prefix == H2_PREFACE {
        Protocol::Http2
    } else {
        Protocol::Http1
    }
}

/// The first byte of a TLS record carrying a handshake message (a ClientHello starts so).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Most bytes of a plain-HTTP request head read before answering it with [`plain_http_answer`].
pub const PLAIN_HTTP_HEAD_MAX: usize = 8 * 1024;

/// Whether the first byte on the TLS front end starts a plain-HTTP request (a method is
/// upper-case letters) rather than a TLS record.
pub fn is_plain_http(first: u8) -> bool {
    first != TLS_HANDSHAKE_RECORD && first.is_ascii_uppercase()
}

/// Read what the client sent of its plain-HTTP request head (up to the blank line, at most
/// [`PLAIN_HTTP_HEAD_MAX`] bytes; the caller bounds the time), answer with the short 400 and
/// close. Reading the head first means the close does not reset the connection before the
/// client has read the answer.
pub async fn refuse_plain_http<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < PLAIN_HTTP_HEAD_MAX && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let want = chunk.len().min(PLAIN_HTTP_HEAD_MAX - head.len());
        let n = io.read(&mut chunk[..want]).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    io.write_all(&plain_http_answer(&head)).await?;
    io.shutdown().await
}

/// The 400 for plain HTTP on the TLS front end, naming the https:// URL to use when the head
/// gives a plausible host and path.
pub fn plain_http_answer(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .filter(|p| p.starts_with('/') && p.len() <= 256 && p.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("/");
    let host = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim())
        .filter(|h| {
            !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        });
    let body = match host {
        Some(host) => format!("400 bad request: this port speaks HTTPS only; use https://{host}{path}\n"),
        None => "400 bad request: this port speaks HTTPS only; use https:// instead of http://\n".to_owned(),
    };
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A front-end connection's stream: replays the bytes read for detection first, and fails
/// writes that make no progress for `send_timeout`.
#[derive(Debug)]
pub struct FrontIo<T> {
    inner: T,
    prefix: Bytes,
    send_timeout: Duration,
    /// Armed while a write is blocked; reset lazily.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl<T> FrontIo<T> {
    pub fn new(inner: T, prefix: Bytes, send_timeout: Duration) -> Self {
        FrontIo { inner, prefix, send_timeout, stall: None, stalled: false }
    }

    /// Called when a write returned Pending: start the clock if it is not running, and fail
    /// once it ran out.
    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.stalled {
            self.stalled = true;
            let deadline = Instant::now() + self.send_timeout;
            match &mut self.stall {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match &mut self.stall {
            Some(sleep) => {
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client took no data for {:?}", self.send_timeout),
                ))
            }
            None => Poll::Pending,
        }
    }

    fn progressed(&mut self) {
        self.stalled = false;
    }
}

use std::future::Future as _;

impl<T: AsyncRead + Unpin> AsyncRead for FrontIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrontIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.blocked(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.blocked(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.blocked(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn prefix_decides_without_waiting_for_short_http1_requests() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        let prefix = read_prefix(&mut server, Duration::from_secs(5)).await.expect("prefix");
        // 18 bytes, fewer than the preface's 24: what differs from the preface is enough.
        assert_eq!(&prefix[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(sniff(&prefix), Protocol::Http1);
    }

    #[tokio::test]
    async fn the_whole_preface_means_http2_even_in_tiny_pieces() {
        let (mut client, mut server) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            client.write_all(H2_PREFACE).await.expect("write");
            client
        });
        let prefix = read_prefix(&mut server, Duration::from_secs(5)).await.expect("prefix");
        assert_eq!(sniff(&prefix), Protocol::Http2);
        drop(writer.await);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_half_a_preface_time_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        let err = read_prefix(&mut server, Duration::from_secs(10)).await.expect_err("silent");
        assert!(matches!(err, DetectError::Timeout(_)));
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&H2_PREFACE[..10]).await.expect("write");
        let err = read_prefix(&mut server, Duration::from_secs(10)).await.expect_err("half a preface");
        assert!(matches!(err, DetectError::Timeout(_)));
        drop(client);
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(matches!(read_prefix(&mut server, Duration::from_secs(1)).await, Err(DetectError::Closed)));
    }

    #[tokio::test]
    async fn replays_the_prefix_before_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"rest").await.expect("write");
        let mut io = FrontIo::new(server, Bytes::from_static(b"pre-"), Duration::from_secs(1));
        let mut got = [0u8; 8];
        io.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"pre-rest");
    }

    #[test]
    fn plain_http_to_the_tls_port_is_told_to_use_https() {
        assert!(is_plain_http(b'G') && is_plain_http(b'P'));
        assert!(!is_plain_http(TLS_HANDSHAKE_RECORD) && !is_plain_http(0));
        let answer = plain_http_answer(b"GET /film.mp4?t=1 HTTP/1.1\r\nHost: media.example.com:1443\r\n\r\n");
        let answer = String::from_utf8(answer).expect("text");
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
        assert!(answer.ends_with("use https://media.example.com:1443/film.mp4?t=1\n"), "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        // A host that is not a host name is not echoed.
        let answer = plain_http_answer(b"GET / HTTP/1.1\r\nHost: <script>\r\n\r\n");
        assert!(String::from_utf8_lossy(&answer).ends_with("use https:// instead of http://\n"));
    }

    #[tokio::test]
    async fn refusing_plain_http_reads_the_head_then_answers() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
        refuse_plain_http(&mut server).await.expect("answered");
        let mut got = String::new();
        client.read_to_string(&mut got).await.expect("read");
        assert!(got.contains("use https://localhost/"), "{got}");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_make_no_progress_fail_after_the_send_timeout() {
        let (_client, server) = tokio::io::duplex(16);
        let mut io = FrontIo::new(server, Bytes::new(), Duration::from_secs(60));
        let started = Instant::now();
        let err = io.write_all(&[0u8; 64]).await.expect_err("the reader never reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(60));
    }
}
