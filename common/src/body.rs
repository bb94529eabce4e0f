//! Body types shared by the proxy and the origin: one boxed, streaming body type and small constructors.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// Any error a body can fail with while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type every handler in revmux returns: streamed, boxed once per message.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> BoxBody {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body holding `data` whole (for small, generated responses only).
pub fn full(data: impl Into<Bytes>) -> BoxBody {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Box any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Data frames smaller than this are gathered with the ones ready behind them ([`Gathered`]).
/// Well above h2's own threshold: a received DATA frame below 256 bytes that the receiver has
/// not read yet counts against a per-connection budget (half the connection window), and the
/// connection is closed with `ENHANCE_YOUR_CALM` when it runs out.
pub const SMALL_FRAME: usize = 4 * 1024;

/// The most bytes [`Gathered`] puts into one frame.
pub const GATHERED_MAX: usize = 16 * 1024;

/// A body whose small data frames are merged with the data already waiting behind them, so a
/// body that arrives in tiny pieces (an HTTP/1.1 upload or response in 1-byte chunks) crosses
/// the tunnel in a few frames, not one HTTP/2 DATA frame per piece. Tiny frames are costly at
/// the receiver and, unread in bulk, end the whole tunnel (h2's small-frame budget, see
/// [`SMALL_FRAME`]). Nothing waits: only what the inner body has ready at once is merged, and
/// frames of [`SMALL_FRAME`] or more pass through untouched (no copy). A gathered frame holds
/// at most [`GATHERED_MAX`] plus one small frame.
#[derive(Debug)]
pub struct Gathered<B: http_body::Body> {
    inner: B,
    /// What ended a gathering (a large frame, trailers, an error): returned by the next poll.
    /// Boxed, so the body stays small (rare, and it is a trailer map's size).
    held: Option<Box<Result<http_body::Frame<Bytes>, B::Error>>>,
    /// The inner body ended during a gathering (no allocation for the common case).
    ended: bool,
}

impl<B: http_body::Body> Gathered<B> {
    pub fn new(inner: B) -> Self {
        Gathered { inner, held: None, ended: false }
    }
}

// Nothing in a `Gathered` is ever pinned but the inner body, which is `Unpin` itself.
impl<B: http_body::Body + Unpin> Unpin for Gathered<B> {}

impl<B> http_body::Body for Gathered<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Some(held) = this.held.take() {
            return Poll::Ready(Some(*held));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let first = match std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            None => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
        };
        let first = match first.into_data() {
            // The last piece (a small answer with its length known): nothing to wait for.
            Ok(data) if data.len() < SMALL_FRAME && this.inner.is_end_stream() => {
                return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
            }
            Ok(data) if data.len() < SMALL_FRAME => data,
            Ok(data) => return Poll::Ready(Some(Ok(http_body::Frame::data(data)))),
            Err(frame) => return Poll::Ready(Some(Ok(frame))),
        };
        let mut gathered: Option<bytes::BytesMut> = None;
        while gathered.as_ref().map_or(first.len(), bytes::BytesMut::len) < GATHERED_MAX {
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.len() >= SMALL_FRAME => {
                        // Not copied: it goes next, as it is.
                        this.held = Some(Box::new(Ok(http_body::Frame::data(data))));
                        break;
                    }
                    Ok(data) => gathered
                        .get_or_insert_with(|| {
                            let mut buf = bytes::BytesMut::with_capacity(GATHERED_MAX);
                            buf.extend_from_slice(&first);
                            buf
                        })
                        .extend_from_slice(&data),
                    Err(trailers) => {
                        this.held = Some(Box::new(Ok(trailers)));
                        break;
                    }
                },
                Poll::Ready(None) => {
                    this.ended = true;
                    break;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.held = Some(Box::new(Err(e)));
                    break;
                }
            }
        }
        let data = gathered.map_or(first, bytes::BytesMut::freeze);
        Poll::Ready(Some(Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body::Frame;

    type Item = Result<Frame<Bytes>, std::convert::Infallible>;

    /// A body that yields its items in order, `None` standing for one `Pending`.
    struct Scripted(std::collections::VecDeque<Option<Item>>);

    impl http_body::Body for Scripted {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Item>> {
            match self.0.pop_front() {
                Some(Some(item)) => std::task::Poll::Ready(Some(item)),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
                None => std::task::Poll::Ready(None),
            }
        }
    }

    fn scripted(items: Vec<Option<Item>>) -> Scripted {
        Scripted(items.into())
    }

    fn data(b: &[u8]) -> Option<Item> {
        Some(Ok(Frame::data(Bytes::copy_from_slice(b))))
    }

    async fn frames<B: http_body::Body<Data = Bytes> + Unpin>(body: B) -> Vec<Result<Vec<u8>, String>>
    where
        B::Error: std::fmt::Debug,
    {
        let mut body = Gathered::new(body);
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(match frame {
                Ok(f) => f.into_data().map(|d| d.to_vec()).map_err(|t| format!("trailers {:?}", t.trailers_ref())),
                Err(e) => Err(format!("{e:?}")),
            });
        }
        out
    }

    #[tokio::test]
    async fn tiny_pieces_ready_together_cross_as_one_frame() {
        let mut items: Vec<_> = (0..3000).map(|_| data(b"z")).collect();
        items.insert(1000, None); // the sender paused here
        let got = frames(scripted(items)).await;
        assert_eq!(got, vec![Ok(vec![b'z'; 1000]), Ok(vec![b'z'; 2000])]);
    }

    #[tokio::test]
    async fn frames_are_capped_and_large_ones_pass_untouched() {
        let big = vec![7u8; SMALL_FRAME];
        let mut items = vec![data(&big)];
        items.extend((0..20).map(|_| data(&[1; 1000])));
        items.extend([data(b"a"), data(&big), data(b"end")]);
        let got = frames(scripted(items)).await;
        let mut tail = vec![1u8; 3000];
        tail.push(b'a');
        let want = vec![Ok(big.clone()), Ok(vec![1u8; 17_000]), Ok(tail), Ok(big), Ok(b"end".to_vec())];
        assert_eq!(
            got.iter().map(|f| f.as_ref().map(Vec::len)).collect::<Vec<_>>(),
            want.iter().map(|f| f.as_ref().map(Vec::len)).collect::<Vec<_>>()
        );
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn trailers_and_the_end_come_after_the_gathered_data() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("3"));
        let items = vec![data(b"a"), data(b"b"), Some(Ok(Frame::trailers(trailers)))];
        let got = frames(scripted(items)).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], Ok(b"ab".to_vec()));
        assert!(got[1].as_ref().unwrap_err().contains("x-sum"), "{got:?}");
    }
}
