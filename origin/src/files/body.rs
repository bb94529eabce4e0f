//! The streaming body for larger files: each chunk is read on the runtime thread when the page
//! cache already holds it, and on the blocking pool when it must come from the disk.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use rustix::io::{Errno, IoSliceMut, ReadWriteFlags};
use tokio::task::JoinHandle;

/// The most read per chunk (and so the memory a read holds at once).
pub(crate) const CHUNK: u64 = 128 * 1024;

/// Streams `len` bytes of a file starting at `pos`.
///
/// A chunk is first read with `RWF_NOWAIT`, which copies what the page cache holds and never
/// waits for the disk: a file being watched or downloaded again is served without leaving the
/// runtime thread, with no hand-off to the blocking pool and back (two thread wake-ups per
/// chunk, most of the origin's scheduling cost on a download). When the data is not cached
/// (`EAGAIN`) the chunk is read on the blocking pool as before, so a slow disk never stalls the
/// runtime. Filesystems without `RWF_NOWAIT` use the blocking pool for every chunk, one chunk
/// ahead of what the consumer has taken. HTTP/2 flow control paces the reads either way.
///
/// Chunk buffers come from a small shared pool ([`pool`]) and go back to it when the tunnel
/// has sent the last byte of them.
pub(crate) struct FileBody {
    state: State,
    pos: u64,
    remaining: u64,
    /// Whether chunks may be tried from the page cache on the runtime thread.
    nowait: bool,
    /// Shared with every chunk of this body still alive (queued in the tunnel): a count of 1
    /// means none is, and the stream is owed a buffer even when the pool is empty.
    live: Arc<()>,
}

enum State {
    /// Waiting to be polled; owns the file.
    Idle(File),
    /// Every chunk buffer of the origin is in use: waiting for one to come back, and checking
    /// every [`pool::PATIENCE`] whether this stream has nothing in flight any more.
    Queued(File, Pin<Box<WaitForBuffer>>, Pin<Box<tokio::time::Sleep>>),
    /// A chunk is being read on the blocking pool; the file comes back with it.
    Reading(JoinHandle<(File, io::Result<Bytes>)>),
    /// Finished, failed, or nothing to send.
    Done,
}

/// What [`Body::poll_frame`] returns.
type Polled = Poll<Option<Result<Frame<Bytes>, io::Error>>>;

/// Waiting for a chunk buffer to be free.
type WaitForBuffer =
    dyn Future<Output = Result<tokio::sync::SemaphorePermit<'static>, tokio::sync::AcquireError>> + Send;

/// What a page-cache read gave.
enum Cached {
    /// This many bytes (fewer than asked when only part is cached).
    Read(Bytes),
    /// Not cached, or at the end of the file: read on the blocking pool.
    Miss(pool::Buffer),
    /// The filesystem does not do `RWF_NOWAIT`.
    Unsupported(pool::Buffer),
}

impl FileBody {
    pub(crate) fn new(file: File, pos: u64, len: u64) -> FileBody {
        let state = if len == 0 { State::Done } else { State::Idle(file) };
        FileBody { state, pos, remaining: len, nowait: true, live: Arc::new(()) }
    }

    fn fail(&mut self, err: io::Error) -> Polled {
        self.state = State::Done;
        self.remaining = 0;
        Poll::Ready(Some(Err(err)))
    }

    /// The size of the next chunk.
    fn next_len(&self) -> usize {
        self.remaining.min(CHUNK) as usize
    }

    /// Account for a chunk read at the current position and hand it out.
    fn hand_out(&mut self, chunk: Bytes) -> Polled {
        let n = chunk.len() as u64;
        self.pos += n;
        self.remaining = self.remaining.saturating_sub(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    /// Read the next chunk into `buf`: from the page cache at once when it is there (`Some`),
    /// else on the blocking pool (the state becomes `Reading`).
    fn start_read(&mut self, file: File, mut buf: pool::Buffer) -> Option<Polled> {
        let len = self.next_len();
        if self.nowait {
            match read_cached(&file, self.pos, buf, len) {
                Ok(Cached::Read(chunk)) => {
                    let ready = self.hand_out(chunk);
                    // At the end nothing more is read: no empty frame, no extra buffer.
                    self.state = if self.remaining == 0 { State::Done } else { State::Idle(file) };
                    return Some(ready);
                }
                Ok(Cached::Miss(back)) => buf = back,
                Ok(Cached::Unsupported(back)) => {
                    self.nowait = false;
                    buf = back;
                }
                Err(err) => return Some(self.fail(err)),
            }
        }
        self.state = State::Reading(read_blocking(file, self.pos, buf, len));
        None
    }

    /// The state machine behind [`Body::poll_frame`].
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Polled {
        loop {
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Idle(_) => {
                    let State::Idle(file) = std::mem::replace(&mut self.state, State::Done) else {
                        return Poll::Ready(None);
                    };
                    if self.remaining == 0 {
                        return Poll::Ready(None);
                    }
                    match pool::try_take(&self.live) {
                        Some(buf) => {
                            if let Some(ready) = self.start_read(file, buf) {
                                return ready;
                            }
                        }
                        None => {
                            let patience = Box::pin(tokio::time::sleep(pool::PATIENCE));
                            self.state = State::Queued(file, Box::pin(pool::acquire()), patience);
                        }
                    }
                }
                State::Queued(_, acquire, patience) => {
                    let buf = match acquire.as_mut().poll(cx) {
                        Poll::Ready(Ok(permit)) => pool::Buffer::new(Some(permit), &self.live),
                        Poll::Ready(Err(_)) => return self.fail(io::Error::other("chunk buffers closed")),
                        Poll::Pending => {
                            ready!(patience.as_mut().poll(cx));
                            if Arc::strong_count(&self.live) > 1 {
                                // Chunks of this stream are still queued: they will come back.
                                patience.as_mut().reset(tokio::time::Instant::now() + pool::PATIENCE);
                                continue;
                            }
                            // Nothing of this stream is in flight: it is owed progress even
                            // though slow consumers hold every pooled buffer.
                            pool::Buffer::new(None, &self.live)
                        }
                    };
                    let State::Queued(file, ..) = std::mem::replace(&mut self.state, State::Done) else {
                        return Poll::Ready(None);
                    };
                    if let Some(ready) = self.start_read(file, buf) {
                        return ready;
                    }
                }
                State::Reading(task) => {
                    let joined = ready!(Pin::new(task).poll(cx));
                    return match joined {
                        Ok((file, Ok(chunk))) => {
                            let n = chunk.len() as u64;
                            self.state = if self.remaining <= n {
                                State::Done
                            } else if self.nowait {
                                // The next chunk is tried from the page cache first (the
                                // kernel's read-ahead has likely brought it in).
                                State::Idle(file)
                            } else if let Some(buf) = pool::try_take(&self.live) {
                                // Read ahead: the next chunk loads while this one is sent.
                                let (pos, len) = (self.pos + n, (self.remaining - n).min(CHUNK) as usize);
                                State::Reading(read_blocking(file, pos, buf, len))
                            } else {
                                State::Idle(file)
                            };
                            self.hand_out(chunk)
                        }
                        Ok((_, Err(err))) => self.fail(err),
                        Err(join) => self.fail(io::Error::other(join)),
                    };
                }
            }
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        // Page-cache reads are always ready: without spending tokio's co-operative budget, a
        // consumer that pulls until it has enough (the compressor) could keep this worker
        // thread busy for many megabytes while the tunnel's task waits.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let polled = self.get_mut().poll_chunk(cx);
        if polled.is_ready() {
            coop.made_progress();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Read what the page cache holds at `pos` (up to `len` bytes) into `buf`, without waiting for
/// the disk.
fn read_cached(file: &File, pos: u64, mut buf: pool::Buffer, len: usize) -> io::Result<Cached> {
    match rustix::io::preadv2(file, &mut [IoSliceMut::new(&mut buf.bytes()[..len])], pos, ReadWriteFlags::NOWAIT) {
        // 0 is the end of the file: the blocking read reports the file as shrunk.
        Ok(0) => Ok(Cached::Miss(buf)),
        Ok(n) => Ok(Cached::Read(buf.into_chunk(n))),
        Err(Errno::AGAIN | Errno::INTR) => Ok(Cached::Miss(buf)),
        Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Ok(Cached::Unsupported(buf)),
        Err(e) => Err(e.into()),
    }
}

/// Read exactly `len` bytes at `pos` into `buf` on the blocking pool.
fn read_blocking(file: File, pos: u64, mut buf: pool::Buffer, len: usize) -> JoinHandle<(File, io::Result<Bytes>)> {
    tokio::task::spawn_blocking(move || {
        let chunk = exact_at(&file, pos, &mut buf.bytes()[..len]).map(|()| buf.into_chunk(len));
        (file, chunk)
    })
}

/// Read exactly `len` bytes at `pos` (blocking), for answers read in full. Reaching the end of
/// the file first means it shrank after it was measured: that is an error, never a short answer.
pub(crate) fn read_exact_at(file: &File, pos: u64, len: u64) -> io::Result<Bytes> {
    let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    exact_at(file, pos, &mut buf)?;
    Ok(Bytes::from(buf))
}

fn exact_at(file: &File, pos: u64, buf: &mut [u8]) -> io::Result<()> {
    file.read_exact_at(buf, pos).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being read")
        } else {
            e
        }
    })
}

/// Chunk buffers: bounded in all, and reused. A chunk handed to the tunnel is a [`Bytes`] that
/// owns its buffer; when the last byte of it has been sent (its last reference dropped), the
/// buffer comes back here.
///
/// The bound: at most [`MAX_IN_USE`] chunks (64 MiB) exist at once in the whole origin, read
/// and waiting in the tunnel's send buffers; a stream that wants one more waits for one to be
/// sent (FIFO). Without it the origin's memory grew with the number of downloads: each stream
/// may queue HTTP/2's send buffer plus a chunk, and 1,000 slow downloads took 480 MiB.
///
/// The reuse: without it every chunk was a fresh 128 KiB allocation, at glibc's mmap
/// threshold, so each one was mapped, faulted in page by page, zeroed and unmapped again.
pub(crate) mod pool {
    use super::CHUNK;
    use bytes::Bytes;
    use std::sync::{Arc, Mutex};
    use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

    /// Chunks that may exist at once (read or queued to send), in all.
    pub(crate) const MAX_IN_USE: usize = 512;

    /// Free buffers kept for reuse at most (8 MiB); more are freed.
    pub(crate) const KEPT: usize = 64;

    /// How often a stream waiting for a buffer checks whether it still has chunks in flight.
    /// One that has none gets a buffer outside the pool: slow consumers holding every pooled
    /// buffer slow other downloads down, but never stop them. Such buffers are one per stream
    /// at most, so the bound becomes 64 MiB plus one chunk per stream that is being starved.
    pub(crate) const PATIENCE: std::time::Duration = std::time::Duration::from_millis(50);

    static IN_USE: Semaphore = Semaphore::const_new(MAX_IN_USE);
    static FREE: Kept = Kept(Mutex::new(Vec::new()));

    /// Free buffers kept for reuse, at most [`KEPT`] of them.
    pub(crate) struct Kept(Mutex<Vec<Vec<u8>>>);

    impl Kept {
        fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// A kept buffer (holding old data), or a new zeroed one.
        pub(crate) fn take(&self) -> Vec<u8> {
            self.lock().pop().unwrap_or_else(|| vec![0u8; CHUNK as usize])
        }

        /// Keep `buf` if it is a whole chunk and fewer than [`KEPT`] are kept; else free it.
        /// Counted as work (`common::memory`): a download that stalled and was then reset
        /// frees its buffers only now, after the quiet-time release may already have run.
        pub(crate) fn give_back(&self, buf: Vec<u8>) {
            common::memory::worked();
            if buf.len() == CHUNK as usize {
                let mut free = self.lock();
                if free.len() < KEPT {
                    free.push(buf);
                }
            }
        }

        /// Free every kept buffer (after the lock is released).
        pub(crate) fn release(&self) {
            let kept = std::mem::take(&mut *self.lock());
            drop(kept);
        }

        #[cfg(test)]
        pub(crate) fn len(&self) -> usize {
            self.lock().len()
        }
    }

    /// A buffer of [`CHUNK`] bytes, counted against [`MAX_IN_USE`] (unless it is a stream's
    /// owed one, see [`PATIENCE`]) and against its stream's live chunks until it is dropped.
    pub(crate) struct Buffer {
        buf: Vec<u8>,
        _permit: Option<SemaphorePermit<'static>>,
        _live: Arc<()>,
    }

    impl Buffer {
        /// A returned buffer (holding old file data, always overwritten before any of it is
        /// handed out) or a new zeroed one.
        pub(crate) fn new(permit: Option<SemaphorePermit<'static>>, live: &Arc<()>) -> Buffer {
            common::memory::worked();
            Buffer { buf: FREE.take(), _permit: permit, _live: Arc::clone(live) }
        }

        pub(crate) fn bytes(&mut self) -> &mut [u8] {
            &mut self.buf
        }

        /// The first `len` bytes as a chunk that gives the buffer back once dropped.
        pub(crate) fn into_chunk(self, len: usize) -> Bytes {
            Bytes::from_owner(Owned { buffer: self, len })
        }
    }

    impl Drop for Buffer {
        fn drop(&mut self) {
            FREE.give_back(std::mem::take(&mut self.buf));
        }
    }

    /// A buffer now for the stream `live` stands for, if fewer than [`MAX_IN_USE`] are in use.
    pub(crate) fn try_take(live: &Arc<()>) -> Option<Buffer> {
        IN_USE.try_acquire().ok().map(|permit| Buffer::new(Some(permit), live))
    }

    /// Free the buffers kept for reuse (once downloads have gone quiet: see
    /// `common::memory`); buffers still in use come back as usual.
    pub(crate) fn release_kept() {
        FREE.release();
    }

    /// Wait for a buffer to be free (then [`Buffer::new`] with the permit).
    pub(crate) fn acquire() -> impl std::future::Future<Output = Result<SemaphorePermit<'static>, AcquireError>> {
        IN_USE.acquire()
    }

    /// Free buffers kept (for tests).
    #[cfg(test)]
    pub(crate) fn kept() -> usize {
        FREE.len()
    }

    #[test]
    fn kept_buffers_are_reused_bounded_and_released() {
        let kept = Kept(Mutex::new(Vec::new()));
        let mut first = kept.take();
        assert_eq!(first.len(), CHUNK as usize);
        first[0] = 42;
        kept.give_back(first);
        assert_eq!(kept.take()[0], 42, "the kept buffer comes back");
        kept.give_back(vec![0u8; 10]);
        assert_eq!(kept.len(), 0, "a buffer of another size is not kept");
        for _ in 0..KEPT + 5 {
            kept.give_back(vec![0u8; CHUNK as usize]);
        }
        assert_eq!(kept.len(), KEPT);
        kept.release();
        assert_eq!(kept.len(), 0);
        assert_eq!(kept.take().len(), CHUNK as usize, "a new one after the release");
    }

    /// Buffers that may still be taken (for tests).
    #[cfg(test)]
    pub(crate) fn available() -> usize {
        IN_USE.available_permits()
    }

    struct Owned {
        buffer: Buffer,
        len: usize,
    }

    impl AsRef<[u8]> for Owned {
        fn as_ref(&self) -> &[u8] {
            &self.buffer.buf[..self.len]
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    fn file_with(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        (f, data)
    }

    #[tokio::test]
    async fn streams_a_slice_in_chunks() {
        streams_a_slice(true).await;
    }

    #[tokio::test]
    async fn streams_a_slice_from_the_blocking_pool() {
        streams_a_slice(false).await;
    }

    async fn streams_a_slice(nowait: bool) {
        let (f, data) = file_with(300_000);
        let mut body = FileBody::new(f.reopen().unwrap(), 1000, 290_000);
        body.nowait = nowait;
        assert_eq!(body.size_hint().exact(), Some(290_000));
        assert!(!body.is_end_stream());
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(chunk.len() as u64 <= CHUNK);
            assert!(!chunk.is_empty(), "no empty frames, at the end either");
            got.extend_from_slice(&chunk);
            frames += 1;
            assert_eq!(body.size_hint().exact(), Some(290_000 - got.len() as u64));
        }
        // Page-cache reads may come short (whatever is cached), never long.
        if nowait {
            assert!(frames >= 3, "{frames}");
        } else {
            assert_eq!(frames, 3);
        }
        assert!(body.is_end_stream());
        assert_eq!(got, &data[1000..291_000]);
    }

    /// Held by the tests that count on the pool's buffers: one of them takes every buffer
    /// there is, which leaves the other none to reuse.
    static POOL_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn sent_buffers_are_reused() {
        let _alone = POOL_TESTS.lock().await;
        let (f, data) = file_with(1_000_000);
        let mut body = FileBody::new(f.reopen().unwrap(), 0, 1_000_000);
        let mut got = Vec::new();
        let mut seen = Vec::new();
        let mut reused = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            let at = chunk.as_ptr() as usize;
            reused += usize::from(seen.contains(&at));
            seen.push(at);
            got.extend_from_slice(&chunk);
            // dropped here, as the tunnel does once a chunk is sent: its buffer goes back
        }
        assert_eq!(got, data);
        // Tests run in parallel and share the pool, so only "most were reused" is certain.
        assert!(reused >= seen.len() / 2, "{reused} of {} chunks on reused buffers", seen.len());
        assert!(pool::kept() <= pool::KEPT);
        assert!(pool::available() <= pool::MAX_IN_USE);
    }

    #[tokio::test]
    async fn a_stream_waits_when_every_buffer_is_in_use() {
        let _alone = POOL_TESTS.lock().await;
        let (f, data) = file_with(300_000);
        // Hold every buffer (other tests may hold some too: take what is there).
        let mut held = Vec::new();
        let other = Arc::new(());
        while let Some(b) = pool::try_take(&other) {
            held.push(b);
        }
        let mut body = FileBody::new(f.reopen().unwrap(), 0, 300_000);
        // No buffer free, but nothing of this stream in flight: it gets one after PATIENCE.
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame()).await;
        let first = first.expect("a starved stream is owed progress").unwrap().unwrap().into_data().unwrap();
        // With its first chunk still held, it waits for a pooled one.
        let second = tokio::time::timeout(pool::PATIENCE * 4, body.frame()).await;
        assert!(second.is_err(), "with a chunk in flight, the stream waits for the pool");
        let mut got = first.to_vec();
        drop(first);
        drop(held);
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, data);
        assert!(pool::kept() <= pool::KEPT);
    }

    #[tokio::test]
    async fn empty_is_done_at_once() {
        let (f, _) = file_with(10);
        let mut body = FileBody::new(f.reopen().unwrap(), 0, 0);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_shrinking_file_is_an_error() {
        let (f, _) = file_with(400_000);
        let mut body = FileBody::new(f.reopen().unwrap(), 0, 400_000);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len() as u64, CHUNK);
        f.as_file().set_len(200_000).unwrap();
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("a truncated file must not end cleanly"),
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(body.frame().await.is_none());
    }
}
