//! The proxy's public port: HTTP/1.1, h2c with prior knowledge, or TLS with ALPN `h2` and
//! `http/1.1`. Every connection has deadlines for its TLS handshake and first bytes, each
//! request head, idleness and sending. Every request flows one way: route (which [`Target`]),
//! policy (may it, and how it is rewritten), then the target: an origin's tunnels, a `url`,
//! or an answer from the proxy itself. Every refusal is one [`Error`], rendered in one place.

use crate::access::{Logged, Record, Served};
use crate::error::Error;
use crate::forward::{self, FrontendConn};
use crate::io::{self as fio, FrontIo, Protocol};
use crate::logs::NOT_FORWARDED;
use crate::origins::ToOrigin;
use crate::route::{Handler, OriginRef, Target};
use crate::stall::ConnActivity;
use crate::state::Proxy;
use crate::{admin, policy, status};
use common::body::{self, BoxBody};
use common::coalesce::{Coalesce, Preparing};
use common::protocol;
use common::ratelimit::truncate_for_log;
use common::tuning;
use http::header::{self, HeaderValue};
use http::uri::Scheme;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, Instrument};

/// Longest request field (path, host) written to a log line.
pub const LOG_FIELD_MAX: usize = 256;

/// Serve one front-end connection, over TLS when the proxy's front end has a certificate.
pub async fn serve_conn(proxy: Arc<Proxy>, tcp: TcpStream, peer: SocketAddr, watcher: Watcher) {
    let span = tracing::debug_span!("conn", %peer);
    let acceptor = proxy.tls.load().as_ref().and_then(|tls| tls.frontend.clone()).map(TlsAcceptor::from);
    async move {
        match acceptor {
            None => {
                let conn = FrontendConn::new(peer, Scheme::HTTP);
                Box::pin(serve_stream(proxy, tcp, None, conn, watcher)).await
            }
            Some(acceptor) => match tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, accept_tls(acceptor, tcp)).await {
                Ok(Ok(None)) => debug!("plain HTTP on the TLS front end: told to use https://"),
                Ok(Ok(Some(tls))) => {
                    // ALPN decides; without it a TLS client speaks HTTP/1.1 (RFC 9113 §3.2).
                    let alpn = match tls.get_ref().1.alpn_protocol() {
                        Some(b"h2") => Protocol::Http2,
                        _ => Protocol::Http1,
                    };
                    let conn = FrontendConn::new(peer, Scheme::HTTPS);
                    Box::pin(serve_stream(proxy, tls, Some(alpn), conn, watcher)).await
                }
                Ok(Err(e)) => debug!(error = %e, "front-end TLS handshake failed"),
                Err(_) => debug!("front-end TLS handshake timed out"),
            },
        }
    }
    .instrument(span)
    .await
}

/// The TLS handshake, unless the first byte shows plain HTTP: then a short 400 that says to
/// use https:// and `None`. The caller's deadline covers both.
async fn accept_tls(acceptor: TlsAcceptor, mut tcp: TcpStream) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 1 && fio::is_plain_http(first[0]) {
        fio::refuse_plain_http(&mut tcp).await?;
        return Ok(None);
    }
    acceptor.accept(tcp).await.map(Some)
}

/// Read the first bytes under the deadline, settle the protocol (ALPN's choice when there is
/// one) and serve it. Each protocol's connection is boxed (as is each transport's
/// [`serve_stream`] in [`serve_conn`]): an `async fn` is as large as its largest branch, and
/// with everything inline an idle HTTP/1.1 connection's task took 25 KB, sized for the TLS,
/// plain, HTTP/1.1 and HTTP/2 states it can never hold at once.
async fn serve_stream<T>(proxy: Arc<Proxy>, mut io: T, alpn: Option<Protocol>, conn: FrontendConn, watcher: Watcher)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let prefix = match fio::read_prefix(&mut io, tuning::HANDSHAKE_TIMEOUT).await {
        Ok(prefix) => prefix,
        Err(e) => {
            debug!(error = %e, "front-end connection closed before its first request");
            return;
        }
    };
    let protocol = alpn.unwrap_or_else(|| fio::sniff(&prefix));
    let io = FrontIo::new(io, prefix, proxy.limits.send_timeout);
    let served = match protocol {
        Protocol::Http1 => Box::pin(serve_http1(proxy, io, conn, watcher)).await,
        Protocol::Http2 => Box::pin(serve_http2(proxy, io, conn, watcher)).await,
    };
    if let Some(Err(e)) = served {
        debug!(error = %e, "front-end connection ended with an error");
    }
}

/// What a front-end connection's service answers each request with.
type Answer = Result<Response<BoxBody>, Infallible>;

/// The per-connection state every request's handler shares, and the connection's service.
/// `preparing` (HTTP/2) counts the requests whose answers are being prepared.
fn service(
    proxy: &Arc<Proxy>,
    conn: FrontendConn,
    preparing: Option<Preparing>,
) -> (
    Arc<ConnActivity>,
    impl Service<
            Request<Incoming>,
            Response = Response<BoxBody>,
            Error = Infallible,
            Future = impl Future<Output = Answer> + Send,
        > + Clone
        + Send
        + 'static,
) {
    let activity = Arc::new(ConnActivity::default());
    activity.last_change_ms.store(proxy.stalls.now_ms(), Ordering::Relaxed);
    let conn = Arc::new(conn);
    let service = {
        let (proxy, activity) = (proxy.clone(), activity.clone());
        service_fn(move |req| {
            let (proxy, conn, activity) = (proxy.clone(), conn.clone(), activity.clone());
            let preparing = preparing.as_ref().map(Preparing::start);
            async move {
                let resp = handle(&proxy, req, &conn, activity).await;
                drop(preparing);
                Ok(resp)
            }
        })
    };
    (activity, service)
}

/// Serve HTTP/1.1 on an established connection.
async fn serve_http1<T>(
    proxy: Arc<Proxy>,
    io: FrontIo<T>,
    conn: FrontendConn,
    watcher: Watcher,
) -> Option<Result<(), hyper::Error>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (activity, service) = service(&proxy, conn, None);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.limits.header_timeout)
        .max_buf_size(tuning::FRONTEND_BUFFER)
        .max_header_size(tuning::MAX_REQUEST_HEAD)
        // hyper's default of 100 header lines: a larger cap makes it allocate two
        // arrays of that size on the heap for every request head it parses.
        .serve_connection(TokioIo::new(io), service);
    watch_idle(&proxy, &activity, watcher.watch(conn)).await
}

/// Serve HTTP/2 on an established connection. The responses ready in one scheduling round
/// go out in one write ([`Coalesce`]): `h2` would otherwise write each small response on its
/// own, one system call and one wake-up of the client apiece (a page of small assets, a
/// player's segment requests).
async fn serve_http2<T>(
    proxy: Arc<Proxy>,
    io: FrontIo<T>,
    conn: FrontendConn,
    watcher: Watcher,
) -> Option<Result<(), hyper::Error>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let preparing = Preparing::default();
    let io = TokioIo::new(Coalesce::new(io, preparing.clone()));
    let (activity, service) = service(&proxy, conn, Some(preparing));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(tuning::MAX_REQUEST_HEAD as u32)
        .max_concurrent_streams(tuning::FRONTEND_MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::FRONTEND_H2_CONNECTION_WINDOW)
        .max_send_buf_size(tuning::MAX_SEND_BUFFER)
        .keep_alive_interval(tuning::KEEPALIVE_INTERVAL * 4)
        .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT * 2)
        .serve_connection(io, service);
    watch_idle(&proxy, &activity, watcher.watch(conn)).await
}

/// Run a connection until it ends, or drop it once it has had no request for the idle
/// timeout, or when every request in flight on it has been reset as stalled. Returns `None`
/// when the connection was dropped.
async fn watch_idle<F, E>(proxy: &Proxy, activity: &ConnActivity, served: F) -> Option<Result<(), E>>
where
    F: std::future::Future<Output = Result<(), E>>,
{
    let idle_ms = proxy.limits.idle_timeout.as_millis() as u64;
    let check = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(proxy.limits.idle_timeout));
        loop {
            tick.tick().await;
            let in_flight = activity.in_flight.load(Ordering::Relaxed);
            if in_flight == 0 {
                let since = proxy.stalls.now_ms().saturating_sub(activity.last_change_ms.load(Ordering::Relaxed));
                if since >= idle_ms {
                    debug!("closing an idle front-end connection");
                    return;
                }
            } else if activity.evicted.load(Ordering::Relaxed) >= in_flight {
                debug!("closing a front-end connection whose every request was reset as stalled");
                return;
            }
        }
    };
    tokio::select! {
        r = served => Some(r),
        _ = check => None,
    }
}

/// Route one front-end request, apply its route's policy and hand it to the target; failures
/// become a precise status with a reason.
pub async fn handle(
    proxy: &Proxy,
    req: Request<Incoming>,
    conn: &FrontendConn,
    activity: Arc<ConnActivity>,
) -> Response<BoxBody> {
    common::memory::worked();
    // Dropped with this future if the client leaves first: the record then logs that.
    let mut record = Record::begin(&req, conn.peer);
    let resp = match dispatch(proxy, req, conn, activity, &mut record.served).await {
        Ok(resp) => resp,
        Err(e) => {
            proxy.counters.record_failure(&e);
            if let Some(suppressed) = NOT_FORWARDED.allow() {
                tracing::warn!(
                    method = %record.method(),
                    uri = %truncate_for_log(&record.uri().to_string(), LOG_FIELD_MAX),
                    peer = %conn.peer,
                    side = ?e.side(),
                    error = %truncate_for_log(&e.to_string(), LOG_FIELD_MAX),
                    suppressed,
                    "request not forwarded"
                );
            }
            e.into_response()
        }
    };
    // An answer to HEAD has no body, whoever wrote one (p's own error pages, a `respond`
    // route, an origin): hyper's HTTP/1.1 server leaves it out, but its HTTP/2 server would
    // send it, and the client would reset the stream. The headers (Content-Length among
    // them, describing a GET) stay.
    let resp = if record.method() == Method::HEAD { without_body(resp) } else { resp };
    let head_after = record.responded(resp.status());
    proxy.latencies.observe(record.origin_label(), resp.status(), head_after);
    if !crate::access::enabled() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body::boxed(Logged::new(body, record)))
}

/// The answer to a HEAD request: `resp`'s head, and the length its body would have had when
/// no header says it already (a body of known length: p's own pages).
fn without_body(resp: Response<BoxBody>) -> Response<BoxBody> {
    let (mut parts, body) = resp.into_parts();
    if let Some(len) = http_body::Body::size_hint(&body).exact().filter(|&len| len > 0) {
        parts.headers.entry(header::CONTENT_LENGTH).or_insert(HeaderValue::from(len));
    }
    Response::from_parts(parts, body::empty())
}

async fn dispatch(
    proxy: &Proxy,
    req: Request<Incoming>,
    conn: &FrontendConn,
    activity: Arc<ConnActivity>,
    served: &mut Served,
) -> Result<Response<BoxBody>, Error> {
    let table = proxy.table.load_full();
    let (mut resp, route) = answer(proxy, &table, req, conn, activity, served).await?;
    route.policy.rewrite_response(resp.headers_mut());
    // Whatever the target or the route's headers said (an origin older than this proxy, say),
    // an HTTP/2 client resets a 204 that carries a length.
    common::headers::drop_length_without_content(resp.status(), resp.headers_mut());
    Ok(resp)
}

/// The route's target's answer, and the route.
async fn answer(
    proxy: &Proxy,
    table: &crate::route::Table,
    req: Request<Incoming>,
    conn: &FrontendConn,
    activity: Arc<ConnActivity>,
    served: &mut Served,
) -> Result<(Response<BoxBody>, Arc<crate::route::Route>), Error> {
    let (parts, incoming) = req.into_parts();
    if protocol::is_tunnel_request(&parts) {
        // An origin pointed at the wrong port: tell it (it logs this) rather than forward it.
        return Err(Error::TunnelRequestOnFrontEnd);
    }
    let public = forward::check(&parts)?;
    let host = public.host().trim_start_matches('[').trim_end_matches(']');
    let (_, route) = table
        .lookup(host, parts.uri.path())
        .ok_or_else(|| Error::NoRoute { host: host.to_owned(), path: parts.uri.path().to_owned() })?;
    let route = route.clone();
    served.route = Some(route.clone());
    let client = policy::client_ip(conn.peer.ip(), &parts.headers, &table.trusted_proxies);
    let trusted = policy::is_trusted(conn.peer.ip(), &table.trusted_proxies);
    route.policy.admit(client, &parts.headers).await?;
    let timeout = route.policy.timeout.unwrap_or(proxy.limits.response_timeout);
    let (origin, service) = match &route.target {
        Target::Origin { origin: OriginRef::Named(name), service } => (name.clone(), service),
        Target::Origin { origin: OriginRef::MostRecent, service } => {
            (proxy.origins.most_recent().ok_or(Error::NoOrigin)?, service)
        }
        Target::Url { authority, base, text } => {
            served.origin = Some(text.clone());
            let req = rewritten(&route.policy, parts, incoming, conn, &public, trusted, served)?;
            let resp = forward::to_url(proxy, req, conn, (authority, base, text), timeout, activity).await?;
            return Ok((resp, route));
        }
        Target::Handler(Handler::Status) => {
            let mut resp = Response::new(body::full(status::html(&admin::status(proxy))));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok((resp, route));
        }
        Target::Handler(Handler::Health) => return Ok((crate::error::text_response(StatusCode::OK, "ok\n"), route)),
        Target::Redirect { location, status } => {
            let mut resp = crate::error::text_response(*status, format!("{} see {location}\n", status.as_u16()));
            if let Ok(v) = HeaderValue::try_from(location.as_str()) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return Ok((resp, route));
        }
        Target::Respond { status, body: text } => {
            let mut resp = crate::error::text_response(*status, text.clone());
            if *status == StatusCode::NO_CONTENT || *status == StatusCode::NOT_MODIFIED {
                *resp.body_mut() = body::empty();
                resp.headers_mut().remove(header::CONTENT_TYPE);
            }
            return Ok((resp, route));
        }
    };
    served.origin = Some(origin.clone());
    let mut req = rewritten(&route.policy, parts, incoming, conn, &public, trusted, served)?;
    if let Some(value) = service.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
        req.headers_mut().insert(protocol::SERVICE_HEADER, value);
    }
    // The origin waits for its local service as long as this route waits for the origin.
    req.headers_mut().insert(protocol::RESPONSE_TIMEOUT_HEADER, protocol::response_timeout_value(timeout));
    let max_waiting = table.max_waiting.get(&origin).copied().unwrap_or(proxy.limits.max_waiting_per_origin);
    let resp = forward::to_origin(proxy, req, conn, (&origin, max_waiting), timeout, activity, served).await?;
    Ok((resp, route))
}

/// The request as its target will see it: the policy's rewrites, then the forwarding headers.
fn rewritten(
    policy: &policy::Policy,
    mut parts: http::request::Parts,
    incoming: Incoming,
    conn: &FrontendConn,
    public: &http::uri::Authority,
    peer_trusted: bool,
    served: &Served,
) -> Result<Request<ToOrigin>, Error> {
    let mut target = public.clone();
    // Only a route chooses an origin's service and its deadline, never the front-end client.
    parts.headers.remove(protocol::SERVICE_HEADER);
    parts.headers.remove(protocol::RESPONSE_TIMEOUT_HEADER);
    policy.rewrite(&mut parts, &mut target);
    forward::prepare(&mut parts, conn, public, target, peer_trusted)?;
    Ok(Request::from_parts(parts, ToOrigin::counted(incoming, served.bytes_in.clone())))
}
