//! A criterion [`Measurement`] that reads the benchmarking thread's CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`: user + system time of this thread only)
//! instead of the wall clock.
//!
//! On a machine shared with compilers and test suites, wall time counts every
//! moment the scheduler gives our core to someone else, and two benches run a
//! minute apart see different neighbours: ratios between them swing by ±20%.
//! The thread's CPU time leaves those moments out. For the loops measured
//! here, which never block (every wait has a ready fd or a zero timeout), it
//! equals wall time on an idle machine; what it cannot remove is the
//! neighbours' effect on caches and on the kernel's own locks.
//!
//! Bench files use it with `mod cpu_time;` and pick the clock with
//! [`Clock::from_env`]: `TULIP_BENCH_CLOCK=wall` selects criterion's own
//! wall clock.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

/// Which clock a bench run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// This thread's CPU time (the default).
    ThreadCpu,
    /// Criterion's `WallTime`.
    Wall,
}

impl Clock {
    /// `TULIP_BENCH_CLOCK=wall` → [`Clock::Wall`]; unset or `cpu` → [`Clock::ThreadCpu`].
    ///
    /// # Panics
    ///
    /// On any other value, so that a typo does not silently pick a clock.
    pub fn from_env() -> Clock {
        match std::env::var("TULIP_BENCH_CLOCK").as_deref() {
            Err(_) | Ok("cpu") => Clock::ThreadCpu,
            Ok("wall") => Clock::Wall,
            Ok(other) => panic!("TULIP_BENCH_CLOCK={other:?}: expected \"cpu\" or \"wall\""),
        }
    }
}

/// The CPU time this thread has used so far.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the call.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(ret, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Criterion measurement over [`thread_cpu_time`], in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

/// Formats nanosecond values and per-second throughputs as criterion's wall
/// clock does, so both clocks print alike.
struct Nanoseconds;

/// Picks the unit for `typical` among `units` (each 1000× the previous) and
/// returns its name and the divisor that brings values into it.
fn scale(typical: f64, units: &[&'static str]) -> (&'static str, f64) {
    let mut divisor = 1.0;
    for (i, unit) in units.iter().enumerate() {
        if typical < divisor * 1000.0 || i == units.len() - 1 {
            return (unit, divisor);
        }
        divisor *= 1000.0;
    }
    unreachable!("units is never empty")
}

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (unit, divisor) = scale(typical_ns, &["ns", "µs", "ms", "s"]);
        values.iter_mut().for_each(|v| *v /= divisor);
        unit
    }

    fn scale_throughputs(
        &self,
        typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per_iteration, units): (f64, &[&'static str]) = match *throughput {
            Throughput::Elements(n) => (n as f64, &["elem/s", "Kelem/s", "Melem/s", "Gelem/s"]),
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                (n as f64, &["B/s", "KB/s", "MB/s", "GB/s"])
            }
        };
        let (unit, divisor) = scale(per_iteration * 1e9 / typical_ns, units);
        values.iter_mut().for_each(|v| *v = per_iteration * 1e9 / *v / divisor);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
