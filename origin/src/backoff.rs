//! Reconnect delays: exponential, capped, with jitter so many origins restarting together do
//! not reconnect in lock-step; reset once a tunnel has been healthy for a while.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, next: initial }
    }

    /// The delay before the next attempt: a random value in [d/2, d] for the current step d,
    /// after which the step doubles up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Start again from the initial delay (after a tunnel that stayed up long enough).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut steps = Vec::new();
        for _ in 0..12 {
            steps.push(b.next_delay());
        }
        assert!(steps[0] >= Duration::from_millis(250) && steps[0] <= Duration::from_millis(500));
        assert!(steps[3] >= Duration::from_secs(2) && steps[3] <= Duration::from_secs(4));
        for s in &steps {
            assert!(*s <= Duration::from_secs(30), "{s:?} exceeds the cap");
        }
        assert!(steps[11] >= Duration::from_secs(15), "late steps sit at the cap: {:?}", steps[11]);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
