//! revmux proxy `p`: accepts tunnels from origins and forwards front-end requests over them.
//!
//! Data flows one way: `server` (accept, limits) → `frontend` (TLS, first bytes, HTTP) →
//! `route` (pure: host and path → a route's target) → `policy` (allow, auth, rewrites) →
//! `forward` (streams on an origin's tunnels, or a `url`) → `origins` (pools of tunnels) ←
//! `tunnel` (the tunnel port). `access` writes one access-log line per front-end request; `metrics` keeps latency
//! histograms and `process` reads the process's resource use; `admin` and `status` read
//! snapshots only; `error` is the one
//! error type, rendered in one place; `config` compiles a file into a table and credentials
//! that `reload` swaps in whole. See docs/internals.md.

pub mod access;
pub mod admin;
pub mod clients;
pub mod config;
pub mod config_file;
pub mod credentials;
pub mod error;
pub mod forward;
pub mod frontend;
pub mod io;
pub mod logs;
pub mod metrics;
pub mod origins;
pub mod policy;
pub mod process;
pub mod reload;
pub mod route;
pub mod server;
pub mod stall;
pub mod state;
pub mod status;
pub mod stream;
pub mod tunnel;

pub use state::{Limits, PerClient, Proxy, Tls};

use common::tuning;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most front-end connections served at once; further ones wait in the kernel's backlog.
pub const MAX_FRONTEND_CONNECTIONS: usize = 16 * 1024;
/// Most connections on the tunnel port at once (handshakes included).
pub const MAX_TUNNEL_CONNECTIONS: usize = 1024;

/// The proxy's three bound listeners.
#[derive(Debug)]
pub struct Listeners {
    pub frontend: TcpListener,
    pub tunnel: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Bind the three addresses, in order; the first that fails names its flag.
    pub async fn bind(frontend: SocketAddr, tunnel: SocketAddr, admin: SocketAddr) -> Result<Self, BindError> {
        let bind = |flag: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| BindError { flag, addr, source })
        };
        Ok(Listeners {
            frontend: bind("--listen", frontend).await?,
            tunnel: bind("--tunnel-listen", tunnel).await?,
            admin: bind("--admin-listen", admin).await?,
        })
    }
}

/// A listener that could not be bound: which flag, which address, why, and what to do.
#[derive(Debug)]
pub struct BindError {
    pub flag: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let BindError { flag, addr, source } = self;
        let env = format!("REVMUX_{}", flag.trim_start_matches('-').replace('-', "_").to_ascii_uppercase());
        write!(f, "cannot listen on {addr} ({flag}): {source}")?;
        match source.kind() {
            std::io::ErrorKind::AddrInUse => write!(
                f,
                "; another process holds this port (is a p already running? `ss -ltnp 'sport = :{}'` \
                 shows which); stop it, or choose another address with {flag} or {env}",
                addr.port()
            ),
            std::io::ErrorKind::PermissionDenied => write!(
                f,
                "; ports below 1024 need privileges (run as root, grant CAP_NET_BIND_SERVICE, or use \
                 the systemd unit), or choose a port of 1024 or more with {flag} or {env}"
            ),
            std::io::ErrorKind::AddrNotAvailable => write!(
                f,
                "; {} is not an address of this machine; use 0.0.0.0 or [::] for every interface, \
                 or one of `ip -brief address`, with {flag} or {env}",
                addr.ip()
            ),
            _ => write!(f, "; choose another address with {flag} or {env}"),
        }
    }
}

impl std::error::Error for BindError {}

/// Serve until `shutdown` is cancelled, then drain front-end connections (bounded by
/// [`tuning::SHUTDOWN_GRACE`]) and close the tunnels.
pub async fn run(proxy: Arc<Proxy>, listeners: Listeners, tls: Tls, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let graceful = Arc::new(GracefulShutdown::new());
    let close_tunnels = CancellationToken::new();

    if let Ok(addr) = listeners.frontend.local_addr() {
        let _ = proxy.front_end.set((addr, if tls.frontend.is_some() { "https" } else { "http" }));
    }
    proxy.tls.store(Some(Arc::new(tls)));
    tracker.spawn(proxy.stalls.clone().run(shutdown.clone()));
    let frontend = {
        let proxy = proxy.clone();
        let graceful = graceful.clone();
        server::accept_loop(
            server::Listener {
                what: "front end",
                listener: listeners.frontend,
                max_conns: MAX_FRONTEND_CONNECTIONS,
                per_client: proxy.per_client.frontend.clone(),
            },
            shutdown.clone(),
            tracker.clone(),
            move |tcp, peer| frontend::serve_conn(proxy.clone(), tcp, peer, graceful.watcher()),
        )
    };
    let tunnels = {
        let proxy = proxy.clone();
        let close = close_tunnels.clone();
        server::accept_loop(
            server::Listener {
                what: "tunnel",
                listener: listeners.tunnel,
                max_conns: MAX_TUNNEL_CONNECTIONS,
                per_client: proxy.per_client.tunnel.clone(),
            },
            shutdown.clone(),
            tracker.clone(),
            move |tcp, peer| tunnel::serve_conn(proxy.clone(), tcp, peer, close.clone()),
        )
    };
    let admin = {
        let proxy = proxy.clone();
        server::accept_loop(
            server::Listener {
                what: "admin",
                listener: listeners.admin,
                max_conns: 64,
                per_client: proxy.per_client.admin.clone(),
            },
            shutdown.clone(),
            tracker.clone(),
            move |tcp, _peer| serve_admin(proxy.clone(), tcp),
        )
    };
    tokio::join!(frontend, tunnels, admin);

    tracing::info!("shutting down: draining front-end connections");
    // The accept loops (and the handles they held) are gone, so this is the last reference.
    let drained = match Arc::try_unwrap(graceful) {
        Ok(graceful) => tokio::time::timeout(tuning::SHUTDOWN_GRACE, graceful.shutdown()).await.is_ok(),
        Err(_) => false,
    };
    if !drained {
        tracing::warn!(grace = ?tuning::SHUTDOWN_GRACE, "front-end connections still open after the grace period; closing them");
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
        .header_read_timeout(tuning::HANDSHAKE_TIMEOUT)
        .max_buf_size(tuning::FRONTEND_BUFFER)
        .serve_connection(TokioIo::new(tcp), service);
    // Admin answers are small; nobody needs the connection for long.
    match tokio::time::timeout(Duration::from_secs(60), conn).await {
        Ok(Err(e)) => tracing::debug!(error = %e, "admin connection failed"),
        Err(_) => tracing::debug!("admin connection closed after 60 s"),
        Ok(Ok(())) => {}
    }
}
