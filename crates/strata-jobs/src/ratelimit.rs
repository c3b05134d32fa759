//! QEMU's rate limiter (`include/qemu/ratelimit.h`), on a caller-supplied
//! virtual clock in nanoseconds.

/// `BLOCK_JOB_SLICE_TIME`: block jobs account their speed in 100 ms slices.
pub const BLOCK_JOB_SLICE_TIME: u64 = 100_000_000;

const NANOSECONDS_PER_SECOND: f64 = 1_000_000_000.0;

/// A token bucket in slices: `speed` bytes per second become a quota of
/// `max(speed * slice / 1e9, 1)` bytes per slice. Speed 0 means unlimited.
///
/// ```
/// use strata_jobs::{RateLimit, BLOCK_JOB_SLICE_TIME};
///
/// let mut limit = RateLimit::default();
/// limit.set_speed(1024, BLOCK_JOB_SLICE_TIME); // 102 bytes per slice
/// assert_eq!(limit.calculate_delay(0, 0), 0);
/// // A 512 KiB chunk is charged after it was copied...
/// limit.calculate_delay(512 * 1024, 0);
/// // ...so the next sleep lasts about 512 s.
/// let delay = limit.calculate_delay(0, 0);
/// assert_eq!(delay, 514_007_843_137);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateLimit {
    slice_start_time: u64,
    slice_end_time: u64,
    slice_quota: u64,
    slice_ns: u64,
    dispatched: u64,
}

impl RateLimit {
    /// `ratelimit_set_speed`: the quota per slice; 0 disables throttling.
    pub fn set_speed(&mut self, speed: u64, slice_ns: u64) {
        self.slice_ns = slice_ns;
        self.slice_quota = if speed == 0 {
            0
        } else {
            // QEMU computes in double and truncates on the store to uint64_t.
            (speed as f64 * slice_ns as f64 / NANOSECONDS_PER_SECOND).max(1.0) as u64
        };
    }

    /// Bytes allowed per slice; 0 when unlimited.
    pub fn slice_quota(&self) -> u64 {
        self.slice_quota
    }

    /// `ratelimit_calculate_delay`: records `n` dispatched units at `now_ns`
    /// and returns how long to wait before the next request (0: go on).
    /// Going over the quota is allowed; the slice is stretched to match.
    pub fn calculate_delay(&mut self, n: u64, now_ns: u64) -> u64 {
        if self.slice_quota == 0 {
            return 0;
        }
        if self.slice_end_time < now_ns {
            // The previous (possibly stretched) slice is over: start afresh.
            self.slice_start_time = now_ns;
            self.slice_end_time = now_ns + self.slice_ns;
            self.dispatched = 0;
        }
        self.dispatched = self.dispatched.saturating_add(n);
        if self.dispatched < self.slice_quota {
            return 0;
        }
        let delay_slices = self.dispatched as f64 / self.slice_quota as f64;
        self.slice_end_time = self.slice_start_time + (delay_slices * self.slice_ns as f64) as u64;
        self.slice_end_time.saturating_sub(now_ns)
    }
}
