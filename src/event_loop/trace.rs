//! Watching the loop work: a record of each iteration of
//! [`run_once`](crate::BaseEventLoop::run_once), handed to an observer.
//!
//! Set one with [`BaseSelectorEventLoop::set_observer`](crate::BaseSelectorEventLoop::set_observer),
//! or run any program with `TULIP_TRACE=1` in its environment: every loop
//! it makes then prints one block per iteration on stderr, and its
//! selector prints each system call it makes (the selectors crate's
//! transcript). Without an observer the loop records nothing, and pays a
//! flag's test per step.
//!
//! ```text
//! #3  timeout 9.874 ms: the earliest timer, at +9.874 ms
//!     select waited 10.050 ms: timed out
//!     timer fired (scheduled at examples/timers.rs:31:8)
//!     ran examples/timers.rs:31:8 in 2.1 µs
//!     blocked 10.050 ms, running 0.031 ms
//! ```

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::os::unix::io::RawFd;
use std::panic::Location;
use std::time::{Duration, Instant};

use crate::selectors::Events;

/// Why `run_once` chose its timeout (asyncio's `_run_once`, step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutReason {
    /// Callbacks were ready: no waiting.
    CallbacksReady,
    /// `stop()` was called: this is the last iteration, no waiting.
    StopPending,
    /// Until the earliest timer, due at this instant.
    Timer(Instant),
    /// No callback, no timer: wait until I/O or another thread wakes the loop.
    NothingToWaitFor,
}

/// Why the wait for I/O ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitEnd {
    /// The zero-timeout `select` was spared (see the README's "One iteration").
    pub spared: bool,
    /// Fds with readers or writers were reported ready.
    pub fds_ready: bool,
    /// Another thread woke the loop (`call_soon_threadsafe`, a waker).
    pub woken: bool,
    /// A signal the loop handles arrived.
    pub signal: bool,
}

impl WaitEnd {
    /// Nothing was reported: the timeout ran out (or was zero).
    pub fn timed_out(&self) -> bool {
        !(self.spared || self.fds_ready || self.woken || self.signal)
    }
}

/// One callback the run phase ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRun {
    /// Where it was scheduled (for a reader or writer: where it was added).
    pub origin: &'static Location<'static>,
    /// How long it ran.
    pub took: Duration,
}

/// What one iteration of the loop did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Iteration {
    /// Its number, from 1 (`stats().iterations` after it).
    pub number: u64,
    /// The timeout `select` was given (`None`: no limit).
    pub timeout: Option<Duration>,
    /// Why that timeout.
    pub timeout_reason: Option<TimeoutReason>,
    /// Why the wait ended.
    pub wait_end: WaitEnd,
    /// The ready fds `select` reported, with their events.
    pub ready: Vec<(RawFd, Events)>,
    /// The timers that became due, by where they were scheduled.
    pub timers_fired: Vec<&'static Location<'static>>,
    /// The callbacks run, in order, with how long each took.
    pub callbacks: Vec<CallbackRun>,
    /// Time spent waiting in `select`.
    pub blocked: Duration,
    /// Time spent in the iteration otherwise.
    pub running: Duration,
}

impl Iteration {
    /// Empties the record for iteration `number`, keeping its allocations.
    pub(crate) fn begin(&mut self, number: u64) {
        self.number = number;
        self.timeout = None;
        self.timeout_reason = None;
        self.wait_end = WaitEnd::default();
        self.ready.clear();
        self.timers_fired.clear();
        self.callbacks.clear();
        self.blocked = Duration::ZERO;
        self.running = Duration::ZERO;
    }
}

/// Something that watches a loop's iterations.
pub trait LoopObserver {
    /// Called at the end of each iteration with what it did.
    fn iteration(&mut self, record: &Iteration);
}

/// Writes one readable block per iteration to a [`Write`] (stderr for
/// `TULIP_TRACE=1`). Write errors are ignored: tracing never stops a loop.
#[derive(Debug)]
pub struct WriteObserver<W: Write> {
    out: W,
    /// The instant timers' deadlines are shown relative to.
    start: Instant,
}

impl<W: Write> WriteObserver<W> {
    /// An observer writing to `out`.
    pub fn new(out: W) -> Self {
        WriteObserver { out, start: Instant::now() }
    }
}

impl WriteObserver<io::Stderr> {
    /// An observer writing to stderr.
    pub fn stderr() -> Self {
        WriteObserver::new(io::stderr())
    }
}

impl<W: Write> LoopObserver for WriteObserver<W> {
    fn iteration(&mut self, record: &Iteration) {
        let block = describe(record, self.start);
        let _ = self.out.write_all(block.as_bytes());
        let _ = self.out.flush();
    }
}

/// `12.345 ms`, `3.2 µs`: a duration as a reader takes it in.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_secs_f64() * 1e6;
        if self.0.is_zero() {
            f.write_str("0")
        } else if micros < 1000.0 {
            write!(f, "{micros:.1} µs")
        } else {
            write!(f, "{:.3} ms", micros / 1000.0)
        }
    }
}

/// The block [`WriteObserver`] writes for `record`.
pub fn describe(record: &Iteration, start: Instant) -> String {
    let mut text = format!("#{:<3} ", record.number);
    let timeout = match record.timeout {
        None => "none (block)".to_owned(),
        Some(d) => Millis(d).to_string(),
    };
    let why = match record.timeout_reason {
        Some(TimeoutReason::CallbacksReady) => "callbacks are ready".to_owned(),
        Some(TimeoutReason::StopPending) => "stop() is pending".to_owned(),
        Some(TimeoutReason::Timer(at)) => {
            format!("the earliest timer, at +{}", Millis(at.saturating_duration_since(start)))
        }
        Some(TimeoutReason::NothingToWaitFor) => "no callback or timer: wait for I/O".to_owned(),
        None => "?".to_owned(),
    };
    let _ = writeln!(text, "timeout {timeout}: {why}");
    let end = &record.wait_end;
    if end.spared {
        let _ = writeln!(text, "     select spared: callbacks are ready and only the waker is watched");
    } else {
        let mut causes = Vec::new();
        if end.fds_ready {
            causes.push("fds ready");
        }
        if end.woken {
            causes.push("woken by another thread");
        }
        if end.signal {
            causes.push("a signal");
        }
        if causes.is_empty() {
            causes.push("timed out");
        }
        let _ = writeln!(text, "     select waited {}: {}", Millis(record.blocked), causes.join(", "));
    }
    if !record.ready.is_empty() {
        let fds: Vec<String> =
            record.ready.iter().map(|(fd, events)| format!("fd {fd} {events:?}")).collect();
        let _ = writeln!(text, "     ready: {}", fds.join(", "));
    }
    for origin in &record.timers_fired {
        let _ = writeln!(text, "     timer fired (scheduled at {origin})");
    }
    for run in &record.callbacks {
        let _ = writeln!(text, "     ran {} in {}", run.origin, Millis(run.took));
    }
    let _ = writeln!(text, "     blocked {}, running {}", Millis(record.blocked), Millis(record.running));
    text
}

/// The observer `TULIP_TRACE` asks for: set and neither empty nor `0`.
pub(crate) fn from_environment() -> Option<Box<dyn LoopObserver>> {
    let value = std::env::var_os("TULIP_TRACE")?;
    if value.is_empty() || value == "0" {
        return None;
    }
    Some(Box::new(WriteObserver::stderr()))
}
