//! Small files (up to 64 KiB) kept in memory for a moment, like nginx's `open_file_cache`: a
//! hot thumbnail or subtitle is answered with no trip to the blocking pool and no system call.
//! An entry is trusted for [`FRESH_FOR`]; after that the next request re-reads the file on the
//! blocking pool (which also re-checks that it is still beneath the root). Only that one: the
//! requests that come meanwhile are still answered from the entry, for up to another
//! [`FRESH_FOR`], so 64 clients of one file cause one re-read a second, not 64 blocking
//! threads at once.

use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Representation;

/// How long a cached small file is served without looking at the disk again. A changed or
/// deleted small file is noticed at most twice this late (see the module docs).
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);
/// Bounds on what the cache holds; past them, stale entries go first, then everything.
const MAX_ENTRIES: usize = 4096;
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// One small file, whole, with the headers that describe it.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) rep: Representation,
    pub(crate) data: Bytes,
    read_at: Instant,
    /// A request has gone to re-read the file since the entry went stale.
    refreshing: AtomicBool,
}

impl Cached {
    pub(crate) fn new(rep: Representation, data: Bytes) -> Self {
        Cached { rep, data, read_at: Instant::now(), refreshing: AtomicBool::new(false) }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now.duration_since(self.read_at) < FRESH_FOR
    }

    /// Whether to answer from this entry: while fresh, and once stale, for everybody but the
    /// first to ask (who re-reads the file) until it is twice [`FRESH_FOR`] old.
    fn usable(&self, now: Instant) -> bool {
        let age = now.duration_since(self.read_at);
        age < FRESH_FOR || (age < 2 * FRESH_FOR && self.refreshing.swap(true, Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
pub(crate) struct SmallFiles {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<PathBuf, Arc<Cached>>,
    bytes: usize,
}

impl SmallFiles {
    /// The cached file at `rel`, if it may be answered from (see [`Cached::usable`]); `None`
    /// sends this request to the disk.
    pub(crate) fn fresh(&self, rel: &Path) -> Option<Arc<Cached>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.get(rel).filter(|c| c.usable(Instant::now())).cloned()
    }

    pub(crate) fn insert(&self, rel: &Path, entry: Arc<Cached>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let size = entry.data.len();
        if inner.map.len() >= MAX_ENTRIES || inner.bytes + size > MAX_BYTES {
            let now = Instant::now();
            inner.map.retain(|_, c| c.is_fresh(now));
            inner.bytes = inner.map.values().map(|c| c.data.len()).sum();
            if inner.map.len() >= MAX_ENTRIES || inner.bytes + size > MAX_BYTES {
                inner.map.clear();
                inner.bytes = 0;
            }
        }
        if let Some(old) = inner.map.insert(rel.to_owned(), entry) {
            inner.bytes -= old.data.len();
        }
        inner.bytes += size;
    }

    /// Drop the entries no request may be answered from any more (twice [`FRESH_FOR`] old):
    /// they only held memory until the bounds pushed them out. Called while the origin is
    /// quiet (`common::memory`); entries that are merely stale stay, so the next burst still
    /// sends one re-read per file to the disk. True while entries are left (they age out
    /// within twice [`FRESH_FOR`], so a later call frees them). The dropped entries are freed
    /// after the lock is released.
    pub(crate) fn forget_unusable(&self, now: Instant) -> bool {
        let mut gone = Vec::new();
        let left = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let all = std::mem::take(&mut inner.map);
            for (rel, entry) in all {
                if now.duration_since(entry.read_at) < 2 * FRESH_FOR {
                    inner.map.insert(rel, entry);
                } else {
                    gone.push(entry);
                }
            }
            inner.bytes = inner.map.values().map(|c| c.data.len()).sum();
            !inner.map.is_empty()
        };
        drop(gone);
        left
    }

    #[cfg(test)]
    pub(crate) fn len_and_bytes(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (inner.map.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn entry(len: usize) -> Arc<Cached> {
        let rep = Representation::new(len as u64, "\"x\"".into(), 0, HeaderValue::from_static("text/plain"));
        Arc::new(Cached::new(rep, Bytes::from(vec![0u8; len])))
    }

    #[test]
    fn stays_within_its_bounds() {
        let cache = SmallFiles::default();
        for i in 0..(MAX_ENTRIES + 10) {
            cache.insert(Path::new(&format!("f{i}")), entry(10));
        }
        let (n, bytes) = cache.len_and_bytes();
        assert!(n <= MAX_ENTRIES && bytes == n * 10, "{n} entries, {bytes} bytes");
        for i in 0..300 {
            cache.insert(Path::new(&format!("g{i}")), entry(64 * 1024));
        }
        let (n, bytes) = cache.len_and_bytes();
        assert!(bytes <= MAX_BYTES && bytes == n * 64 * 1024, "{n} entries, {bytes} bytes");
    }

    #[test]
    fn replacing_an_entry_keeps_the_byte_count() {
        let cache = SmallFiles::default();
        cache.insert(Path::new("a"), entry(100));
        cache.insert(Path::new("a"), entry(30));
        assert_eq!(cache.len_and_bytes(), (1, 30));
        assert!(cache.fresh(Path::new("a")).is_some());
        assert!(cache.fresh(Path::new("b")).is_none());
    }

    #[test]
    fn a_stale_entry_sends_one_request_to_the_disk_and_answers_the_rest_for_a_while() {
        let e = entry(10);
        let t0 = e.read_at;
        assert!(e.usable(t0) && e.usable(t0 + FRESH_FOR / 2), "fresh");
        let stale = t0 + FRESH_FOR + Duration::from_millis(10);
        assert!(!e.usable(stale), "the first after it went stale re-reads the file");
        assert!(e.usable(stale) && e.usable(stale), "the others are answered meanwhile");
        assert!(!e.usable(t0 + 2 * FRESH_FOR), "but never past twice its freshness");
    }

    #[test]
    fn quiet_time_forgets_only_entries_that_can_no_longer_answer() {
        let cache = SmallFiles::default();
        cache.insert(Path::new("old"), entry(100));
        let t0 = cache.fresh(Path::new("old")).expect("just inserted").read_at;
        assert!(cache.forget_unusable(t0 + FRESH_FOR + Duration::from_millis(10)), "one left to age out");
        assert_eq!(cache.len_and_bytes(), (1, 100), "stale but still usable while re-read: kept");
        assert!(!cache.forget_unusable(t0 + 2 * FRESH_FOR), "nothing left");
        assert_eq!(cache.len_and_bytes(), (0, 0));
    }
}
