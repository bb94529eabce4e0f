//! The forwarding path: a front-end request becomes one HTTP/2 stream on a tunnel of the
//! origin its route names (or a request to a `url` target), and the answer streams back. Bodies
//! are never buffered whole: HTTP/2 flow control on the tunnel and hyper's write buffers on the
//! front end carry backpressure both ways. A request is only ever tried on the tunnels of the
//! origin it was routed to.

use crate::access::Served;
use crate::clients::{client_key, StreamPermit};
use crate::error::Error;
use crate::logs::ABORTED;
use crate::origins::{ToOrigin, Tunnel};
use crate::stall::{ConnActivity, Polled, Registration, Stalls};
use crate::state::Proxy;
use crate::stream::{self, OriginBody};
use bytes::Bytes;
use common::body::{self, BoxBody, BoxError};
use common::headers::remove_hop_by_hop;
use common::ratelimit::truncate_for_log;
use common::tuning;
use common::upload::{answer_within, Late, Progress};
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::DropGuard;

/// Who sent a front-end request and how.
#[derive(Debug, Clone)]
pub struct FrontendConn {
    pub peer: SocketAddr,
    pub scheme: Scheme,
    /// The peer's address as an `X-Forwarded-For` value, formatted once per connection rather
    /// than once per request.
    peer_ip: HeaderValue,
}

impl FrontendConn {
    pub fn new(peer: SocketAddr, scheme: Scheme) -> Self {
        let peer_ip = HeaderValue::try_from(peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        FrontendConn { peer, scheme, peer_ip }
    }
}

/// Refuse what cannot cross a tunnel, and return the checked authority the request is for.
pub fn check(parts: &http::request::Parts) -> Result<Authority, Error> {
    if parts.method == Method::CONNECT {
        return Err(Error::Unsupported("CONNECT"));
    }
    // Never pass an upgrade off as a plain request: the client would wait for a 101.
    if parts.headers.contains_key(header::UPGRADE) {
        let websocket =
            parts.headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        return Err(Error::Unsupported(if websocket { "WebSocket (Upgrade: websocket)" } else { "protocol upgrade" }));
    }
    authority_of(parts)
}

/// The authority a request is for, checked: one `Host` (or `:authority`), no user info, and a
/// port that is a port.
fn authority_of(parts: &http::request::Parts) -> Result<Authority, Error> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Error::BadHost("more than one Host header".into()));
    }
    let authority = match (parts.uri.authority(), host) {
        (Some(a), _) => a.clone(),
        (None, Some(host)) => Authority::try_from(host.as_bytes()).map_err(|_| {
            Error::BadHost(format!(
                "{:?} is not a host",
                truncate_for_log(&String::from_utf8_lossy(host.as_bytes()), 64)
            ))
        })?,
        (None, None) => return Err(Error::NoHost),
    };
    if authority.as_str().contains('@') {
        return Err(Error::BadHost("user information is not allowed in the host".into()));
    }
    if !port_is_valid(authority.as_str()) {
        return Err(Error::BadHost(format!("{:?} has an invalid port", truncate_for_log(authority.as_str(), 64))));
    }
    if authority.host().is_empty() {
        return Err(Error::NoHost);
    }
    Ok(authority)
}

/// Whatever follows the host (after an IPv6 literal's `]`) is absent or `:1`..`:65535`.
fn port_is_valid(authority: &str) -> bool {
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority.rfind(':').map_or("", |i| &authority[i..]),
    };
    match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(port) => port.parse::<u16>().is_ok_and(|p| p != 0),
    }
}

/// Rewrite a front-end request head for its target: absolute URI (HTTP/2 needs `:scheme` and
/// `:authority`), hop-by-hop headers removed, `X-Forwarded-*` added. `public` is the host the
/// client asked for; `target` what the target sees (they differ with `host_header`). A client's
/// own `X-Forwarded-For` is kept only when `peer_trusted` (listed in `trusted_proxies`).
pub fn prepare(
    parts: &mut http::request::Parts,
    conn: &FrontendConn,
    public: &Authority,
    target: Authority,
    peer_trusted: bool,
) -> Result<(), Error> {
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    headers.remove(header::HOST);

    let prior = if peer_trusted { headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) } else { None };
    let forwarded_for = match prior {
        Some(prior) => HeaderValue::try_from(format!("{prior}, {}", conn.peer.ip())).ok(),
        None => Some(conn.peer_ip.clone()),
    };
    if let Some(v) = forwarded_for {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if conn.scheme == Scheme::HTTPS { "https" } else { "http" }),
    );
    if let Ok(v) = HeaderValue::try_from(public.as_str()) {
        headers.insert("x-forwarded-host", v);
    }
    let path_and_query =
        parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = Uri::builder()
        .scheme(conn.scheme.clone())
        .authority(target)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| Error::BadHost(e.to_string()))?;
    parts.version = Version::HTTP_2;
    Ok(())
}

/// Take one of the client's stream slots, waiting (bounded) when it holds them all; its own
/// longest-stalled stream makes room first.
async fn client_slot(proxy: &Proxy, conn: &FrontendConn) -> Result<StreamPermit, Error> {
    let client = client_key(conn.peer.ip());
    if let Some(slot) = proxy.slots.try_acquire(client) {
        return Ok(slot);
    }
    proxy.stalls.evict_longest_stalled_of(client);
    proxy
        .slots
        .acquire(client, proxy.limits.client_queue_timeout)
        .await
        .ok_or(Error::ClientBusy(proxy.limits.max_streams_per_client))
}

/// Send a prepared request to a tunnel of `origin` and return the origin's response.
///
/// Admission first: past the origin's bound on waiting requests, `503` at once. Then one of
/// the client's stream slots (see `common::tuning`). Tunnels of this origin only are tried,
/// fewest streams first; one that turns out closed before the request left is skipped (the
/// request is handed back untouched). Once a stream is open, a failure is reported, never
/// retried, since the origin may have acted on it. The origin must start answering within
/// `timeout` of the request's end; while a body is still moving, each frame restarts it
/// ([`common::upload`]): an upload of any length gets through, one that stops does not.
pub async fn to_origin(
    proxy: &Proxy,
    req: Request<ToOrigin>,
    conn: &FrontendConn,
    (origin, max_waiting): (&str, usize),
    timeout: Duration,
    activity: Arc<ConnActivity>,
    served: &mut Served,
) -> Result<Response<BoxBody>, Error> {
    let active = Active::begin(activity, &proxy.stalls);
    let pool = proxy.origins.pool(origin);
    if pool.is_empty() {
        return Err(Error::OriginDown(origin.to_owned()));
    }
    let open: usize = pool.iter().map(|t| t.stats.open_streams.load(Ordering::Relaxed) as usize).sum();
    let waiting = open.saturating_sub(pool.len() * proxy.limits.tunnel_streams);
    if waiting >= max_waiting {
        return Err(Error::OriginBusy { origin: origin.to_owned(), waiting });
    }
    let slot = client_slot(proxy, conn).await?;
    let client = client_key(conn.peer.ip());
    let (parts, mut body) = req.into_parts();
    let progress = body.track();
    let (mut head, mut body) = (Some(Request::from_parts(parts, ())), Some(body));
    let last = pool.len() - 1;
    for (i, tunnel) in pool.into_iter().enumerate() {
        let Ok(mut sender) = tunnel.sender().ready().await else { continue };
        let (Some(this_head), Some(mut this_body)) = (head.take(), body.take()) else { break };
        if i < last {
            // Kept while another tunnel could still take the request.
            head = Some(common::headers::copy_head(&this_head));
        }
        let guard = StreamGuard::open(tunnel.clone());
        served.tunnel = Some(tunnel.clone());
        this_body.meter(tunnel.clone());
        let opened = match stream::open(&mut sender, this_head, this_body) {
            Ok(opened) => opened,
            // The connection closed under us: nothing was sent, so the next tunnel may have it.
            Err((e, unsent)) if e.is_io() || e.is_go_away() => {
                body = Some(unsent);
                continue;
            }
            Err((e, _)) => return Err(Error::Origin { origin: tunnel.origin.clone(), source: e }),
        };
        let resp = match answer_within(opened.response, timeout, progress.as_deref()).await {
            Ok(Ok(resp)) => resp,
            // The stream was reset because the upload broke off: the client's doing.
            Ok(Err(_)) if progress.as_deref().is_some_and(Progress::failed) => return Err(Error::UploadBroken),
            Ok(Err(e)) => return Err(Error::Origin { origin: tunnel.origin.clone(), source: e }),
            Err(late) => return Err(too_late(late, &tunnel.origin, timeout)),
        };
        Tunnel::add(&tunnel.stats.requests, 1);
        let (parts, recv) = resp.into_parts();
        let incoming = OriginBody::new(recv, &parts.headers);
        let watch = proxy.stalls.register(incoming, tunnel.id, client, active.activity.clone());
        let body = FromOrigin {
            watch,
            stalls: proxy.stalls.clone(),
            guard,
            _upload: opened.upload,
            _slot: slot,
            _active: active,
        };
        return Ok(Response::from_parts(parts, body::boxed(body)));
    }
    Err(Error::TunnelsClosed(origin.to_owned()))
}

/// The proxy's own HTTP client for `url` targets (HTTP/1.1, pooled connections).
fn url_client() -> &'static Client<HttpConnector, ToOrigin> {
    static CLIENT: OnceLock<Client<HttpConnector, ToOrigin>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(tuning::HANDSHAKE_TIMEOUT));
        Client::builder(TokioExecutor::new()).build(connector)
    })
}

/// Send a prepared request to a plain `http://` service (a `url` target).
pub async fn to_url(
    proxy: &Proxy,
    mut req: Request<ToOrigin>,
    conn: &FrontendConn,
    (authority, base, text): (&Authority, &str, &str),
    timeout: Duration,
    activity: Arc<ConnActivity>,
) -> Result<Response<BoxBody>, Error> {
    let active = Active::begin(activity, &proxy.stalls);
    let slot = client_slot(proxy, conn).await?;
    let host = req.uri().authority().cloned();
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(format!("{}{pq}", base.trim_end_matches('/')))
        .build()
        .map_err(|e| Error::Url { url: text.to_owned(), reason: e.to_string() })?;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    if let Some(host) = host.and_then(|h| HeaderValue::try_from(h.as_str()).ok()) {
        req.headers_mut().insert(header::HOST, host);
    }
    let progress = req.body_mut().track();
    let resp = match answer_within(url_client().request(req), timeout, progress.as_deref()).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(_)) if progress.as_deref().is_some_and(Progress::failed) => return Err(Error::UploadBroken),
        Ok(Err(e)) => {
            let reason = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
            return Err(Error::Url { url: text.to_owned(), reason });
        }
        Err(late) => return Err(too_late(late, text, timeout)),
    };
    let (mut parts, incoming) = resp.into_parts();
    common::headers::forwardable_response(parts.status, &mut parts.headers, incoming.is_end_stream())
        .map_err(|refused| Error::Unforwardable { url: text.to_owned(), refused })?;
    let body = Held { inner: incoming, _slot: slot, _active: active };
    Ok(Response::from_parts(parts, body::boxed(body)))
}

/// The error for an answer that did not come in time ([`answer_within`]), from `target`.
fn too_late(late: Late, target: &str, after: Duration) -> Error {
    match late {
        Late::Answer => Error::ResponseTimeout { origin: target.to_owned(), after },
        Late::Sender => Error::UploadStalled { after },
        Late::Receiver => Error::UploadNotTaken { origin: target.to_owned(), after },
    }
}

/// A `url` target's response body, holding the client's slot until it is done.
struct Held {
    inner: Incoming,
    _slot: StreamPermit,
    _active: Active,
}

impl Body for Held {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a stream as open on its tunnel from the moment it is sent until its response body
/// is finished or dropped.
#[derive(Debug)]
struct StreamGuard(Arc<Tunnel>);

impl StreamGuard {
    fn open(tunnel: Arc<Tunnel>) -> Self {
        tunnel.stats.open_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(tunnel)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.stats.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request as in flight on its front-end connection until its response is done.
struct Active {
    activity: Arc<ConnActivity>,
    stalls: Arc<Stalls>,
}

impl Active {
    fn begin(activity: Arc<ConnActivity>, stalls: &Arc<Stalls>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.last_change_ms.store(stalls.now_ms(), Ordering::Relaxed);
        Active { activity, stalls: stalls.clone() }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.activity.last_change_ms.store(self.stalls.now_ms(), Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The origin's response body on its way to the front-end client. An error here (the tunnel
/// died, the origin reset the stream, the proxy reset it as stalled) is passed on, so the
/// front-end response is aborted rather than ended as if complete.
struct FromOrigin {
    watch: Registration,
    stalls: Arc<Stalls>,
    guard: StreamGuard,
    /// The request body's copy, reset if still going when the response is done with.
    _upload: Option<DropGuard>,
    _slot: StreamPermit,
    _active: Active,
}

impl Body for FromOrigin {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.watch.watch.poll_frame(&this.stalls, cx) {
            Polled::Frame(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    Tunnel::add(&this.guard.0.stats.bytes_from_origin, data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Polled::Frame(Err(e)) => {
                if let Some(suppressed) = ABORTED.allow() {
                    tracing::warn!(origin = %this.guard.0.origin, error = %e, suppressed, "origin response aborted mid-stream");
                }
                Poll::Ready(Some(Err(format!("origin {} aborted the response: {e}", this.guard.0.origin).into())))
            }
            Polled::Evicted(why) => Poll::Ready(Some(Err(format!("reset by the proxy: {}", why.label()).into()))),
            Polled::End => Poll::Ready(None),
            Polled::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.watch.watch.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.watch.watch.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(host: &[&str]) -> http::request::Parts {
        let mut req = Request::get("/").body(()).expect("request");
        for h in host {
            req.headers_mut().append(header::HOST, HeaderValue::from_str(h).expect("value"));
        }
        req.into_parts().0
    }

    #[test]
    fn hosts_are_checked() {
        assert_eq!(authority_of(&parts(&["example.test"])).expect("plain").as_str(), "example.test");
        assert!(authority_of(&parts(&["example.test:8080"])).is_ok());
        assert!(authority_of(&parts(&["[::1]:8080"])).is_ok());
        assert!(authority_of(&parts(&["[::1]"])).is_ok());
        for bad in ["example.test:99999", "example.test:0", "user:pw@example.test", "[::1]:x", "example.test:"] {
            assert!(matches!(authority_of(&parts(&[bad])), Err(Error::BadHost(_))), "{bad}");
        }
        assert!(matches!(authority_of(&parts(&["a", "b"])), Err(Error::BadHost(_))), "two Host headers");
        assert!(matches!(authority_of(&parts(&[])), Err(Error::NoHost)));
    }
}
