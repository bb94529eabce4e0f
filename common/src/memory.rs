//! Giving memory back to the kernel after a burst: a work counter both ends tick, and a task
//! that, once the counter has stood still for a while, lets the process drop its caches and
//! asks glibc to return the free pages of its heap.
//!
//! glibc keeps what a burst freed: the middle of its heaps is never given back by `free`, only
//! the top, and only past the trim threshold ([`crate::runtime::keep_heap_top`] raises it to
//! 2 MiB so that a download does not fault its frames in again and again). After a burst of 64
//! KiB responses the proxy stayed at 12 MiB instead of 7, the origin at 13 instead of 7 (8 of it
//! its kept file-chunk buffers), for as long as they ran. `malloc_trim(0)` walks every arena
//! and gives free pages back with `madvise`; it is called once per burst, from the blocking
//! pool, one [`QUIET_FOR`] after the last unit of work, never while work keeps coming.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long the work counter must stand still before memory is given back.
pub const QUIET_FOR: Duration = Duration::from_secs(1);

static WORK: AtomicU64 = AtomicU64::new(0);

/// Count one unit of work: a stream opened, a chunk read. Cheap (one relaxed add).
pub fn worked() {
    WORK.fetch_add(1, Ordering::Relaxed);
}

/// When to give memory back, from successive readings of the work counter: once, at the first
/// reading that equals the one before it, after any work since the last time.
#[derive(Debug, Default)]
pub struct Quiet {
    last: u64,
    released_at: u64,
}

impl Quiet {
    /// Take a reading; true when memory should be given back now.
    pub fn check(&mut self, now: u64) -> bool {
        let release = now == self.last && now != self.released_at;
        self.last = now;
        if release {
            self.released_at = now;
        }
        release
    }
}

/// Every [`QUIET_FOR`], read the work counter; after a burst, run `drop_caches` (on the
/// runtime: buffers kept for reuse, say) and then trim the heap on the blocking pool. Runs
/// until the runtime stops.
pub async fn release_when_quiet(drop_caches: impl Fn() + Send + 'static) {
    release_after(QUIET_FOR, drop_caches).await
}

async fn release_after(period: Duration, drop_caches: impl Fn() + Send + 'static) {
    let mut quiet = Quiet::default();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if quiet.check(WORK.load(Ordering::Relaxed)) {
            drop_caches();
            // A trim takes each arena's lock in turn: keep it off the workers.
            let _ = tokio::task::spawn_blocking(trim_heap).await;
        }
    }
}

/// Return the free pages of every glibc arena to the kernel; true if any were. Elsewhere
/// (musl, other allocators' platforms) nothing: they give memory back by themselves.
pub fn trim_heap() -> bool {
    trim::heap()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod trim {
    extern "C" {
        /// glibc's `malloc_trim(3)`.
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }

    pub(super) fn heap() -> bool {
        // SAFETY: malloc_trim takes no pointers and has no preconditions; it locks each arena
        // itself, so it is safe to call from any thread at any time.
        unsafe { malloc_trim(0) != 0 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod trim {
    pub(super) fn heap() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_give_back_before_any_work() {
        let mut quiet = Quiet::default();
        assert!(!quiet.check(0));
        assert!(!quiet.check(0));
    }

    #[test]
    fn gives_back_once_per_burst_after_one_quiet_reading() {
        let mut quiet = Quiet::default();
        assert!(!quiet.check(5), "work since the last reading: busy");
        assert!(!quiet.check(9), "still busy");
        assert!(quiet.check(9), "one reading without work: give back");
        assert!(!quiet.check(9), "only once for that burst");
        assert!(!quiet.check(9));
        assert!(!quiet.check(10), "a new burst");
        assert!(quiet.check(10), "and its end");
    }

    #[test]
    fn steady_work_never_gives_back() {
        let mut quiet = Quiet::default();
        for n in 1..100 {
            assert!(!quiet.check(n));
        }
    }

    #[test]
    fn trimming_is_harmless_at_any_time() {
        let kept: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
        drop(kept.into_iter().step_by(2).collect::<Vec<_>>());
        trim_heap();
        let again = vec![7u8; 1 << 20];
        assert!(again.iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn drops_caches_after_a_quiet_period() {
        let period = Duration::from_millis(20);
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = dropped.clone();
        let task = tokio::spawn(release_after(period, move || {
            seen.fetch_add(1, Ordering::Relaxed);
        }));
        worked();
        // The first reading is taken at once and sees the work; the next, one period later,
        // sees no more (other tests may tick the shared counter: give it a few periods).
        for _ in 0..250 {
            tokio::time::sleep(period).await;
            if dropped.load(Ordering::Relaxed) > 0 {
                break;
            }
        }
        assert!(dropped.load(Ordering::Relaxed) >= 1);
        task.abort();
    }
}
