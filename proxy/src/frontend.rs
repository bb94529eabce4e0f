//! The proxy's public port: HTTP/1.1, h2c with prior knowledge, or TLS with ALPN `h2` and
//! `http/1.1`; every request is routed and forwarded to an origin.

use crate::forward::{self, FrontendConn};
use crate::{route, Proxy};
use common::body::BoxBody;
use common::tuning;
use http::uri::Scheme;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, Instrument};

/// Serve one front-end connection, over TLS when `acceptor` is set.
pub async fn serve_conn(
    proxy: Arc<Proxy>,
    acceptor: Option<TlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
) {
    let span = tracing::debug_span!("conn", %peer);
    async move {
        match acceptor {
            None => serve_http(proxy, TokioIo::new(tcp), FrontendConn { peer, scheme: Scheme::HTTP }, watcher).await,
            Some(acceptor) => match tokio::time::timeout(tuning::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    serve_http(proxy, TokioIo::new(tls), FrontendConn { peer, scheme: Scheme::HTTPS }, watcher).await
                }
                Ok(Err(e)) => debug!(error = %e, "front-end TLS handshake failed"),
                Err(_) => debug!("front-end TLS handshake timed out"),
            },
        }
    }
    .instrument(span)
    .await
}

async fn serve_http<I>(proxy: Arc<Proxy>, io: I, conn: FrontendConn, watcher: Watcher)
where
    I: Read + Write + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(&proxy, req, &conn).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(tuning::HEADER_READ_TIMEOUT).max_headers(128);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(tuning::MAX_HEADER_LIST_SIZE)
        .max_concurrent_streams(256)
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_send_buf_size(tuning::MAX_SEND_BUFFER)
        .keep_alive_interval(tuning::KEEPALIVE_INTERVAL * 4)
        .keep_alive_timeout(tuning::KEEPALIVE_TIMEOUT * 2);
    let served = builder.serve_connection_with_upgrades(io, service).into_owned();
    if let Err(e) = watcher.watch(served).await {
        debug!(error = %e, "front-end connection ended with an error");
    }
}

/// Route and forward one front-end request; failures become a precise status with a reason.
pub async fn handle(proxy: &Proxy, req: Request<Incoming>, conn: &FrontendConn) -> Response<BoxBody> {
    let candidates = route::candidates(&proxy.registry, &req);
    let (method, uri) = (req.method().clone(), req.uri().clone());
    match forward::forward(req, conn, candidates).await {
        Ok(resp) => {
            debug!(%method, %uri, status = resp.status().as_u16(), "forwarded");
            resp
        }
        Err(e) => {
            proxy.counters.record_failure(&e);
            tracing::warn!(%method, %uri, peer = %conn.peer, error = %e, "request not forwarded");
            e.into_response()
        }
    }
}
