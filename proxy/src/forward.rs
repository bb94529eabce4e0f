//! The forwarding path: a front-end request becomes one HTTP/2 stream on a tunnel, and the
//! origin's answer streams back. Bodies are never buffered whole: HTTP/2 flow control on the
//! tunnel and hyper's write buffers on the front end carry backpressure both ways.

use crate::clients::{client_key, StreamPermit};
use crate::registry::Tunnel;
use crate::stall::{ConnActivity, Polled, Registration, Stalls};
use crate::Proxy;
use bytes::Bytes;
use common::body::{self, BoxBody, BoxError};
use common::headers::remove_hop_by_hop;
use common::ratelimit::{truncate_for_log, LogLimiter};
use common::tuning;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Who sent a front-end request and how.
#[derive(Debug, Clone)]
pub struct FrontendConn {
    pub peer: SocketAddr,
    pub scheme: Scheme,
}

/// Why a request could not be forwarded. [`ForwardError::status`] is the one place that maps
/// failures to status codes, and each reason says which side failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no origin is connected")]
    NoOrigin,
    #[error("request has no Host header or authority")]
    NoHost,
    #[error("invalid Host header: {0}")]
    BadHost(String),
    #[error("{0} is not supported through the tunnel yet")]
    Unsupported(&'static str),
    #[error("origin {origin} failed before answering: {source}")]
    Origin { origin: String, source: hyper::Error },
    #[error("every connected origin's tunnel closed before the request could be sent")]
    TunnelsClosed,
    #[error("origin {origin} did not start answering within {after:?}")]
    ResponseTimeout { origin: String, after: std::time::Duration },
    #[error("this client already has {0} requests in flight; try again shortly")]
    ClientBusy(usize),
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::NoHost | ForwardError::BadHost(_) => StatusCode::BAD_REQUEST,
            ForwardError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ForwardError::NoOrigin | ForwardError::Origin { .. } | ForwardError::TunnelsClosed => {
                StatusCode::BAD_GATEWAY
            }
            ForwardError::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ForwardError::ClientBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short plain-text response naming the cause.
    pub fn into_response(self) -> Response<BoxBody> {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("error").to_ascii_lowercase();
        let text = format!("{} {reason}: {self}\n", status.as_u16());
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if let ForwardError::ClientBusy(_) = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Send `req` to the first candidate tunnel that takes it and return the origin's response.
///
/// The request first takes one of its client's stream slots (see `common::tuning`). A tunnel
/// that turns out to be closed before the request left is skipped (the request is handed back
/// untouched); once a stream is open, a failure is reported, never retried, since the origin
/// may have acted on the request. The origin must start answering within the response timeout.
pub async fn forward(
    proxy: &Proxy,
    req: Request<Incoming>,
    conn: &FrontendConn,
    candidates: Vec<Arc<Tunnel>>,
    activity: Arc<ConnActivity>,
) -> Result<Response<BoxBody>, ForwardError> {
    let active = Active::begin(activity, &proxy.stalls);
    let mut req = prepare(req, conn)?;
    if candidates.is_empty() {
        return Err(ForwardError::NoOrigin);
    }
    let client = client_key(conn.peer.ip());
    let slot = match proxy.slots.try_acquire(client) {
        Some(slot) => slot,
        None => {
            // The client holds all its slots: its own longest-stalled stream makes room first.
            proxy.stalls.evict_longest_stalled_of(client);
            proxy
                .slots
                .acquire(client, tuning::CLIENT_QUEUE_TIMEOUT)
                .await
                .ok_or(ForwardError::ClientBusy(proxy.limits.max_streams_per_client))?
        }
    };
    let timeout = proxy.limits.response_timeout;
    for tunnel in candidates {
        let mut sender = tunnel.sender();
        if sender.ready().await.is_err() {
            continue;
        }
        let guard = StreamGuard::open(tunnel.clone());
        req.body_mut().meter = Some(tunnel.clone());
        let sent = match tokio::time::timeout(timeout, sender.try_send_request(req)).await {
            Ok(sent) => sent,
            Err(_) => return Err(ForwardError::ResponseTimeout { origin: tunnel.origin.clone(), after: timeout }),
        };
        match sent {
            Ok(resp) => {
                Tunnel::add(&tunnel.stats.requests, 1);
                let (parts, incoming) = resp.into_parts();
                let watch = proxy.stalls.register(incoming, tunnel.id, client, active.activity.clone());
                let body = FromOrigin { watch, stalls: proxy.stalls.clone(), guard, _slot: slot, _active: active };
                return Ok(Response::from_parts(parts, body::boxed(body)));
            }
            Err(mut err) => match err.take_message() {
                Some(unsent) => req = unsent,
                None => {
                    return Err(ForwardError::Origin { origin: tunnel.origin.clone(), source: err.into_error() });
                }
            },
        }
    }
    Err(ForwardError::TunnelsClosed)
}

/// The authority a request is for, checked: one `Host` (or `:authority`), no user info, and a
/// port that is a port.
fn authority_of(parts: &http::request::Parts) -> Result<Authority, ForwardError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ForwardError::BadHost("more than one Host header".into()));
    }
    let authority = match (parts.uri.authority(), host) {
        (Some(a), _) => a.clone(),
        (None, Some(host)) => Authority::try_from(host.as_bytes()).map_err(|_| {
            ForwardError::BadHost(format!(
                "{:?} is not a host",
                truncate_for_log(&String::from_utf8_lossy(host.as_bytes()), 64)
            ))
        })?,
        (None, None) => return Err(ForwardError::NoHost),
    };
    if authority.as_str().contains('@') {
        return Err(ForwardError::BadHost("user information is not allowed in the host".into()));
    }
    if !port_is_valid(authority.as_str()) {
        return Err(ForwardError::BadHost(format!(
            "{:?} has an invalid port",
            truncate_for_log(authority.as_str(), 64)
        )));
    }
    if authority.host().is_empty() {
        return Err(ForwardError::NoHost);
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

/// Rewrite a front-end request for the tunnel: absolute URI (HTTP/2 needs `:scheme` and
/// `:authority`), hop-by-hop headers removed, `X-Forwarded-*` added.
fn prepare(req: Request<Incoming>, conn: &FrontendConn) -> Result<Request<ToOrigin>, ForwardError> {
    let (mut parts, incoming) = req.into_parts();
    if parts.method == Method::CONNECT {
        return Err(ForwardError::Unsupported("CONNECT"));
    }
    // Never pass an upgrade off as a plain request: the client would wait for a 101.
    if parts.headers.contains_key(header::UPGRADE) {
        let websocket =
            parts.headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        return Err(ForwardError::Unsupported(if websocket {
            "WebSocket (Upgrade: websocket)"
        } else {
            "protocol upgrade"
        }));
    }
    let authority = authority_of(&parts)?;
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    headers.remove(header::HOST);

    let client_ip = conn.peer.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client_ip}"),
        None => client_ip,
    };
    if let Ok(v) = HeaderValue::try_from(forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if conn.scheme == Scheme::HTTPS { "https" } else { "http" }),
    );
    if let Ok(v) = HeaderValue::try_from(authority.as_str()) {
        headers.insert("x-forwarded-host", v);
    }

    let path_and_query =
        parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = Uri::builder()
        .scheme(conn.scheme.clone())
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| ForwardError::BadHost(e.to_string()))?;
    parts.version = Version::HTTP_2;
    Ok(Request::from_parts(parts, ToOrigin { inner: incoming, meter: None }))
}

/// The request body on its way to the origin: the front-end client's body, counted into the
/// tunnel's `bytes_to_origin`. A concrete type (not boxed) so an unsent request can be handed
/// back and tried on another tunnel.
#[derive(Debug)]
pub struct ToOrigin {
    inner: Incoming,
    meter: Option<Arc<Tunnel>>,
}

impl Body for ToOrigin {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let (Some(Ok(f)), Some(tunnel)) = (&frame, &self.meter) {
            if let Some(data) = f.data_ref() {
                Tunnel::add(&tunnel.stats.bytes_to_origin, data.len() as u64);
            }
        }
        Poll::Ready(frame)
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

static ABORTED: LogLimiter = LogLimiter::standard();

/// Lines left out by the forwarding path's limiters.
pub fn log_suppressed() -> u64 {
    ABORTED.suppressed_total()
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
            assert!(matches!(authority_of(&parts(&[bad])), Err(ForwardError::BadHost(_))), "{bad}");
        }
        assert!(matches!(authority_of(&parts(&["a", "b"])), Err(ForwardError::BadHost(_))), "two Host headers");
        assert!(matches!(authority_of(&parts(&[])), Err(ForwardError::NoHost)));
    }
}
