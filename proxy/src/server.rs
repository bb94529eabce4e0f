//! Accept loops shared by the proxy's listeners: they never end on one failed accept, bound the
//! number of live connections overall and per client address, and stop on the shutdown signal.

use crate::clients::ConnLimiter;
use crate::logs::{ACCEPT_FAILED, REFUSED};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One listener and its limits.
#[derive(Debug)]
pub struct Listener {
    /// Its name in logs and metrics: "front end", "tunnel", "admin".
    pub what: &'static str,
    pub listener: TcpListener,
    /// Connections served at once; further ones wait in the kernel's backlog.
    pub max_conns: usize,
    /// Connections one client address may hold; further ones are closed at once.
    pub per_client: Arc<ConnLimiter>,
}

/// Accept connections until `shutdown`, handing each to `handle` in its own task.
pub async fn accept_loop<F, Fut>(listener: Listener, shutdown: CancellationToken, tracker: TaskTracker, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Listener { what, listener, max_conns, per_client } = listener;
    let limit = Arc::new(Semaphore::new(max_conns));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(share) = per_client.try_acquire(peer.ip()) else {
                    if let Some(suppressed) = REFUSED.allow() {
                        tracing::warn!(listener = what, %peer, suppressed, "connection refused: this client address holds its limit of connections");
                    }
                    drop(stream);
                    continue;
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(listener = what, %peer, error = %e, "cannot set TCP_NODELAY");
                }
                let fut = handle(stream, peer);
                tracker.spawn(async move {
                    fut.await;
                    drop(share);
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: wait a moment rather than spin, then go on.
                if let Some(suppressed) = ACCEPT_FAILED.allow() {
                    tracing::warn!(listener = what, error = %e, suppressed, "accept failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}
