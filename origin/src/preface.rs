//! A deadline on the proxy's first bytes over a new tunnel. hyper's HTTP/2 server waits for the
//! client's connection preface with no timer of its own, and its keep-alive pings start only
//! once the preface is in: a proxy (or something in between) that accepts the upgrade and then
//! says nothing would otherwise hold the origin on a dead tunnel forever, never reconnecting.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A byte stream whose reads fail with [`io::ErrorKind::TimedOut`] if nothing at all has been
/// read within `limit` of its creation. After the first byte it is a plain pass-through.
pub struct PrefaceDeadline<I> {
    io: I,
    /// `None` once a byte has arrived (or the stream ended): no timer on the hot path.
    deadline: Option<Pin<Box<Sleep>>>,
    limit: Duration,
}

impl<I> PrefaceDeadline<I> {
    pub fn new(io: I, limit: Duration) -> Self {
        Self { io, deadline: Some(Box::pin(tokio::time::sleep(limit))), limit }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else { return polled };
        match polled {
            // Bytes, the end of the stream or an error: the wait is over either way.
            Poll::Ready(_) => {
                this.deadline = None;
                polled
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the proxy accepted the tunnel but sent no HTTP/2 preface within {:?} (a stuck proxy, or a middlebox in between)",
                        this.limit
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_sends_nothing_times_out_at_the_limit() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(ours, LIMIT);
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let err = tokio::time::timeout(LIMIT * 2, io.read(&mut buf)).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("no HTTP/2 preface"), "{err}");
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_first_byte_silence_is_not_an_error() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(ours, LIMIT);
        tokio::time::sleep(LIMIT / 2).await;
        theirs.write_all(b"P").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        // Six times the limit with nothing to read: still waiting, not failed.
        assert!(tokio::time::timeout(LIMIT * 6, io.read(&mut buf)).await.is_err());
        theirs.write_all(b"RI").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 2);
        assert_eq!(&buf[..2], b"RI");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_closes_is_the_end_of_the_stream_not_a_timeout() {
        let (ours, theirs) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(ours, LIMIT);
        drop(theirs);
        assert_eq!(io.read(&mut [0u8; 16]).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_pass_through_before_anything_is_read() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(ours, LIMIT);
        io.write_all(b"settings").await.unwrap();
        io.flush().await.unwrap();
        let mut buf = [0u8; 8];
        theirs.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"settings");
    }
}
