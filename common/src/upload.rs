//! A request body's progress, and the wait for the response head that counts from the body's
//! end: an upload that keeps moving is never cut off by the response-head deadline, however
//! long it takes, and one that stops is told apart by whose side went quiet.
//!
//! Both ends use it: the proxy for what a front-end client uploads to an origin or a `url`
//! target, the origin for what it sends on to a local service.

use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// How far a request body has got: when a frame last moved, whether it has ended (whole, or
/// failed), and whether it is waiting for its sender (the side that writes it) or for its
/// receiver to take more. Shared between whoever polls the body and whoever waits for the
/// answer.
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last frame handed on (or the end).
    last_ms: AtomicU64,
    waiting_for_sender: AtomicBool,
    /// [`MOVING`], [`WHOLE`] or [`FAILED`].
    end: AtomicU8,
}

const MOVING: u8 = 0;
const WHOLE: u8 = 1;
const FAILED: u8 = 2;

/// Far enough ahead to mean never (a timeout too large to add to an instant).
const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting_for_sender: AtomicBool::new(false),
            end: AtomicU8::new(MOVING),
        })
    }

    /// Note one poll of the body: `Pending` waits for the sender; a frame is progress; the
    /// last frame (`end_stream` after it, or trailers) or the end finish the body whole, an
    /// error finishes it failed.
    pub fn observe<D, E>(&self, poll: &Poll<Option<Result<Frame<D>, E>>>, end_stream: bool) {
        match poll {
            Poll::Pending => self.waiting_for_sender.store(true, Ordering::Relaxed),
            Poll::Ready(frame) => {
                let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.last_ms.store(ms, Ordering::Relaxed);
                self.waiting_for_sender.store(false, Ordering::Relaxed);
                let end = match frame {
                    Some(Err(_)) => FAILED,
                    None => WHOLE,
                    Some(Ok(frame)) if end_stream || frame.is_trailers() => WHOLE,
                    Some(Ok(_)) => MOVING,
                };
                if end != MOVING {
                    self.end.store(end, Ordering::Relaxed);
                }
            }
        }
    }

    /// The body has ended, whole or failed.
    fn ended(&self) -> bool {
        self.end.load(Ordering::Relaxed) != MOVING
    }

    /// The body was read to its end without an error.
    pub fn whole(&self) -> bool {
        self.end.load(Ordering::Relaxed) == WHOLE
    }

    /// The body ended in an error (its sender broke it off, or sent it malformed).
    pub fn failed(&self) -> bool {
        self.end.load(Ordering::Relaxed) == FAILED
    }

    /// How long nothing has moved, at `now`.
    fn quiet_for(&self, now: Instant) -> Duration {
        let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

/// Why [`answer_within`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    /// The request (and its body, if any) was all sent, and no answer came in time.
    Answer,
    /// The body stopped mid-way: its sender sent nothing more.
    Sender,
    /// The body stopped mid-way: its receiver took nothing more (its window stayed shut).
    Receiver,
}

/// Wait for `response` (the response head), allowing `timeout` from the end of the request
/// body, and while the body is still moving, `timeout` from its last frame. Without a body to
/// watch (`None`), simply `timeout`. One timer, re-armed only when it fires.
pub async fn answer_within<F: Future>(
    response: F,
    timeout: Duration,
    body: Option<&Progress>,
) -> Result<F::Output, Late> {
    let Some(progress) = body else {
        return tokio::time::timeout(timeout, response).await.map_err(|_| Late::Answer);
    };
    let mut response = pin!(response);
    let now = Instant::now();
    let mut timer = pin!(tokio::time::sleep_until(after(now, timeout.saturating_sub(progress.quiet_for(now)))));
    loop {
        tokio::select! {
            biased;
            out = &mut response => return Ok(out),
            () = &mut timer => {
                let now = Instant::now();
                let quiet = progress.quiet_for(now);
                if quiet >= timeout {
                    return Err(if progress.ended() {
                        Late::Answer
                    } else if progress.waiting_for_sender.load(Ordering::Relaxed) {
                        Late::Sender
                    } else {
                        Late::Receiver
                    });
                }
                timer.as_mut().reset(after(now, timeout - quiet));
            }
        }
    }
}

/// `now + d`, or [`FAR`] ahead when that does not fit in an instant.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + FAR)
}

/// A body that reports its polls to a [`Progress`].
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    progress: Arc<Progress>,
}

impl<B: Body + Unpin> Tracked<B> {
    /// `inner`, reporting to the returned [`Progress`].
    pub fn new(inner: B) -> (Self, Arc<Progress>) {
        let progress = Progress::new();
        (Tracked { inner, progress: progress.clone() }, progress)
    }

    /// Where this body reports to.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        self.progress.observe(&poll, self.inner.is_end_stream());
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tokio::sync::mpsc;

    const T: Duration = Duration::from_secs(10);

    /// A body fed by hand: each `Bytes` sent is a frame; dropping the sender ends it.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }
    }

    fn fed() -> (mpsc::Sender<Bytes>, Tracked<Fed>, Arc<Progress>) {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let (body, progress) = Tracked::new(Fed(rx));
        (tx, body, progress)
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_body_the_answer_has_the_timeout() {
        let never = std::future::pending::<()>();
        let t0 = Instant::now();
        assert_eq!(answer_within(never, T, None).await, Err(Late::Answer));
        assert_eq!(t0.elapsed(), T);
        assert_eq!(answer_within(async { 7 }, T, None).await, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn an_upload_that_keeps_moving_is_never_cut_off() {
        let (tx, mut body, progress) = fed();
        let t0 = Instant::now();
        // A frame every 4 s for 60 s (six timeouts), then the end; the answer 3 s after.
        let sender = tokio::spawn(async move {
            for _ in 0..15 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Bytes::from_static(b"x")).await.expect("receiver");
            }
        });
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while let Some(frame) = body.frame().await {
                n += frame.expect("frame").into_data().map_or(0, |d| d.len());
            }
            n
        });
        let answer = async {
            let got = reader.await.expect("reader");
            tokio::time::sleep(Duration::from_secs(3)).await;
            got
        };
        assert_eq!(answer_within(answer, T, Some(&progress)).await, Ok(15));
        assert_eq!(t0.elapsed(), Duration::from_secs(63));
        sender.await.expect("sender");
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_body_the_answer_has_the_timeout_from_its_end() {
        let (tx, mut body, progress) = fed();
        tx.send(Bytes::from_static(b"abc")).await.expect("receiver");
        drop(tx);
        tokio::time::sleep(Duration::from_secs(25)).await;
        while body.frame().await.is_some() {}
        let t0 = Instant::now();
        assert_eq!(answer_within(std::future::pending::<()>(), T, Some(&progress)).await, Err(Late::Answer));
        assert_eq!(t0.elapsed(), T, "counted from the body's end, not from the start");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_whose_sender_goes_quiet_is_the_senders_fault() {
        let (tx, mut body, progress) = fed();
        tx.send(Bytes::from_static(b"abc")).await.expect("receiver");
        let reader = tokio::spawn(async move { while body.frame().await.is_some() {} });
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(answer_within(std::future::pending::<()>(), T, Some(&progress)).await, Err(Late::Sender));
        assert_eq!(t0.elapsed(), T, "from the last frame");
        drop(tx);
        reader.await.expect("reader");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_nobody_takes_is_the_receivers_fault() {
        let (tx, mut body, progress) = fed();
        tx.send(Bytes::from_static(b"abc")).await.expect("receiver");
        // One frame taken, then the receiver stops polling while more is waiting.
        assert!(body.frame().await.is_some());
        tx.send(Bytes::from_static(b"def")).await.expect("receiver");
        assert_eq!(answer_within(std::future::pending::<()>(), T, Some(&progress)).await, Err(Late::Receiver));
    }

    #[tokio::test(start_paused = true)]
    async fn trailers_end_a_body_whole_and_an_error_ends_it_failed() {
        let progress = Progress::new();
        progress.observe::<Bytes, Infallible>(&Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x"))))), false);
        assert!(!progress.ended());
        progress.observe::<Bytes, Infallible>(&Poll::Ready(Some(Ok(Frame::trailers(http::HeaderMap::new())))), false);
        assert!(progress.whole());
        assert_eq!(answer_within(std::future::pending::<()>(), T, Some(&progress)).await, Err(Late::Answer));
        let failed = Progress::new();
        failed.observe::<Bytes, &str>(&Poll::Ready(Some(Err("reset"))), false);
        assert!(failed.ended() && !failed.whole());
    }

    #[tokio::test]
    async fn a_timeout_too_large_for_an_instant_means_never() {
        let progress = Progress::new();
        assert_eq!(answer_within(async { 1 }, Duration::MAX, Some(&progress)).await, Ok(1));
        assert_eq!(answer_within(async { 2 }, Duration::MAX, None).await, Ok(2));
    }
}
