//! Per-key limits: a token bucket for requests per second with a burst, and
//! a count of requests in flight.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

/// A token bucket whose rate and burst are given at each take, so a policy
/// change applies at once without losing the bucket's state.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<(f64, Option<Instant>)>,
}

impl Default for TokenBucket {
    fn default() -> Self {
        TokenBucket {
            state: Mutex::new((0.0, None)),
        }
    }
}

impl TokenBucket {
    /// Take `cost` tokens at `now`, refilling at `rate` per second up to `burst`.
    /// On refusal, returns how many whole seconds to wait (at least 1).
    pub fn take(&self, cost: u32, rate: u32, burst: u32, now: Instant) -> Result<(), u64> {
        let rate = f64::from(rate.max(1));
        let burst = f64::from(burst.max(1));
        let cost = f64::from(cost);
        let mut state = self.state.lock();
        let (tokens, last) = &mut *state;
        *tokens = match last {
            None => burst,
            Some(last) => {
                (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst)
            }
        };
        *last = Some(now);
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            let missing = cost.min(burst) - *tokens;
            // Float to int: saturating, and at least one second.
            Err(((missing / rate).ceil() as u64).max(1))
        }
    }
}

/// What a key is using right now.
#[derive(Debug, Default)]
pub struct KeyUsage {
    /// Its request bucket.
    pub bucket: TokenBucket,
    inflight: AtomicU32,
}

/// A request slot of a key; released on drop.
#[derive(Debug)]
pub struct InflightGuard(Arc<KeyUsage>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl KeyUsage {
    /// Take one in-flight slot if fewer than `limit` are taken.
    pub fn enter(self: &Arc<Self>, limit: u32) -> Option<InflightGuard> {
        let previous = self.inflight.fetch_add(1, Ordering::AcqRel);
        if previous >= limit {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InflightGuard(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let bucket = TokenBucket::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(bucket.take(1, 2, 5, t0).is_ok());
        }
        assert_eq!(bucket.take(1, 2, 5, t0), Err(1));
        assert!(bucket
            .take(1, 2, 5, t0 + Duration::from_millis(500))
            .is_ok());
        assert!(bucket
            .take(1, 2, 5, t0 + Duration::from_millis(500))
            .is_err());
        assert_eq!(
            bucket.take(4, 1, 5, t0 + Duration::from_millis(500)),
            Err(4)
        );
    }

    #[test]
    fn concurrency_is_bounded_and_released() {
        let usage = Arc::new(KeyUsage::default());
        let a = usage.enter(2).expect("first");
        let _b = usage.enter(2).expect("second");
        assert!(usage.enter(2).is_none());
        drop(a);
        assert!(usage.enter(2).is_some());
    }
}
