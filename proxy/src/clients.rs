//! Per-client-address limits: how many connections one address may hold on a listener, and
//! how many requests it may have in flight through the proxy at once.
//!
//! An address is an IPv4 address or an IPv6 /64 (one household or host gets a /64, so
//! counting single IPv6 addresses would let one client take millions of shares).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The unit a per-client limit counts: IPv4 address, or the /64 of an IPv6 one.
pub type ClientKey = IpAddr;

/// The key for a peer address.
pub fn client_key(ip: IpAddr) -> ClientKey {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts the connections each address holds on one listener.
#[derive(Debug)]
pub struct ConnLimiter {
    per_client: usize,
    counts: Mutex<HashMap<ClientKey, usize>>,
    /// Connections closed at once because their address held its limit.
    pub refused: std::sync::atomic::AtomicU64,
}

/// One connection's share; given back when dropped.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    key: ClientKey,
}

impl ConnLimiter {
    pub fn new(per_client: usize) -> Arc<Self> {
        Arc::new(ConnLimiter {
            per_client: per_client.max(1),
            counts: Mutex::new(HashMap::new()),
            refused: Default::default(),
        })
    }

    /// A share for one more connection from `ip`, or `None` when it holds its limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let key = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= self.per_client {
            self.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        *count += 1;
        Some(ConnPermit { limiter: self.clone(), key })
    }

    /// Connections `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&client_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Slots for requests in flight, `per_client` per address.
#[derive(Debug)]
pub struct StreamSlots {
    per_client: usize,
    by_client: Mutex<HashMap<ClientKey, Arc<Semaphore>>>,
}

/// One request's slot; given back when dropped (when its response body is done or dropped).
#[derive(Debug)]
pub struct StreamPermit {
    slots: Arc<StreamSlots>,
    key: ClientKey,
    permit: Option<OwnedSemaphorePermit>,
}

impl StreamSlots {
    pub fn new(per_client: usize) -> Arc<Self> {
        Arc::new(StreamSlots { per_client: per_client.max(1), by_client: Mutex::new(HashMap::new()) })
    }

    fn semaphore(&self, key: ClientKey) -> Arc<Semaphore> {
        let mut map = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.per_client))).clone()
    }

    /// A slot for `key` if one is free now.
    pub fn try_acquire(self: &Arc<Self>, key: ClientKey) -> Option<StreamPermit> {
        let permit = self.semaphore(key).try_acquire_owned().ok();
        let permit = StreamPermit { slots: self.clone(), key, permit };
        permit.permit.is_some().then_some(permit)
    }

    /// Wait up to `timeout` for a slot for `key`.
    pub async fn acquire(self: &Arc<Self>, key: ClientKey, timeout: Duration) -> Option<StreamPermit> {
        let semaphore = self.semaphore(key);
        let permit = tokio::time::timeout(timeout, semaphore.acquire_owned()).await.ok().and_then(Result::ok);
        let permit = StreamPermit { slots: self.clone(), key, permit };
        permit.permit.is_some().then_some(permit)
    }

    /// Requests `key` has in flight now.
    pub fn in_flight(&self, key: ClientKey) -> usize {
        let map = self.by_client.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key).map_or(0, |s| self.per_client - s.available_permits())
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        // Forget an address once nothing of it is left: no slot taken, nobody waiting.
        let mut map = self.slots.by_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(semaphore) = map.get(&self.key) {
            if semaphore.available_permits() == self.slots.per_client && Arc::strong_count(semaphore) == 1 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), client_key(ip("2001:db8:1:2:bbbb::2")));
        assert_ne!(client_key(ip("2001:db8:1:2::1")), client_key(ip("2001:db8:1:3::1")));
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn connections_are_capped_per_address_and_given_back() {
        let limiter = ConnLimiter::new(2);
        let a = limiter.try_acquire(ip("192.0.2.1")).expect("first");
        let _b = limiter.try_acquire(ip("192.0.2.1")).expect("second");
        assert!(limiter.try_acquire(ip("192.0.2.1")).is_none(), "third from the same address");
        assert!(limiter.try_acquire(ip("192.0.2.2")).is_some(), "another address is unaffected");
        drop(a);
        assert!(limiter.try_acquire(ip("192.0.2.1")).is_some(), "a share given back is reusable");
        assert_eq!(limiter.held(ip("192.0.2.9")), 0);
    }

    #[tokio::test]
    async fn stream_slots_wait_then_time_out_and_forget_idle_addresses() {
        let slots = StreamSlots::new(1);
        let key = ip("192.0.2.1");
        let held = slots.try_acquire(key).expect("free slot");
        assert!(slots.try_acquire(key).is_none());
        assert!(slots.acquire(key, Duration::from_millis(20)).await.is_none(), "times out while held");
        assert!(slots.try_acquire(ip("192.0.2.2")).is_some(), "another address has its own");
        assert_eq!(slots.in_flight(key), 1);
        drop(held);
        assert_eq!(slots.in_flight(key), 0);
        assert!(slots.by_client.lock().expect("lock").is_empty(), "no state kept for idle addresses");
        assert!(slots.acquire(key, Duration::from_millis(20)).await.is_some());
    }
}
