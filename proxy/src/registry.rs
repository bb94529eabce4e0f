//! The origin registry: every live tunnel, keyed by origin name (several tunnels per name are
//! allowed), with the counters the admin endpoint reports.

use crate::forward::ToOrigin;
use hyper::client::conn::http2::SendRequest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

/// Counters for one tunnel. Relaxed atomics: they are statistics, read without synchronising
/// anything else.
#[derive(Debug, Default)]
pub struct TunnelStats {
    pub open_streams: AtomicU64,
    pub requests: AtomicU64,
    pub bytes_to_origin: AtomicU64,
    pub bytes_from_origin: AtomicU64,
}

/// One origin's live tunnel: the HTTP/2 client handle that opens streams on it, and its counters.
#[derive(Debug)]
pub struct Tunnel {
    pub id: u64,
    pub origin: String,
    pub peer: SocketAddr,
    pub connected_since: SystemTime,
    pub connected_at: Instant,
    pub stats: TunnelStats,
    sender: SendRequest<ToOrigin>,
}

impl Tunnel {
    /// A handle for opening one more stream; cheap (a channel sender clone).
    pub fn sender(&self) -> SendRequest<ToOrigin> {
        self.sender.clone()
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the admin endpoint shows of a tunnel.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TunnelSnapshot {
    pub name: String,
    pub tunnel_id: u64,
    pub peer: String,
    pub connected_since: String,
    pub connected_secs: u64,
    pub open_streams: u64,
    pub requests: u64,
    pub bytes_to_origin: u64,
    pub bytes_from_origin: u64,
}

/// All live tunnels. The lock is never held across an `.await`.
#[derive(Debug, Default)]
pub struct Registry {
    by_name: RwLock<HashMap<String, Vec<Arc<Tunnel>>>>,
    next_id: AtomicU64,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a tunnel for `origin`. Tunnels of the same name registered earlier are removed and
    /// returned: a reconnecting origin replaces its old registration. Their in-flight streams
    /// still finish, since the streams hold their own handles.
    pub fn register(
        &self,
        origin: &str,
        peer: SocketAddr,
        sender: SendRequest<ToOrigin>,
    ) -> (Arc<Tunnel>, Vec<Arc<Tunnel>>) {
        let tunnel = Arc::new(Tunnel {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            origin: origin.to_owned(),
            peer,
            connected_since: SystemTime::now(),
            connected_at: Instant::now(),
            stats: TunnelStats::default(),
            sender,
        });
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let replaced = map.insert(origin.to_owned(), vec![tunnel.clone()]).unwrap_or_default();
        (tunnel, replaced)
    }

    /// Remove one tunnel (when its connection ends). Returns whether it was still registered.
    pub fn remove(&self, origin: &str, id: u64) -> bool {
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let Some(list) = map.get_mut(origin) else { return false };
        let before = list.len();
        list.retain(|t| t.id != id);
        let removed = list.len() != before;
        if list.is_empty() {
            map.remove(origin);
        }
        removed
    }

    /// Every live tunnel, most recently connected first.
    pub fn tunnels(&self) -> Vec<Arc<Tunnel>> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<Arc<Tunnel>> = map.values().flatten().cloned().collect();
        all.sort_by_key(|t| std::cmp::Reverse(t.id));
        all
    }

    /// The live tunnels of one origin, most recent first.
    pub fn tunnels_of(&self, origin: &str) -> Vec<Arc<Tunnel>> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        let mut list = map.get(origin).cloned().unwrap_or_default();
        list.sort_by_key(|t| std::cmp::Reverse(t.id));
        list
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// A consistent-enough view for the admin endpoint, sorted by origin name.
    pub fn snapshot(&self) -> Vec<TunnelSnapshot> {
        let mut out: Vec<TunnelSnapshot> = self
            .tunnels()
            .iter()
            .map(|t| TunnelSnapshot {
                name: t.origin.clone(),
                tunnel_id: t.id,
                peer: t.peer.to_string(),
                connected_since: humantime::format_rfc3339_seconds(t.connected_since).to_string(),
                connected_secs: t.connected_at.elapsed().as_secs(),
                open_streams: t.stats.open_streams.load(Ordering::Relaxed),
                requests: t.stats.requests.load(Ordering::Relaxed),
                bytes_to_origin: t.stats.bytes_to_origin.load(Ordering::Relaxed),
                bytes_from_origin: t.stats.bytes_from_origin.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(b.tunnel_id.cmp(&a.tunnel_id)));
        out
    }
}
