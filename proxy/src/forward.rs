//! The forwarding path: a front-end request becomes one HTTP/2 stream on a tunnel, and the
//! origin's answer streams back. Bodies are never buffered whole: HTTP/2 flow control on the
//! tunnel and hyper's write buffers on the front end carry backpressure both ways.

use crate::registry::Tunnel;
use bytes::Bytes;
use common::body::{self, BoxBody, BoxError};
use common::headers::remove_hop_by_hop;
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
    #[error("method {0} is not supported through the tunnel")]
    UnsupportedMethod(Method),
    #[error("origin {origin} failed before answering: {source}")]
    Origin { origin: String, source: hyper::Error },
    #[error("every connected origin's tunnel closed before the request could be sent")]
    TunnelsClosed,
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::NoHost | ForwardError::BadHost(_) => StatusCode::BAD_REQUEST,
            ForwardError::UnsupportedMethod(_) => StatusCode::METHOD_NOT_ALLOWED,
            ForwardError::NoOrigin | ForwardError::Origin { .. } | ForwardError::TunnelsClosed => {
                StatusCode::BAD_GATEWAY
            }
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
        resp
    }
}

/// Send `req` to the first candidate tunnel that takes it and return the origin's response.
///
/// A tunnel that turns out to be closed before the request left is skipped (the request is
/// handed back untouched); once a stream is open, a failure is reported, never retried, since
/// the origin may have acted on the request.
pub async fn forward(
    req: Request<Incoming>,
    conn: &FrontendConn,
    candidates: Vec<Arc<Tunnel>>,
) -> Result<Response<BoxBody>, ForwardError> {
    if candidates.is_empty() {
        return Err(ForwardError::NoOrigin);
    }
    let mut req = prepare(req, conn)?;
    for tunnel in candidates {
        let mut sender = tunnel.sender();
        if sender.ready().await.is_err() {
            continue;
        }
        let guard = StreamGuard::open(tunnel.clone());
        req.body_mut().meter = Some(tunnel.clone());
        match sender.try_send_request(req).await {
            Ok(resp) => {
                Tunnel::add(&tunnel.stats.requests, 1);
                return Ok(resp.map(|inner| body::boxed(FromOrigin { inner, guard })));
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

/// Rewrite a front-end request for the tunnel: absolute URI (HTTP/2 needs `:scheme` and
/// `:authority`), hop-by-hop headers removed, `X-Forwarded-*` added.
fn prepare(req: Request<Incoming>, conn: &FrontendConn) -> Result<Request<ToOrigin>, ForwardError> {
    let (mut parts, incoming) = req.into_parts();
    if parts.method == Method::CONNECT {
        return Err(ForwardError::UnsupportedMethod(parts.method));
    }
    let authority = match parts.uri.authority() {
        Some(a) => a.clone(),
        None => {
            let host = parts.headers.get(header::HOST).ok_or(ForwardError::NoHost)?;
            Authority::try_from(host.as_bytes())
                .map_err(|_| ForwardError::BadHost(String::from_utf8_lossy(host.as_bytes()).into_owned()))?
        }
    };
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

/// The origin's response body on its way to the front-end client. An error here (the tunnel
/// died, the origin reset the stream) is passed on, so the front-end response is aborted
/// rather than ended as if complete.
struct FromOrigin {
    inner: Incoming,
    guard: StreamGuard,
}

impl Body for FromOrigin {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    Tunnel::add(&self.guard.0.stats.bytes_from_origin, data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                tracing::warn!(origin = %self.guard.0.origin, error = %e, "origin response aborted mid-stream");
                Poll::Ready(Some(Err(format!("origin {} aborted the response: {e}", self.guard.0.origin).into())))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
