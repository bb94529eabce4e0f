//! Connected origins: every live tunnel, grouped by origin name (a pool) and by the instance
//! (origin process) that opened it, with per-tunnel counters. Choosing a tunnel never leaves
//! the origin that was asked for. Depends on nothing else in the proxy.

use bytes::Bytes;
use common::body::Gathered;
use common::upload::Progress;
use common::Secret;
use h2::client::SendRequest;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Counters for one tunnel. Relaxed atomics: they are statistics, read without synchronising
/// anything else.
#[derive(Debug, Default)]
pub struct TunnelStats {
    pub open_streams: AtomicU64,
    pub requests: AtomicU64,
    pub bytes_to_origin: AtomicU64,
    pub bytes_from_origin: AtomicU64,
}

/// What an origin's tunnels have carried, kept across reconnects: each tunnel adds its
/// counters here when it is dropped (after its last stream), and counts itself when it comes.
#[derive(Debug, Default)]
pub struct OriginTotals {
    pub tunnels: AtomicU64,
    pub requests: AtomicU64,
    pub bytes_to_origin: AtomicU64,
    pub bytes_from_origin: AtomicU64,
}

/// Who opened a tunnel, as its handshake said.
#[derive(Debug, Clone)]
pub struct Identity {
    pub origin: String,
    /// The instance id the origin sent, or `None` for origins that send none.
    pub instance: Option<String>,
    pub peer: SocketAddr,
    /// The token it presented: a reload that revokes it closes the tunnel.
    pub token: Secret,
}

/// One live tunnel: the HTTP/2 client handle that opens streams on it, and its counters.
#[derive(Debug)]
pub struct Tunnel {
    pub id: u64,
    pub origin: String,
    /// The instance id; for an origin that sent none, `tunnel-<id>` (each tunnel its own).
    pub instance: String,
    pub peer: SocketAddr,
    pub connected_since: SystemTime,
    pub connected_at: Instant,
    pub stats: TunnelStats,
    token: Secret,
    /// Cancelled to end this tunnel (revoked by a reload).
    pub close: CancellationToken,
    sender: SendRequest<Bytes>,
    /// Its origin's totals, which this tunnel's counters join when it is gone.
    totals: Arc<OriginTotals>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let (s, t) = (&self.stats, &self.totals);
        t.requests.fetch_add(s.requests.load(Ordering::Relaxed), Ordering::Relaxed);
        t.bytes_to_origin.fetch_add(s.bytes_to_origin.load(Ordering::Relaxed), Ordering::Relaxed);
        t.bytes_from_origin.fetch_add(s.bytes_from_origin.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl Tunnel {
    /// A handle for opening one more stream; cheap (a reference count).
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.sender.clone()
    }

    pub fn token(&self) -> &Secret {
        &self.token
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn open(&self) -> u64 {
        self.stats.open_streams.load(Ordering::Relaxed)
    }
}

/// All live tunnels. The lock is never held across an `.await`.
#[derive(Debug, Default)]
pub struct Origins {
    by_name: RwLock<HashMap<String, Vec<Arc<Tunnel>>>>,
    next_id: AtomicU64,
    /// Per origin name, for as long as the proxy runs (names are admitted by tokens).
    totals: std::sync::Mutex<HashMap<String, Arc<OriginTotals>>>,
}

impl Origins {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a tunnel. An earlier tunnel of the same origin *and instance* is removed and
    /// returned: that process reconnected. Tunnels of other instances stay: they form a pool.
    /// Replaced tunnels' in-flight streams still finish, since streams hold their own handles.
    pub fn register(
        &self,
        who: Identity,
        sender: SendRequest<Bytes>,
        close: CancellationToken,
    ) -> (Arc<Tunnel>, Vec<Arc<Tunnel>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let totals = self.totals_of(&who.origin);
        totals.tunnels.fetch_add(1, Ordering::Relaxed);
        let tunnel = Arc::new(Tunnel {
            totals,
            id,
            instance: who.instance.unwrap_or_else(|| format!("tunnel-{id}")),
            origin: who.origin,
            peer: who.peer,
            connected_since: SystemTime::now(),
            connected_at: Instant::now(),
            stats: TunnelStats::default(),
            token: who.token,
            close,
            sender,
        });
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let pool = map.entry(tunnel.origin.clone()).or_default();
        let (replaced, kept): (Vec<_>, Vec<_>) = pool.drain(..).partition(|t| t.instance == tunnel.instance);
        *pool = kept;
        pool.push(tunnel.clone());
        (tunnel, replaced)
    }

    fn totals_of(&self, origin: &str) -> Arc<OriginTotals> {
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        totals.entry(origin.to_owned()).or_default().clone()
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

    /// Remove and close every tunnel `keep` says no to; returns them.
    pub fn revoke(&self, keep: impl Fn(&Tunnel) -> bool) -> Vec<Arc<Tunnel>> {
        let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        let mut revoked = Vec::new();
        for list in map.values_mut() {
            let (kept, gone): (Vec<_>, Vec<_>) = list.drain(..).partition(|t| keep(t));
            *list = kept;
            revoked.extend(gone);
        }
        map.retain(|_, list| !list.is_empty());
        drop(map);
        for t in &revoked {
            t.close.cancel();
        }
        revoked
    }

    /// The tunnels of one origin in the order to try them: fewest streams in flight first,
    /// then the most recently connected.
    pub fn pool(&self, origin: &str) -> Vec<Arc<Tunnel>> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        let mut list = map.get(origin).cloned().unwrap_or_default();
        list.sort_by_key(|t| (t.open(), std::cmp::Reverse(t.id)));
        list
    }

    /// The live tunnels of one origin, most recent first.
    pub fn tunnels_of(&self, origin: &str) -> Vec<Arc<Tunnel>> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        let mut list = map.get(origin).cloned().unwrap_or_default();
        list.sort_by_key(|t| std::cmp::Reverse(t.id));
        list
    }

    /// The origin whose tunnel connected last (the zero-config default route).
    pub fn most_recent(&self) -> Option<String> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        map.values().flatten().max_by_key(|t| t.id).map(|t| t.origin.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Every tunnel, grouped by origin and instance, sorted by name.
    pub fn snapshot(&self) -> Vec<OriginView> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        let mut origins: Vec<OriginView> = map
            .iter()
            .map(|(name, tunnels)| {
                let mut instances: Vec<InstanceView> = Vec::new();
                let mut sorted = tunnels.clone();
                sorted.sort_by_key(|t| std::cmp::Reverse(t.id));
                for t in sorted {
                    let view = TunnelView::of(&t);
                    match instances.iter_mut().find(|i| i.instance == t.instance) {
                        Some(i) => i.tunnels.push(view),
                        None => instances.push(InstanceView { instance: t.instance.clone(), tunnels: vec![view] }),
                    }
                }
                let totals = self.totals_of(name);
                let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
                let retired = RetiredView {
                    tunnels: load(&totals.tunnels),
                    requests: load(&totals.requests),
                    bytes_to_origin: load(&totals.bytes_to_origin),
                    bytes_from_origin: load(&totals.bytes_from_origin),
                };
                OriginView { name: name.clone(), instances, retired }
            })
            .collect();
        origins.sort_by(|a, b| a.name.cmp(&b.name));
        origins
    }
}

/// One origin as the status pages show it.
#[derive(Debug, Clone)]
pub struct OriginView {
    pub name: String,
    /// Most recently connected first.
    pub instances: Vec<InstanceView>,
    /// What its tunnels that are gone carried, and how many tunnels it ever connected.
    pub retired: RetiredView,
}

/// Counters of an origin's tunnels that are gone (`tunnels`: every one ever connected).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetiredView {
    pub tunnels: u64,
    pub requests: u64,
    pub bytes_to_origin: u64,
    pub bytes_from_origin: u64,
}

/// One origin process.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub instance: String,
    pub tunnels: Vec<TunnelView>,
}

/// One tunnel's counters at the time of the snapshot.
#[derive(Debug, Clone)]
pub struct TunnelView {
    pub id: u64,
    pub peer: SocketAddr,
    pub connected_since: SystemTime,
    pub connected_secs: u64,
    pub open_streams: u64,
    pub requests: u64,
    pub bytes_to_origin: u64,
    pub bytes_from_origin: u64,
}

impl TunnelView {
    fn of(t: &Tunnel) -> Self {
        TunnelView {
            id: t.id,
            peer: t.peer,
            connected_since: t.connected_since,
            connected_secs: t.connected_at.elapsed().as_secs(),
            open_streams: t.stats.open_streams.load(Ordering::Relaxed),
            requests: t.stats.requests.load(Ordering::Relaxed),
            bytes_to_origin: t.stats.bytes_to_origin.load(Ordering::Relaxed),
            bytes_from_origin: t.stats.bytes_from_origin.load(Ordering::Relaxed),
        }
    }
}

impl OriginView {
    pub fn tunnels(&self) -> impl Iterator<Item = &TunnelView> {
        self.instances.iter().flat_map(|i| i.tunnels.iter())
    }
}

/// The request body on its way to the origin: the front-end client's body, counted into the
/// tunnel's `bytes_to_origin`.
#[derive(Debug)]
pub struct ToOrigin {
    /// Small pieces that arrive together cross the tunnel as one frame (`common::body::Gathered`).
    inner: Gathered<Incoming>,
    meter: Option<Arc<Tunnel>>,
    /// Every body byte received from the front-end client (for its access-log line).
    received: Option<Arc<AtomicU64>>,
    /// How the upload is getting on, for the response-head deadline ([`ToOrigin::track`]).
    progress: Option<Arc<Progress>>,
}

impl ToOrigin {
    pub fn new(inner: Incoming) -> Self {
        ToOrigin { inner: Gathered::new(inner), meter: None, received: None, progress: None }
    }

    /// Count every body byte into `received` too, whichever tunnel or target it goes to.
    pub fn counted(inner: Incoming, received: Arc<AtomicU64>) -> Self {
        ToOrigin { inner: Gathered::new(inner), meter: None, received: Some(received), progress: None }
    }

    /// Report the body's progress from now on, for [`common::upload::answer_within`]; `None`
    /// for a request without a body.
    pub fn track(&mut self) -> Option<Arc<Progress>> {
        if self.inner.is_end_stream() {
            return None;
        }
        Some(self.progress.get_or_insert_with(Progress::new).clone())
    }

    /// Count the body's bytes into this tunnel from now on.
    pub fn meter(&mut self, tunnel: Arc<Tunnel>) {
        self.meter = Some(tunnel);
    }
}

impl Body for ToOrigin {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(progress) = &self.progress {
            progress.observe(&poll, self.inner.is_end_stream());
        }
        let frame = ready!(poll);
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()).and_then(Frame::data_ref) {
            let n = data.len() as u64;
            if let Some(tunnel) = &self.meter {
                Tunnel::add(&tunnel.stats.bytes_to_origin, n);
            }
            if let Some(received) = &self.received {
                received.fetch_add(n, Ordering::Relaxed);
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
