//! Timeout conversions shared by the backends. Kernels take milliseconds or a
//! `timespec`/`timeval`; a `Duration` must be rounded **up** (never wake
//! early) and clamped (never overflow, never hit a kernel's "too large" EINVAL).

use std::time::Duration;

use libc::c_int;

/// The longest single wait any backend asks of its kernel. Some BSDs reject
/// `select`/`kevent` timeouts above 10^8 seconds with `EINVAL`; the shared
/// wait loop repeats the call when a longer timeout was requested.
pub const LONGEST_WAIT: Duration = Duration::from_secs(100_000_000);

/// `timeout` as the millisecond argument of `poll(2)` and `epoll_wait(2)`:
/// `-1` for "block", rounded up to the next millisecond, at most `c_int::MAX`.
///
/// ```
/// use std::time::Duration;
/// use tulip_selectors::mechanism::as_millis_rounded_up;
/// assert_eq!(as_millis_rounded_up(None), -1);
/// assert_eq!(as_millis_rounded_up(Some(Duration::from_micros(1))), 1);
/// assert_eq!(as_millis_rounded_up(Some(Duration::MAX)), i32::MAX);
/// ```
#[inline]
pub fn as_millis_rounded_up(timeout: Option<Duration>) -> c_int {
    match timeout {
        None => -1,
        Some(d) => {
            // In u64, not `as_millis`'s u128: this runs on every `select`.
            // Beyond c_int::MAX ms (~24.8 days) the answer is clamped anyway.
            const MAX_SECS: u64 = c_int::MAX as u64 / 1000;
            let seconds = d.as_secs();
            if seconds > MAX_SECS {
                return c_int::MAX;
            }
            let millis = seconds * 1000 + u64::from(d.subsec_nanos().div_ceil(1_000_000));
            c_int::try_from(millis).unwrap_or(c_int::MAX)
        }
    }
}

/// `timeout` clamped to [`LONGEST_WAIT`], for kernels that take seconds plus
/// a fraction (`select`'s `timeval`, `kevent`'s `timespec`).
#[inline]
pub fn clamped(timeout: Duration) -> Duration {
    timeout.min(LONGEST_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_up_never_down() {
        assert_eq!(as_millis_rounded_up(Some(Duration::ZERO)), 0);
        assert_eq!(as_millis_rounded_up(Some(Duration::from_nanos(1))), 1);
        assert_eq!(as_millis_rounded_up(Some(Duration::from_millis(5))), 5);
        assert_eq!(as_millis_rounded_up(Some(Duration::from_micros(5_001))), 6);
        assert_eq!(as_millis_rounded_up(Some(Duration::from_secs(1))), 1000);
        assert_eq!(as_millis_rounded_up(Some(Duration::new(1, 999_999_999))), 2000);
        assert_eq!(as_millis_rounded_up(Some(Duration::new(2_147_483, 647_000_000))), c_int::MAX);
        assert_eq!(as_millis_rounded_up(Some(Duration::new(2_147_483, 647_000_001))), c_int::MAX);
        assert_eq!(as_millis_rounded_up(Some(Duration::new(2_147_483, 646_000_001))), c_int::MAX);
        assert_eq!(as_millis_rounded_up(Some(Duration::new(2_147_483, 646_000_000))), c_int::MAX - 1);
    }

    #[test]
    fn huge_timeouts_clamp_instead_of_overflowing() {
        assert_eq!(as_millis_rounded_up(Some(Duration::from_secs(u64::MAX))), c_int::MAX);
        assert_eq!(clamped(Duration::MAX), LONGEST_WAIT);
        assert_eq!(clamped(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
