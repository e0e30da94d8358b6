//! Loop-semantics tests in the manner of CPython's
//! `Lib/test/test_asyncio/test_events.py`, `test_base_events.py` and
//! `test_selector_events.py`, written against the Layer 2 API contract
//! only: every name comes from the crate root (`tulip::…`).
//!
//! Each generic case runs on `SelectorEventLoop::new()` and on
//! `tulip::new_event_loop(b)` for every `b` in `Backend::available()`; the
//! cases that need a selector of their own (failing `select` or `modify`)
//! wrap each available backend in one. Signal cases are serialised by a
//! static mutex: signal dispositions are process-wide.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::raw::c_int;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

#[path = "common/faulty.rs"]
mod faulty;

use faulty::{faulty_loop, Faulty};
use tulip::selectors::{Backend, DefaultSelector, Selector};
use tulip::{
    AbstractEventLoop, BaseSelectorEventLoop, DynSelectorEventLoop, ExceptionContext, Handle, IoHandlers,
    LoopHandle, LoopStats, SelectorEventLoop, TimerHandle,
};

/// The longest any one loop run here may take before the watchdog stops it.
const LIMIT: Duration = Duration::from_secs(5);
/// Generous slack for "not too late": the machine may be busy.
const LATE: Duration = Duration::from_secs(2);

// ------------------------------------------------------------------ harness

/// Asserts that `result` failed with `kind` and a message containing `text`.
#[track_caller]
fn assert_fails<T: std::fmt::Debug>(result: io::Result<T>, kind: io::ErrorKind, text: &str) {
    let err = result.expect_err("expected an error");
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.to_string().contains(text), "{err:?} should say {text:?}");
}

/// `per_loop!(a, b)` makes `a::default_loop` (on `SelectorEventLoop::new()`)
/// and `a::every_backend` (on `tulip::new_event_loop(b)` for each available
/// backend), each calling `a(loop)`.
macro_rules! per_loop {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn default_loop() {
                super::$case(tulip::SelectorEventLoop::new().expect("SelectorEventLoop::new"));
            }
            #[test]
            fn every_backend() {
                for backend in tulip::selectors::Backend::available() {
                    eprintln!("backend: {backend}");
                    super::$case(tulip::new_event_loop(backend).expect("new_event_loop"));
                }
            }
        }
    )*};
}

/// As `per_loop!`, holding the signal lock from before the loop is made
/// until after it is dropped.
macro_rules! per_loop_serial {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn default_loop() {
                let _guard = super::signal_lock();
                super::$case(tulip::SelectorEventLoop::new().expect("SelectorEventLoop::new"));
            }
            #[test]
            fn every_backend() {
                let _guard = super::signal_lock();
                for backend in tulip::selectors::Backend::available() {
                    eprintln!("backend: {backend}");
                    super::$case(tulip::new_event_loop(backend).expect("new_event_loop"));
                }
            }
        }
    )*};
}

/// `per_backend!(a)` makes `a()` run `a(backend)` for each available backend.
macro_rules! per_backend {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn every_backend() {
                for backend in tulip::selectors::Backend::available() {
                    eprintln!("backend: {backend}");
                    super::$case(backend);
                }
            }
        }
    )*};
}

/// Serialises the cases that touch signal dispositions.
fn signal_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `lp` until it stops; a watchdog thread stops it after [`LIMIT`]
/// and the test then fails instead of hanging.
fn run_bounded<L: AbstractEventLoop>(lp: &L) {
    let handle = lp.handle();
    let (done, wait) = mpsc::channel::<()>();
    let fired = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&fired);
    let watchdog = thread::spawn(move || {
        if wait.recv_timeout(LIMIT) == Err(mpsc::RecvTimeoutError::Timeout) {
            flag.store(true, Ordering::SeqCst);
            while handle.stop().is_ok() && wait.recv_timeout(Duration::from_millis(50)).is_err() {}
        }
    });
    let outcome = lp.run_forever();
    drop(done);
    watchdog.join().unwrap();
    outcome.expect("run_forever");
    assert!(!fired.load(Ordering::SeqCst), "the watchdog had to stop the loop");
}

/// `stop()` then `run_forever()`: exactly one iteration.
fn run_once<L: AbstractEventLoop>(lp: &L) {
    lp.stop();
    run_bounded(lp);
}

type Log = Rc<RefCell<Vec<&'static str>>>;

fn log() -> Log {
    Rc::default()
}

fn push<L>(log: &Log, entry: &'static str) -> impl FnOnce(&L) + 'static {
    let log = Rc::clone(log);
    move |_: &L| log.borrow_mut().push(entry)
}

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// A pair whose second end has one byte waiting.
fn readable_pair() -> (UnixStream, UnixStream) {
    let (mut a, b) = pair();
    a.write_all(b"x").unwrap();
    (a, b)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn assert_panics_with(expected: &str, f: impl FnOnce()) {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    let message = panic_message(payload.as_ref());
    assert!(message.contains(expected), "panic message {message:?} does not contain {expected:?}");
}

/// What an exception handler was told, copied out field by field.
#[derive(Debug, Clone)]
struct Seen {
    message: String,
    panic: Option<String>,
    origin: Option<&'static Location<'static>>,
}

fn record_exceptions<L: AbstractEventLoop>(lp: &L) -> Rc<RefCell<Vec<Seen>>> {
    let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
    let s = Rc::clone(&seen);
    lp.set_exception_handler(Some(Box::new(move |_: &L, ctx: &ExceptionContext| {
        s.borrow_mut().push(Seen {
            message: ctx.message.clone(),
            panic: ctx.panic.clone(),
            origin: ctx.origin,
        });
    })));
    seen
}

// ------------------------------------------------------ contract signatures

fn assert_clone<T: Clone>() {}
fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

/// Every Layer 2 contract signature, spelled out: drift fails to compile.
#[allow(clippy::type_complexity)]
fn pin_loop_signatures<L: AbstractEventLoop>() {
    let _: fn(&L) -> io::Result<()> = L::run_forever;
    let _: fn(&L) = L::stop;
    let _: fn(&L) -> bool = L::is_running;
    let _: fn(&L) -> io::Result<()> = L::close;
    let _: fn(&L) -> bool = L::is_closed;
    let _: fn(&L) -> Instant = L::time;
    let _: fn(&L, fn(&L)) -> Handle = L::call_soon;
    let _: fn(&L, Duration, fn(&L)) -> TimerHandle = L::call_later;
    let _: fn(&L, Instant, fn(&L)) -> TimerHandle = L::call_at;
    let _: fn(&L, fn(&L)) -> Handle = L::call_soon_threadsafe;
    let _: fn(&L) -> LoopHandle<L> = L::handle;
    let _: fn(&L, RawFd, fn(&L)) -> io::Result<()> = L::add_reader;
    let _: fn(&L, RawFd) -> io::Result<bool> = L::remove_reader;
    let _: fn(&L, RawFd, fn(&L)) -> io::Result<()> = L::add_writer;
    let _: fn(&L, RawFd) -> io::Result<bool> = L::remove_writer;
    let _: fn(&L, c_int, fn(&L)) -> io::Result<()> = L::add_signal_handler;
    let _: fn(&L, c_int) -> io::Result<bool> = L::remove_signal_handler;
    let _: fn(&L, Option<Box<dyn Fn(&L, &ExceptionContext)>>) = L::set_exception_handler;
    let _: fn(&L, bool) = L::set_debug;
    let _: fn(&L) -> bool = L::get_debug;
    let _: fn(&L) -> LoopStats = L::stats;
    let _: fn(&LoopHandle<L>, fn(&L)) -> io::Result<()> = LoopHandle::<L>::call_soon_threadsafe;
    let _: fn(&LoopHandle<L>) -> io::Result<()> = LoopHandle::<L>::stop;
    assert_send_sync_clone::<LoopHandle<L>>();
}

#[test]
#[allow(clippy::type_complexity)]
fn contract_signatures_are_as_written() {
    pin_loop_signatures::<SelectorEventLoop>();
    pin_loop_signatures::<DynSelectorEventLoop>();
    pin_loop_signatures::<BaseSelectorEventLoop<Faulty>>();

    let _: fn() -> io::Result<SelectorEventLoop> = SelectorEventLoop::new;
    let _: fn() -> io::Result<BaseSelectorEventLoop<DefaultSelector<IoHandlers>>> = SelectorEventLoop::new;
    let _: fn(Faulty) -> io::Result<BaseSelectorEventLoop<Faulty>> =
        BaseSelectorEventLoop::<Faulty>::with_selector;
    let _: fn(
        Box<dyn Selector<IoHandlers>>,
    ) -> io::Result<BaseSelectorEventLoop<Box<dyn Selector<IoHandlers>>>> =
        DynSelectorEventLoop::with_selector;
    let _: fn(Backend) -> io::Result<DynSelectorEventLoop> = tulip::new_event_loop;
    let _: fn(Backend) -> io::Result<BaseSelectorEventLoop<Box<dyn Selector<IoHandlers>>>> =
        tulip::new_event_loop;
    let _: fn() -> Vec<Backend> = Backend::available;

    let _: fn(&Handle) = Handle::cancel;
    let _: fn(&Handle) -> bool = Handle::cancelled;
    let _: fn(&TimerHandle) = TimerHandle::cancel;
    let _: fn(&TimerHandle) -> bool = TimerHandle::cancelled;
    let _: fn(&TimerHandle) -> Instant = TimerHandle::when;
    assert_clone::<Handle>();
    assert_clone::<TimerHandle>();

    fn context_fields(ctx: &ExceptionContext) {
        let _: &String = &ctx.message;
        let _: &Option<String> = &ctx.panic;
        let _: &Option<&'static Location<'static>> = &ctx.origin;
    }
    fn stats_fields(stats: &LoopStats) {
        let _: u64 = stats.iterations;
        let _: u64 = stats.callbacks_run;
        let _: u64 = stats.select_calls;
        let _: u64 = stats.events_received;
        let _: usize = stats.timers_in_heap;
    }
    let _ = (context_fields, stats_fields);

    // The contract names exist and a loop is made by each constructor.
    let lp = SelectorEventLoop::new().unwrap();
    stats_fields(&lp.stats());
    lp.close().unwrap();
    for backend in Backend::available() {
        let lp: DynSelectorEventLoop = tulip::new_event_loop(backend).unwrap();
        lp.close().unwrap();
    }
}

// ------------------------------------------------------- call_soon & timers

/// test_events.test_call_soon: the callback gets the loop and can stop it.
fn call_soon_runs_and_may_stop_the_loop<L: AbstractEventLoop>(lp: L) {
    let results = Rc::new(RefCell::new(Vec::new()));
    let r = Rc::clone(&results);
    lp.call_soon(move |lp: &L| {
        assert!(lp.is_running());
        r.borrow_mut().push(("hello", "world"));
        lp.stop();
    });
    assert!(!lp.is_running());
    run_bounded(&lp);
    assert!(!lp.is_running());
    assert_eq!(*results.borrow(), [("hello", "world")]);
}

fn call_soon_order_is_fifo_across_nested_scheduling<L: AbstractEventLoop>(lp: L) {
    let order = log();
    let o = Rc::clone(&order);
    lp.call_soon(move |lp: &L| {
        o.borrow_mut().push("a");
        // Scheduled from inside: after everything queued before it.
        lp.call_soon(push(&o, "c"));
        lp.call_soon(|lp: &L| lp.stop());
    });
    lp.call_soon(push(&order, "b"));
    run_bounded(&lp);
    assert_eq!(*order.borrow(), ["a", "b", "c"]);
}

/// test_events.test_call_later and test_base_events.test_time_and_call_at:
/// never early, in deadline order, equal deadlines in scheduling order.
fn timers_are_never_early_and_in_deadline_order<L: AbstractEventLoop>(lp: L) {
    let fired = Rc::new(RefCell::new(Vec::new()));
    let delays_ms = [40u64, 10, 25, 10, 0, 25];
    let start = lp.time();
    let mut deadlines = Vec::new();
    for (i, &ms) in delays_ms.iter().enumerate() {
        let fired = Rc::clone(&fired);
        let scheduled = Instant::now();
        let timer = lp.call_later(Duration::from_millis(ms), move |lp: &L| {
            fired.borrow_mut().push((i, lp.time().duration_since(scheduled)));
        });
        deadlines.push((timer.when(), i));
    }
    let when = start + Duration::from_millis(60);
    let f = Rc::clone(&fired);
    let at = lp.call_at(when, move |lp: &L| {
        assert!(lp.time() >= when, "call_at ran early");
        f.borrow_mut().push((99, lp.time().duration_since(when)));
        lp.stop();
    });
    assert_eq!(at.when(), when);
    run_bounded(&lp);
    let fired = fired.borrow();
    let order: Vec<usize> = fired.iter().map(|&(i, _)| i).collect();
    // Deadline order, equal deadlines in scheduling order: [4, 1, 3, 2, 5,
    // 0, 99] when scheduling takes no time; `call_later` counts from its
    // call, so a slow machine may shift the deadlines.
    deadlines.push((when, 99));
    deadlines.sort();
    let expected: Vec<usize> = deadlines.iter().map(|&(_, i)| i).collect();
    assert_eq!(order, expected);
    for &(i, waited) in fired.iter().filter(|(i, _)| *i != 99) {
        let delay = Duration::from_millis(delays_ms[i]);
        assert!(waited >= delay, "timer {i} ran after {waited:?}, before its {delay:?}");
        assert!(waited < delay + LATE, "timer {i} ran {waited:?} late");
    }
    assert!(lp.time().duration_since(start) < Duration::from_millis(60) + LATE);
}

/// Deadlines equal to the nanosecond: scheduling order, whether scheduled
/// with `call_at` or interleaved with earlier ones.
fn equal_deadlines_run_in_scheduling_order<L: AbstractEventLoop>(lp: L) {
    let order = Rc::new(RefCell::new(Vec::new()));
    let when = lp.time() + Duration::from_millis(5);
    for i in 0..50 {
        let o = Rc::clone(&order);
        lp.call_at(when, move |_: &L| o.borrow_mut().push(i));
        if i % 10 == 0 {
            let o = Rc::clone(&order);
            lp.call_at(when - Duration::from_millis(1), move |_: &L| o.borrow_mut().push(1000 + i));
        }
    }
    lp.call_at(when, |lp: &L| lp.stop());
    run_bounded(&lp);
    let mut expected: Vec<i32> = (0..50).step_by(10).map(|i| 1000 + i).collect();
    expected.extend(0..50);
    assert_eq!(*order.borrow(), expected);
}

/// test_base_events.test_call_later_negative_delays: deadlines in the
/// past run at once, in deadline order.
fn deadlines_in_the_past_run_in_deadline_order<L: AbstractEventLoop>(lp: L) {
    let calls = log();
    let now = lp.time();
    lp.call_at(now - Duration::from_millis(1), push(&calls, "a"));
    lp.call_at(now - Duration::from_millis(2), push(&calls, "b"));
    let started = Instant::now();
    run_once(&lp);
    assert!(started.elapsed() < LATE);
    assert_eq!(*calls.borrow(), ["b", "a"]);
}

/// `time()` reads the monotonic clock, and `call_later` counts from the call
/// (not from when the loop starts).
fn time_is_monotonic_and_call_later_counts_from_the_call<L: AbstractEventLoop>(lp: L) {
    let t1 = lp.time();
    thread::sleep(Duration::from_millis(2));
    let t2 = lp.time();
    assert!(t2 > t1, "time() must move");
    let before = Instant::now();
    let handle = lp.call_later(Duration::from_millis(60), |lp: &L| lp.stop());
    assert!(handle.when() >= before + Duration::from_millis(60));
    assert!(handle.when() <= Instant::now() + Duration::from_millis(60));
    thread::sleep(Duration::from_millis(40));
    run_bounded(&lp);
    let elapsed = before.elapsed();
    assert!(elapsed >= Duration::from_millis(60));
    // Counted from the call: not 40 + 60 ms.
    assert!(elapsed < Duration::from_millis(60) + LATE);
}

/// Cancelled before their iteration, `call_soon`, `call_later` and
/// `call_at` callbacks never run; `cancelled()` says so at once.
fn cancel_before_run<L: AbstractEventLoop>(lp: L) {
    let calls = log();
    let soon = lp.call_soon(push(&calls, "soon"));
    let later = lp.call_later(Duration::ZERO, push(&calls, "later"));
    let at = lp.call_at(lp.time(), push(&calls, "at"));
    let threadsafe = lp.call_soon_threadsafe(|_: &L| panic!("cancelled"));
    let kept = lp.call_soon(push(&calls, "kept"));
    for h in [&soon, &threadsafe] {
        assert!(!h.cancelled());
        h.cancel();
        assert!(h.cancelled());
    }
    for h in [&later, &at] {
        assert!(!h.cancelled());
        h.cancel();
        assert!(h.cancelled());
    }
    // A clone shares the state.
    let clone = later.clone();
    assert!(clone.cancelled());
    let seen = record_exceptions(&lp);
    run_once(&lp);
    assert_eq!(*calls.borrow(), ["kept"]);
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
    assert!(!kept.cancelled());
    // Cancelling after the run is harmless, and `cancelled()` is then true.
    kept.cancel();
    assert!(kept.cancelled());
}

/// A timer cancelled by a callback that runs before it in the same
/// iteration (both due) does not run.
fn a_timer_cancelled_by_an_earlier_due_timer_does_not_run<L: AbstractEventLoop>(lp: L) {
    let calls = log();
    let when = lp.time();
    let victim: Rc<RefCell<Option<TimerHandle>>> = Rc::default();
    let v = Rc::clone(&victim);
    let c = Rc::clone(&calls);
    lp.call_at(when, move |_: &L| {
        c.borrow_mut().push("first");
        v.borrow().as_ref().unwrap().cancel();
    });
    *victim.borrow_mut() = Some(lp.call_at(when, push(&calls, "victim")));
    thread::sleep(Duration::from_millis(1));
    run_once(&lp);
    assert_eq!(*calls.borrow(), ["first"]);
    assert!(victim.borrow().as_ref().unwrap().cancelled());
}

/// test_base_events.test__run_once_cancelled_event_cleanup, through
/// `stats().timers_in_heap`: cancelled timers at the head are dropped by the
/// next iteration; once they are over half of more than 100, all go.
fn cancelled_timers_are_purged_as_asyncio_does<L: AbstractEventLoop>(lp: L) {
    let cb = |_: &L| {};
    lp.call_later(Duration::from_secs(3000), cb);
    for _ in 0..2 {
        lp.call_later(Duration::from_secs(3600), cb).cancel();
    }
    for _ in 0..2 {
        lp.call_later(Duration::from_secs(100), cb).cancel();
    }
    assert_eq!(lp.stats().timers_in_heap, 5, "cancelled timers count until purged");
    run_once(&lp);
    assert_eq!(lp.stats().timers_in_heap, 3, "the two cancelled at the head are gone");
    for _ in 0..49 {
        lp.call_later(Duration::from_secs(3600), cb);
    }
    for _ in 0..51 {
        lp.call_later(Duration::from_secs(3600), cb).cancel();
    }
    assert_eq!(lp.stats().timers_in_heap, 103);
    run_once(&lp);
    assert_eq!(lp.stats().timers_in_heap, 50, "53 cancelled of 103: all purged");
}

/// Scheduling and cancelling many timers keeps the heap bounded, with
/// iterations in between or without any.
fn timers_in_heap_stay_bounded<L: AbstractEventLoop>(lp: L) {
    let mut max_seen = 0;
    for _ in 0..50 {
        for _ in 0..1000 {
            lp.call_later(Duration::from_secs(3600), |_: &L| {}).cancel();
        }
        max_seen = max_seen.max(lp.stats().timers_in_heap);
        run_once(&lp);
    }
    assert!(max_seen <= 1000, "heap reached {max_seen}");
    assert_eq!(lp.stats().timers_in_heap, 0);

    // No iteration at all: still well below the count scheduled.
    let n = 300_000;
    let mut max_seen = 0;
    for _ in 0..n {
        lp.call_later(Duration::from_secs(3600), |_: &L| {}).cancel();
        max_seen = max_seen.max(lp.stats().timers_in_heap);
    }
    assert!(max_seen < n / 2, "heap reached {max_seen} of {n}");
    run_once(&lp);
    assert_eq!(lp.stats().timers_in_heap, 0);
}

/// Huge delays: `Duration::MAX` in `call_later` and a far-future `call_at`
/// neither panic nor overflow, never fire, and don't block other timers.
fn huge_delays_neither_panic_nor_overflow<L: AbstractEventLoop>(lp: L) {
    let fired = Rc::new(Cell::new(0));
    let f = Rc::clone(&fired);
    let max = lp.call_later(Duration::MAX, move |_: &L| f.set(f.get() + 1));
    let f = Rc::clone(&fired);
    let big = lp.call_later(Duration::from_secs(u64::MAX / 2), move |_: &L| f.set(f.get() + 1));
    let far = lp.time().checked_add(Duration::from_secs(1 << 40)).expect("a far instant");
    let f = Rc::clone(&fired);
    let at = lp.call_at(far, move |_: &L| f.set(f.get() + 1));
    assert!(max.when() > lp.time() + Duration::from_secs(3600 * 24 * 365));
    assert!(big.when() > lp.time() + Duration::from_secs(3600 * 24 * 365));
    assert_eq!(at.when(), far);
    assert_eq!(lp.stats().timers_in_heap, 3);
    lp.call_later(Duration::from_millis(10), |lp: &L| lp.stop());
    run_bounded(&lp);
    assert_eq!(fired.get(), 0);

    // Only the huge timers left: the loop blocks with a huge timeout
    // (clamped, not overflowed) until another thread stops it.
    let handle = lp.handle();
    // Before the stopper starts its 30 ms, or it may be done before we look.
    let started = Instant::now();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        handle.stop().unwrap();
    });
    run_bounded(&lp);
    stopper.join().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(fired.get(), 0);
    assert_eq!(lp.stats().timers_in_heap, 3);
    max.cancel();
    big.cancel();
    at.cancel();
    run_once(&lp);
    assert_eq!(lp.stats().timers_in_heap, 0);
}

/// test_events.test_timeout_rounding: a chain of ever smaller sleeps takes
/// few iterations (the selector's rounding does not make the loop spin).
fn tiny_timeouts_do_not_spin<L: AbstractEventLoop>(lp: L) {
    fn chain<L: AbstractEventLoop>(lp: &L, mut delays: Vec<Duration>) {
        match delays.pop() {
            None => lp.stop(),
            Some(delay) => {
                lp.call_later(delay, move |lp: &L| chain(lp, delays));
            }
        }
    }
    let delays: Vec<Duration> =
        [10_000_000u64, 100_000, 1000, 10, 0].iter().rev().map(|&ns| Duration::from_nanos(ns)).collect();
    let before = lp.stats().iterations;
    chain(&lp, delays);
    run_bounded(&lp);
    let iterations = lp.stats().iterations - before;
    assert!(iterations <= 20, "{iterations} iterations for 5 sleeps");
}

// ------------------------------------------------------ run_forever & stop

fn run_forever_is_not_reentrant<L: AbstractEventLoop>(lp: L) {
    let outcome: Rc<RefCell<Option<io::Result<()>>>> = Rc::default();
    let o = Rc::clone(&outcome);
    lp.call_soon(move |lp: &L| {
        *o.borrow_mut() = Some(lp.run_forever());
        assert!(lp.is_running(), "the failed nested call leaves the outer run alone");
    });
    let after = Rc::new(Cell::new(false));
    let a = Rc::clone(&after);
    lp.call_later(Duration::from_millis(5), move |lp: &L| {
        a.set(true);
        lp.stop();
    });
    run_bounded(&lp);
    assert_fails(
        outcome.borrow_mut().take().expect("the callback ran"),
        io::ErrorKind::Other,
        "already running",
    );
    assert!(after.get(), "the outer run went on");
    assert!(!lp.is_running());
}

/// A callback of one loop may run another loop to completion (only the
/// same loop is not re-entrant).
fn a_callback_may_run_another_loop<L: AbstractEventLoop>(lp: L) {
    let inner = SelectorEventLoop::new().unwrap();
    let calls = log();
    let c = Rc::clone(&calls);
    lp.call_soon(move |outer: &L| {
        let c2 = Rc::clone(&c);
        inner.call_soon(move |inner| {
            c2.borrow_mut().push("inner");
            inner.stop();
        });
        assert!(inner.run_forever().is_ok());
        assert!(outer.is_running() && !inner.is_running());
        inner.close().unwrap();
        c.borrow_mut().push("outer");
        outer.stop();
    });
    run_bounded(&lp);
    assert_eq!(*calls.borrow(), ["inner", "outer"]);
}

/// test_base_events.test_close / test_events.test_close: close is
/// idempotent, and a closed loop refuses to run.
fn close_is_idempotent_and_a_closed_loop_does_not_run<L: AbstractEventLoop>(lp: L) {
    assert!(!lp.is_closed());
    lp.close().unwrap();
    assert!(lp.is_closed());
    lp.close().unwrap();
    lp.close().unwrap();
    assert!(lp.is_closed());
    let err = lp.run_forever().expect_err("run_forever on a closed loop");
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(!lp.is_running());
    // stop() on a closed loop is harmless.
    lp.stop();
}

/// test_events.test_close_running_event_loop.
fn close_while_running_fails<L: AbstractEventLoop>(lp: L) {
    let outcome: Rc<RefCell<Option<io::Result<()>>>> = Rc::default();
    let o = Rc::clone(&outcome);
    lp.call_soon(move |lp: &L| {
        *o.borrow_mut() = Some(lp.close());
        assert!(!lp.is_closed());
        lp.stop();
    });
    run_bounded(&lp);
    assert_fails(
        outcome.borrow_mut().take().unwrap(),
        io::ErrorKind::Other,
        "cannot close a running event loop",
    );
    assert!(!lp.is_closed());
    lp.close().unwrap();
    assert!(lp.is_closed());
}

/// test_base_events.test_run_forever_pre_stopped: `stop()` before
/// `run_forever` runs exactly one iteration, without blocking, even with
/// a timer pending.
fn stop_before_run_forever_runs_one_iteration<L: AbstractEventLoop>(lp: L) {
    let calls = log();
    lp.call_soon(push(&calls, "queued"));
    let c = Rc::clone(&calls);
    lp.call_soon(move |lp: &L| {
        c.borrow_mut().push("queued too");
        lp.call_soon(push(&c, "next run"));
    });
    lp.call_later(Duration::from_secs(60), push(&calls, "timer"));
    lp.stop();
    lp.stop();
    let before = lp.stats();
    let started = Instant::now();
    run_bounded(&lp);
    assert!(started.elapsed() < LATE, "a pre-stopped run must not wait for the timer");
    let after = lp.stats();
    assert_eq!(after.iterations - before.iterations, 1);
    assert_eq!(*calls.borrow(), ["queued", "queued too"]);
    // Not stopped any more: the next pre-stopped run is one more iteration.
    run_once(&lp);
    assert_eq!(lp.stats().iterations - after.iterations, 1);
    assert_eq!(*calls.borrow(), ["queued", "queued too", "next run"]);
}

/// test_base_events.test__run_once_schedule_handle: a callback scheduled
/// by a due timer in the final iteration runs at the next `run_forever`.
fn callbacks_scheduled_in_the_final_iteration_run_at_the_next_run<L: AbstractEventLoop>(lp: L) {
    let calls = log();
    let c = Rc::clone(&calls);
    lp.call_at(lp.time(), move |lp: &L| {
        c.borrow_mut().push("timer");
        lp.stop();
        lp.call_soon(push(&c, "scheduled by the timer"));
        lp.call_later(Duration::ZERO, push(&c, "timer scheduled by the timer"));
    });
    run_bounded(&lp);
    assert_eq!(*calls.borrow(), ["timer"]);
    run_once(&lp);
    assert_eq!(*calls.borrow(), ["timer", "scheduled by the timer", "timer scheduled by the timer"]);
}

/// `stop()` from a callback finishes the current iteration: what is
/// already queued for it runs, the rest waits.
fn stop_finishes_the_current_iteration<L: AbstractEventLoop>(lp: L) {
    let calls = log();
    let c = Rc::clone(&calls);
    lp.call_soon(move |lp: &L| {
        lp.stop();
        c.borrow_mut().push("stopper");
        lp.call_soon(push(&c, "later"));
    });
    lp.call_soon(push(&calls, "same iteration"));
    run_bounded(&lp);
    assert_eq!(*calls.borrow(), ["stopper", "same iteration"]);
    run_once(&lp);
    assert_eq!(*calls.borrow(), ["stopper", "same iteration", "later"]);
}

// -------------------------------------------------------------- closed loop

/// test_events.test_close: scheduling on a closed loop panics with
/// "event loop is closed".
fn scheduling_on_a_closed_loop_panics<L: AbstractEventLoop>(lp: L) {
    lp.close().unwrap();
    assert_panics_with("event loop is closed", || {
        lp.call_soon(|_: &L| {});
    });
    assert_panics_with("event loop is closed", || {
        lp.call_later(Duration::from_secs(1), |_: &L| {});
    });
    assert_panics_with("event loop is closed", || {
        lp.call_at(lp.time(), |_: &L| {});
    });
    assert_panics_with("event loop is closed", || {
        lp.call_soon_threadsafe(|_: &L| {});
    });
    // The loop is still closed and consistent after the panics.
    assert!(lp.is_closed());
    lp.close().unwrap();
}

/// test_events.test_add_fds_after_closing / test_remove_fds_after_closing,
/// and add_signal_handler on a closed loop.
fn fds_and_signals_on_a_closed_loop<L: AbstractEventLoop>(lp: L) {
    let (a, b) = pair();
    lp.add_reader(a.as_raw_fd(), |_: &L| {}).unwrap();
    lp.add_writer(b.as_raw_fd(), |_: &L| {}).unwrap();
    lp.close().unwrap();
    assert!(!lp.remove_reader(a.as_raw_fd()).unwrap());
    assert!(!lp.remove_writer(b.as_raw_fd()).unwrap());
    assert_fails(lp.add_reader(a.as_raw_fd(), |_: &L| {}), io::ErrorKind::Other, "event loop is closed");
    assert_fails(lp.add_writer(b.as_raw_fd(), |_: &L| {}), io::ErrorKind::Other, "event loop is closed");
    let before = current_handler(libc::SIGUSR2);
    assert_fails(
        lp.add_signal_handler(libc::SIGUSR2, |_: &L| {}),
        io::ErrorKind::Other,
        "event loop is closed",
    );
    assert_eq!(current_handler(libc::SIGUSR2), before, "a closed loop installs nothing");
    assert!(!lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    assert!(!lp.remove_reader(a.as_raw_fd()).unwrap());
}

// -------------------------------------------------------- readers & writers

/// test_events.test_reader_callback: a reader reads what arrives, in
/// several rounds, and removes itself at EOF.
fn reader_callback_reads_until_eof<L: AbstractEventLoop>(lp: L) {
    let (w, r) = pair();
    let r_fd = r.as_raw_fd();
    let bytes = Rc::new(RefCell::new(Vec::new()));
    let removed = Rc::new(Cell::new(None));
    let (b, rm) = (Rc::clone(&bytes), Rc::clone(&removed));
    let mut r = r;
    lp.add_reader(r_fd, move |lp: &L| {
        let mut buf = [0u8; 1024];
        match r.read(&mut buf) {
            Ok(0) => {
                rm.set(Some(lp.remove_reader(r_fd).unwrap()));
                lp.stop();
            }
            Ok(n) => b.borrow_mut().extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {} // spurious
            Err(err) => panic!("read: {err}"),
        }
    })
    .unwrap();
    let w = Rc::new(RefCell::new(Some(w)));
    let send = |data: &'static [u8]| {
        let w = Rc::clone(&w);
        move |_: &L| {
            w.borrow_mut().as_mut().unwrap().write_all(data).unwrap();
        }
    };
    lp.call_soon(send(b"abc"));
    lp.call_later(Duration::from_millis(5), send(b"def"));
    let w2 = Rc::clone(&w);
    lp.call_later(Duration::from_millis(10), move |_: &L| drop(w2.borrow_mut().take()));
    run_bounded(&lp);
    assert_eq!(&*bytes.borrow(), b"abcdef");
    assert_eq!(removed.get(), Some(true));
    assert!(!lp.remove_reader(r_fd).unwrap());
}

/// test_events.test_writer_callback: remove_writer says whether one was removed.
fn writer_callback_and_remove_writer<L: AbstractEventLoop>(lp: L) {
    let (w, mut r) = pair();
    let w_fd = w.as_raw_fd();
    let data = vec![b'x'; 1024];
    let d = data.clone();
    let w = RefCell::new(w);
    lp.add_writer(w_fd, move |lp: &L| {
        w.borrow_mut().write_all(&d).unwrap();
        lp.stop();
    })
    .unwrap();
    run_bounded(&lp);
    assert!(lp.remove_writer(w_fd).unwrap());
    assert!(!lp.remove_writer(w_fd).unwrap());
    let mut read = vec![0u8; 4096];
    let n = r.read(&mut read).unwrap();
    assert_eq!(&read[..n], &data[..]);
}

/// test_selector_events: add_reader_existing (replaced, the old one
/// never runs again), add_reader_existing_writer, remove_reader_read_write
/// and remove_*_unknown.
fn add_reader_replaces_and_remove_reports<L: AbstractEventLoop>(lp: L) {
    let (_a, b) = readable_pair();
    let fd = b.as_raw_fd();
    let calls = log();
    assert!(!lp.remove_reader(fd).unwrap(), "unknown fd");
    assert!(!lp.remove_writer(fd).unwrap(), "unknown fd");
    let c = Rc::clone(&calls);
    lp.add_reader(fd, move |_: &L| c.borrow_mut().push("first reader")).unwrap();
    let c = Rc::clone(&calls);
    lp.add_reader(fd, move |_: &L| c.borrow_mut().push("second reader")).unwrap();
    let c = Rc::clone(&calls);
    lp.add_writer(fd, move |_: &L| c.borrow_mut().push("writer")).unwrap();
    run_once(&lp);
    assert_eq!(*calls.borrow(), ["second reader", "writer"]);
    // Removing the reader keeps the writer, and the other way round.
    assert!(lp.remove_reader(fd).unwrap());
    assert!(!lp.remove_reader(fd).unwrap());
    calls.borrow_mut().clear();
    run_once(&lp);
    assert_eq!(*calls.borrow(), ["writer"]);
    let c = Rc::clone(&calls);
    lp.add_reader(fd, move |_: &L| c.borrow_mut().push("third reader")).unwrap();
    assert!(lp.remove_writer(fd).unwrap());
    assert!(!lp.remove_writer(fd).unwrap());
    calls.borrow_mut().clear();
    run_once(&lp);
    assert_eq!(*calls.borrow(), ["third reader"]);
    assert!(lp.remove_reader(fd).unwrap());
    calls.borrow_mut().clear();
    run_once(&lp);
    assert!(calls.borrow().is_empty());
}

/// A reader that removes itself gets `Ok(true)`, and runs no more.
fn a_reader_removing_itself_gets_true<L: AbstractEventLoop>(lp: L) {
    let (_a, b) = readable_pair();
    let fd = b.as_raw_fd();
    let results = Rc::new(RefCell::new(Vec::new()));
    let r = Rc::clone(&results);
    lp.add_reader(fd, move |lp: &L| {
        r.borrow_mut().push(lp.remove_reader(fd).unwrap());
        r.borrow_mut().push(lp.remove_reader(fd).unwrap());
    })
    .unwrap();
    run_once(&lp);
    run_once(&lp);
    assert_eq!(*results.borrow(), [true, false]);
}

/// Two fds ready in the same `select`: whichever reader runs first removes
/// the other, which then does not run in that iteration (asyncio cancels
/// its queued handle). The same for a replacement: the replaced one does
/// not run, and the new one not before the next iteration.
fn a_handler_removed_or_replaced_in_an_iteration_does_not_run_later_in_it<L: AbstractEventLoop>(lp: L) {
    let (_a1, b1) = readable_pair();
    let (_a2, b2) = readable_pair();
    let fds = [b1.as_raw_fd(), b2.as_raw_fd()];
    let ran = Rc::new(RefCell::new(Vec::new()));
    for (i, &fd) in fds.iter().enumerate() {
        let other = fds[1 - i];
        let r = Rc::clone(&ran);
        lp.add_reader(fd, move |lp: &L| {
            r.borrow_mut().push(i);
            assert!(lp.remove_reader(other).unwrap(), "the other reader was there");
        })
        .unwrap();
    }
    let before = lp.stats();
    run_once(&lp);
    let after = lp.stats();
    assert_eq!(ran.borrow().len(), 1, "exactly one reader ran: {:?}", ran.borrow());
    assert_eq!(after.events_received - before.events_received, 2, "both fds were reported ready");
    let first = ran.borrow()[0];
    assert!(lp.remove_reader(fds[first]).unwrap());

    // Replaced.
    let ran = log();
    for (i, &fd) in fds.iter().enumerate() {
        let other = fds[1 - i];
        let r = Rc::clone(&ran);
        lp.add_reader(fd, move |lp: &L| {
            r.borrow_mut().push("original");
            let r2 = Rc::clone(&r);
            lp.add_reader(other, move |lp: &L| {
                r2.borrow_mut().push("replacement");
                lp.remove_reader(other).unwrap();
            })
            .unwrap();
            lp.remove_reader(fds[i]).unwrap();
        })
        .unwrap();
    }
    run_once(&lp);
    assert_eq!(*ran.borrow(), ["original"]);
    run_once(&lp);
    assert_eq!(*ran.borrow(), ["original", "replacement"]);
}

/// A reader and a writer of one fd, both ready: the one running first
/// removes the other, which does not run.
fn removing_the_other_side_of_an_fd_in_its_iteration<L: AbstractEventLoop>(lp: L) {
    let (_a, b) = readable_pair(); // readable and writable
    let fd = b.as_raw_fd();
    let ran = log();
    let r = Rc::clone(&ran);
    lp.add_reader(fd, move |lp: &L| {
        r.borrow_mut().push("reader");
        let _ = lp.remove_writer(fd).unwrap();
    })
    .unwrap();
    let r = Rc::clone(&ran);
    lp.add_writer(fd, move |lp: &L| {
        r.borrow_mut().push("writer");
        let _ = lp.remove_reader(fd).unwrap();
    })
    .unwrap();
    let before = lp.stats();
    run_once(&lp);
    let after = lp.stats();
    assert_eq!(ran.borrow().len(), 1, "{:?}", ran.borrow());
    assert_eq!(after.events_received - before.events_received, 1, "one entry per ready fd");
}

// -------------------------------------------------------- exception handler

/// test_base_events.test_set_exc_handler_custom / test_default_exc_handler_*:
/// panics in callbacks, timers and readers reach the handler with the
/// message, the panic and where the callback was scheduled; the loop runs on.
fn panics_reach_the_exception_handler_and_the_loop_runs_on<L: AbstractEventLoop>(lp: L) {
    let seen = record_exceptions(&lp);
    let (_a, b) = readable_pair();
    let fd = b.as_raw_fd();
    let soon_line = line!() + 1;
    lp.call_soon(|_: &L| panic!("zero division in call_soon"));
    let later_line = line!() + 1;
    lp.call_later(Duration::from_millis(1), |_: &L| panic!("zero division in {}", "call_later"));
    let reader_line = line!() + 1;
    lp.add_reader(fd, move |lp: &L| {
        lp.remove_reader(fd).unwrap();
        panic!("zero division in a reader");
    })
    .unwrap();
    let after = Rc::new(Cell::new(false));
    let a = Rc::clone(&after);
    lp.call_later(Duration::from_millis(20), move |lp: &L| {
        a.set(true);
        lp.stop();
    });
    run_bounded(&lp);
    assert!(after.get(), "the loop kept running");
    let seen = seen.borrow();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (what, line) in [("call_soon", soon_line), ("call_later", later_line), ("a reader", reader_line)] {
        let ctx = seen
            .iter()
            .find(|ctx| ctx.panic.as_deref() == Some(&*format!("zero division in {what}")))
            .unwrap_or_else(|| panic!("no report for {what}: {seen:?}"));
        assert!(!ctx.message.is_empty());
        let origin = ctx.origin.expect("origin");
        assert_eq!(origin.file(), file!());
        assert_eq!(origin.line(), line, "{what}");
    }
}

/// test_base_events.test_set_exc_handler_broken and the default handler:
/// a panicking handler, and the default one (`None`), keep the loop running.
fn a_broken_or_default_exception_handler_keeps_the_loop_running<L: AbstractEventLoop>(lp: L) {
    lp.set_exception_handler(Some(Box::new(|_: &L, _: &ExceptionContext| panic!("handler is broken"))));
    lp.call_soon(|_: &L| panic!("first"));
    let ran = Rc::new(Cell::new(0));
    let r = Rc::clone(&ran);
    lp.call_soon(move |_: &L| r.set(r.get() + 1));
    run_once(&lp);
    assert_eq!(ran.get(), 1);

    // Back to the default handler: one line on stderr, and on we go.
    lp.set_exception_handler(None);
    lp.call_soon(|_: &L| panic!("reported by the default handler"));
    let r = Rc::clone(&ran);
    lp.call_later(Duration::from_millis(1), move |lp: &L| {
        r.set(r.get() + 1);
        lp.stop();
    });
    run_bounded(&lp);
    assert_eq!(ran.get(), 2);

    // A custom handler set after the default sees the next panic, and may
    // use the loop.
    let seen = record_exceptions(&lp);
    lp.call_soon(|_: &L| panic!("seen"));
    run_once(&lp);
    assert_eq!(seen.borrow().len(), 1);
    assert_eq!(seen.borrow()[0].panic.as_deref(), Some("seen"));
    lp.set_exception_handler(Some(Box::new(|lp: &L, _: &ExceptionContext| lp.stop())));
    lp.call_soon(|_: &L| panic!("stops the loop through the handler"));
    run_bounded(&lp);
}

/// test_base_events.test_set_debug.
fn set_debug_and_get_debug<L: AbstractEventLoop>(lp: L) {
    assert!(!lp.get_debug(), "debug mode is off by default");
    lp.set_debug(true);
    assert!(lp.get_debug());
    lp.call_soon(|lp: &L| assert!(lp.get_debug()));
    run_once(&lp);
    lp.set_debug(false);
    assert!(!lp.get_debug());
}

// ----------------------------------------------------------- other threads

/// test_events.test_call_soon_threadsafe: a call from another thread made
/// before the loop ran goes first; from a thread while the loop is blocked,
/// it wakes the loop in bounded time.
fn call_soon_threadsafe_from_another_thread<L: AbstractEventLoop>(lp: L) {
    let results = Arc::new(Mutex::new(Vec::new()));
    let handle = lp.handle();
    let r = Arc::clone(&results);
    thread::spawn(move || {
        handle
            .call_soon_threadsafe(move |lp: &L| {
                let mut r = r.lock().unwrap();
                r.push("hello");
                if r.len() >= 2 {
                    lp.stop();
                }
            })
            .unwrap();
    })
    .join()
    .unwrap();
    let r = Arc::clone(&results);
    lp.call_soon(move |lp: &L| {
        let mut r = r.lock().unwrap();
        r.push("world");
        if r.len() >= 2 {
            lp.stop();
        }
    });
    run_bounded(&lp);
    assert_eq!(*results.lock().unwrap(), ["hello", "world"]);

    // Blocked in select (a timer a minute away): woken by the other thread.
    let guard = lp.call_later(Duration::from_secs(60), |lp: &L| lp.stop());
    let handle = lp.handle();
    let sent = Arc::new(Mutex::new(None));
    let s = Arc::clone(&sent);
    let worker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        *s.lock().unwrap() = Some(Instant::now());
        handle.call_soon_threadsafe(|lp: &L| lp.stop()).unwrap();
    });
    run_bounded(&lp);
    let woke = Instant::now();
    worker.join().unwrap();
    let sent = sent.lock().unwrap().expect("the thread called");
    assert!(woke.duration_since(sent) < LATE, "woken after {:?}", woke.duration_since(sent));
    guard.cancel();
}

/// test_events.test_call_soon_threadsafe_same_thread: on the loop's thread,
/// `call_soon_threadsafe` is FIFO with `call_soon`, and so is a
/// `LoopHandle` used there.
fn call_soon_threadsafe_on_the_loop_thread_keeps_order<L: AbstractEventLoop>(lp: L) {
    let results = Arc::new(Mutex::new(Vec::new()));
    let record = |what: &'static str| {
        let r = Arc::clone(&results);
        move |lp: &L| {
            let mut r = r.lock().unwrap();
            r.push(what);
            if r.len() >= 5 {
                lp.stop();
            }
        }
    };
    lp.call_soon_threadsafe(record("hello"));
    lp.call_soon(record("world"));
    lp.handle().call_soon_threadsafe(record("handle")).unwrap();
    lp.call_soon(record("after handle"));
    let handle = lp.call_soon_threadsafe(record("last"));
    assert!(!handle.cancelled());
    run_bounded(&lp);
    assert_eq!(*results.lock().unwrap(), ["hello", "world", "handle", "after handle", "last"]);
}

/// `LoopHandle::stop` wakes a loop blocked with nothing scheduled at all.
fn loop_handle_stop_wakes_a_blocked_loop<L: AbstractEventLoop>(lp: L) {
    let handle = lp.handle();
    let clone = handle.clone();
    let worker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        clone.stop()
    });
    let started = Instant::now();
    run_bounded(&lp);
    assert!(started.elapsed() >= Duration::from_millis(30));
    worker.join().unwrap().unwrap();
    // The handle outlives its clones.
    drop(handle);
}

/// A `LoopHandle` fails once its loop is closed or dropped, and a call made
/// through it before the close never runs.
fn loop_handle_after_close_is_an_error<L: AbstractEventLoop>(lp: L) {
    let handle = lp.handle();
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    handle.call_soon_threadsafe(move |_: &L| r.store(true, Ordering::SeqCst)).unwrap();
    lp.close().unwrap();
    assert_fails(handle.stop(), io::ErrorKind::Other, "event loop is closed");
    assert_fails(handle.call_soon_threadsafe(|_: &L| {}), io::ErrorKind::Other, "event loop is closed");
    let from_thread = handle.clone();
    thread::spawn(move || assert_fails(from_thread.stop(), io::ErrorKind::Other, "event loop is closed"))
        .join()
        .unwrap();
    drop(lp);
    assert_fails(handle.stop(), io::ErrorKind::Other, "event loop is closed");
    assert!(!ran.load(Ordering::SeqCst));
}

fn loop_handle_after_drop_is_an_error<L: AbstractEventLoop>(lp: L) {
    let handle = lp.handle();
    drop(lp);
    assert_fails(handle.stop(), io::ErrorKind::Other, "event loop is closed");
    assert_fails(handle.call_soon_threadsafe(|_: &L| {}), io::ErrorKind::Other, "event loop is closed");
}

// ------------------------------------------------------------------- stats

/// `stats()`: one iteration with two ready fds gives two events and two
/// callbacks; timers in the heap are counted until they fire.
fn stats_count_what_the_loop_did<L: AbstractEventLoop>(lp: L) {
    let s0 = lp.stats();
    assert_eq!((s0.iterations, s0.callbacks_run, s0.events_received, s0.timers_in_heap), (0, 0, 0, 0));
    let (_a1, b1) = readable_pair();
    let (_a2, b2) = readable_pair();
    for fd in [b1.as_raw_fd(), b2.as_raw_fd()] {
        lp.add_reader(fd, move |lp: &L| {
            lp.remove_reader(fd).unwrap();
        })
        .unwrap();
    }
    lp.call_soon(|_: &L| {});
    let cancelled = lp.call_soon(|_: &L| {});
    cancelled.cancel();
    for _ in 0..3 {
        lp.call_later(Duration::from_secs(60), |_: &L| {});
    }
    assert_eq!(lp.stats().timers_in_heap, 3);
    run_once(&lp);
    let s1 = lp.stats();
    assert_eq!(s1.iterations, 1);
    assert_eq!(s1.callbacks_run, 3, "two readers and a call_soon; not the cancelled one");
    assert_eq!(s1.events_received, 2, "one entry per ready fd");
    assert!(s1.select_calls >= 1);
    assert_eq!(s1.timers_in_heap, 3);

    // Timers leave the heap as they fire.
    let d = Duration::from_millis(1);
    lp.call_later(d, |_: &L| {});
    lp.call_later(d, |lp: &L| lp.stop());
    assert_eq!(lp.stats().timers_in_heap, 5);
    run_bounded(&lp);
    let s2 = lp.stats();
    assert_eq!(s2.timers_in_heap, 3);
    assert_eq!(s2.callbacks_run - s1.callbacks_run, 2);
    assert!(s2.iterations > s1.iterations);
    assert!(s2.select_calls > s1.select_calls);
    assert_eq!(s2.events_received, s1.events_received, "no fd was ready");
}

// ------------------------------------------------------------------ signals

fn current_handler(signum: c_int) -> libc::sighandler_t {
    // SAFETY: sigaction is plain data; all-zero is a valid value to fill in.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `old` is a valid out-pointer.
    let rc = unsafe { libc::sigaction(signum, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "sigaction({signum})");
    old.sa_sigaction
}

fn set_handler(signum: c_int, handler: libc::sighandler_t) {
    // SAFETY: as in `current_handler`.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    // SAFETY: `action` is a valid sigaction with an empty mask; no old action wanted.
    let rc = unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signum, &action, std::ptr::null_mut())
    };
    assert_eq!(rc, 0, "sigaction({signum})");
}

extern "C" fn marker_handler(_: c_int) {}

fn marker() -> libc::sighandler_t {
    marker_handler as extern "C" fn(c_int) as libc::sighandler_t
}

/// Raises `signum` in this thread (delivered before `raise` returns).
fn raise(signum: c_int) {
    // SAFETY: raise has no memory-safety preconditions; a handler is installed.
    assert_eq!(unsafe { libc::raise(signum) }, 0);
}

fn nsig() -> c_int {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        65
    } else {
        32
    }
}

/// test_events.test_add_signal_handler: the error cases, then a handler
/// that runs, and a removal that restores what was there.
fn add_signal_handler_errors_and_delivery<L: AbstractEventLoop>(lp: L) {
    let invalid = io::ErrorKind::InvalidInput;
    for signum in [0, -1, nsig(), nsig() + 1, 1000, libc::SIGKILL, libc::SIGSTOP] {
        let err = lp.add_signal_handler(signum, |_: &L| {}).expect_err("refused");
        assert_eq!(err.kind(), invalid, "add_signal_handler({signum})");
    }
    for signum in [0, -1, nsig(), nsig() + 1] {
        let err = lp.remove_signal_handler(signum).expect_err("refused");
        assert_eq!(err.kind(), invalid, "remove_signal_handler({signum})");
    }
    // Removing SIGKILL doesn't fail: it never had a handler.
    assert!(!lp.remove_signal_handler(libc::SIGKILL).unwrap());

    set_handler(libc::SIGUSR1, marker());
    let caught = Rc::new(Cell::new(0));
    let c = Rc::clone(&caught);
    lp.add_signal_handler(libc::SIGUSR1, move |lp: &L| {
        c.set(c.get() + 1);
        lp.stop();
    })
    .unwrap();
    assert_ne!(current_handler(libc::SIGUSR1), marker());
    raise(libc::SIGUSR1);
    run_bounded(&lp);
    assert_eq!(caught.get(), 1);
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    assert_eq!(current_handler(libc::SIGUSR1), marker(), "the previous disposition is back");
    assert!(!lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    set_handler(libc::SIGUSR1, libc::SIG_DFL);
    lp.close().unwrap();
}

/// A second handler for a signal replaces the first; removal (and close)
/// restore what was in place before the loop's first handler.
fn a_second_signal_handler_replaces_the_first<L: AbstractEventLoop>(lp: L) {
    set_handler(libc::SIGUSR2, libc::SIG_IGN);
    let calls = log();
    let c = Rc::clone(&calls);
    lp.add_signal_handler(libc::SIGUSR2, move |_: &L| c.borrow_mut().push("first")).unwrap();
    let c = Rc::clone(&calls);
    lp.add_signal_handler(libc::SIGUSR2, move |lp: &L| {
        c.borrow_mut().push("second");
        lp.stop();
    })
    .unwrap();
    raise(libc::SIGUSR2);
    run_bounded(&lp);
    assert_eq!(*calls.borrow(), ["second"]);
    assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    assert_eq!(current_handler(libc::SIGUSR2), libc::SIG_IGN);

    // Close restores too.
    set_handler(libc::SIGUSR1, marker());
    lp.add_signal_handler(libc::SIGUSR1, |_: &L| {}).unwrap();
    lp.add_signal_handler(libc::SIGUSR2, |_: &L| {}).unwrap();
    lp.close().unwrap();
    assert_eq!(current_handler(libc::SIGUSR1), marker());
    assert_eq!(current_handler(libc::SIGUSR2), libc::SIG_IGN);
    set_handler(libc::SIGUSR1, libc::SIG_DFL);
    set_handler(libc::SIGUSR2, libc::SIG_DFL);
}

/// Only one loop per process handles signals: another gets `Err` until the
/// first has removed its last handler, or is closed.
fn only_one_loop_handles_signals<L: AbstractEventLoop>(lp: L) {
    let other = SelectorEventLoop::new().unwrap();
    lp.add_signal_handler(libc::SIGUSR1, |_: &L| {}).unwrap();
    lp.add_signal_handler(libc::SIGUSR2, |_: &L| {}).unwrap();
    let before = current_handler(libc::SIGHUP);
    assert_fails(
        other.add_signal_handler(libc::SIGHUP, |_| {}),
        io::ErrorKind::ResourceBusy,
        "another event loop handles signals",
    );
    assert_eq!(current_handler(libc::SIGHUP), before, "the refused loop installed nothing");
    assert!(!other.remove_signal_handler(libc::SIGUSR1).unwrap(), "not the other loop's handler");
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    // One handler left.
    assert_fails(
        other.add_signal_handler(libc::SIGUSR1, |_| {}),
        io::ErrorKind::ResourceBusy,
        "another event loop handles signals",
    );
    assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    // The first has removed its last: the other may take signals now.
    other.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    assert_fails(
        lp.add_signal_handler(libc::SIGUSR1, |_: &L| {}),
        io::ErrorKind::ResourceBusy,
        "another event loop handles signals",
    );
    other.close().unwrap();
    // Closed: the first may take them back; and its close releases them.
    lp.add_signal_handler(libc::SIGUSR1, |_: &L| {}).unwrap();
    let third = SelectorEventLoop::new().unwrap();
    assert_fails(
        third.add_signal_handler(libc::SIGUSR2, |_| {}),
        io::ErrorKind::ResourceBusy,
        "another event loop handles signals",
    );
    lp.close().unwrap();
    third.add_signal_handler(libc::SIGUSR2, |_| {}).unwrap();
    third.close().unwrap();
    assert_eq!(current_handler(libc::SIGUSR1), libc::SIG_DFL);
    assert_eq!(current_handler(libc::SIGUSR2), libc::SIG_DFL);
}

// ------------------------------------------------ a selector of our own

/// An error from `select` other than `EINTR` ends `run_forever` with it,
/// even with callbacks queued; the loop is then not running, still usable,
/// and closable.
fn a_select_error_ends_run_forever(backend: Backend) {
    let (lp, faults) = faulty_loop(backend);
    let calls = log();
    lp.call_soon(push(&calls, "queued"));
    lp.call_soon(|lp| lp.stop());
    faults.fail_after.set(Some(0));
    let err = lp.run_forever().expect_err("the select error");
    assert_eq!(err.to_string(), "injected select failure");
    assert!(!lp.is_running());
    assert!(!lp.is_closed());
    assert!(calls.borrow().is_empty(), "the failed iteration ran nothing");
    // Pre-stopped, with nothing queued: the one select fails too.
    let fresh = faulty_loop(backend);
    fresh.1.fail_after.set(Some(0));
    fresh.0.stop();
    assert_fails(fresh.0.run_forever(), io::ErrorKind::Other, "injected select failure");
    fresh.0.close().unwrap();
    // Usable again once select works.
    faults.fail_after.set(None);
    run_bounded(&lp);
    assert_eq!(*calls.borrow(), ["queued"]);
    assert_eq!(u64::from(faults.selects.get()), lp.stats().select_calls);
    // A failure from a blocking wait ends the run too.
    faults.fail_after.set(Some(faults.selects.get()));
    lp.call_later(Duration::from_secs(60), |lp| lp.stop());
    assert_fails(lp.run_forever(), io::ErrorKind::Other, "injected select failure");
    assert!(!lp.is_running());
    lp.close().unwrap();
    assert!(lp.is_closed());
}

/// `EINTR` from `select` does not end `run_forever`.
fn eintr_from_select_does_not_end_run_forever(backend: Backend) {
    let (lp, faults) = faulty_loop(backend);
    faults.eintr.set(3);
    let ran = Rc::new(Cell::new(false));
    let r = Rc::clone(&ran);
    lp.call_later(Duration::from_millis(10), move |lp| {
        r.set(true);
        lp.stop();
    });
    run_bounded(&lp);
    assert!(ran.get());
    assert_eq!(faults.eintr.get(), 0);
    lp.close().unwrap();
}

/// test_base_events.test__run_once: cancelled timers don't shorten the
/// wait, which is the time to the next live timer; and
/// test_run_forever_pre_stopped: a pre-stopped run selects once, without
/// waiting. Every `select` is counted in `stats()`.
fn the_select_timeout_is_the_time_to_the_next_live_timer(backend: Backend) {
    let (lp, faults) = faulty_loop(backend);
    lp.stop();
    run_bounded(&lp);
    assert_eq!(*faults.timeouts.borrow(), [Some(Duration::ZERO)]);
    assert_eq!(lp.stats().select_calls, 1);

    faults.timeouts.borrow_mut().clear();
    faults.no_wait.set(true);
    let h1 = lp.call_later(Duration::from_secs(5), |_| {});
    lp.call_later(Duration::from_secs(10), |_| {});
    h1.cancel();
    // The second select fails, ending the run.
    faults.fail_after.set(Some(faults.selects.get() + 1));
    assert_fails(lp.run_forever(), io::ErrorKind::Other, "injected select failure");
    let timeout = faults.timeouts.borrow()[0].expect("a timeout");
    assert!(timeout > Duration::from_millis(9500) && timeout <= Duration::from_secs(10), "{timeout:?}");
    assert_eq!(lp.stats().timers_in_heap, 1);
    assert_eq!(u64::from(faults.selects.get()), lp.stats().select_calls);

    // With nothing scheduled, the wait is unbounded.
    faults.timeouts.borrow_mut().clear();
    let lp2 = faulty_loop(backend);
    lp2.1.no_wait.set(true);
    lp2.1.fail_after.set(Some(1));
    assert_fails(lp2.0.run_forever(), io::ErrorKind::Other, "injected select failure");
    assert_eq!(lp2.1.timeouts.borrow()[0], None);
}

/// When the OS refuses the `modify` behind `add_writer` on an fd that has a
/// reader, the selector drops the key and so does the loop: the reader is
/// gone, the error returned, and the fd can be added afresh.
fn a_refused_modify_drops_the_other_handler(backend: Backend) {
    for keep_key in [false, true] {
        let (lp, faults) = faulty_loop(backend);
        let (mut a, b) = pair();
        let fd = b.as_raw_fd();
        let calls = log();
        let c = Rc::clone(&calls);
        lp.add_reader(fd, move |_| c.borrow_mut().push("old reader")).unwrap();
        if keep_key {
            faults.refuse_modify_keep_key.set(true);
        } else {
            faults.refuse_modify.set(true);
        }
        let err = lp.add_writer(fd, |_| panic!("never added")).expect_err("modify refused");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert!(!lp.remove_reader(fd).unwrap(), "the reader went with the key");
        assert!(!lp.remove_writer(fd).unwrap());
        a.write_all(b"x").unwrap();
        run_once(&lp);
        assert!(calls.borrow().is_empty(), "{:?}", calls.borrow());
        // Loop and selector agree: the fd is new to both.
        faults.refuse_modify.set(false);
        faults.refuse_modify_keep_key.set(false);
        let c = Rc::clone(&calls);
        lp.add_reader(fd, move |_| c.borrow_mut().push("new reader")).unwrap();
        run_once(&lp);
        assert_eq!(*calls.borrow(), ["new reader"]);

        // The same when removing one side of two.
        lp.add_writer(fd, |_| {}).unwrap();
        if keep_key {
            faults.refuse_modify_keep_key.set(true);
        } else {
            faults.refuse_modify.set(true);
        }
        assert_eq!(lp.remove_writer(fd).map_err(|err| err.raw_os_error()), Err(Some(libc::EBADF)));
        assert!(!lp.remove_reader(fd).unwrap());
        faults.refuse_modify.set(false);
        faults.refuse_modify_keep_key.set(false);
        lp.add_writer(fd, |lp| lp.stop()).unwrap();
        run_bounded(&lp);
        assert!(lp.remove_writer(fd).unwrap());
        assert_eq!(*calls.borrow(), ["new reader"]);
        lp.close().unwrap();
    }
}

per_loop!(
    call_soon_runs_and_may_stop_the_loop,
    call_soon_order_is_fifo_across_nested_scheduling,
    timers_are_never_early_and_in_deadline_order,
    equal_deadlines_run_in_scheduling_order,
    deadlines_in_the_past_run_in_deadline_order,
    time_is_monotonic_and_call_later_counts_from_the_call,
    cancel_before_run,
    a_timer_cancelled_by_an_earlier_due_timer_does_not_run,
    cancelled_timers_are_purged_as_asyncio_does,
    timers_in_heap_stay_bounded,
    huge_delays_neither_panic_nor_overflow,
    tiny_timeouts_do_not_spin,
    run_forever_is_not_reentrant,
    a_callback_may_run_another_loop,
    close_is_idempotent_and_a_closed_loop_does_not_run,
    close_while_running_fails,
    stop_before_run_forever_runs_one_iteration,
    callbacks_scheduled_in_the_final_iteration_run_at_the_next_run,
    stop_finishes_the_current_iteration,
    scheduling_on_a_closed_loop_panics,
    reader_callback_reads_until_eof,
    writer_callback_and_remove_writer,
    add_reader_replaces_and_remove_reports,
    a_reader_removing_itself_gets_true,
    a_handler_removed_or_replaced_in_an_iteration_does_not_run_later_in_it,
    removing_the_other_side_of_an_fd_in_its_iteration,
    panics_reach_the_exception_handler_and_the_loop_runs_on,
    a_broken_or_default_exception_handler_keeps_the_loop_running,
    set_debug_and_get_debug,
    call_soon_threadsafe_from_another_thread,
    call_soon_threadsafe_on_the_loop_thread_keeps_order,
    loop_handle_stop_wakes_a_blocked_loop,
    loop_handle_after_close_is_an_error,
    loop_handle_after_drop_is_an_error,
    stats_count_what_the_loop_did,
);

per_loop_serial!(
    fds_and_signals_on_a_closed_loop,
    add_signal_handler_errors_and_delivery,
    a_second_signal_handler_replaces_the_first,
    only_one_loop_handles_signals,
);

per_backend!(
    a_select_error_ends_run_forever,
    eintr_from_select_does_not_end_run_forever,
    the_select_timeout_is_the_time_to_the_next_live_timer,
    a_refused_modify_drops_the_other_handler,
);
