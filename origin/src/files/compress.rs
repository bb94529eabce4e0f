//! Content coding: gzip or brotli for whole answers of compressible types (listings, text,
//! subtitles, scripts, SVG), as the client's `Accept-Encoding` prefers, streamed through
//! async-compression.
//!
//! Compression happens here, at the origin, so the smaller bytes are what cross the tunnel;
//! the proxy passes `Accept-Encoding`, `Content-Encoding` and `Vary` through untouched.
//! What is never compressed: media and other binary types, range requests and their 206s,
//! answers other than 200 and 304, and bodies under [`MIN_SIZE`]. A compressed answer is a
//! different representation, so it carries `Vary: Accept-Encoding`, a weak ETag (`W/"…"`,
//! which still matches `If-None-Match` by weak comparison, but never `If-Range`), no
//! `Accept-Ranges` and no `Content-Length` (streamed; HEAD gets the same headers as GET).
//!
//! Coding runs on threads of its own ([`coder_threads`]), not on the origin's async worker.
//!
//! Memory: an encoder holds about 0.3 MiB (gzip) or 1.5 MiB (brotli at [`BROTLI_QUALITY`] with a
//! [`BROTLI_WINDOW`]-bit window; at quality 4 and up, or with brotli's default 4 MiB window, a
//! streaming encoder was measured at 7 to 20 MiB). At most [`CONCURRENT_CODINGS`] answers are
//! coded at once; beyond that they go out as they are, so a burst of requests for large text
//! files cannot make the origin hold more than about 50 MiB of encoders.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
use async_compression::Level;
use bytes::Bytes;
use common::body::{boxed, empty, BoxBody};
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyDataStream, StreamBody};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::warn;

/// Bodies shorter than this are sent as they are: the coding's own overhead eats the gain.
pub(crate) const MIN_SIZE: u64 = 256;

/// Brotli's quality: 3 still compresses text better than gzip's default at a similar speed,
/// with little memory; the library default (11) costs tens of times more CPU per byte.
const BROTLI_QUALITY: i32 = 3;
/// Brotli's window, log2 of bytes (256 KiB): the default (22, 4 MiB) costs memory per stream
/// and gains little on text.
const BROTLI_WINDOW: i32 = 18;

/// Answers being coded at once, at most (see the module's note on memory).
pub const CONCURRENT_CODINGS: usize = 32;

/// Bytes the encoder reads and hands out at once.
const OUT_CHUNK: usize = 16 * 1024;

/// A content coding we can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
        }
    }
}

/// The coding to use for a client sending `headers`: the best-weighted of brotli and gzip
/// (brotli on a tie), or `None` for the identity (no header, nothing acceptable, or an
/// `identity` the client weighs higher).
pub(crate) fn choose(headers: &HeaderMap) -> Option<Coding> {
    let mut values = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    values.peek()?;
    let (mut br, mut gzip, mut star, mut identity) = (None, None, None, None);
    for member in values.flat_map(|v| v.as_bytes().split(|&b| b == b',')) {
        let Some((coding, q)) = parse_member(member) else { continue };
        let slot = if coding.eq_ignore_ascii_case(b"br") {
            &mut br
        } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            &mut gzip
        } else if coding == b"*" {
            &mut star
        } else if coding.eq_ignore_ascii_case(b"identity") {
            &mut identity
        } else {
            continue;
        };
        // A coding listed twice: the first weight counts.
        slot.get_or_insert(q);
    }
    let br = br.or(star).unwrap_or(0);
    let gzip = gzip.or(star).unwrap_or(0);
    let (coding, q) = if br >= gzip { (Coding::Brotli, br) } else { (Coding::Gzip, gzip) };
    if q == 0 || identity.is_some_and(|identity| identity > q) {
        return None;
    }
    Some(coding)
}

/// One `Accept-Encoding` member: `coding` or `coding;q=weight`, the weight in thousandths.
/// `None` for an empty or malformed member (which is then ignored).
fn parse_member(member: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = member.split(|&b| b == b';');
    let coding = parts.next().map(<[u8]>::trim_ascii).filter(|c| !c.is_empty())?;
    let mut q = 1000;
    for param in parts {
        let eq = param.iter().position(|&b| b == b'=')?;
        let (name, value) = (param.get(..eq)?, param.get(eq + 1..)?);
        if name.trim_ascii().eq_ignore_ascii_case(b"q") {
            q = parse_weight(value.trim_ascii())?;
        }
    }
    Some((coding, q))
}

/// A weight (RFC 9110 §12.4.2): `0`, `1`, `0.` up to three digits, or `1.` with zeros; in
/// thousandths.
fn parse_weight(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (text.get(..dot)?, text.get(dot + 1..)?),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match whole {
        b"1" if fraction.iter().all(|&b| b == b'0') => Some(1000),
        b"0" => {
            let mut thousandths = 0u16;
            for i in 0..3 {
                thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
            }
            Some(thousandths)
        }
        _ => None,
    }
}

/// Whether answers of this Content-Type gain from compression: text, and the structured
/// text types served as `application/*` or `image/svg+xml`. Media never does.
pub(crate) fn compressible(content_type: &[u8]) -> bool {
    let end = content_type.iter().position(|&b| b == b';').unwrap_or(content_type.len());
    let Ok(media) = std::str::from_utf8(content_type.get(..end).unwrap_or_default()) else {
        return false;
    };
    let media = media.trim().to_ascii_lowercase();
    if media == "text/event-stream" {
        return false;
    }
    media.starts_with("text/")
        || media.ends_with("+json")
        || media.ends_with("+xml")
        || matches!(
            media.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-subrip"
                | "application/vnd.apple.mpegurl"
                | "audio/x-mpegurl"
        )
}

/// What the request asked of the coding, read before the request is consumed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Negotiation {
    /// The coding the client prefers, if any.
    pub(crate) coding: Option<Coding>,
    /// The request has a Range header: the answer is sent as it is (a 206 is a range of the
    /// identity, and even a 200 to it must keep ranges meaningful).
    pub(crate) ranged: bool,
    pub(crate) head: bool,
}

/// Apply the negotiated coding to a finished answer. `path_type` is the Content-Type the
/// requested path has, for answers that carry none (304). A coded body holds one of `coders`'
/// permits while it streams; with none free, the answer goes out as it is.
pub(crate) fn apply(
    ask: Negotiation,
    path_type: &HeaderValue,
    coders: &Arc<Semaphore>,
    mut response: Response<BoxBody>,
) -> Response<BoxBody> {
    let status = response.status();
    if status != StatusCode::OK && status != StatusCode::NOT_MODIFIED {
        return response;
    }
    let headers = response.headers_mut();
    let content_type = headers.get(header::CONTENT_TYPE).unwrap_or(path_type);
    if !compressible(content_type.as_bytes()) {
        return response;
    }
    headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    let Some(coding) = ask.coding else { return response };
    if ask.ranged || headers.contains_key(header::CONTENT_ENCODING) || headers.contains_key(header::CONTENT_RANGE) {
        return response;
    }
    let mut permit = None;
    if status == StatusCode::OK {
        let len = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if len.is_none_or(|len| len < MIN_SIZE) {
            return response;
        }
        // HEAD takes one too (and lets it go at once), so it says what GET would now.
        match Arc::clone(coders).try_acquire_owned() {
            Ok(held) => permit = Some(held),
            Err(_) => return response,
        }
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::ACCEPT_RANGES);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    }
    if let Some(weak) = headers.get(header::ETAG).and_then(|tag| weaken(tag.as_bytes())) {
        headers.insert(header::ETAG, weak);
    }
    if let Some(permit) = permit {
        let body = std::mem::replace(response.body_mut(), empty());
        if !ask.head {
            *response.body_mut() = encode(coding, body, permit);
        }
    }
    response
}

/// `"x"` as `W/"x"`; a tag already weak (or malformed) is left alone.
fn weaken(tag: &[u8]) -> Option<HeaderValue> {
    if !tag.starts_with(b"\"") {
        return None;
    }
    let mut weak = Vec::with_capacity(tag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(tag);
    HeaderValue::from_bytes(&weak).ok()
}

/// The body, compressed as it streams: at most one encoder buffer and one output chunk are
/// held, and the source is read only as fast as the client takes the output. `permit` is
/// released when the body is dropped (sent, or abandoned by the client).
fn encode(coding: Coding, body: BoxBody, permit: OwnedSemaphorePermit) -> BoxBody {
    let source = StreamReader::new(BodyDataStream::new(body).map_err(io::Error::other));
    match coding {
        Coding::Gzip => stream(GzipEncoder::with_quality(source, Level::Default), permit),
        Coding::Brotli => {
            let params = async_compression::brotli::EncoderParams::default()
                .quality(Level::Precise(BROTLI_QUALITY))
                .window_size(BROTLI_WINDOW)
                .text_mode();
            stream(BrotliEncoder::with_params(source, params), permit)
        }
    }
}

fn stream(reader: impl AsyncRead + Send + 'static, permit: OwnedSemaphorePermit) -> BoxBody {
    let chunks = ReaderStream::with_capacity(reader, OUT_CHUNK);
    if let Some(coders) = coder_threads() {
        return boxed(Relayed::spawn(coders, chunks, permit));
    }
    boxed(StreamBody::new(chunks.map_ok(move |chunk| {
        // The closure owns the permit, so it lives exactly as long as the body.
        let _held = &permit;
        Frame::data(chunk)
    })))
}

/// The runtime that codes answers: one worker per core, started with the first coded answer
/// and kept for the life of the process (a static is never dropped, so it is never shut down
/// from inside another runtime). `None` when its threads cannot be started: answers are then
/// coded where they are sent, as a single-threaded origin always did.
///
/// Coding is the origin's only CPU-heavy work on an async worker (listings and file reads use
/// the blocking pool). On threads of its own, the origin's worker stays free to answer every
/// other stream while a burst of large text downloads keeps the cores busy (abuse case 18),
/// and the origin can run the rest on one worker, which costs less per request.
fn coder_threads() -> Option<&'static tokio::runtime::Handle> {
    static CODERS: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    CODERS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cores)
                .max_blocking_threads(CONCURRENT_CODINGS)
                .thread_name("revmux-coder")
                .enable_all()
                .build()
                .map_err(|e| warn!(error = %e, "cannot start the coding threads; coding on the origin's worker"))
                .ok()
        })
        .as_ref()
        .map(tokio::runtime::Runtime::handle)
}

/// What the coding task hands the body that sends its output.
enum Piece {
    Data(Bytes),
    Failed(io::Error),
    End,
}

/// A coded body whose coding runs as a task on the coding threads, handing each output chunk
/// over a channel of one: the coder is at most one chunk ahead of the client, as when coded in
/// place. The body holds the coding permit, so it is back as soon as the body is sent or
/// dropped; dropping the body (the client went away) also ends the task at its next step, and
/// with it the encoder and the source.
struct Relayed {
    pieces: mpsc::Receiver<Piece>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Relayed {
    fn spawn<S>(coders: &tokio::runtime::Handle, chunks: S, permit: OwnedSemaphorePermit) -> Relayed
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let (tx, pieces) = mpsc::channel(1);
        coders.spawn(async move {
            let mut chunks = std::pin::pin!(chunks);
            loop {
                let next = tokio::select! {
                    next = chunks.next() => next,
                    () = tx.closed() => return,
                };
                let piece = match next {
                    Some(Ok(data)) => Piece::Data(data),
                    Some(Err(e)) => Piece::Failed(e),
                    None => Piece::End,
                };
                let last = !matches!(piece, Piece::Data(_));
                if tx.send(piece).await.is_err() || last {
                    return;
                }
            }
        });
        Relayed { pieces, permit: Some(permit) }
    }
}

impl http_body::Body for Relayed {
    type Data = Bytes;
    type Error = common::body::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.permit.is_none() {
            return Poll::Ready(None);
        }
        let piece = ready!(self.pieces.poll_recv(cx));
        if !matches!(piece, Some(Piece::Data(_))) {
            self.permit = None;
        }
        Poll::Ready(match piece {
            Some(Piece::Data(data)) => Some(Ok(Frame::data(data))),
            Some(Piece::End) => None,
            Some(Piece::Failed(e)) => Some(Err(e.into())),
            // The task ended without saying how: never pass a cut body off as complete.
            None => Some(Err(io::Error::other("the coding task stopped before the end of the body").into())),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.permit.is_none()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use common::body::full;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;

    fn accept(values: &[&'static str]) -> Option<Coding> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        }
        choose(&headers)
    }

    #[test]
    fn coding_follows_weights() {
        assert_eq!(accept(&[]), None);
        assert_eq!(accept(&[""]), None);
        assert_eq!(accept(&["gzip"]), Some(Coding::Gzip));
        assert_eq!(accept(&["x-gzip"]), Some(Coding::Gzip));
        assert_eq!(accept(&["gzip, deflate, br"]), Some(Coding::Brotli));
        assert_eq!(accept(&["gzip", "br"]), Some(Coding::Brotli));
        assert_eq!(accept(&["br;q=0.5, gzip;q=0.8"]), Some(Coding::Gzip));
        assert_eq!(accept(&["BR ; Q=1.0 , GZIP;q=0.999"]), Some(Coding::Brotli));
        assert_eq!(accept(&["br;q=0, gzip;q=0"]), None);
        assert_eq!(accept(&["br;q=0, gzip"]), Some(Coding::Gzip));
        assert_eq!(accept(&["*"]), Some(Coding::Brotli));
        assert_eq!(accept(&["*;q=0.3, br;q=0"]), Some(Coding::Gzip));
        assert_eq!(accept(&["deflate, zstd"]), None);
        assert_eq!(accept(&["identity"]), None);
        assert_eq!(accept(&["gzip;q=0.5, identity"]), None);
        assert_eq!(accept(&["gzip;q=0.5, identity;q=0.5"]), Some(Coding::Gzip));
        assert_eq!(accept(&["gzip, identity;q=0"]), Some(Coding::Gzip));
        // Malformed weights make their member ignored, never a guess.
        assert_eq!(accept(&["br;q=2, gzip"]), Some(Coding::Gzip));
        assert_eq!(accept(&["br;q=0.0001, gzip;q=0.1"]), Some(Coding::Gzip));
        assert_eq!(accept(&["br;q=, gzip;q=abc"]), None);
        assert_eq!(accept(&["br;q=0.5;q=1"]), Some(Coding::Brotli));
        assert_eq!(accept(&["gzip;q=0.5, gzip;q=0"]), Some(Coding::Gzip));
    }

    #[test]
    fn weights() {
        assert_eq!(parse_weight(b"1"), Some(1000));
        assert_eq!(parse_weight(b"1.000"), Some(1000));
        assert_eq!(parse_weight(b"1.001"), None);
        assert_eq!(parse_weight(b"0"), Some(0));
        assert_eq!(parse_weight(b"0."), Some(0));
        assert_eq!(parse_weight(b"0.5"), Some(500));
        assert_eq!(parse_weight(b"0.05"), Some(50));
        assert_eq!(parse_weight(b"0.123"), Some(123));
        for bad in [&b""[..], b"2", b".5", b"0.1234", b"0.x", b"-0", b"01"] {
            assert_eq!(parse_weight(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn what_is_compressible() {
        for yes in [
            "text/html; charset=utf-8",
            "text/vtt; charset=utf-8",
            "TEXT/CSS",
            "application/json",
            "application/manifest+json",
            "image/svg+xml",
            "application/x-subrip",
            "text/javascript; charset=utf-8",
        ] {
            assert!(compressible(yes.as_bytes()), "{yes}");
        }
        for no in ["video/mp4", "audio/mpeg", "image/png", "application/octet-stream", "text/event-stream", ""] {
            assert!(!compressible(no.as_bytes()), "{no}");
        }
    }

    fn answer(status: StatusCode, content_type: &'static str, body: &'static [u8]) -> Response<BoxBody> {
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::ETAG, HeaderValue::from_static("\"1-2-3\""));
        response
    }

    const TEXT: &[u8] = b"WEBVTT\n\n00:00.000 --> 00:02.000\nHello from the origin, hello again, hello once more\n\n\
        00:02.000 --> 00:04.000\nHello from the origin, hello again, hello once more\n\n\
        00:04.000 --> 00:06.000\nHello from the origin, hello again, hello once more\n\n\
        00:06.000 --> 00:08.000\nHello from the origin, hello again, hello once more\n";
    const VTT: HeaderValue = HeaderValue::from_static("text/vtt; charset=utf-8");

    fn coders() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(CONCURRENT_CODINGS))
    }

    fn ask(coding: Option<Coding>) -> Negotiation {
        Negotiation { coding, ranged: false, head: false }
    }

    async fn body_of(response: Response<BoxBody>) -> Vec<u8> {
        response.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn compressed_answers_decode_to_the_identity() {
        let gz =
            apply(ask(Some(Coding::Gzip)), &VTT, &coders(), answer(StatusCode::OK, "text/vtt; charset=utf-8", TEXT));
        let h = gz.headers();
        assert_eq!(h[header::CONTENT_ENCODING], "gzip");
        assert_eq!(h[header::VARY], "accept-encoding");
        assert_eq!(h[header::ETAG], "W/\"1-2-3\"");
        assert!(h.get(header::CONTENT_LENGTH).is_none() && h.get(header::ACCEPT_RANGES).is_none());
        let packed = body_of(gz).await;
        assert!(packed.len() < TEXT.len(), "{} >= {}", packed.len(), TEXT.len());
        let mut plain = Vec::new();
        async_compression::tokio::bufread::GzipDecoder::new(&packed[..]).read_to_end(&mut plain).await.unwrap();
        assert_eq!(plain, TEXT);

        let br =
            apply(ask(Some(Coding::Brotli)), &VTT, &coders(), answer(StatusCode::OK, "text/vtt; charset=utf-8", TEXT));
        assert_eq!(br.headers()[header::CONTENT_ENCODING], "br");
        let packed = body_of(br).await;
        let mut plain = Vec::new();
        async_compression::tokio::bufread::BrotliDecoder::new(&packed[..]).read_to_end(&mut plain).await.unwrap();
        assert_eq!(plain, TEXT);
    }

    #[tokio::test]
    async fn head_gets_the_headers_of_get_and_no_body() {
        let head = apply(
            Negotiation { coding: Some(Coding::Brotli), ranged: false, head: true },
            &VTT,
            &coders(),
            answer(StatusCode::OK, "text/vtt; charset=utf-8", TEXT),
        );
        assert_eq!(head.headers()[header::CONTENT_ENCODING], "br");
        assert!(head.headers().get(header::CONTENT_LENGTH).is_none());
        assert!(body_of(head).await.is_empty());
    }

    #[tokio::test]
    async fn left_alone() {
        let identity = |r: &Response<BoxBody>| {
            r.headers().get(header::CONTENT_ENCODING).is_none()
                && r.headers()[header::ETAG] == "\"1-2-3\""
                && r.headers().get(header::CONTENT_LENGTH).is_some()
        };
        // Media: no coding and no Vary.
        let mp4 = apply(ask(Some(Coding::Gzip)), &VTT, &coders(), answer(StatusCode::OK, "video/mp4", TEXT));
        assert!(identity(&mp4) && mp4.headers().get(header::VARY).is_none());
        // No acceptable coding: identity, but it varies.
        let plain = apply(ask(None), &VTT, &coders(), answer(StatusCode::OK, "text/vtt", TEXT));
        assert!(identity(&plain) && plain.headers()[header::VARY] == "accept-encoding");
        // A range request, even answered whole.
        let ranged = Negotiation { coding: Some(Coding::Gzip), ranged: true, head: false };
        let whole = apply(ranged, &VTT, &coders(), answer(StatusCode::OK, "text/vtt", TEXT));
        assert!(identity(&whole));
        let partial =
            apply(ask(Some(Coding::Gzip)), &VTT, &coders(), answer(StatusCode::PARTIAL_CONTENT, "text/vtt", TEXT));
        assert!(identity(&partial));
        // Too small to gain.
        let small =
            apply(ask(Some(Coding::Gzip)), &VTT, &coders(), answer(StatusCode::OK, "text/plain", b"404 not found\n"));
        assert!(identity(&small));
        let missing =
            apply(ask(Some(Coding::Gzip)), &VTT, &coders(), answer(StatusCode::NOT_FOUND, "text/plain", TEXT));
        assert!(identity(&missing) && missing.headers().get(header::VARY).is_none());
        assert_eq!(body_of(whole).await, TEXT);
    }

    #[test]
    fn not_modified_names_the_compressed_representation() {
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().insert(header::ETAG, HeaderValue::from_static("\"1-2-3\""));
        let answer = apply(ask(Some(Coding::Brotli)), &VTT, &coders(), response);
        assert_eq!(answer.headers()[header::ETAG], "W/\"1-2-3\"");
        assert_eq!(answer.headers()[header::VARY], "accept-encoding");
        assert!(answer.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[test]
    fn weak_tags() {
        assert_eq!(weaken(b"\"a\"").unwrap(), "W/\"a\"");
        assert_eq!(weaken(b"W/\"a\""), None);
    }

    #[tokio::test]
    async fn codings_at_once_are_bounded() {
        let one = Arc::new(Semaphore::new(1));
        let first = apply(ask(Some(Coding::Gzip)), &VTT, &one, answer(StatusCode::OK, "text/vtt", TEXT));
        assert_eq!(first.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(one.available_permits(), 0, "the coded body holds the permit");
        // None free: sent as it is, whole and with its strong tag.
        let second = apply(ask(Some(Coding::Gzip)), &VTT, &one, answer(StatusCode::OK, "text/vtt", TEXT));
        assert!(second.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(second.headers()[header::ETAG], "\"1-2-3\"");
        assert_eq!(second.headers()[header::CONTENT_LENGTH], TEXT.len().to_string());
        assert_eq!(body_of(second).await, TEXT);
        // Sent (or dropped): the permit is back.
        let _ = body_of(first).await;
        assert_eq!(one.available_permits(), 1);
        let abandoned = apply(ask(Some(Coding::Brotli)), &VTT, &one, answer(StatusCode::OK, "text/vtt", TEXT));
        assert_eq!(one.available_permits(), 0);
        drop(abandoned);
        assert_eq!(one.available_permits(), 1);
        // HEAD lets its permit go at once.
        let head = Negotiation { coding: Some(Coding::Gzip), ranged: false, head: true };
        let _head = apply(head, &VTT, &one, answer(StatusCode::OK, "text/vtt", TEXT));
        assert_eq!(one.available_permits(), 1);
    }

    fn relayed<S>(chunks: S) -> (Relayed, Arc<Semaphore>)
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let one = Arc::new(Semaphore::new(1));
        let permit = Arc::clone(&one).try_acquire_owned().unwrap();
        (Relayed::spawn(coder_threads().unwrap(), chunks, permit), one)
    }

    #[tokio::test]
    async fn relayed_bodies_end_as_their_source_does() {
        let pieces = vec![Ok(Bytes::from_static(b"one ")), Ok(Bytes::from_static(b"two"))];
        let (body, one) = relayed(futures_util::stream::iter(pieces));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "one two");
        assert_eq!(one.available_permits(), 1);

        let pieces = vec![Ok(Bytes::from_static(b"part")), Err(io::Error::other("disk gone"))];
        let (body, one) = relayed(futures_util::stream::iter(pieces));
        let err = body.collect().await.err().unwrap();
        assert!(err.to_string().contains("disk gone"), "{err}");
        assert_eq!(one.available_permits(), 1);

        // A coder that dies without a word is an error, never a complete body.
        let dies = futures_util::stream::poll_fn(|_| -> Poll<Option<io::Result<Bytes>>> { panic!("coder broke") });
        let (body, _) = relayed(dies);
        let err = body.collect().await.err().unwrap();
        assert!(err.to_string().contains("stopped before the end"), "{err}");
    }

    #[tokio::test]
    async fn an_abandoned_relayed_body_stops_its_coder() {
        struct Source(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Source {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = Source(Arc::clone(&dropped));
        // One chunk, then a source that never answers again (a stalled read): the coder is
        // waiting on it, not on the channel, when the body goes.
        let stalls = futures_util::stream::unfold((source, false), |(source, sent)| async move {
            if sent {
                std::future::pending::<()>().await;
            }
            Some((Ok(Bytes::from_static(&[b'x'; 1024])), (source, true)))
        });
        let (mut body, one) = relayed(stalls);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), 1024);
        assert_eq!(one.available_permits(), 0);
        drop(body);
        assert_eq!(one.available_permits(), 1, "the permit is back with the body");
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !dropped.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        });
        assert!(stopped.await.is_ok(), "the coding task still holds its source");
    }
}
