//! Rate-limited log lines: a warning that anybody on the internet can trigger (a stray
//! connection, a wrong token, a failed request while an origin is down) is written a few
//! times per window, and the next line written says how many were left out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets through at most `per_window` lines per `window`; counts the rest.
#[derive(Debug)]
pub struct LogLimiter {
    per_window: u32,
    window: Duration,
    state: Mutex<State>,
    suppressed_total: AtomicU64,
}

#[derive(Debug)]
struct State {
    window_start: Option<Instant>,
    written: u32,
    /// Suppressed since the last line written.
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(per_window: u32, window: Duration) -> Self {
        LogLimiter {
            per_window,
            window,
            state: Mutex::new(State { window_start: None, written: 0, suppressed: 0 }),
            suppressed_total: AtomicU64::new(0),
        }
    }

    /// The usual limiter: five lines per ten seconds.
    pub const fn standard() -> Self {
        Self::new(5, Duration::from_secs(10))
    }

    /// `Some(n)` when a line may be written now, `n` being how many were suppressed since the
    /// last one written (log it as a field); `None` when this one is to be suppressed.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = state.window_start.is_none_or(|start| now.duration_since(start) >= self.window);
        if fresh {
            state.window_start = Some(now);
            state.written = 0;
        }
        if state.written < self.per_window {
            state.written += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            self.suppressed_total.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Lines suppressed since the process started (for metrics).
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total.load(Ordering::Relaxed)
    }
}

/// Cut a request field (path, host, header) for a log line: at most `max` bytes, on a
/// character boundary, with the original length appended when cut.
pub fn truncate_for_log(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…({} bytes)", &s[..end], s.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_few_through_per_window_and_counts_the_rest() {
        let limiter = LogLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.allow_at(t0), Some(0));
        assert_eq!(limiter.allow_at(t0), Some(0));
        for _ in 0..5 {
            assert_eq!(limiter.allow_at(t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(limiter.suppressed_total(), 5);
        // The next window's first line reports what was left out.
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(11)), Some(5));
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(11)), Some(0));
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(12)), None);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate_for_log("short", 10), "short");
        let long = "é".repeat(100);
        let cut = truncate_for_log(&long, 5);
        assert!(cut.starts_with("éé") && cut.ends_with("(200 bytes)"), "{cut}");
        assert!(cut.len() < 30);
    }
}
