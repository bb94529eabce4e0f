//! `--upstream`: forward every stream from the tunnel to a local HTTP service (Jellyfin, Plex,
//! Nextcloud, …), any method, bodies streamed both ways and never held back.
//!
//! Requests without a body use a connection pool. A request with a body gets a connection of
//! its own, tied to the stream: if the proxy resets the stream (the front-end client went
//! away mid-upload), the connection is closed, so the service sees the upload end instead of
//! waiting on a half-sent body forever.

use common::body::{self, BoxBody};
use common::headers::remove_hop_by_hop;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::time::Duration;

/// How long the local service may take to start answering (response headers). Bodies may
/// stream for as long as they like.
pub const RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(120);

/// A pooled HTTP/1.1 client for one local service.
#[derive(Clone, Debug)]
pub struct Upstream {
    base: Uri,
    scheme: Scheme,
    authority: Authority,
    /// `host:port` to dial for requests with a body.
    connect_to: String,
    client: Client<HttpConnector, Incoming>,
}

/// Why the local service could not be asked.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{}", std::error::Error::source(.0).map(|s| s.to_string()).unwrap_or_else(|| .0.to_string()))]
    Pooled(#[from] hyper_util::client::legacy::Error),
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
        let uri: Uri = url.parse().map_err(|e| UpstreamUrlError::Invalid(url.to_owned(), e))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(UpstreamUrlError::Scheme(url.to_owned()));
        }
        let authority = uri.authority().cloned().ok_or_else(|| UpstreamUrlError::NoAuthority(url.to_owned()))?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
            return Err(UpstreamUrlError::HasPath(url.to_owned()));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(common::tuning::HANDSHAKE_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        let connect_to = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
        Ok(Upstream { base: uri, scheme: Scheme::HTTP, authority, connect_to, client })
    }

    pub fn url(&self) -> &Uri {
        &self.base
    }

    /// Forward one request; failures become 502/504 naming the upstream.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<BoxBody> {
        let (mut parts, incoming) = req.into_parts();
        let public_host = parts.uri.authority().map(|a| a.as_str().to_owned());
        let path_and_query = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = match Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
        {
            Ok(uri) => uri,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("400 bad request: {e}")),
        };
        parts.version = Version::HTTP_11;
        remove_hop_by_hop(&mut parts.headers);
        // The local service sees the public host name, as behind any reverse proxy.
        if let Some(host) = public_host.and_then(|h| HeaderValue::try_from(h).ok()) {
            parts.headers.insert(header::HOST, host);
        }
        let req = Request::from_parts(parts, incoming);
        match tokio::time::timeout(RESPONSE_HEADER_TIMEOUT, self.send(req)).await {
            Ok(Ok(mut resp)) => {
                remove_hop_by_hop(resp.headers_mut());
                resp
            }
            Ok(Err(e)) => {
                let cause = e.to_string();
                tracing::warn!(upstream = %self.base, error = %cause, "upstream request failed");
                error(StatusCode::BAD_GATEWAY, format!("502 bad gateway: upstream {} failed: {cause}", self.base))
            }
            Err(_) => {
                tracing::warn!(upstream = %self.base, timeout = ?RESPONSE_HEADER_TIMEOUT, "upstream did not answer in time");
                error(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "504 gateway timeout: upstream {} did not answer within {RESPONSE_HEADER_TIMEOUT:?}",
                        self.base
                    ),
                )
            }
        }
    }
}

impl Upstream {
    async fn send(&self, req: Request<Incoming>) -> Result<Response<BoxBody>, SendError> {
        if http_body::Body::is_end_stream(req.body()) {
            return Ok(self.client.request(req).await?.map(body::boxed));
        }
        let connect = tokio::net::TcpStream::connect(self.connect_to.as_str());
        let tcp = match tokio::time::timeout(common::tuning::HANDSHAKE_TIMEOUT, connect).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Err(_) => return Err(SendError::ConnectTimeout),
        };
        let _ = tcp.set_nodelay(true);
        // A second handle on the socket, to reset it if the stream is abandoned (see below).
        let (tcp, handle) = match tcp.into_std().and_then(|std| Ok((std.try_clone()?, std))) {
            Ok((std, handle)) => (tokio::net::TcpStream::from_std(std).map_err(SendError::Connect)?, handle),
            Err(e) => return Err(SendError::Connect(e)),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        // Owned by this future until the answer comes, then by the response body.
        let conn = UploadConnection {
            task: tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
            }),
            socket: handle,
            completed: false,
        };
        let resp = sender.send_request(req).await?;
        Ok(resp.map(|body| body::boxed(WithConnection { body, conn })))
    }
}

/// A request's own connection to the service. If the stream goes away before the exchange
/// completed, the connection is reset (RST), not closed: a FIN would queue behind the unsent
/// upload and a service that is not reading would never see it.
struct UploadConnection {
    task: tokio::task::JoinHandle<()>,
    socket: std::net::TcpStream,
    completed: bool,
}

impl Drop for UploadConnection {
    fn drop(&mut self) {
        if self.completed {
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

impl http_body::Body for WithConnection {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
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

fn error(status: StatusCode, message: String) -> Response<BoxBody> {
    let mut resp = Response::new(body::full(message + "\n"));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_urls() {
        assert!(Upstream::new("http://127.0.0.1:8096").is_ok());
        assert!(Upstream::new("http://127.0.0.1:8096/").is_ok());
        assert!(matches!(Upstream::new("https://x:1"), Err(UpstreamUrlError::Scheme(_))));
        assert!(matches!(Upstream::new("http://x:1/app"), Err(UpstreamUrlError::HasPath(_))));
        assert!(matches!(Upstream::new("not a url"), Err(UpstreamUrlError::Invalid(..))));
    }
}
