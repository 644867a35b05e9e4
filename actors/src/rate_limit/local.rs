//! [`LocalLimiter`]: buckets in this process's memory. Exact for one node (the embedded
//! and in-memory stores); on a cluster each node would count alone, so a cluster on Redis
//! uses [`super::redis::RedisLimiter`].
//!
//! Bounded: at most [`LocalLimiter::capacity`] buckets. When a new bucket would pass it,
//! every full bucket (TAT in the past: the same as no bucket) is dropped first; if every
//! bucket is still in use, the ones closest to full are dropped until a quarter of the
//! room is free, so a flood of new clients costs a bounded amount of memory and only
//! forgives the clients that had the most left.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::gcra::{self, Decision, Limit};
use super::{Clock, RateError, RateLimiter};

/// Buckets kept at most by default (about 100 bytes each).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Buckets in memory, behind one mutex (each decision is a few arithmetic operations).
pub struct LocalLimiter {
    buckets: Mutex<HashMap<String, u64>>,
    capacity: usize,
    clock: Clock,
}

impl LocalLimiter {
    /// A limiter on the system clock with [`DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        Self::with(DEFAULT_CAPACITY, super::system_clock())
    }

    /// A limiter holding at most `capacity` buckets, reading time from `clock`.
    pub fn with(capacity: usize, clock: Clock) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            clock,
        }
    }

    /// The most buckets kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes room for one more bucket in `buckets` (see the module docs).
fn evict(buckets: &mut HashMap<String, u64>, capacity: usize, now: u64) {
    buckets.retain(|_, tat| *tat > now);
    if buckets.len() < capacity {
        return;
    }
    let keep = capacity - capacity / 4 - 1;
    let mut tats: Vec<u64> = buckets.values().copied().collect();
    let cut = tats.len() - keep;
    // The `cut`-th smallest TAT: buckets at or below it are the closest to full.
    let (_, &mut threshold, _) = tats.select_nth_unstable(cut - 1);
    let mut dropped = 0;
    buckets.retain(|_, tat| {
        if dropped < cut && *tat <= threshold {
            dropped += 1;
            false
        } else {
            true
        }
    });
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn take(&self, bucket: &str, limit: Limit, cost: u32) -> Result<Decision, RateError> {
        let now = (self.clock)();
        let mut buckets = self.buckets.lock().map_err(|_| RateError::Poisoned)?;
        let decision = gcra::decide(buckets.get(bucket).copied(), now, limit, cost);
        if decision.allowed {
            if let Some(tat) = buckets.get_mut(bucket) {
                *tat = decision.new_tat_us;
            } else {
                if buckets.len() >= self.capacity {
                    evict(&mut buckets, self.capacity, now);
                }
                buckets.insert(bucket.to_owned(), decision.new_tat_us);
            }
        }
        Ok(decision)
    }
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}
