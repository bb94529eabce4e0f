//! Stalled streams: which front-end clients have stopped taking the data their origin sends,
//! and resetting their streams when they hold too much of a tunnel (see `common::tuning` for
//! the whole design). A reset gives the stream's share of the tunnel's window back at once.

use crate::clients::ClientKey;
use crate::stream::OriginBody;
use common::h2body::WakeQueue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the stall check runs; also the resolution of its clock.
pub const TICK: Duration = Duration::from_millis(100);

/// Why a stream was reset by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Too many stalled streams on its tunnel (or from its client): the longest-stalled go.
    Pressure,
    /// Its client took nothing for the whole send timeout.
    SendTimeout,
}

impl Eviction {
    pub fn label(self) -> &'static str {
        match self {
            Eviction::Pressure => "stalled",
            Eviction::SendTimeout => "send_timeout",
        }
    }
}

/// What one front-end connection is doing, for its idle and eviction checks.
#[derive(Debug, Default)]
pub struct ConnActivity {
    /// Requests received and not yet finished.
    pub in_flight: AtomicUsize,
    /// Of those, how many the proxy has reset.
    pub evicted: AtomicUsize,
    /// [`Stalls::now_ms`] when a request last began or ended.
    pub last_change_ms: AtomicU64,
}

/// One response streaming from an origin to a front-end client.
#[derive(Debug)]
pub struct Watch {
    tunnel: u64,
    client: ClientKey,
    conn: Arc<ConnActivity>,
    /// When the front end was last handed data it has not come back for (clock ms + 1);
    /// 0 while it is waiting on the origin, which holds no window.
    offered_ms: AtomicU64,
    state: Mutex<WatchState>,
}

#[derive(Debug)]
struct WatchState {
    incoming: Option<OriginBody>,
    evicted: Option<Eviction>,
}

/// Every response in flight, and the counts of evictions.
#[derive(Debug)]
pub struct Stalls {
    epoch: Instant,
    clock_ms: AtomicU64,
    next_id: AtomicU64,
    streams: Mutex<HashMap<u64, Arc<Watch>>>,
    send_timeout: Duration,
    pub evicted_pressure: AtomicU64,
    pub evicted_send_timeout: AtomicU64,
    /// Frames moved out of `h2` for front ends that were away ([`Stalls::drain_away`]).
    pub drained_frames: AtomicU64,
    /// Streams `h2` woke because more arrived while their front end was away.
    woken: Arc<WakeQueue<Watch>>,
}

/// A response's registration; removes it when dropped.
#[derive(Debug)]
pub struct Registration {
    stalls: Arc<Stalls>,
    id: u64,
    pub watch: Arc<Watch>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut streams = self.stalls.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.remove(&self.id);
        drop(streams);
        if self.watch.state.lock().unwrap_or_else(|p| p.into_inner()).evicted.is_some() {
            self.watch.conn.evicted.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Stalls {
    pub fn new(send_timeout: Duration) -> Arc<Self> {
        Arc::new(Stalls {
            epoch: Instant::now(),
            clock_ms: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            streams: Mutex::new(HashMap::new()),
            send_timeout,
            evicted_pressure: AtomicU64::new(0),
            evicted_send_timeout: AtomicU64::new(0),
            drained_frames: AtomicU64::new(0),
            woken: Arc::default(),
        })
    }

    /// A coarse clock (advanced every [`TICK`]), cheap enough to read per DATA frame.
    pub fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    fn tick_clock(&self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.clock_ms.store(now, Ordering::Relaxed);
        now
    }

    /// Track a response body that has just been handed to the front end.
    pub fn register(
        self: &Arc<Self>,
        incoming: OriginBody,
        tunnel: u64,
        client: ClientKey,
        conn: Arc<ConnActivity>,
    ) -> Registration {
        let watch = Arc::new(Watch {
            tunnel,
            client,
            conn,
            // The front end has been handed the head and owes us a poll for the body.
            offered_ms: AtomicU64::new(self.now_ms() + 1),
            state: Mutex::new(WatchState { incoming: Some(incoming), evicted: None }),
        });
        if let Some(incoming) = watch.state.lock().unwrap_or_else(|p| p.into_inner()).incoming.as_mut() {
            incoming.wake_drainer(self.woken.waker_for(&watch));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).insert(id, watch.clone());
        Registration { stalls: self.clone(), id, watch }
    }

    /// Run the stall check every [`TICK`] until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                watches = self.woken.woken() => {
                    self.drain(watches);
                    continue;
                }
            }
            let now = self.tick_clock();
            for (watch, why) in self.to_evict(now) {
                self.evict(&watch, why);
            }
            self.drain_away();
        }
    }

    /// Stalled streams, longest-stalled first: (how long, watch).
    fn stalled(&self, now: u64, filter: impl Fn(&Watch) -> bool) -> Vec<(u64, Arc<Watch>)> {
        let after = common::tuning::STALL_AFTER.as_millis() as u64;
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let mut stalled: Vec<(u64, Arc<Watch>)> = streams
            .values()
            .filter_map(|w| {
                let offered = w.offered_ms.load(Ordering::Relaxed);
                let stalled_for = now.saturating_sub(offered.checked_sub(1)?);
                (offered != 0 && stalled_for >= after && filter(w)).then(|| (stalled_for, w.clone()))
            })
            .collect();
        drop(streams);
        stalled.sort_by_key(|s| std::cmp::Reverse(s.0));
        stalled
    }

    /// Move the frames of every stream whose front end is away (it was handed a frame and has
    /// not come back) out of `h2` (`common::h2body`): tiny frames unread in bulk would
    /// otherwise end the tunnel. Streams that have had a small frame are drained again as soon
    /// as more arrives ([`Stalls::woken`]); this catches the rest once a tick.
    fn drain_away(&self) {
        let away: Vec<Arc<Watch>> = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|w| w.offered_ms.load(Ordering::Relaxed) != 0)
            .cloned()
            .collect();
        self.drain(away);
    }

    fn drain(&self, watches: Vec<Arc<Watch>>) {
        for watch in watches {
            let mut state = watch.state.lock().unwrap_or_else(|p| p.into_inner());
            // Checked under the lock the front end polls with: if it came back and found
            // nothing, its waker is with h2 and the stream must be left alone.
            if watch.offered_ms.load(Ordering::Relaxed) != 0 {
                if let Some(incoming) = state.incoming.as_mut() {
                    let moved = incoming.drain();
                    self.drained_frames.fetch_add(moved as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// The streams to reset now (see [`plan`]).
    fn to_evict(&self, now: u64) -> Vec<(Arc<Watch>, Eviction)> {
        let stalled = self.stalled(now, |_| true);
        let facts: Vec<Stalled> =
            stalled.iter().map(|(f, w)| Stalled { for_ms: *f, tunnel: w.tunnel, held: w.held() }).collect();
        let timeout = self.send_timeout.as_millis() as u64;
        plan(&facts, timeout, common::tuning::MAX_STALLED_BYTES_PER_TUNNEL)
            .into_iter()
            .map(|(i, why)| (stalled[i].1.clone(), why))
            .collect()
    }

    /// Reset the longest-stalled stream of `client`, if it has one: called when the client
    /// wants another stream and holds all of its own.
    pub fn evict_longest_stalled_of(&self, client: ClientKey) -> bool {
        let now = self.now_ms();
        match self.stalled(now, |w| w.client == client).into_iter().next() {
            Some((_, watch)) => self.evict(&watch, Eviction::Pressure),
            None => false,
        }
    }

    fn evict(&self, watch: &Watch, why: Eviction) -> bool {
        let mut state = watch.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.evicted.is_some() {
            return false;
        }
        state.evicted = Some(why);
        let incoming = state.incoming.take();
        drop(state);
        // Dropping the receiving half resets the stream on the tunnel and returns whatever
        // the origin had sent for it to the connection window.
        drop(incoming);
        watch.conn.evicted.fetch_add(1, Ordering::Relaxed);
        let counter = match why {
            Eviction::Pressure => &self.evicted_pressure,
            Eviction::SendTimeout => &self.evicted_send_timeout,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reason = why.label(), tunnel = watch.tunnel, client = %watch.client, "stalled stream reset");
        true
    }

    /// Responses in flight.
    pub fn len(&self) -> usize {
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One stalled stream, as [`plan`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Stalled {
    /// How long its front-end client has not come back for what it was offered.
    pub for_ms: u64,
    pub tunnel: u64,
    /// The tunnel window it holds (received from the origin, not yet taken).
    pub held: u64,
}

/// Which stalled streams to reset, given each (longest-stalled first): any stalled for
/// `timeout_ms`; then, on each tunnel whose stalled streams hold more than `budget` bytes of
/// window together, the longest-stalled that hold any until the rest fit (the newest stay).
pub fn plan(stalled: &[Stalled], timeout_ms: u64, budget: u64) -> Vec<(usize, Eviction)> {
    let mut out = Vec::new();
    let mut held: HashMap<u64, u64> = HashMap::new();
    for (i, s) in stalled.iter().enumerate() {
        if s.for_ms >= timeout_ms {
            out.push((i, Eviction::SendTimeout));
        } else {
            *held.entry(s.tunnel).or_insert(0) += s.held;
        }
    }
    for (i, s) in stalled.iter().enumerate() {
        let total = held.get_mut(&s.tunnel);
        match total {
            Some(total) if s.for_ms < timeout_ms && s.held > 0 && *total > budget => {
                *total -= s.held;
                out.push((i, Eviction::Pressure));
            }
            _ => {}
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out
}

/// What polling a watched body gave.
pub enum Polled {
    Frame(Result<http_body::Frame<bytes::Bytes>, h2::Error>),
    End,
    Pending,
    Evicted(Eviction),
}

impl Watch {
    /// The tunnel window this stream holds (0 once reset or ended).
    fn held(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.incoming.as_mut().map_or(0, OriginBody::held)
    }

    /// Poll the origin's body for the front end, keeping the stall clock.
    pub fn poll_frame(&self, stalls: &Stalls, cx: &mut std::task::Context<'_>) -> Polled {
        use std::task::Poll;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = state.evicted {
            return Polled::Evicted(why);
        }
        let Some(incoming) = state.incoming.as_mut() else { return Polled::End };
        match http_body::Body::poll_frame(std::pin::Pin::new(incoming), cx) {
            Poll::Ready(Some(frame)) => {
                self.offered_ms.store(stalls.now_ms() + 1, Ordering::Relaxed);
                Polled::Frame(frame)
            }
            Poll::Ready(None) => {
                self.offered_ms.store(0, Ordering::Relaxed);
                Polled::End
            }
            Poll::Pending => {
                self.offered_ms.store(0, Ordering::Relaxed);
                Polled::Pending
            }
        }
    }

    pub fn is_end_stream(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.evicted.is_none() && state.incoming.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    pub fn size_hint(&self) -> http_body::SizeHint {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.incoming.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(for_ms: u64, tunnel: u64, held: u64) -> Stalled {
        Stalled { for_ms, tunnel, held }
    }

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn send_timeout_evicts_regardless_of_pressure() {
        let stalled = [s(61_000, 1, 10), s(600, 1, MIB)];
        assert_eq!(plan(&stalled, 60_000, 32 * MIB), vec![(0, Eviction::SendTimeout)]);
    }

    #[test]
    fn pressure_evicts_the_longest_stalled_per_tunnel_until_the_rest_fit() {
        // Longest first: tunnel 1 holds 4 MiB in stalled streams, tunnel 2 one; 2 MiB may stay.
        let stalled = [s(5_000, 1, MIB), s(4_000, 2, MIB), s(3_000, 1, MIB), s(2_000, 1, MIB), s(1_000, 1, MIB)];
        assert_eq!(plan(&stalled, 60_000, 2 * MIB), vec![(0, Eviction::Pressure), (2, Eviction::Pressure)]);
        assert!(plan(&stalled, 60_000, 4 * MIB).is_empty(), "within the budget nothing goes");
    }

    #[test]
    fn streams_holding_little_do_not_count_as_a_whole_window() {
        // 200 blocked event streams holding 4 KiB each are 800 KiB: no pressure at all.
        let blocked: Vec<Stalled> = (0..200).map(|i| s(10_000 - i, 1, 4096)).collect();
        assert!(plan(&blocked, 60_000, MIB).is_empty());
        // A stream holding nothing is never reset to make room: it would free nothing.
        let stalled = [s(9_000, 1, 0), s(8_000, 1, 3 * MIB), s(7_000, 1, MIB)];
        assert_eq!(plan(&stalled, 60_000, 2 * MIB), vec![(1, Eviction::Pressure)]);
    }
}
