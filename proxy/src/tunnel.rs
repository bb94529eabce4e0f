//! The proxy's tunnel port: TLS, the origin's `PUT` + `Upgrade` handshake (over any byte
//! stream, so it is tested over in-memory pipes), then an HTTP/2 client over the upgraded
//! connection, registered under the origin's name and instance.

use crate::logs::{REJECTED, STRAY};
use crate::origins::Identity;
use crate::state::Proxy;
use common::body::{self, BoxBody};
use common::protocol::{self, Rejection};
use common::tuning;
use common::tunnel::{keepalive, Heard, Hearing};
use common::Secret;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

/// Serve one connection on the tunnel port, from TLS handshake to the end of the tunnel.
pub async fn serve_conn(proxy: Arc<Proxy>, tcp: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let Some(tls) = proxy.tls.load_full() else { return };
    let acceptor = TlsAcceptor::from(tls.tunnel.clone());
    let tls = match tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            proxy.counters.tunnel_rejected("tls");
            if let Some(suppressed) = STRAY.allow() {
                warn!(%peer, error = %e, suppressed, "tunnel TLS handshake failed");
            }
            return;
        }
        Err(_) => {
            proxy.counters.tunnel_rejected("timeout");
            if let Some(suppressed) = STRAY.allow() {
                warn!(%peer, timeout = ?tuning::HANDSHAKE_TIMEOUT, suppressed, "tunnel TLS handshake timed out");
            }
            return;
        }
    };
    serve_handshake(proxy, tls, peer, shutdown).await
}

/// Answer the tunnel request on any byte stream and, once upgraded, run the tunnel in its
/// own task. Returns when the handshake connection is done (the tunnel lives on).
pub async fn serve_handshake<T>(proxy: Arc<Proxy>, io: T, peer: SocketAddr, shutdown: CancellationToken)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let for_log = proxy.clone();
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let shutdown = shutdown.clone();
        async move { Ok::<_, Infallible>(answer_put(proxy, req, peer, shutdown)) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(tuning::HANDSHAKE_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    // The whole exchange, not just the head: a peer that never reads our answer must not
    // keep its slot either.
    let failed = match tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT * 2, conn).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no complete tunnel request in time".to_owned()),
    };
    if let Some(error) = failed {
        for_log.counters.tunnel_rejected("malformed");
        if let Some(suppressed) = STRAY.allow() {
            warn!(%peer, %error, suppressed, "tunnel handshake connection failed");
        }
    }
}

/// Check the `PUT`; answer 101 and start the tunnel in its own task, or refuse with a reason.
fn answer_put(
    proxy: Arc<Proxy>,
    req: Request<Incoming>,
    peer: SocketAddr,
    shutdown: CancellationToken,
) -> Response<BoxBody> {
    let (parts, body) = req.into_parts();
    let credentials = proxy.credentials.load();
    let hello = match protocol::check_tunnel_request(&parts, credentials.as_ref()) {
        Ok(hello) => hello,
        Err(rejection) => {
            proxy.counters.tunnel_rejected(rejection.label());
            if let Some(suppressed) = REJECTED.allow() {
                error!(%peer, status = rejection.status().as_u16(), reason = %rejection, suppressed, "tunnel rejected");
            }
            return refusal(&rejection);
        }
    };
    // Checked above: the header holds a bearer token.
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(7..))
        .map(|t| Secret::new(t.trim()))
        .unwrap_or_else(|| Secret::new(""));
    let urls = match proxy.front_end.get() {
        Some((front, scheme)) => proxy.table.load().urls_for(&hello.origin_name, scheme, *front, protocol::MAX_URLS),
        None => Vec::new(),
    };
    let req = Request::from_parts(parts, body);
    let span =
        info_span!("tunnel", origin = %hello.origin_name, instance = hello.instance.as_deref().unwrap_or("-"), %peer);
    let who = Identity { origin: hello.origin_name, instance: hello.instance, peer, token };
    tokio::spawn(
        async move {
            match tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, hyper::upgrade::on(req)).await {
                Ok(Ok(upgraded)) => run_tunnel(proxy, upgraded, who, shutdown).await,
                Ok(Err(e)) => warn!(error = %e, "tunnel upgrade failed"),
                Err(_) => warn!("tunnel upgrade timed out"),
            }
        }
        .instrument(span),
    );
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    resp.headers_mut().insert(header::UPGRADE, HeaderValue::from_static(protocol::UPGRADE_TOKEN));
    for url in urls {
        if let Ok(v) = HeaderValue::try_from(url) {
            resp.headers_mut().append(protocol::URL_HEADER, v);
        }
    }
    resp
}

fn refusal(rejection: &Rejection) -> Response<BoxBody> {
    let mut resp = Response::new(body::full(format!("{rejection}\n")));
    *resp.status_mut() = rejection.status();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    match rejection {
        Rejection::UnsupportedProtocol(_) => {
            headers.insert(header::UPGRADE, HeaderValue::from_static(protocol::UPGRADE_TOKEN));
        }
        Rejection::MissingToken | Rejection::WrongToken => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    resp
}

/// Run the HTTP/2 client side of the tunnel until it ends, keeping it registered meanwhile.
async fn run_tunnel(proxy: Arc<Proxy>, upgraded: hyper::upgrade::Upgraded, who: Identity, shutdown: CancellationToken) {
    let heard = Heard::default();
    let handshake = common::tunnel::client_builder().handshake(Hearing::new(TokioIo::new(upgraded), heard.clone()));
    let (sender, mut conn) = match tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            warn!(error = %e, "tunnel HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            warn!("tunnel HTTP/2 handshake timed out");
            return;
        }
    };
    let keepalive = keepalive(conn.ping_pong(), heard, tuning::KEEPALIVE_INTERVAL, tuning::KEEPALIVE_TIMEOUT);
    let close = shutdown.child_token();
    let origin = who.origin.clone();
    let (tunnel, replaced) = proxy.origins.register(who, sender, close.clone());
    let id = tunnel.id;
    // Only the registry and in-flight streams hold the tunnel (and so its HTTP/2 handle). Once
    // it is replaced or removed and its last stream ends, h2 closes the connection itself.
    drop(tunnel);
    for old in &replaced {
        info!(old_peer = %old.peer, old_tunnel = old.id, "origin reconnected; its previous tunnel drains and closes");
    }
    drop(replaced);
    info!(tunnel = id, "origin connected");
    tokio::select! {
        result = &mut conn => match result {
            Ok(()) => info!(tunnel = id, "tunnel closed"),
            Err(e) => warn!(tunnel = id, error = %e, "tunnel lost"),
        },
        e = keepalive => warn!(tunnel = id, error = %e, "tunnel lost: closing it"),
        _ = close.cancelled() => {
            if shutdown.is_cancelled() {
                info!(tunnel = id, "tunnel closed: proxy shutting down");
            } else {
                warn!(tunnel = id, "tunnel closed: its token no longer admits this origin (configuration reloaded)");
            }
        }
    }
    proxy.origins.remove(&origin, id);
}
