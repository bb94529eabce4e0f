//! Gathers the small writes of one scheduling round into one write to the tunnel.
//!
//! `h2` writes (and flushes) its buffer every time it queues a DATA frame of 256 bytes or more:
//! such a frame's payload is chained behind the buffer, not copied into it, and no other frame
//! may be queued until the chain is written. A tunnel answering many small responses at once
//! thus made one TLS record and one system call per response (measured: `c` made exactly one
//! `writev` per 1 KiB response with 64 requests in flight). [`Coalesce`] takes small writes
//! into a buffer of its own, and a flush may yield (wake its own task and return `Pending`) so
//! that the tasks preparing the other answers can queue theirs first:
//! - the first flush after a write yields while answers are being prepared ([`Preparing`]),
//!   or while recent yields gathered more than they cost;
//! - a flush after a yield yields again if the yield gathered more bytes, and writes if not;
//! - a buffer that would pass [`GATHER`] is written at once, without a yield, and so is one
//!   that has waited [`MAX_YIELDS`] yields.
//!
//! Large writes (a download's frames) pass straight through, behind what is gathered, in the
//! same vectored write: no copy. The data never waits on anything but the run queue. With one
//! request at a time a flush writes at once: a yield there buys nothing and costs the
//! multi-threaded runtime two futex calls and a context switch per response (measured). The
//! buffer ([`GATHER`] at most) exists only between a write and the flush that sends it, so an
//! idle connection holds none.
//!
//! Used on both HTTP/2 connections that answer many requests at once: `c`'s end of the tunnel
//! and the proxy's HTTP/2 front-end connections.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes up to this size are gathered; the buffer never holds more.
pub const GATHER: usize = 16 * 1024;

/// Slices of one write passed on with the gathered bytes in front (`h2` writes at most two: its
/// buffer and a chained DATA payload).
const MAX_SLICES: usize = 4;

/// How many answers are being prepared for a connection: the handler counts each one from the
/// request's arrival until its response is handed over ([`Preparing::start`]).
#[derive(Clone, Debug, Default)]
pub struct Preparing(Arc<AtomicUsize>);

impl Preparing {
    /// Count one answer in preparation until the guard is dropped.
    pub fn start(&self) -> PreparingGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        PreparingGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// One answer in preparation ([`Preparing::start`]).
#[derive(Debug)]
pub struct PreparingGuard(Arc<AtomicUsize>);

impl Drop for PreparingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A byte stream whose small writes are gathered (see the module docs). Reads pass through.
pub struct Coalesce<T> {
    io: T,
    buf: Vec<u8>,
    /// The buffer's length when a flush last yielded: a flush that finds it unchanged writes.
    yielded_at: Option<usize>,
    /// Yields that gathered more, less those that gathered nothing (0..=[`MAX_PAID`]).
    paid: u8,
    /// Yields since the last write (at most [`MAX_YIELDS`]).
    yields: u8,
    /// A flush decided to write: it writes until the buffer is empty, without yielding.
    draining: bool,
    preparing: Preparing,
}

const MAX_PAID: u8 = 4;

/// Most yields before a write: bytes trickling in (resets, window updates) can delay the first
/// of them by this many rounds of the scheduler, not until the buffer is full.
const MAX_YIELDS: u8 = 16;

impl<T> Coalesce<T> {
    /// `preparing` counts the answers in preparation for this connection.
    pub fn new(io: T, preparing: Preparing) -> Self {
        Self { io, buf: Vec::new(), yielded_at: None, paid: 0, yields: 0, draining: false, preparing }
    }

    #[cfg(test)]
    fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T> Coalesce<T> {
    /// The buffer has been written: the next bytes start a new round of gathering, and its
    /// memory goes back (one allocation a write, against a 16 KiB buffer held by every idle
    /// front-end connection).
    fn reset_gathering(&mut self) {
        self.yielded_at = None;
        self.yields = 0;
        self.draining = false;
        self.buf = Vec::new();
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Write out everything gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buf.drain(..n);
        }
        self.reset_gathering();
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let bufs = &bufs[..bufs.len().min(MAX_SLICES - 1)];
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if !this.buf.is_empty() && this.buf.len() + total > GATHER {
            // Too much to gather: what is gathered goes first, with the new bytes in the same write.
            while !this.buf.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                slices[0] = IoSlice::new(&this.buf);
                slices[1..=bufs.len()].copy_from_slice(bufs);
                let n = std::task::ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &slices[..=bufs.len()]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                if n <= this.buf.len() {
                    this.buf.drain(..n);
                    continue;
                }
                let taken = n - this.buf.len();
                this.reset_gathering();
                return Poll::Ready(Ok(taken));
            }
            this.reset_gathering();
        }
        if this.buf.len() + total <= GATHER {
            if this.buf.capacity() == 0 {
                this.buf.reserve_exact(GATHER);
            }
            for b in bufs {
                this.buf.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            let yield_now = !this.draining
                && this.yields < MAX_YIELDS
                && match this.yielded_at {
                    // Nothing came during the last yield: write.
                    Some(at) if at == this.buf.len() => {
                        this.paid = this.paid.saturating_sub(1);
                        false
                    }
                    // More came: answers arrive faster than one a write; gather on.
                    Some(_) => {
                        this.paid = (this.paid + 1).min(MAX_PAID);
                        true
                    }
                    // The first flush since a write: yield while answers are being prepared, or
                    // while yields have been gathering more than they cost.
                    None => this.paid > 0 || this.preparing.any(),
                };
            if yield_now {
                this.yielded_at = Some(this.buf.len());
                this.yields += 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.draining = true;
            std::task::ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    /// Records every write it is given; takes at most `max` bytes a call.
    struct Sink {
        writes: Vec<Vec<u8>>,
        max: usize,
        flushes: usize,
    }

    impl Sink {
        fn new(max: usize) -> Self {
            Self { writes: Vec::new(), max, flushes: 0 }
        }
        fn all(&self) -> Vec<u8> {
            self.writes.concat()
        }
    }

    impl AsyncWrite for Sink {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            let n = data.len().min(self.max);
            self.get_mut().writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let mut one = bufs.iter().flat_map(|b| b.iter().copied()).collect::<Vec<u8>>();
            one.truncate(this.max);
            let n = one.len();
            this.writes.push(one);
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    struct Harness {
        io: Coalesce<Sink>,
        wakes: Arc<Wakes>,
        waker: Waker,
    }

    impl Harness {
        fn new(max: usize, preparing: Preparing) -> Self {
            let wakes = Arc::new(Wakes::default());
            let waker = Waker::from(wakes.clone());
            Self { io: Coalesce::new(Sink::new(max), preparing), wakes, waker }
        }
        fn write(&mut self, bufs: &[&[u8]]) -> usize {
            let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            let mut cx = Context::from_waker(&self.waker);
            match Pin::new(&mut self.io).poll_write_vectored(&mut cx, &slices) {
                Poll::Ready(r) => r.unwrap(),
                Poll::Pending => panic!("the sink never blocks"),
            }
        }
        /// True if the flush completed; false if it yielded (having woken the task).
        fn flush(&mut self) -> bool {
            let before = self.wakes.0.load(Ordering::Relaxed);
            let mut cx = Context::from_waker(&self.waker);
            match Pin::new(&mut self.io).poll_flush(&mut cx) {
                Poll::Ready(r) => {
                    r.unwrap();
                    true
                }
                Poll::Pending => {
                    assert_eq!(self.wakes.0.load(Ordering::Relaxed), before + 1, "a yield wakes its own task");
                    false
                }
            }
        }
        fn sink(&self) -> &Sink {
            self.io.get_ref()
        }
    }

    #[test]
    fn with_nothing_in_preparation_a_flush_writes_at_once() {
        let mut h = Harness::new(usize::MAX, Preparing::default());
        assert_eq!(h.write(&[b"head", &[1u8; 1024]]), 1028);
        assert!(h.sink().writes.is_empty(), "gathered, not written");
        assert!(h.flush());
        assert_eq!(h.sink().writes.len(), 1);
        assert_eq!(h.sink().flushes, 1);
        assert_eq!(h.sink().all().len(), 1028);
    }

    #[test]
    fn answers_in_preparation_are_gathered_into_one_write() {
        let preparing = Preparing::default();
        let mut h = Harness::new(usize::MAX, preparing.clone());
        let mut guards: Vec<_> = (0..3).map(|_| preparing.start()).collect();
        let mut expected = Vec::new();
        for i in 0..3u8 {
            let answer = [i; 1000];
            h.write(&[&answer]);
            expected.extend_from_slice(&answer);
            drop(guards.pop());
            // Each flush yields: either answers are still being prepared, or the last yield
            // gathered more.
            assert!(!h.flush(), "flush {i} yields");
        }
        assert!(h.sink().writes.is_empty());
        // Nothing came during the last yield: one write with all three.
        assert!(h.flush());
        assert_eq!(h.sink().writes, vec![expected]);
    }

    #[test]
    fn yields_that_gathered_nothing_stop_costing() {
        let preparing = Preparing::default();
        let mut h = Harness::new(usize::MAX, preparing.clone());
        // A burst: yields pay.
        let guards: Vec<_> = (0..2).map(|_| preparing.start()).collect();
        for _ in 0..2 {
            h.write(&[&[0u8; 500]]);
            assert!(!h.flush());
        }
        drop(guards);
        assert!(h.flush());
        // Then one request at a time: after at most MAX_PAID wasted yields, no more.
        let mut yields = 0;
        for _ in 0..10 {
            h.write(&[&[0u8; 500]]);
            while !h.flush() {
                yields += 1;
            }
        }
        assert!(yields <= usize::from(MAX_PAID), "{yields} yields");
        assert_eq!(h.sink().all().len(), 12 * 500);
    }

    #[test]
    fn the_buffer_is_given_back_once_written() {
        let preparing = Preparing::default();
        let mut h = Harness::new(usize::MAX, preparing.clone());
        // One answer at a time: written at once, and no memory kept afterwards.
        h.write(&[&[0u8; 1000]]);
        assert!(h.io.buf.capacity() >= 1000);
        assert!(h.flush());
        assert_eq!(h.io.buf.capacity(), 0, "an idle connection holds no buffer");
        // A burst gathered over yields: the buffer lives until the write, then goes too.
        let guards: Vec<_> = (0..3).map(|_| preparing.start()).collect();
        for _ in 0..3 {
            h.write(&[&[0u8; 500]]);
            assert!(!h.flush());
            assert_eq!(h.io.buf.capacity(), GATHER);
        }
        drop(guards);
        assert!(h.flush());
        assert_eq!(h.io.buf.capacity(), 0);
        // And after a large write that took the gathered bytes with it.
        h.write(&[b"small"]);
        h.write(&[&vec![1u8; GATHER + 1]]);
        assert_eq!(h.io.buf.capacity(), 0);
        assert_eq!(h.sink().all().len(), 1000 + 3 * 500 + 5 + GATHER + 1);
    }

    #[test]
    fn a_large_write_goes_behind_the_gathered_bytes_in_one_write() {
        let mut h = Harness::new(usize::MAX, Preparing::default());
        h.write(&[b"small"]);
        let frame = vec![7u8; GATHER + 1];
        assert_eq!(h.write(&[b"hdr", &frame]), 3 + frame.len());
        let mut expected = b"smallhdr".to_vec();
        expected.extend_from_slice(&frame);
        assert_eq!(h.sink().writes, vec![expected]);
        // Nothing left to write: the flush only flushes.
        assert!(h.flush());
        assert_eq!(h.sink().writes.len(), 1);
    }

    #[test]
    fn a_large_write_with_nothing_gathered_passes_straight_through() {
        let mut h = Harness::new(usize::MAX, Preparing::default());
        let frame = vec![7u8; GATHER * 2];
        assert_eq!(h.write(&[&frame]), frame.len());
        assert_eq!(h.sink().writes, vec![frame]);
    }

    #[test]
    fn short_writes_by_the_stream_below_lose_and_reorder_nothing() {
        let preparing = Preparing::default();
        let mut h = Harness::new(1000, preparing.clone());
        let mut expected = Vec::new();
        let mut byte = 0u8;
        for len in [10usize, 3000, 700, GATHER + 500, 1, 9000, 9000, 20] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    byte = byte.wrapping_add(1);
                    byte
                })
                .collect();
            let mut done = 0;
            while done < data.len() {
                done += h.write(&[&data[done..]]);
            }
            expected.extend_from_slice(&data);
        }
        while !h.flush() {}
        assert_eq!(h.sink().all(), expected);
        assert!(h.sink().writes.iter().all(|w| w.len() <= 1000));
    }

    #[test]
    fn a_trickle_of_tiny_frames_waits_a_bounded_number_of_yields() {
        let preparing = Preparing::default();
        let mut h = Harness::new(usize::MAX, preparing.clone());
        let _busy = preparing.start();
        let mut yields = 0;
        loop {
            h.write(&[&[0u8; 13]]);
            if h.flush() {
                break;
            }
            yields += 1;
        }
        assert_eq!(yields, usize::from(MAX_YIELDS));
        assert_eq!(h.sink().writes.len(), 1);
    }

    #[test]
    fn a_sink_that_takes_nothing_is_an_error_not_a_loop() {
        let mut h = Harness::new(0, Preparing::default());
        h.write(&[b"abc"]);
        let mut cx = Context::from_waker(&h.waker);
        match Pin::new(&mut h.io).poll_flush(&mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::WriteZero),
            other => panic!("{other:?}"),
        }
    }
}
