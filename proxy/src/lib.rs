//! revmux proxy `p`: accepts tunnels from origins and forwards front-end requests over them.

pub mod admin;
pub mod config;
pub mod forward;
pub mod frontend;
pub mod registry;
pub mod route;
pub mod server;
pub mod tunnel;

use common::Secret;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most front-end connections served at once; further ones wait in the kernel's backlog.
pub const MAX_FRONTEND_CONNECTIONS: usize = 16 * 1024;
/// Most connections on the tunnel port at once (handshakes included).
pub const MAX_TUNNEL_CONNECTIONS: usize = 1024;

/// State shared by every connection of one proxy.
#[derive(Debug)]
pub struct Proxy {
    pub registry: registry::Registry,
    pub token: Secret,
    pub counters: admin::Counters,
}

impl Proxy {
    pub fn new(token: Secret) -> Arc<Self> {
        Arc::new(Proxy { registry: registry::Registry::new(), token, counters: admin::Counters::default() })
    }
}

/// The proxy's three bound listeners.
#[derive(Debug)]
pub struct Listeners {
    pub frontend: TcpListener,
    pub tunnel: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(
        frontend: SocketAddr,
        tunnel: SocketAddr,
        admin: SocketAddr,
    ) -> Result<Self, (&'static str, std::io::Error)> {
        Ok(Listeners {
            frontend: TcpListener::bind(frontend).await.map_err(|e| ("--listen", e))?,
            tunnel: TcpListener::bind(tunnel).await.map_err(|e| ("--tunnel-listen", e))?,
            admin: TcpListener::bind(admin).await.map_err(|e| ("--admin-listen", e))?,
        })
    }
}

/// TLS settings of the listeners.
#[derive(Debug, Clone)]
pub struct Tls {
    pub tunnel: Arc<ServerConfig>,
    pub frontend: Option<Arc<ServerConfig>>,
}

/// Serve until `shutdown` is cancelled, then drain front-end connections (bounded by
/// [`common::tuning::SHUTDOWN_GRACE`]) and close the tunnels.
pub async fn run(proxy: Arc<Proxy>, listeners: Listeners, tls: Tls, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let graceful = Arc::new(GracefulShutdown::new());
    let close_tunnels = CancellationToken::new();

    let frontend_acceptor = tls.frontend.map(TlsAcceptor::from);
    let frontend = {
        let proxy = proxy.clone();
        let graceful = graceful.clone();
        server::accept_loop(
            "front end",
            listeners.frontend,
            MAX_FRONTEND_CONNECTIONS,
            shutdown.clone(),
            tracker.clone(),
            move |tcp, peer| {
                frontend::serve_conn(proxy.clone(), frontend_acceptor.clone(), tcp, peer, graceful.watcher())
            },
        )
    };
    let tunnel_acceptor = TlsAcceptor::from(tls.tunnel);
    let tunnels = {
        let proxy = proxy.clone();
        let close = close_tunnels.clone();
        server::accept_loop(
            "tunnel",
            listeners.tunnel,
            MAX_TUNNEL_CONNECTIONS,
            shutdown.clone(),
            tracker.clone(),
            move |tcp, peer| tunnel::serve_conn(proxy.clone(), tunnel_acceptor.clone(), tcp, peer, close.clone()),
        )
    };
    let admin = {
        let proxy = proxy.clone();
        server::accept_loop("admin", listeners.admin, 64, shutdown.clone(), tracker.clone(), move |tcp, _peer| {
            serve_admin(proxy.clone(), tcp)
        })
    };
    tokio::join!(frontend, tunnels, admin);

    tracing::info!("shutting down: draining front-end connections");
    // The accept loops (and the handles they held) are gone, so this is the last reference.
    let drained = match Arc::try_unwrap(graceful) {
        Ok(graceful) => tokio::time::timeout(common::tuning::SHUTDOWN_GRACE, graceful.shutdown()).await.is_ok(),
        Err(_) => false,
    };
    if !drained {
        tracing::warn!(grace = ?common::tuning::SHUTDOWN_GRACE, "front-end connections still open after the grace period; closing them");
    }
    close_tunnels.cancel();
    tracker.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tracker.wait()).await;
}

async fn serve_admin(proxy: Arc<Proxy>, tcp: tokio::net::TcpStream) {
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(admin::handle(&proxy, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(common::tuning::HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(tcp), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "admin connection failed");
    }
}
