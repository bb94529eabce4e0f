//! `--upstream`: forward every stream from the tunnel to a local HTTP service (Jellyfin, Plex,
//! Nextcloud, …), any method, bodies streamed both ways and never held back.
//!
//! Requests without a body use a pool of kept-alive connections ([`POOL_MAX_IDLE`] idle at
//! most, each closed after [`POOL_IDLE_TIMEOUT`] unused). A pooled connection has no task of
//! its own: the stream's task, which waits for the answer anyway, drives the connection (writes
//! the request, reads the response head and then the body as the tunnel takes it), so an
//! exchange costs no hop to a connection task and back per request, response and body piece.
//! A request with a body gets a connection of its own, tied to the stream: if the proxy resets
//! the stream (the front-end client went away mid-upload), the connection is closed, so the
//! service sees the upload end instead of waiting on a half-sent body forever. Either way the
//! service sees an origin-form request target (`/path?query`) and the public `Host`, and its
//! response head is bounded ([`MAX_RESPONSE_HEAD`]) so that it always fits through the tunnel.

use crate::serve::RequestBody;
use bytes::Bytes;
use common::body::{self, BoxBody};
use common::headers::remove_hop_by_hop;
use common::upload::{answer_within, Late, Tracked};
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long the local service may take to start answering (response headers), counted from the
/// end of the request: while a request body is still moving, from its last piece. Bodies may
/// stream for as long as they like, both ways.
///
/// The proxy sends its own deadline for each request (`common::protocol::RESPONSE_TIMEOUT_HEADER`:
/// the route's `timeout`, else `--response-timeout`), and the origin waits this long *beyond*
/// it, so a route that allows a slow report an hour is not cut short here, and the proxy's own
/// timer ends the exchange first, with one answer naming the origin; its stream reset then drops
/// the request here. The margin is wide because the two clocks do not start together on an
/// upload the service stops reading: the proxy's starts only once the stream's window (1 MiB)
/// has filled behind the origin's. Without a deadline from the proxy (an older one), this alone.
pub const RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(120);

/// Most header lines accepted in one response head from the local service (hyper's default,
/// 100, is too few for some apps' cookies and security headers).
pub const MAX_RESPONSE_HEADERS: usize = 500;

/// Largest response head (status line and header lines) accepted from the local service; a
/// larger one is answered with 502 on that stream alone. It must stay well below what the
/// tunnel carries: the tunnel's HTTP/2 `MAX_HEADER_LIST_SIZE`
/// ([`common::tuning::MAX_HEADER_LIST_SIZE`], 64 KiB) counts every field as name + value + 32
/// bytes, and a header list the proxy refuses -- one decoding to more than 4x the limit, or
/// sent in too many CONTINUATION frames -- ends the whole tunnel, every stream on it. With at
/// most 32 KiB (which bounds names plus values) and [`MAX_RESPONSE_HEADERS`] fields, a
/// response's header list is at most 32 KiB + 500 x 32 B = 47.6 KiB.
///
/// hyper stops reading a head at this size (`max_header_size`), which ends a huge head early;
/// the head is also measured once parsed ([`head_len`]), which counts exactly what is forwarded.
pub const MAX_RESPONSE_HEAD: usize = 32 * 1024;

/// Largest read from the service's socket (hyper's read buffer grows to this while a body
/// fills it, from 8 KiB); bodies come in pieces of up to this size, the tunnel's frame size.
/// 128 KiB reads cut `c`'s system calls per GiB downloaded by a third and its CPU per byte by
/// ~13 % in paired runs, but raised its peak RSS by ~5 MiB in the benchmark (a read pins its
/// whole buffer while the piece waits for the tunnel), past the memory target `--upstream`
/// met with 32 KiB, for no gain the benchmark could see (BENCHMARKS.md): kept at 32 KiB.
pub const MAX_READ: usize = 32 * 1024;

/// A pooled connection unused this long is closed (the service may hold resources per
/// connection; and a service that closes idle connections itself usually does so later).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most idle connections kept; one more coming back closes the longest-idle one.
pub const POOL_MAX_IDLE: usize = 64;

const _: () = assert!(MAX_READ >= MAX_RESPONSE_HEAD, "a head that fits is read whole");
const _: () = assert!(
    MAX_RESPONSE_HEAD + 32 * MAX_RESPONSE_HEADERS < common::tuning::MAX_HEADER_LIST_SIZE as usize,
    "an accepted response head must fit the tunnel's header list limit"
);

/// A client for one local service; clones share its connection pool.
#[derive(Clone, Debug)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: Uri,
    authority: Authority,
    /// `host:port` to dial.
    connect_to: String,
    pool: Pool,
    /// [`RESPONSE_HEADER_TIMEOUT`] (shorter in tests): for requests that do not bring their own.
    answer_timeout: Duration,
}

/// Why the local service could not be asked.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("the connection closed before an answer")]
    Closed,
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

impl SendError {
    /// The service's response head was over [`MAX_RESPONSE_HEAD`] or [`MAX_RESPONSE_HEADERS`].
    fn head_too_large(&self) -> bool {
        matches!(self, SendError::Http(e) if e.is_parse_too_large())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamUrlError {
    #[error("{0:?} is not a URL: {1}")]
    Invalid(String, http::uri::InvalidUri),
    #[error("only http:// upstreams are supported (the upstream is local; TLS to it adds nothing), got {0:?}")]
    Scheme(String),
    #[error("{0:?} has no host:port")]
    NoAuthority(String),
    #[error("{0:?} has a path; give only scheme, host and port")]
    HasPath(String),
}

impl Upstream {
    pub fn new(url: &str) -> Result<Self, UpstreamUrlError> {
        Self::with_timeouts(url, POOL_IDLE_TIMEOUT, RESPONSE_HEADER_TIMEOUT)
    }

    /// [`Upstream::new`] with another idle timeout for pooled connections and another
    /// response-head timeout (for tests, here and the proxy's).
    pub fn with_timeouts(
        url: &str,
        idle_timeout: Duration,
        answer_timeout: Duration,
    ) -> Result<Self, UpstreamUrlError> {
        let uri: Uri = url.parse().map_err(|e| UpstreamUrlError::Invalid(url.to_owned(), e))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(UpstreamUrlError::Scheme(url.to_owned()));
        }
        let authority = uri.authority().cloned().ok_or_else(|| UpstreamUrlError::NoAuthority(url.to_owned()))?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
            return Err(UpstreamUrlError::HasPath(url.to_owned()));
        }
        let connect_to = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
        let pool = Pool { idle: Mutex::new(VecDeque::new()), idle_timeout, reaper_started: AtomicBool::new(false) };
        Ok(Upstream { inner: Arc::new(Inner { base: uri, authority, connect_to, pool, answer_timeout }) })
    }

    pub fn url(&self) -> &Uri {
        &self.inner.base
    }

    /// Forward one request; failures become 502/504 naming the upstream. The answer is due
    /// this upstream's response timeout ([`RESPONSE_HEADER_TIMEOUT`]) after the request's end,
    /// plus `proxy_deadline` when the proxy sent one.
    pub async fn handle(&self, req: Request<RequestBody>, proxy_deadline: Option<Duration>) -> Response<BoxBody> {
        let (mut parts, incoming) = req.into_parts();
        // The service is asked in origin form (`/path?query`); it sees the public host name in
        // `Host`, as behind any reverse proxy.
        let public_host = parts.uri.authority().and_then(|a| HeaderValue::try_from(a.as_str()).ok());
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = None;
        uri.authority = None;
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("400 bad request: {e}")),
        };
        parts.version = Version::HTTP_11;
        strip_request_hop_by_hop(&mut parts.headers);
        if let Some(host) = public_host {
            parts.headers.insert(header::HOST, host);
        } else if !parts.headers.contains_key(header::HOST) {
            // HTTP/1.1 requires one: the service's own address, then.
            if let Ok(host) = HeaderValue::try_from(self.inner.authority.as_str()) {
                parts.headers.insert(header::HOST, host);
            }
        }
        // The answer is due `timeout` after the request's end: an upload that keeps moving
        // may take as long as it takes (common::upload).
        let own = self.inner.answer_timeout;
        let timeout = proxy_deadline.map_or(own, |t| t.saturating_add(own));
        let answered = if http_body::Body::is_end_stream(&incoming) {
            answer_within(self.send_pooled(Request::from_parts(parts, incoming)), timeout, None).await
        } else {
            let (body, progress) = Tracked::new(incoming);
            // Boxed: the stream's task (spawned, and moved, per stream) stays the size the
            // common case needs.
            let send = Box::pin(self.send_upload(Request::from_parts(parts, body)));
            answer_within(send, timeout, Some(&progress)).await
        };
        match answered {
            Ok(Ok(resp)) if head_len(resp.headers()) > MAX_RESPONSE_HEAD => self.head_too_large(),
            Ok(Ok(mut resp)) => {
                let bodyless = http_body::Body::is_end_stream(resp.body());
                match common::headers::forwardable_response(resp.status(), resp.headers_mut(), bodyless) {
                    Ok(()) => resp,
                    // Dropped unread: a connection with a body left unread is closed, not pooled.
                    Err(refused) => self.unforwardable(&refused),
                }
            }
            Ok(Err(e)) if e.head_too_large() => self.head_too_large(),
            Ok(Err(e)) => {
                let cause = e.to_string();
                if let Some(suppressed) = crate::logs::UPSTREAM.allow() {
                    tracing::warn!(upstream = %self.inner.base, error = %cause, suppressed, "upstream request failed");
                }
                error(StatusCode::BAD_GATEWAY, format!("502 bad gateway: upstream {} failed: {cause}", self.inner.base))
            }
            Err(late) => self.too_late(late, timeout),
        }
    }
}

impl Upstream {
    /// The answer when [`answer_within`] gave up: the service did not answer, or did not read
    /// the request body, or the body itself stopped coming (from the proxy).
    fn too_late(&self, late: Late, after: Duration) -> Response<BoxBody> {
        let base = &self.inner.base;
        let (status, message) = match late {
            Late::Answer => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("504 gateway timeout: upstream {base} did not answer within {after:?}"),
            ),
            Late::Receiver => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("504 gateway timeout: upstream {base} read nothing more of the request body for {after:?}"),
            ),
            Late::Sender => (
                StatusCode::REQUEST_TIMEOUT,
                format!("408 request timeout: nothing more of the request body came for {after:?}"),
            ),
        };
        if let Some(suppressed) = crate::logs::UPSTREAM.allow() {
            tracing::warn!(upstream = %base, timeout = ?after, ?late, suppressed, "upstream exchange timed out");
        }
        error(status, message)
    }

    /// The 502 for a response head over [`MAX_RESPONSE_HEAD`] or [`MAX_RESPONSE_HEADERS`]. The
    /// response (if any) is dropped unread, and its connection with it.
    fn head_too_large(&self) -> Response<BoxBody> {
        if let Some(suppressed) = crate::logs::UPSTREAM.allow() {
            tracing::warn!(upstream = %self.inner.base, limit = MAX_RESPONSE_HEAD, suppressed, "upstream response head too large");
        }
        error(
            StatusCode::BAD_GATEWAY,
            format!(
                "502 bad gateway: upstream response head is larger than {} KiB or has more than \
                 {MAX_RESPONSE_HEADERS} header lines (upstream {})",
                MAX_RESPONSE_HEAD / 1024,
                self.inner.base
            ),
        )
    }

    /// The 502 for an answer whose transfer coding cannot be forwarded.
    fn unforwardable(&self, refused: &common::headers::UnforwardableCoding) -> Response<BoxBody> {
        if let Some(suppressed) = crate::logs::UPSTREAM.allow() {
            tracing::warn!(upstream = %self.inner.base, error = %refused, suppressed, "upstream response refused");
        }
        error(StatusCode::BAD_GATEWAY, format!("502 bad gateway: upstream {}: {refused}", self.inner.base))
    }

    /// A TCP connection to the service, within the handshake timeout.
    async fn dial(&self) -> Result<TcpStream, SendError> {
        let connect = TcpStream::connect(self.inner.connect_to.as_str());
        let tcp = match tokio::time::timeout(common::tuning::HANDSHAKE_TIMEOUT, connect).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Err(_) => return Err(SendError::ConnectTimeout),
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// Send a request without a body (`req` in origin form, with its `Host`) over an idle
    /// pooled connection or a new one; the connection goes back to the pool once the response
    /// body has been read to its end.
    ///
    /// A reused connection may turn out to have been closed by the service just now (its
    /// keep-alive timeout: a FIN crossing our request). The request then goes again on another
    /// connection: always when it was not written, and when it was but nothing came back, if
    /// its method is idempotent (RFC 9110, 9.2.2), as browsers and Go's client do -- once,
    /// and then on a new connection, whose failure is reported.
    async fn send_pooled(&self, req: Request<RequestBody>) -> Result<Response<BoxBody>, SendError> {
        // The body is empty (`is_end_stream`): the same request can be rebuilt from its head.
        let (mut head, _) = req.into_parts();
        let mut sent_once = false;
        loop {
            let pooled = if sent_once { None } else { self.inner.pool.take() };
            let (mut conn, reused) = match pooled {
                Some(conn) => (conn, true),
                // Boxed, like the connection: rare, and its future is large.
                None => (Box::pin(self.connect_pooled()).await?, false),
            };
            let req = Request::from_parts(head, Empty::new());
            let again = (reused && req.method().is_idempotent()).then(|| common::headers::copy_head(&req));
            let answer = conn.sender.try_send_request(req);
            let mut answer = std::pin::pin!(answer);
            let answered = std::future::poll_fn(|cx| {
                // The connection first: it writes the request and reads the answer into `answer`.
                let ended = conn.poll_conn(cx);
                match answer.as_mut().poll(cx) {
                    Poll::Pending if ended => Poll::Ready(Err(None)),
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(r) => Poll::Ready(r.map_err(Some)),
                }
            })
            .await;
            let mut failed = match answered {
                Ok(resp) => {
                    let pool = Arc::downgrade(&self.inner);
                    let body = |body| PooledBody { body, conn: Some(conn), pool, ended: false };
                    return Ok(resp.map(|b| body::boxed(body::Gathered::new(body(b)))));
                }
                Err(Some(e)) => e,
                // The connection ended before it took the request (it read the service's FIN
                // first): hyper hands the request back once the connection is gone.
                Err(None) => {
                    drop(conn);
                    match answer.await {
                        Err(e) => e,
                        Ok(_) => return Err(SendError::Closed),
                    }
                }
            };
            head = match (failed.take_message(), again) {
                (Some(unsent), _) if reused => unsent.into_parts().0,
                (None, Some(again)) if closed_under_us(failed.error()) => {
                    sent_once = true;
                    again.into_parts().0
                }
                _ => return Err(failed.into_error().into()),
            };
        }
    }

    /// A new connection for the pool.
    async fn connect_pooled(&self) -> Result<Box<PooledConn>, SendError> {
        let tcp = self.dial().await?;
        let (sender, conn) = h1_builder().handshake(TokioIo::new(tcp)).await?;
        Ok(Box::new(PooledConn { sender, conn, ended: false }))
    }

    /// A request with a body, on a connection of its own (see the module docs). `req` is in
    /// origin form, with its `Host`, as for [`Upstream::send_pooled`].
    async fn send_upload(&self, req: Request<Tracked<RequestBody>>) -> Result<Response<BoxBody>, SendError> {
        let tcp = self.dial().await?;
        // A second handle on the socket, to reset it if the stream is abandoned (see below).
        let (tcp, handle) = match tcp.into_std().and_then(|std| Ok((std.try_clone()?, std))) {
            Ok((std, handle)) => (TcpStream::from_std(std).map_err(SendError::Connect)?, handle),
            Err(e) => return Err(SendError::Connect(e)),
        };
        let (mut sender, conn) = h1_builder().handshake(TokioIo::new(tcp)).await?;
        // Owned by this future until the answer comes, then by the response body.
        let conn = UploadConnection {
            task: tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
            }),
            socket: handle,
            request: req.body().progress().clone(),
            completed: false,
        };
        let resp = sender.send_request(req).await?;
        Ok(resp.map(|body| body::boxed(body::Gathered::new(WithConnection { body, conn }))))
    }
}

/// The connection failed under a request it had written, before a whole response head came:
/// closed or reset by the service (an idle connection it had just closed), so an idempotent
/// request may be sent again.
fn closed_under_us(e: &hyper::Error) -> bool {
    use std::io::ErrorKind;
    if e.is_incomplete_message() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
            );
        }
        cause = c.source();
    }
    false
}

/// HTTP/1.1 to the service, with the response head bounded.
fn h1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.max_headers(MAX_RESPONSE_HEADERS).max_header_size(MAX_RESPONSE_HEAD).max_buf_size(MAX_READ);
    builder
}

/// A kept-alive connection: the handle requests go in by, and the connection itself, which
/// does the I/O whenever it is polled -- by whoever holds it, never by a task of its own.
/// Always boxed: it is large (hyper's connection state), and moves between the pool, the
/// request's future and the response body.
struct PooledConn {
    sender: http1::SendRequest<Empty<Bytes>>,
    conn: http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>,
    /// The connection future has completed (closed or failed); it must not be polled again.
    ended: bool,
}

impl PooledConn {
    /// Let the connection do what I/O it can; true once it has ended.
    fn poll_conn(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended {
            if let Poll::Ready(result) = Pin::new(&mut self.conn).poll(cx) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
                self.ended = true;
            }
        }
        self.ended
    }

    /// Can take a request now. Polls once without a waker to register: an idle connection
    /// notices here that the service closed it (it reads EOF); when nothing happened on the
    /// socket this costs no system call.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        !self.poll_conn(&mut cx) && self.sender.is_ready()
    }
}

/// Idle connections, the most recently used last.
struct Pool {
    idle: Mutex<VecDeque<IdleConn>>,
    idle_timeout: Duration,
    reaper_started: AtomicBool,
}

struct IdleConn {
    conn: Box<PooledConn>,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Pool").field("idle", &idle).field("idle_timeout", &self.idle_timeout).finish()
    }
}

impl Pool {
    /// The most recently used idle connection that is still usable (most likely to be, and
    /// the others may then time out). Whatever is found closed or too old on the way is dropped.
    fn take(&self) -> Option<Box<PooledConn>> {
        loop {
            let entry = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop_back()?;
            if entry.since.elapsed() >= self.idle_timeout {
                // The others have been idle longer still.
                let stale = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
                drop(stale);
                return None;
            }
            let mut conn = entry.conn;
            if conn.usable() {
                return Some(conn);
            }
        }
    }

    /// Keep `conn` for a later request, if it can take one.
    fn put(&self, mut conn: Box<PooledConn>, inner: Weak<Inner>) {
        if !conn.usable() {
            return;
        }
        let evicted = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let evicted = if idle.len() >= POOL_MAX_IDLE { idle.pop_front() } else { None };
            idle.push_back(IdleConn { conn, since: Instant::now() });
            evicted
        };
        drop(evicted);
        if !self.reaper_started.swap(true, Ordering::Relaxed) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(reap(inner))),
                Err(_) => self.reaper_started.store(false, Ordering::Relaxed),
            }
        }
    }

    /// Close idle connections that timed out or that the service closed.
    fn reap(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain_mut(|entry| entry.since.elapsed() < self.idle_timeout && entry.conn.usable());
    }
}

/// Runs while the [`Upstream`] exists: nobody polls an idle connection, so this closes those
/// past the idle timeout, and those the service closed, a few times per timeout.
async fn reap(inner: Weak<Inner>) {
    loop {
        let Some(period) = inner.upgrade().map(|i| i.pool.idle_timeout / 4) else { return };
        tokio::time::sleep(period).await;
        match inner.upgrade() {
            Some(inner) => inner.pool.reap(),
            None => return,
        }
    }
}

/// A response body read over a pooled connection: polling it drives the connection, and once
/// it has been read to its end the connection goes back to the pool. Dropped before that, it
/// closes the connection (the rest of the response is unread).
struct PooledBody {
    body: Incoming,
    conn: Option<Box<PooledConn>>,
    pool: Weak<Inner>,
    ended: bool,
}

impl PooledBody {
    fn release(&mut self) {
        if let (Some(conn), Some(inner)) = (self.conn.take(), self.pool.upgrade()) {
            inner.pool.put(conn, self.pool.clone());
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // hyper stops polling a body that says it is at its end (its last frame carried the
        // end of the stream, or it had none).
        if self.ended || self.body.is_end_stream() {
            self.release();
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let mut drove = false;
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(None) => {
                    this.ended = true;
                    this.release();
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(frame))) => {
                    common::memory::worked();
                    if this.body.is_end_stream() {
                        this.ended = true;
                        this.release();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending if drove => return Poll::Pending,
                Poll::Pending => {}
            }
            // Only the connection feeds the body: let it read (it registers for the socket,
            // and the body for what the connection sends it), then look at the body again.
            match this.conn.as_mut() {
                Some(conn) => {
                    if conn.poll_conn(cx) {
                        // Ended: dropping it ends the body (with an error if it was cut short).
                        this.conn = None;
                    }
                }
                None => return Poll::Pending,
            }
            drove = true;
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request's own connection to the service. If the stream goes away before the exchange
/// completed -- the response read to its end and the upload sent whole -- the connection is
/// reset (RST), not closed: a FIN would queue behind the unsent upload and a service that is
/// not reading would never see it.
struct UploadConnection {
    task: tokio::task::JoinHandle<()>,
    socket: std::net::TcpStream,
    /// The upload's progress: whole, or not.
    request: Arc<common::upload::Progress>,
    /// The response was read to its end.
    completed: bool,
}

impl Drop for UploadConnection {
    fn drop(&mut self) {
        if self.completed && self.request.whole() {
            return;
        }
        // Linger 0: the last close of the socket discards the send queue and sends RST.
        let _ = socket2::SockRef::from(&self.socket).set_linger(Some(Duration::ZERO));
        self.task.abort();
    }
}

/// A response body that keeps its dedicated connection alive exactly as long as itself.
struct WithConnection {
    body: Incoming,
    conn: UploadConnection,
}

impl Drop for WithConnection {
    fn drop(&mut self) {
        // A response read to its end (or one with no body) completed the exchange: the
        // connection closes normally rather than with a reset.
        if self.body.is_end_stream() {
            self.conn.completed = true;
        }
    }
}

impl http_body::Body for WithConnection {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        // Its last frame (hyper's HTTP/2 server stops polling a body that says it has ended,
        // so `None` may never be asked for), or the end.
        if matches!(polled, std::task::Poll::Ready(None)) || self.body.is_end_stream() {
            self.conn.completed = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The size of a response head with these headers: a status line, `name: value` lines, the
/// blank line. (The reason phrase, which is not forwarded, is counted as a short one.)
fn head_len(headers: &HeaderMap) -> usize {
    "HTTP/1.1 200 OK\r\n\r\n".len()
        + headers.iter().map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len()).sum::<usize>()
}

/// Remove a request's hop-by-hop headers, a stale `Content-Length` first.
fn strip_request_hop_by_hop(headers: &mut HeaderMap) {
    common::headers::drop_stale_length(headers);
    remove_hop_by_hop(headers);
}

fn error(status: StatusCode, message: String) -> Response<BoxBody> {
    let mut resp = Response::new(body::full(message + "\n"));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioExecutor;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn validates_urls() {
        assert!(Upstream::new("http://127.0.0.1:8096").is_ok());
        assert!(Upstream::new("http://127.0.0.1:8096/").is_ok());
        assert!(matches!(Upstream::new("https://x:1"), Err(UpstreamUrlError::Scheme(_))));
        assert!(matches!(Upstream::new("http://x:1/app"), Err(UpstreamUrlError::HasPath(_))));
        assert!(matches!(Upstream::new("not a url"), Err(UpstreamUrlError::Invalid(..))));
    }

    #[test]
    fn head_length() {
        let mut h = HeaderMap::new();
        assert_eq!(head_len(&h), 19);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("22"));
        assert_eq!(head_len(&h), 19 + "content-length: 4\r\n".len() + "x-a: 1\r\n".len() + "x-a: 22\r\n".len());
    }

    #[test]
    fn stale_length_goes_with_transfer_encoding() {
        let mut h = HeaderMap::new();
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_request_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::CONTENT_TYPE));
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_request_hop_by_hop(&mut h);
        assert_eq!(h.get(header::CONTENT_LENGTH).map(HeaderValue::as_bytes), Some(&b"3"[..]));
    }

    /// What the scripted service answers for a request line.
    fn scripted_response(request_line: &str, head: &str) -> Vec<u8> {
        let target = request_line.split(' ').nth(1).unwrap_or("/");
        let mut out = String::from("HTTP/1.1 200 OK\r\n");
        let body = match target {
            "/many-headers" => {
                for i in 0..300 {
                    out.push_str(&format!("x-h-{i}: value-{i}\r\n"));
                }
                "many".to_owned()
            }
            "/too-many-headers" => {
                for i in 0..MAX_RESPONSE_HEADERS {
                    out.push_str(&format!("x-t-{i}: t\r\n"));
                }
                "many".to_owned()
            }
            "/huge-head" => {
                out.push_str(&format!("x-huge: {}\r\n", "h".repeat(300 * 1024)));
                "huge".to_owned()
            }
            "/over-limit" => {
                out.push_str(&format!("x-big: {}\r\n", "b".repeat(MAX_RESPONSE_HEAD)));
                "over".to_owned()
            }
            "/just-over" | "/just-fits" => {
                // Exactly the limit, or one byte more (counting as head_len does).
                let over = usize::from(target == "/just-over");
                let fill = MAX_RESPONSE_HEAD + over - "HTTP/1.1 200 OK\r\n\r\n".len() - "content-length: 4\r\n".len();
                out.push_str(&format!("x-b: {}\r\n", "b".repeat(fill - "x-b: \r\n".len())));
                "edge".to_owned()
            }
            "/full-head" => {
                // As close to the limits as a head gets: MAX_RESPONSE_HEADERS lines, about
                // MAX_RESPONSE_HEAD bytes in all, so the HTTP/2 list size is near its maximum.
                let fill = (MAX_RESPONSE_HEAD - 600) / (MAX_RESPONSE_HEADERS - 1) - "x-f-000: \r\n".len();
                for i in 0..MAX_RESPONSE_HEADERS - 1 {
                    out.push_str(&format!("x-f-{i:03}: {}\r\n", "f".repeat(fill)));
                }
                "full".to_owned()
            }
            "/cl-and-chunked" => {
                return b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    .to_vec();
            }
            "/gzip-coded" => return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b".to_vec(),
            "/gzip-then-chunked" => {
                return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n"
                    .to_vec();
            }
            "/no-content" => return b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n".to_vec(),
            "/empty" => String::new(),
            "/big" => "0123456789abcdef".repeat(BIG_BODY / 16),
            "/partial" => {
                // Half the body, then nothing (the connection stays open).
                return b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello".to_vec();
            }
            _ => head.to_owned(),
        };
        out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        if !request_line.starts_with("HEAD ") {
            out.push_str(&body);
        }
        out.into_bytes()
    }

    /// Size of the `/big` response body: several reads and DATA frames.
    const BIG_BODY: usize = 200 * 1024;

    /// Connections a [`scripted_service`] accepted, and how many of them are still open.
    #[derive(Clone, Default)]
    struct Connections {
        accepted: Arc<std::sync::atomic::AtomicUsize>,
        open: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Connections {
        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        /// Wait (up to 5 s) until `open` connections are open; false if that never happens.
        async fn wait_open(&self, open: usize) -> bool {
            for _ in 0..500 {
                if self.open.load(Ordering::SeqCst) == open {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    }

    /// A local service speaking raw HTTP/1.1 (so it can misbehave), several requests per
    /// connection: it reads each request (Content-Length or chunked body) and answers with
    /// [`scripted_response`]; by default the body is the request head exactly as received.
    async fn scripted_service() -> SocketAddr {
        counted_service().await.0
    }

    /// [`scripted_service`], counting its connections.
    async fn counted_service() -> (SocketAddr, Connections) {
        counting(|tcp| async move {
            let _ = serve_scripted(tcp).await;
        })
        .await
    }

    /// A local service that hands each connection it accepts to `serve` (a task each),
    /// counting them: accepted, and open until `serve` returns.
    async fn counting<F, Fut>(serve: F) -> (SocketAddr, Connections)
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Connections::default();
        let counts = connections.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counts.accepted.fetch_add(1, Ordering::SeqCst);
                counts.open.fetch_add(1, Ordering::SeqCst);
                let (open, served) = (counts.open.clone(), serve(tcp));
                tokio::spawn(async move {
                    served.await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (addr, connections)
    }

    async fn serve_scripted(tcp: TcpStream) -> std::io::Result<()> {
        let mut tcp = BufReader::new(tcp);
        loop {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if tcp.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
                if head.len() > 64 * 1024 {
                    return Ok(());
                }
            }
            let lower = head.to_ascii_lowercase();
            if lower.contains("transfer-encoding: chunked") {
                loop {
                    let mut size = String::new();
                    tcp.read_line(&mut size).await?;
                    let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                    let mut chunk = vec![0; n + 2];
                    tcp.read_exact(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                }
            } else if let Some(len) = lower.lines().find_map(|l| l.strip_prefix("content-length: ")) {
                let mut body = vec![0; len.trim().parse().unwrap_or(0)];
                tcp.read_exact(&mut body).await?;
            }
            let request_line = head.lines().next().unwrap_or_default().to_owned();
            if tcp.get_mut().write_all(&scripted_response(&request_line, &head)).await.is_err() {
                return Ok(());
            }
            if request_line.contains(" /then-close ") {
                // Closed while idle, as a service with a short keep-alive timeout does.
                return Ok(());
            }
        }
    }

    /// An HTTP/2 connection to `upstream`, as the proxy has over the tunnel (same header list
    /// limit). The second value ends when the connection does.
    async fn tunnel<B>(upstream: Upstream) -> (hyper::client::conn::http2::SendRequest<B>, tokio::task::JoinHandle<()>)
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<common::body::BoxError>,
    {
        let (proxy_side, origin_side) = tokio::io::duplex(1024 * 1024);
        tokio::spawn(async move {
            // Through the origin's own end of a tunnel, which reads what the proxy sent with
            // each request.
            let app = crate::App::Upstream(Box::new(upstream));
            let _ =
                crate::serve_tunnel(TokioIo::new(origin_side), app, &tokio_util::sync::CancellationToken::new()).await;
        });
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(common::tuning::MAX_HEADER_LIST_SIZE)
            .handshake(TokioIo::new(proxy_side))
            .await
            .unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        (sender, conn)
    }

    async fn ask(
        sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
        method: http::Method,
        path: &str,
        body: &'static [u8],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://public.example:8443{path}"))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .expect("an answer in time")
            .expect("the stream works");
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(10), body.collect()).await.expect("the body in time");
        (parts.status, parts.headers, body.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn the_service_sees_origin_form_and_the_public_host() {
        let upstream = Upstream::new(&format!("http://{}", scripted_service().await)).unwrap();
        let (mut sender, _conn) = tunnel(upstream).await;
        for (method, body) in [
            (http::Method::GET, &b""[..]),
            (http::Method::POST, b"posted"),
            (http::Method::PUT, b"put"),
            (http::Method::PATCH, b"patched"),
            (http::Method::DELETE, b"deleted"),
            (http::Method::GET, b"a GET with a body"),
        ] {
            let (status, _, seen) = ask(&mut sender, method.clone(), "/app/x%20y?q=1&r=%2F", body).await;
            assert_eq!(status, StatusCode::OK, "{method}");
            let seen = String::from_utf8(seen.to_vec()).unwrap();
            let mut lines = seen.lines();
            assert_eq!(lines.next(), Some(format!("{method} /app/x%20y?q=1&r=%2F HTTP/1.1").as_str()), "{seen}");
            let hosts: Vec<&str> = lines.filter(|l| l.to_ascii_lowercase().starts_with("host:")).collect();
            assert_eq!(hosts, ["host: public.example:8443"], "{method}: {seen}");
        }
    }

    #[tokio::test]
    async fn response_heads_are_bounded_per_stream() {
        let upstream = Upstream::new(&format!("http://{}", scripted_service().await)).unwrap();
        let (mut sender, conn) = tunnel(upstream).await;
        for body in [&b""[..], b"with a body"] {
            let (status, headers, got) = ask(&mut sender, http::Method::POST, "/many-headers", body).await;
            assert_eq!((status, &got[..]), (StatusCode::OK, &b"many"[..]));
            assert_eq!(headers.get("x-h-299").map(HeaderValue::as_bytes), Some(&b"value-299"[..]));
            let (status, headers, got) = ask(&mut sender, http::Method::GET, "/full-head", body).await;
            assert_eq!((status, &got[..]), (StatusCode::OK, &b"full"[..]), "a head just within the limits");
            // The service's lines, its content-length among them (the proxy adds `date`).
            assert_eq!(headers.len(), MAX_RESPONSE_HEADERS);
            let (status, _, got) = ask(&mut sender, http::Method::GET, "/just-fits", body).await;
            assert_eq!((status, &got[..]), (StatusCode::OK, &b"edge"[..]), "a head of exactly the limit");
            for path in ["/huge-head", "/over-limit", "/just-over", "/too-many-headers"] {
                let (status, _, got) = ask(&mut sender, http::Method::GET, path, body).await;
                assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}");
                let text = String::from_utf8(got.to_vec()).unwrap();
                assert!(
                    text.contains("upstream response head is larger than 32 KiB or has more than 500 header lines"),
                    "{text}"
                );
            }
            // The tunnel is still up, and the service still usable.
            assert!(!conn.is_finished());
            let (status, _, _) = ask(&mut sender, http::Method::GET, "/", body).await;
            assert_eq!(status, StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn a_stale_content_length_is_dropped() {
        let upstream = Upstream::new(&format!("http://{}", scripted_service().await)).unwrap();
        let (mut sender, _conn) = tunnel(upstream).await;
        for body in [&b""[..], b"with a body"] {
            let (status, headers, got) = ask(&mut sender, http::Method::GET, "/cl-and-chunked", body).await;
            assert_eq!((status, &got[..]), (StatusCode::OK, &b"hello world"[..]));
            assert!(headers.get(header::CONTENT_LENGTH).is_none(), "{headers:?}");
        }
    }

    #[tokio::test]
    async fn answers_that_cannot_be_forwarded_faithfully_are_refused_or_tidied() {
        let upstream = Upstream::new(&format!("http://{}", scripted_service().await)).unwrap();
        let (mut sender, conn) = tunnel(upstream).await;
        for path in ["/gzip-coded", "/gzip-then-chunked"] {
            let (status, _, got) = ask(&mut sender, http::Method::GET, path, b"").await;
            let text = String::from_utf8_lossy(&got);
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {text}");
            assert!(text.contains("Transfer-Encoding \"gzip") && text.contains("Content-Encoding"), "{text}");
        }
        // A 204 with a length reaches the proxy without it (its HTTP/2 clients reset it).
        let (status, headers, got) = ask(&mut sender, http::Method::GET, "/no-content", b"").await;
        assert_eq!((status, got.len()), (StatusCode::NO_CONTENT, 0));
        assert!(headers.get(header::CONTENT_LENGTH).is_none(), "{headers:?}");
        let (status, _, _) = ask(&mut sender, http::Method::GET, "/", b"").await;
        assert_eq!(status, StatusCode::OK, "the service is still usable");
        assert!(!conn.is_finished());
    }

    #[tokio::test]
    async fn bodyless_requests_share_a_kept_alive_connection() {
        let (addr, connections) = counted_service().await;
        let upstream = Upstream::new(&format!("http://{addr}")).unwrap();
        let (mut sender, _conn) = tunnel(upstream).await;
        for path in ["/", "/empty", "/big", "/cl-and-chunked", "/", "/empty"] {
            let (status, _, got) = ask(&mut sender, http::Method::GET, path, b"").await;
            assert_eq!(status, StatusCode::OK, "{path}");
            match path {
                "/empty" => assert!(got.is_empty()),
                "/big" => assert_eq!(got, "0123456789abcdef".repeat(BIG_BODY / 16)),
                "/cl-and-chunked" => assert_eq!(got, "hello world"),
                _ => assert!(got.starts_with(b"GET / HTTP/1.1"), "{got:?}"),
            }
        }
        let (status, _, got) = ask(&mut sender, http::Method::HEAD, "/", b"").await;
        assert_eq!((status, got.len()), (StatusCode::OK, 0));
        assert_eq!(connections.accepted(), 1, "one after the other, all on one connection");

        // At once, each needs a connection; afterwards they are all kept for reuse.
        let asks = (0..8).map(|_| {
            let mut sender = sender.clone();
            async move { ask(&mut sender, http::Method::GET, "/big", b"").await }
        });
        for (status, _, got) in futures_util::future::join_all(asks).await {
            assert_eq!((status, got.len()), (StatusCode::OK, BIG_BODY));
        }
        let accepted = connections.accepted();
        assert!((2..=8).contains(&accepted), "{accepted}");
        for _ in 0..8 {
            assert_eq!(ask(&mut sender, http::Method::GET, "/", b"").await.0, StatusCode::OK);
        }
        assert_eq!(connections.accepted(), accepted, "no new connection while idle ones are kept");
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (addr, connections) = counted_service().await;
        let upstream =
            Upstream::with_timeouts(&format!("http://{addr}"), Duration::from_millis(200), RESPONSE_HEADER_TIMEOUT)
                .unwrap();
        let (mut sender, _conn) = tunnel(upstream).await;
        assert_eq!(ask(&mut sender, http::Method::GET, "/", b"").await.0, StatusCode::OK);
        assert!(connections.wait_open(1).await);
        let idle = std::time::Instant::now();
        assert!(connections.wait_open(0).await, "the idle connection is closed");
        let waited = idle.elapsed();
        assert!(waited >= Duration::from_millis(150), "not before the timeout: {waited:?}");
        // And the next request gets a new connection.
        assert_eq!(ask(&mut sender, http::Method::GET, "/", b"").await.0, StatusCode::OK);
        assert_eq!(connections.accepted(), 2);
    }

    #[tokio::test]
    async fn a_connection_the_service_closed_is_not_reused() {
        let (addr, connections) = counted_service().await;
        let upstream = Upstream::new(&format!("http://{addr}")).unwrap();
        let (mut sender, _conn) = tunnel(upstream).await;
        for round in 1..=3 {
            let (status, _, got) = ask(&mut sender, http::Method::GET, "/then-close", b"").await;
            assert_eq!(status, StatusCode::OK, "round {round}: {got:?}");
            assert!(connections.wait_open(0).await);
            assert_eq!(connections.accepted(), round);
        }
        // Without waiting for the close to arrive first.
        for round in 4..=10 {
            let (status, _, got) = ask(&mut sender, http::Method::GET, "/then-close", b"").await;
            assert_eq!(status, StatusCode::OK, "round {round}: {got:?}");
        }
    }

    #[tokio::test]
    async fn a_response_body_dropped_early_closes_its_connection() {
        let (addr, connections) = counted_service().await;
        let upstream = Upstream::new(&format!("http://{addr}")).unwrap();
        let (mut sender, _conn) = tunnel(upstream).await;
        let req = Request::get("http://public.example/partial").body(Full::new(Bytes::new())).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let first = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.unwrap();
        assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "hello");
        assert!(connections.wait_open(1).await);
        drop(body);
        assert!(connections.wait_open(0).await, "the half-read response's connection is closed");
        assert_eq!(ask(&mut sender, http::Method::GET, "/", b"").await.0, StatusCode::OK);
        assert_eq!(connections.accepted(), 2, "and not reused");
    }

    #[tokio::test]
    async fn a_service_that_is_down_gets_a_502_naming_it() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let upstream = Upstream::new(&format!("http://{addr}")).unwrap();
        let (mut sender, _conn) = tunnel(upstream).await;
        for body in [&b""[..], b"with a body"] {
            let (status, _, got) = ask(&mut sender, http::Method::GET, "/", body).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY);
            let text = String::from_utf8(got.to_vec()).unwrap();
            assert!(text.contains(&format!("upstream http://{addr}/ failed: cannot connect")), "{text}");
        }
    }

    /// A request body sent piece by piece: each `Bytes` on the channel is a frame; dropping
    /// the sender ends it.
    type Fed = http_body_util::StreamBody<
        futures_util::stream::PollFn<
            Box<
                dyn FnMut(&mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> + Send + Unpin,
            >,
        >,
    >;

    fn fed() -> (tokio::sync::mpsc::Sender<Bytes>, Fed) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let next: Box<dyn FnMut(&mut Context<'_>) -> _ + Send + Unpin> =
            Box::new(move |cx: &mut Context<'_>| rx.poll_recv(cx).map(|d| d.map(|d| Ok(http_body::Frame::data(d)))));
        (tx, http_body_util::StreamBody::new(futures_util::stream::poll_fn(next)))
    }

    /// PUT a [`fed`] body of `pieces` 1 KiB frames, one every `every`, then end it or (with
    /// `stall`) keep it open with nothing more; the answer's status and text.
    async fn upload(upstream: Upstream, pieces: usize, every: Duration, stall: bool) -> (StatusCode, String) {
        let (mut sender, _conn) = tunnel::<Fed>(upstream).await;
        let (tx, body) = fed();
        let feeder = tokio::spawn(async move {
            for _ in 0..pieces {
                tokio::time::sleep(every).await;
                tx.send(Bytes::from(vec![b'u'; 1024])).await.expect("the body is read");
            }
            if stall {
                std::future::pending::<()>().await;
            }
        });
        let req = Request::put("http://public.example/upload").body(body).unwrap();
        let resp =
            tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await.expect("answered").unwrap();
        let status = resp.status();
        let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        feeder.abort();
        (status, String::from_utf8_lossy(&text).into_owned())
    }

    #[tokio::test]
    async fn the_answer_timeout_counts_from_the_end_of_the_upload() {
        let addr = scripted_service().await;
        let short = Duration::from_millis(300);
        let upstream = || Upstream::with_timeouts(&format!("http://{addr}"), POOL_IDLE_TIMEOUT, short).unwrap();
        // Eight pieces 100 ms apart: more than twice the timeout, but never 300 ms without one.
        let (status, text) = upload(upstream(), 8, Duration::from_millis(100), false).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.starts_with("PUT /upload HTTP/1.1"), "{text}");
        // A body that stops coming (from the proxy): 408, the service is not blamed.
        let (status, text) = upload(upstream(), 2, Duration::from_millis(50), true).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{text}");
        assert!(text.contains("nothing more of the request body came for 300ms"), "{text}");
    }

    #[tokio::test]
    async fn a_service_that_reads_no_upload_gets_a_504_naming_it() {
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = silent.accept().await {
                held.push(tcp);
            }
        });
        let upstream =
            Upstream::with_timeouts(&format!("http://{addr}"), POOL_IDLE_TIMEOUT, Duration::from_millis(300)).unwrap();
        let (mut sender, _conn) = tunnel::<Full<Bytes>>(upstream).await;
        // More than the loopback buffers hold.
        let req =
            Request::put("http://public.example/upload").body(Full::new(Bytes::from(vec![0u8; 64 << 20]))).unwrap();
        let resp =
            tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await.expect("answered").unwrap();
        let status = resp.status();
        let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text:?}");
        assert!(String::from_utf8_lossy(&text)
            .contains(&format!("upstream http://{addr}/ read nothing more of the request body")));
    }

    #[tokio::test]
    async fn the_service_gets_as_long_as_the_proxy_waits() {
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let (seen, mut heads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = silent.accept().await {
                let mut tcp = BufReader::new(tcp);
                let mut head = String::new();
                while tcp.read_line(&mut head).await.unwrap_or(0) > 0 && !head.ends_with("\r\n\r\n") {}
                let _ = seen.send(head);
                held.push(tcp);
            }
        });
        let ask_within = |default_ms: u64, sent_ms: Option<&'static str>| async move {
            let default = Duration::from_millis(default_ms);
            let upstream = Upstream::with_timeouts(&format!("http://{addr}"), POOL_IDLE_TIMEOUT, default).unwrap();
            let (mut sender, _conn) = tunnel::<Full<Bytes>>(upstream).await;
            let mut req = Request::get("http://public.example/report").body(Full::default()).unwrap();
            if let Some(ms) = sent_ms {
                let value = HeaderValue::from_static(ms);
                req.headers_mut().insert(common::protocol::RESPONSE_TIMEOUT_HEADER, value);
            }
            let started = Instant::now();
            let resp = sender.send_request(req).await.unwrap();
            let waited = started.elapsed();
            let (status, text) = (resp.status(), resp.into_body().collect().await.unwrap().to_bytes());
            assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text:?}");
            (String::from_utf8_lossy(&text).into_owned(), waited)
        };
        // A route that allows longer than the origin's own timeout: the origin waits that long,
        // and its own timeout more, so that the proxy's 504 comes first.
        let (text, waited) = ask_within(100, Some("900")).await;
        assert!(text.contains("did not answer within 1s"), "{text}");
        assert!(waited >= Duration::from_millis(1000), "gave up after {waited:?}");
        let (text, _) = ask_within(200, Some("150")).await;
        assert!(text.contains("did not answer within 350ms"), "{text}");
        // Nothing sent (an older proxy), or nonsense: the origin's default.
        let (text, _) = ask_within(200, None).await;
        assert!(text.contains("did not answer within 200ms"), "{text}");
        let (text, _) = ask_within(200, Some("1h")).await;
        assert!(text.contains("did not answer within 200ms"), "{text}");
        // The header is the proxy's word to the origin, not something the service sees.
        for _ in 0..4 {
            let head = heads.recv().await.unwrap().to_ascii_lowercase();
            assert!(head.starts_with("get /report http/1.1") && !head.contains("revmux"), "{head}");
        }
    }

    /// A service that answers the first request on each connection and keeps it open, then
    /// reads the next request and closes the connection without a word: from the client's
    /// side, a request that crossed the service's keep-alive close. Counts its connections.
    async fn one_answer_per_connection() -> (SocketAddr, Connections) {
        counting(|tcp| async move {
            let mut tcp = BufReader::new(tcp);
            for answer in [true, false] {
                let mut line = String::new();
                while tcp.read_line(&mut line).await.unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n") {}
                if answer {
                    let _ = tcp.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn an_idempotent_request_that_crossed_a_close_is_sent_again() {
        let (addr, connections) = one_answer_per_connection().await;
        let upstream = Upstream::new(&format!("http://{addr}")).unwrap();
        let (mut sender, _conn) = tunnel::<Full<Bytes>>(upstream).await;
        assert_eq!(ask(&mut sender, http::Method::GET, "/first", b"").await.0, StatusCode::OK);
        // Written on the kept connection, which the service then closes: sent again on a new one.
        for method in [http::Method::GET, http::Method::HEAD, http::Method::DELETE, http::Method::OPTIONS] {
            let before = connections.accepted();
            let (status, _, body) = ask(&mut sender, method.clone(), "/again", b"").await;
            assert_eq!(status, StatusCode::OK, "{method}: {body:?}");
            assert_eq!(connections.accepted(), before + 1, "{method}: on a new connection");
        }
        // A POST may have been acted on: reported, not repeated.
        let before = connections.accepted();
        let (status, _, body) = ask(&mut sender, http::Method::POST, "/once", b"").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body:?}");
        assert_eq!(connections.accepted(), before, "not sent again");
    }

    /// How a [`one_upload_service`] connection ended: `None` if not within 5 s of its answer,
    /// else end of file (a normal close) or the error kind (a reset).
    type Ended = tokio::sync::oneshot::Receiver<Option<Result<usize, std::io::ErrorKind>>>;

    /// A service for one upload: it reads the request head, with `read_body` its
    /// Content-Length body too, writes `answer`, then reports how the connection ended.
    async fn one_upload_service(answer: &'static [u8], read_body: bool) -> (SocketAddr, Ended) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ended, how) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tcp = BufReader::new(tcp);
            let mut head = String::new();
            while tcp.read_line(&mut head).await.unwrap() > 0 && !head.ends_with("\r\n\r\n") {}
            if read_body {
                let len = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap();
                tcp.read_exact(&mut vec![0; len.trim().parse().unwrap()]).await.unwrap();
            }
            tcp.get_mut().write_all(answer).await.unwrap();
            let mut rest = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
            let _ = ended.send(read.ok().map(|r| r.map_err(|e| e.kind())));
        });
        (addr, how)
    }

    #[tokio::test]
    async fn a_completed_upload_closes_its_connection_without_a_reset() {
        let (addr, how) = one_upload_service(b"HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\nstored\n", true).await;
        let (mut sender, _conn) = tunnel::<Full<Bytes>>(Upstream::new(&format!("http://{addr}")).unwrap()).await;
        let req = Request::put("http://public.example/file")
            .header("content-length", "5")
            .body(Full::new(Bytes::from_static(b"hello")));
        let resp = sender.send_request(req.unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "stored\n");
        let how = tokio::time::timeout(Duration::from_secs(10), how).await.expect("reported").unwrap();
        assert_eq!(how, Some(Ok(0)), "closed normally, not reset");
    }

    #[tokio::test]
    async fn an_upload_answered_before_it_was_sent_whole_is_still_reset() {
        // 413 from the head alone; nothing of the body is read.
        let (addr, how) =
            one_upload_service(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\n\r\nbig!", false).await;
        let (mut sender, _conn) = tunnel::<Fed>(Upstream::new(&format!("http://{addr}")).unwrap()).await;
        // A piece, then the upload stays open with nothing more (as from a slow client) until
        // the service has said how its connection ended.
        let (tx, body) = fed();
        tx.send(Bytes::from_static(b"a piece")).await.unwrap();
        let resp = sender.send_request(Request::put("http://public.example/big").body(body).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "big!");
        let how = tokio::time::timeout(Duration::from_secs(10), how).await.expect("reported").unwrap();
        assert_eq!(how, Some(Err(std::io::ErrorKind::ConnectionReset)), "reset, so the service sees the upload end");
        drop(tx);
    }
}
