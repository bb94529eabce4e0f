//! Bodies on a tunnel's HTTP/2 streams, for the end that runs `h2` directly: [`Received`]
//! hands on what a stream receives and [`send_body`] sends a body as the peer's window allows.
//!
//! # Why a received body is drained when its reader stalls
//!
//! `h2` keeps every DATA frame it has received until the reader takes it, at ~250 bytes of
//! bookkeeping per frame whatever its size, and it charges each frame under 256 bytes to a
//! per-connection budget (half the connection window). When the budget runs out it ends the
//! whole connection (`GOAWAY ENHANCE_YOUR_CALM`, "too_many_data_frames"). Flow control bounds
//! the *bytes* one stream may have waiting (its window, 1 MiB), not the *frames*: a front-end
//! client that uploads in 1-byte chunks to a service that does not read took a tunnel down in
//! seven seconds, every other stream on it with it. The same holds the other way for an app
//! that writes tiny pieces to a client that does not read.
//!
//! So a stream whose reader is away is *drained*: its frames are moved out of `h2` into one
//! buffer of its own ([`Received::drain`]), which gives `h2`'s bookkeeping and budget back at
//! once. Their window is released only as the reader takes them (or when the body is dropped),
//! exactly as before, so flow control still bounds what the stream holds and the sender still
//! waits. Once a stream has had a small frame, the drainer leaves its own waker with `h2`
//! ([`WakeQueue`]), so each arrival while the reader is away brings it back; a tick catches
//! streams that nobody has read yet. The proxy drains response bodies in its stall task
//! (`proxy::stall`); the origin drains request bodies through [`Drains`].
//!
//! [`send_body`] never sends an empty DATA frame that does not end the stream: `h2` ends a
//! connection after 100 of them.

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use http::{header, HeaderMap};
use http_body::{Body, Frame, SizeHint};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::sync::Notify;

/// Frames under this are what `h2` charges to its budget: a stream that has had one is drained
/// as soon as more arrive while its reader is away.
const SMALL_FRAME: usize = 256;

/// Frames under this are copied together when drained; larger ones are kept as they are.
const MERGE_BELOW: usize = 4096;

/// How often the draining end looks for readers that are away without having been drained
/// yet (a stream whose first frames arrive while nobody reads it). Once a stream has had a
/// small frame, more arriving wake the draining task at once ([`WakeQueue`]).
pub const DRAIN_TICK: Duration = Duration::from_millis(100);

/// A body received on an HTTP/2 stream: its DATA frames, then its trailers. Each frame's bytes
/// go back to the stream's window as they are handed on, not before.
#[derive(Debug)]
pub struct Received {
    recv: RecvStream,
    /// Frames drained while the reader was away, in order; `tail` follows them.
    drained: VecDeque<Bytes>,
    /// Small drained frames, merged (they come after everything in `drained`).
    tail: BytesMut,
    /// Bytes in `drained` and `tail`: window held and not yet handed on.
    drained_bytes: usize,
    /// An error `h2` gave while draining: handed on after the drained data.
    failed: Option<h2::Error>,
    /// `h2` has no more DATA for this stream (trailers may follow).
    data_done: bool,
    /// `content-length` minus what has been handed on, when the sender gave one.
    remaining: Option<u64>,
    /// Wakes the draining task when more arrives for this stream while its reader is away;
    /// registered with `h2` once the stream has had a small frame ([`Received::drain`]).
    wanted: Option<Waker>,
    small_seen: bool,
}

impl Received {
    pub fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        let remaining =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        Received {
            recv,
            drained: VecDeque::new(),
            tail: BytesMut::new(),
            drained_bytes: 0,
            failed: None,
            data_done: false,
            remaining,
            wanted: None,
            small_seen: false,
        }
    }

    /// Bytes the peer has sent that are not yet handed on (drained ones included): the share
    /// of the connection's window this stream holds.
    pub fn held(&mut self) -> u64 {
        self.recv.flow_control().used_capacity() as u64
    }

    /// Move every frame `h2` holds for this stream into the body's own buffer, without giving
    /// their window back; returns how many frames moved. Once the stream has had a small
    /// frame, the waker from [`WakeQueue::waker_for`] is left with `h2`, so that more arriving
    /// bring the draining task back at once; until then a no-op one.
    ///
    /// Only for a reader that is *away*: it was last handed a frame and has not polled since,
    /// so no waker of its is registered with `h2` (the reader's next poll registers its own
    /// again). Called while the reader is waiting for data (its last poll was `Pending`), it
    /// would take the reader's wake-up.
    pub fn drain(&mut self) -> usize {
        let noop = Waker::noop();
        let mut moved = 0;
        while !self.data_done {
            let waker = match (&self.wanted, self.small_seen) {
                (Some(wanted), true) => wanted,
                _ => noop,
            };
            match self.recv.poll_data(&mut Context::from_waker(waker)) {
                Poll::Ready(Some(Ok(data))) => {
                    moved += 1;
                    self.small_seen |= data.len() < SMALL_FRAME;
                    self.keep(data);
                }
                Poll::Ready(Some(Err(e))) => {
                    self.failed = Some(e);
                    self.data_done = true;
                }
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => break,
            }
        }
        moved
    }

    /// Where to be woken when more arrives for this stream while its reader is away.
    pub fn wake_drainer(&mut self, waker: Waker) {
        self.wanted = Some(waker);
    }

    fn keep(&mut self, data: Bytes) {
        self.drained_bytes += data.len();
        if data.len() < MERGE_BELOW {
            self.tail.extend_from_slice(&data);
        } else {
            if !self.tail.is_empty() {
                self.drained.push_back(self.tail.split().freeze());
            }
            self.drained.push_back(data);
        }
    }

    fn take_drained(&mut self) -> Option<Bytes> {
        let data = match self.drained.pop_front() {
            Some(data) => data,
            // The merged frames go as one; the buffer starts afresh (its size was a stall's).
            None if !self.tail.is_empty() => std::mem::take(&mut self.tail).freeze(),
            None => return None,
        };
        self.drained_bytes -= data.len();
        Some(data)
    }

    fn hand_on(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let _ = self.recv.flow_control().release_capacity(data.len());
        if let Some(left) = self.remaining.as_mut() {
            *left = left.saturating_sub(data.len() as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

/// The window of drained bytes goes back with the body: `h2` returns only what it still holds
/// itself when a stream's reader goes, and the rest not until every handle on the stream is
/// gone (an upload's sending half may live on).
impl Drop for Received {
    fn drop(&mut self) {
        if self.drained_bytes > 0 {
            let _ = self.recv.flow_control().release_capacity(self.drained_bytes);
        }
    }
}

impl Body for Received {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if let Some(data) = this.take_drained() {
            return this.hand_on(data);
        }
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    if data.len() < SMALL_FRAME && this.wanted.is_some() {
                        // The reader is handed a small piece and is away until it polls
                        // again: what follows goes to the drainer, not to h2's bookkeeping.
                        this.small_seen = true;
                        this.drain();
                    }
                    return this.hand_on(data);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.drained.is_empty() && self.tail.is_empty() && self.failed.is_none() && self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

/// The owners of received bodies (`T`) that `h2` has woken because more arrived while their
/// reader was away; the draining task takes them ([`WakeQueue::woken`]) and drains them again.
#[derive(Debug)]
pub struct WakeQueue<T> {
    woken: Mutex<Vec<Arc<Wanted<T>>>>,
    notify: Notify,
}

impl<T> Default for WakeQueue<T> {
    fn default() -> Self {
        WakeQueue { woken: Mutex::new(Vec::new()), notify: Notify::new() }
    }
}

/// One owner's waker: queues it once until the draining task takes it.
#[derive(Debug)]
pub struct Wanted<T> {
    owner: Weak<T>,
    queue: Weak<WakeQueue<T>>,
    queued: AtomicBool,
}

impl<T: Send + Sync + 'static> Wake for Wanted<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    // Called by h2 under its own lock: only a push and a notify, never a poll.
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            if let Some(queue) = self.queue.upgrade() {
                queue.woken.lock().unwrap_or_else(|p| p.into_inner()).push(self.clone());
                queue.notify.notify_one();
            }
        }
    }
}

impl<T: Send + Sync + 'static> WakeQueue<T> {
    /// The waker to leave with `h2` for `owner`'s body ([`Received::wake_drainer`]).
    pub fn waker_for(self: &Arc<Self>, owner: &Arc<T>) -> Waker {
        Waker::from(Arc::new(Wanted {
            owner: Arc::downgrade(owner),
            queue: Arc::downgrade(self),
            queued: AtomicBool::new(false),
        }))
    }

    /// The owners woken since the last call; waits for one if there are none.
    pub async fn woken(&self) -> Vec<Arc<T>> {
        loop {
            let taken = std::mem::take(&mut *self.woken.lock().unwrap_or_else(|p| p.into_inner()));
            if !taken.is_empty() {
                return taken
                    .into_iter()
                    .filter_map(|wanted| {
                        wanted.queued.store(false, Ordering::Release);
                        wanted.owner.upgrade()
                    })
                    .collect();
            }
            self.notify.notified().await;
        }
    }
}

/// The received bodies of one connection whose readers may stall (the origin's request
/// bodies, read by the app at its own pace), drained when their reader is away: every
/// [`DRAIN_TICK`] ([`Drains::tick`]), and at once when more arrives for one that has had a
/// small frame ([`Drains::woken`]).
#[derive(Debug, Default)]
pub struct Drains {
    bodies: Mutex<HashMap<u64, Weak<Mutex<Watched>>>>,
    next_id: AtomicU64,
    queue: Arc<WakeQueue<Mutex<Watched>>>,
    /// Frames moved out of `h2` so far (for tests and the curious).
    pub drained_frames: AtomicU64,
}

#[derive(Debug)]
pub struct Watched {
    body: Received,
    /// The reader's last poll was `Pending`: its waker is with `h2`, so it must not be drained.
    waiting: bool,
}

impl Drains {
    /// Hand `body` to a reader that may stall; it is drained while the reader is away.
    pub fn watch(self: &Arc<Self>, body: Received) -> DrainedBody {
        let shared = Arc::new(Mutex::new(Watched { body, waiting: false }));
        let waker = self.queue.waker_for(&shared);
        shared.lock().unwrap_or_else(|p| p.into_inner()).body.wake_drainer(waker);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.bodies.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Arc::downgrade(&shared));
        DrainedBody { shared, drains: Arc::downgrade(self), id }
    }

    /// Bodies being watched.
    pub fn len(&self) -> usize {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drain every body whose reader is away.
    pub fn tick(&self) {
        let bodies: Vec<_> =
            self.bodies.lock().unwrap_or_else(|p| p.into_inner()).values().filter_map(Weak::upgrade).collect();
        self.drain_all(bodies);
    }

    /// The bodies `h2` woke because more arrived while their reader was away: pass them to
    /// [`Drains::drain_all`].
    pub async fn woken(&self) -> Vec<Arc<Mutex<Watched>>> {
        self.queue.woken().await
    }

    /// Drain those of `bodies` whose reader is away.
    pub fn drain_all(&self, bodies: Vec<Arc<Mutex<Watched>>>) {
        for shared in bodies {
            let mut watched = shared.lock().unwrap_or_else(|p| p.into_inner());
            if !watched.waiting {
                let moved = watched.body.drain();
                if moved > 0 {
                    self.drained_frames.fetch_add(moved as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A received body watched by [`Drains`]; it leaves the watch when dropped.
#[derive(Debug)]
pub struct DrainedBody {
    shared: Arc<Mutex<Watched>>,
    drains: Weak<Drains>,
    id: u64,
}

impl Drop for DrainedBody {
    fn drop(&mut self) {
        if let Some(drains) = self.drains.upgrade() {
            drains.bodies.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        }
    }
}

impl Body for DrainedBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let mut watched = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let polled = Pin::new(&mut watched.body).poll_frame(cx);
        watched.waiting = polled.is_pending();
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).body.size_hint()
    }
}

/// How sending a body on a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// All of it, with the end of the stream.
    Whole,
    /// The peer reset the stream or the connection closed: nobody wants the rest.
    PeerGone,
    /// The body failed; the stream has not ended (the caller resets it).
    BodyFailed,
}

/// Send `body` on `send` as the peer's window allows: wait for window, then send one frame, so
/// at most one frame beyond the window is buffered. Trailers go as trailers.
pub async fn send_body<B>(body: &mut B, send: &mut SendStream<Bytes>) -> Sent
where
    B: Body<Data = Bytes> + Unpin,
{
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
                Some(Err(_)) | None => return Sent::PeerGone,
            }
        }
        let frame = poll_fn(|cx| match send.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Pin::new(&mut *body).poll_frame(cx).map(Some),
        })
        .await;
        let Some(frame) = frame else { return Sent::PeerGone };
        let (sent, ended) = match frame {
            None => (send.send_data(Bytes::new(), true), true),
            Some(Ok(frame)) => match frame.into_data() {
                // An empty piece that ends nothing is not sent: h2 ends a connection that
                // receives more than 100 of them, and a front-end client may send thousands.
                Ok(data) if data.is_empty() && !body.is_end_stream() => (Ok(()), false),
                Ok(data) => {
                    let last = body.is_end_stream();
                    (send.send_data(data, last), last)
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => (send.send_trailers(trailers), true),
                    Err(_) => (Ok(()), false),
                },
            },
            Some(Err(_)) => return Sent::BodyFailed,
        };
        match (sent, ended) {
            (Err(_), _) => return Sent::PeerGone,
            (Ok(()), true) => return Sent::Whole,
            (Ok(()), false) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tunnel::{client_builder, server_builder};
    use http::{Request, Response};
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    /// Small frames each side may hold unread before h2 ends the connection: 100 one-byte ones.
    const BUDGET: usize = 100 * 256;
    const FRAMES: usize = 2000;
    const BATCH: usize = 50;
    /// Every test ends well within this; past it, it has hung.
    const LIMIT: Duration = Duration::from_secs(20);

    fn piece(i: usize) -> Bytes {
        Bytes::from(vec![b'a' + (i % 26) as u8])
    }

    fn expected() -> Vec<u8> {
        (0..FRAMES).map(|i| b'a' + (i % 26) as u8).collect()
    }

    /// Call `step` until it says done (at most a million times, yielding between).
    async fn until(mut step: impl FnMut() -> bool) {
        for _ in 0..1_000_000 {
            if step() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never done");
    }

    /// A client (small-frame budget [`BUDGET`]) and a server over a pipe; the server answers the
    /// first request with [`FRAMES`] one-byte DATA frames, [`BATCH`] at a time, waiting for
    /// `next` between batches when `paced`. Returns the response's body.
    async fn download(paced: bool, next: Arc<Notify>) -> Received {
        let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
        tokio::spawn(async move {
            let mut conn = server_builder().handshake::<_, Bytes>(server_io).await.unwrap();
            let (_req, mut respond) = conn.accept().await.unwrap().unwrap();
            tokio::spawn(async move { while conn.accept().await.is_some() {} });
            let mut send = respond.send_response(Response::new(()), false).unwrap();
            for i in 0..FRAMES {
                send.send_data(piece(i), i + 1 == FRAMES).unwrap();
                if paced && (i + 1) % BATCH == 0 {
                    next.notified().await;
                }
            }
        });
        let (mut sender, conn) =
            client_builder().data_frame_budget(BUDGET).handshake::<_, Bytes>(client_io).await.unwrap();
        tokio::spawn(conn);
        let (response, _) = sender.send_request(Request::get("http://origin/").body(()).unwrap(), true).unwrap();
        let resp = response.await.unwrap();
        let (parts, recv) = resp.into_parts();
        Received::new(recv, &parts.headers)
    }

    #[tokio::test]
    async fn tiny_frames_unread_end_the_connection_unless_drained() {
        // Unread: past the budget, h2 ends the connection and the body fails.
        let mut body = download(false, Arc::new(Notify::new())).await;
        let read = timeout(LIMIT, (&mut body).collect()).await.unwrap();
        let e = read.expect_err("the connection ended");
        assert_eq!(e.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{e}");

        // Drained while the reader is away: every byte, in order, and the window held until read.
        let next = Arc::new(Notify::new());
        let mut body = download(true, next.clone()).await;
        let mut batches = 0;
        until(|| {
            body.drain();
            if body.drained_bytes >= (batches + 1) * BATCH && batches < FRAMES / BATCH {
                batches += 1;
                next.notify_one();
            }
            body.drained_bytes == FRAMES
        })
        .await;
        assert_eq!(body.held(), FRAMES as u64, "drained frames keep their window until read");
        let all = timeout(LIMIT, body.collect()).await.unwrap().unwrap().to_bytes();
        assert_eq!(&all[..], &expected()[..]);
    }

    /// A server (small-frame budget [`BUDGET`], and the connection window given) whose request
    /// bodies are watched by `drains`, drained as the origin's tunnel loop does; and a client
    /// that uploads `frames` (each waited for window), waiting for `next` after every [`BATCH`].
    /// Returns the request's body as the app gets it, and the client's connection.
    async fn upload(
        drains: &Arc<Drains>,
        window: u32,
        frames: Vec<Bytes>,
        next: Arc<Notify>,
    ) -> (DrainedBody, h2::client::SendRequest<Bytes>) {
        let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
        let (tx, mut rx) = mpsc::channel(4);
        let d = drains.clone();
        tokio::spawn(async move {
            let mut conn = server_builder()
                .data_frame_budget(BUDGET)
                .initial_connection_window_size(window)
                .handshake::<_, Bytes>(server_io)
                .await
                .unwrap();
            let mut tick = tokio::time::interval(DRAIN_TICK);
            loop {
                tokio::select! {
                    accepted = conn.accept() => match accepted {
                        // Requests after the first stay open, unread, as the first does.
                        Some(Ok(accepted)) => if let Err(unwanted) = tx.send(accepted).await {
                            std::mem::forget(unwanted.0);
                        },
                        _ => return,
                    },
                    _ = tick.tick() => d.tick(),
                    bodies = d.woken() => d.drain_all(bodies),
                }
            }
        });
        let (mut sender, conn) = client_builder().handshake::<_, Bytes>(client_io).await.unwrap();
        tokio::spawn(conn);
        let (_response, mut send) =
            sender.send_request(Request::post("http://origin/a").body(()).unwrap(), false).unwrap();
        tokio::spawn(async move {
            let n = frames.len();
            for (i, frame) in frames.into_iter().enumerate() {
                send.reserve_capacity(frame.len());
                while send.capacity() < frame.len() {
                    poll_fn(|cx| send.poll_capacity(cx)).await.unwrap().unwrap();
                }
                send.send_data(frame, i + 1 == n).unwrap();
                if (i + 1) % BATCH == 0 {
                    next.notified().await;
                }
            }
            std::future::pending::<()>().await;
        });
        let (req, respond) = rx.recv().await.unwrap();
        std::mem::forget(respond);
        let (parts, recv) = req.into_parts();
        (drains.watch(Received::new(recv, &parts.headers)), sender)
    }

    fn one_byte_frames() -> Vec<Bytes> {
        (0..FRAMES).map(piece).collect()
    }

    #[tokio::test]
    async fn an_app_that_does_not_read_has_its_upload_drained() {
        let drains = Arc::new(Drains::default());
        let next = Arc::new(Notify::new());
        let (body, _conn) = upload(&drains, 1 << 20, one_byte_frames(), next.clone()).await;
        assert_eq!(drains.len(), 1);
        let mut batches = 0;
        timeout(
            LIMIT,
            until(|| {
                let moved = drains.drained_frames.load(Ordering::Relaxed) as usize;
                if moved >= (batches + 1) * BATCH && batches < FRAMES / BATCH {
                    batches += 1;
                    next.notify_one();
                }
                moved == FRAMES
            }),
        )
        .await
        .unwrap();
        let all = timeout(LIMIT, body.collect()).await.unwrap().unwrap().to_bytes();
        assert_eq!(&all[..], &expected()[..]);
        assert!(drains.is_empty(), "a body leaves the watch when it is dropped");
    }

    #[tokio::test]
    async fn an_app_that_reads_slowly_but_steadily_keeps_the_connection() {
        // It reads one frame per batch that arrives: never away for a whole tick, and the rest
        // pile up unless each arrival brings the drainer back.
        let drains = Arc::new(Drains::default());
        let next = Arc::new(Notify::new());
        let (mut body, _conn) = upload(&drains, 1 << 20, one_byte_frames(), next.clone()).await;
        let mut got = Vec::new();
        let read = async {
            while got.len() < FRAMES {
                let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
                got.extend_from_slice(&frame);
                next.notify_one();
            }
        };
        timeout(LIMIT, read).await.unwrap();
        assert_eq!(got, expected());
    }

    #[tokio::test]
    async fn a_dropped_body_gives_its_drained_window_back() {
        // A connection window of 128 KiB: the first upload (96 KiB) is drained whole and
        // dropped unread (while its stream lives on, as a request whose app answers without
        // reading it); the second needs 64 KiB, which it gets only if the first's comes back.
        let drains = Arc::new(Drains::default());
        let big = vec![Bytes::from(vec![b'x'; 4096]); 24];
        let (body, mut sender) = upload(&drains, 128 * 1024, big, Arc::new(Notify::new())).await;
        timeout(LIMIT, until(|| drains.drained_frames.load(Ordering::Relaxed) == 24)).await.unwrap();
        drop(body);
        let (_response, mut send) =
            sender.send_request(Request::post("http://origin/b").body(()).unwrap(), false).unwrap();
        let want = 64 * 1024;
        send.reserve_capacity(want);
        let granted = timeout(LIMIT, async {
            while send.capacity() < want {
                poll_fn(|cx| send.poll_capacity(cx)).await.unwrap().unwrap();
            }
        })
        .await;
        assert!(granted.is_ok(), "the second upload got {} bytes of window", send.capacity());
    }

    #[tokio::test]
    async fn a_reader_waiting_for_data_is_not_drained_and_is_woken() {
        let drains = Arc::new(Drains::default());
        let next = Arc::new(Notify::new());
        let (mut body, _conn) = upload(&drains, 1 << 20, one_byte_frames(), next.clone()).await;
        // Read the first batch, then wait for more: the reader's waker is with h2 now.
        let mut got = 0;
        while got < BATCH {
            got += timeout(LIMIT, body.frame()).await.unwrap().unwrap().unwrap().into_data().unwrap().len();
        }
        let drained = drains.drained_frames.load(Ordering::Relaxed);
        let reader = tokio::spawn(async move { (body.frame().await, body) });
        let waiting =
            || drains.bodies.lock().unwrap().values().any(|w| w.upgrade().is_some_and(|w| w.lock().unwrap().waiting));
        timeout(LIMIT, until(waiting)).await.unwrap();
        // Ticks now must not take the reader's wake-up: the next batch wakes it.
        drains.tick();
        next.notify_one();
        let (frame, _body) = timeout(LIMIT, reader).await.unwrap().unwrap();
        assert_eq!(frame.unwrap().unwrap().into_data().unwrap()[0], piece(BATCH)[0]);
        assert!(drains.drained_frames.load(Ordering::Relaxed) >= drained);
    }

    #[tokio::test]
    async fn empty_pieces_are_not_sent_as_frames() {
        // h2 ends a connection after 100 empty DATA frames; a body may yield thousands.
        let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
        tokio::spawn(async move {
            let mut conn = server_builder().handshake::<_, Bytes>(server_io).await.unwrap();
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                tokio::spawn(async move {
                    let (parts, recv) = req.into_parts();
                    let got = Received::new(recv, &parts.headers).collect().await.map(|b| b.to_bytes().len());
                    let status = if got.ok() == Some(1) { 200 } else { 500 };
                    let resp = Response::builder().status(status).body(()).unwrap();
                    let _ = respond.send_response(resp, true);
                });
                let _ = &mut conn;
            }
        });
        let (mut sender, conn) = client_builder().handshake::<_, Bytes>(client_io).await.unwrap();
        tokio::spawn(conn);
        let (response, mut send) =
            sender.send_request(Request::post("http://origin/").body(()).unwrap(), false).unwrap();
        let mut pieces = vec![Bytes::new(); 300];
        pieces.push(Bytes::from_static(b"x"));
        let mut body = Pieces(pieces.into());
        assert_eq!(timeout(LIMIT, send_body(&mut body, &mut send)).await.unwrap(), Sent::Whole);
        let resp = timeout(LIMIT, response).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
    }

    /// A body of the given pieces, each ready at once.
    struct Pieces(VecDeque<Bytes>);

    impl Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }
}
