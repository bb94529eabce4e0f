//! Giving memory back to the kernel after a burst: a work counter both ends tick, and a task
//! that, once the counter has stood still for a while, lets the process drop its caches and
//! asks glibc to return the free pages of its heap.
//!
//! glibc keeps what a burst freed: the middle of its heaps is never given back by `free`, only
//! the top, and only past the trim threshold ([`crate::runtime::keep_heap_top`] raises it to
//! 2 MiB so that a download does not fault its frames in again and again). After 16 downloads
//! at once the proxy stayed at 17 MiB instead of 9, the origin at 15 instead of 8 (8 MiB of it
//! its kept file-chunk buffers), for as long as they ran. `malloc_trim(0)` walks every arena
//! and gives whole free pages back with `madvise` (what fragmentation pins stays); it runs on
//! the blocking pool once the counter has stood still for a whole [`QUIET_FOR`] (one to two
//! seconds after the last unit of work), once per burst, so work that ticks at least once a
//! second never triggers it, and at most once per [`MIN_READINGS_BETWEEN`] readings, so that
//! light traffic with pauses (a request every two seconds) does not trim every other second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long the work counter must stand still before memory is given back.
pub const QUIET_FOR: Duration = Duration::from_secs(1);

/// Fewest readings of the counter (each [`QUIET_FOR`] apart) from one release to the next.
pub const MIN_READINGS_BETWEEN: u32 = 5;

static WORK: AtomicU64 = AtomicU64::new(0);

/// Count one unit of work: a stream opened, a frame or chunk handed on, buffers freed. Cheap
/// (one relaxed add).
pub fn worked() {
    WORK.fetch_add(1, Ordering::Relaxed);
}

/// When to give memory back, from successive readings of the work counter: at the first
/// reading that equals the one before it, after any work since the last release; and at every
/// quiet reading after that while the last release said something was left to age out. Never
/// twice within [`MIN_READINGS_BETWEEN`] readings: a release due sooner waits for the first
/// quiet reading after that.
#[derive(Debug)]
pub struct Quiet {
    last: u64,
    released_at: u64,
    lingering: bool,
    readings_since_release: u32,
}

impl Default for Quiet {
    fn default() -> Self {
        Quiet { last: 0, released_at: 0, lingering: false, readings_since_release: MIN_READINGS_BETWEEN }
    }
}

impl Quiet {
    /// Take a reading; true when memory should be given back now.
    pub fn check(&mut self, now: u64) -> bool {
        let quiet = now == self.last;
        self.last = now;
        self.readings_since_release = self.readings_since_release.saturating_add(1);
        let release =
            quiet && (now != self.released_at || self.lingering) && self.readings_since_release >= MIN_READINGS_BETWEEN;
        if release {
            self.released_at = now;
            self.readings_since_release = 0;
        }
        release
    }

    /// What the release just done reported: true if caches still hold entries that a later
    /// quiet reading may free (they age out).
    pub fn released(&mut self, lingering: bool) {
        self.lingering = lingering;
    }
}

/// Every [`QUIET_FOR`], read the work counter; after a burst, run `drop_caches` (on the
/// runtime: buffers kept for reuse, say; it returns true while entries are left that will age
/// out, to be called again at the next quiet reading) and then trim the heap on the blocking
/// pool. Runs until the runtime stops.
pub async fn release_when_quiet(drop_caches: impl Fn() -> bool + Send + 'static) {
    release_after(QUIET_FOR, drop_caches).await
}

async fn release_after(period: Duration, drop_caches: impl Fn() -> bool + Send + 'static) {
    let mut quiet = Quiet::default();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if quiet.check(WORK.load(Ordering::Relaxed)) {
            quiet.released(drop_caches());
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

    /// Readings without work, enough for the spacing between releases to have passed.
    fn wait_out(quiet: &mut Quiet, now: u64) {
        for _ in 0..MIN_READINGS_BETWEEN {
            quiet.check(now);
        }
    }

    #[test]
    fn gives_back_once_per_burst_after_one_quiet_reading() {
        let mut quiet = Quiet::default();
        assert!(!quiet.check(5), "work since the last reading: busy");
        assert!(!quiet.check(9), "still busy");
        assert!(quiet.check(9), "one reading without work: give back");
        assert!(!quiet.check(9), "only once for that burst");
        assert!(!quiet.check(9));
        wait_out(&mut quiet, 9);
        assert!(!quiet.check(10), "a new burst");
        assert!(quiet.check(10), "and its end");
    }

    #[test]
    fn gives_back_again_while_caches_say_something_is_left() {
        let mut quiet = Quiet::default();
        assert!(!quiet.check(3));
        assert!(quiet.check(3));
        quiet.released(true);
        for _ in 1..MIN_READINGS_BETWEEN {
            assert!(!quiet.check(3), "not again so soon");
        }
        assert!(quiet.check(3), "entries were left to age out: again");
        quiet.released(false);
        wait_out(&mut quiet, 3);
        assert!(!quiet.check(3), "nothing left: done until the next burst");
        quiet.released(true);
        assert!(!quiet.check(4), "work again: busy, whatever was left");
    }

    #[test]
    fn short_pauses_in_light_traffic_give_back_at_most_once_per_spacing() {
        // A request every other reading: each pause is a quiet reading after work.
        let mut quiet = Quiet::default();
        let mut releases = Vec::new();
        for reading in 0..40u32 {
            let now = u64::from(reading / 2 + 1);
            if quiet.check(now) {
                releases.push(reading);
            }
        }
        assert!(releases.len() >= 2, "{releases:?}");
        for pair in releases.windows(2) {
            assert!(pair[1] - pair[0] >= MIN_READINGS_BETWEEN, "{releases:?}");
        }
        // What was due is not lost: once the traffic stops, the next quiet reading after the
        // spacing gives back.
        let mut quiet = Quiet::default();
        assert!(!quiet.check(1));
        assert!(quiet.check(1));
        assert!(!quiet.check(2), "a burst right after");
        assert!(!quiet.check(2), "over, but too soon after the last release");
        let given = (0..MIN_READINGS_BETWEEN).filter(|_| quiet.check(2)).count();
        assert_eq!(given, 1, "given back once the spacing had passed, and only once");
    }

    #[test]
    fn steady_work_never_gives_back() {
        let mut quiet = Quiet::default();
        for n in 1..100 {
            assert!(!quiet.check(n));
        }
    }

    #[test]
    fn trimming_keeps_live_data_intact() {
        // Half of these blocks freed leaves free pages between live ones: the trim gives those
        // back and must leave every live byte as it was.
        let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
        let live: Vec<(usize, Vec<u8>)> = blocks.into_iter().enumerate().filter(|(i, _)| i % 2 == 0).collect();
        trim_heap();
        for (i, block) in &live {
            assert!(block.iter().all(|&b| b == *i as u8), "block {i} changed by the trim");
        }
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
            false
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
