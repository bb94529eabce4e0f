//! Accept loops shared by the proxy's listeners: they never end on one failed accept, bound the
//! number of live connections and stop on the shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accept connections until `shutdown`, handing each to `handle` in its own task. At most
/// `max_conns` run at once; past that, new connections wait in the kernel's backlog.
pub async fn accept_loop<F, Fut>(
    what: &'static str,
    listener: TcpListener,
    max_conns: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(listener = what, %peer, error = %e, "cannot set TCP_NODELAY");
                }
                let fut = handle(stream, peer);
                tracker.spawn(async move {
                    fut.await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: wait a moment rather than spin, then go on.
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}
