//! The scheduling contract of Layer 2: `call_soon`, timers, cancellation,
//! `stop`, `close`, the exception handler, debug mode and the counters.
//! Every case runs on `SelectorEventLoop` and on each backend.

#[macro_use]
mod common;

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_fails, assert_panics_with, run_bounded, TestLoop, Watchdog, LIMIT};
use tulip::{AbstractEventLoop, ExceptionContext};

/// Generous slack for "not too late": the machine may be busy.
const LATE: Duration = Duration::from_secs(2);

type Log = Rc<RefCell<Vec<&'static str>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push<L>(log: &Log, entry: &'static str) -> impl FnOnce(&L) + 'static {
    let log = Rc::clone(log);
    move |_: &L| log.borrow_mut().push(entry)
}

// ---------------------------------------------------------------- call_soon

fn call_soon_is_fifo<L: TestLoop>(lp: L) {
    let order = Rc::new(RefCell::new(Vec::new()));
    for i in 0..100 {
        let order = Rc::clone(&order);
        lp.call_soon(move |_| order.borrow_mut().push(i));
    }
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*order.borrow(), (0..100).collect::<Vec<_>>());
}

fn call_soon_threadsafe_on_the_loop_thread_is_fifo_with_call_soon<L: TestLoop>(lp: L) {
    // Callbacks given to `call_soon_threadsafe` must be `Send`, so they
    // record into a thread-local of the loop's thread.
    thread_local!(static ORDER: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) });
    ORDER.with(|o| o.borrow_mut().clear());
    for i in 0..20 {
        if i % 2 == 0 {
            lp.call_soon(move |_| ORDER.with(|o| o.borrow_mut().push(i)));
        } else {
            lp.call_soon_threadsafe(move |_| ORDER.with(|o| o.borrow_mut().push(i)));
        }
    }
    lp.call_soon_threadsafe(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(ORDER.with(|o| o.borrow().clone()), (0..20).collect::<Vec<_>>());
}

fn cancelled_handle_never_runs<L: TestLoop>(lp: L) {
    let log = log();
    let a = lp.call_soon(push(&log, "a"));
    let b = lp.call_soon(push(&log, "b"));
    let c = lp.call_soon(push(&log, "c"));
    assert!(!a.cancelled() && !b.cancelled() && !c.cancelled());
    b.cancel();
    assert!(b.cancelled());
    // Handles are Clone; cancelling through a clone cancels the callback.
    let c2 = c.clone();
    c2.cancel();
    assert!(c.cancelled() && c2.cancelled());
    // Cancelling twice is harmless.
    b.cancel();
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["a"]);
    assert!(!a.cancelled());
}

fn cancel_from_an_earlier_callback_of_the_same_iteration<L: TestLoop>(lp: L) {
    let log = log();
    let victim = Rc::new(RefCell::new(None::<tulip::Handle>));
    let v = Rc::clone(&victim);
    let l = Rc::clone(&log);
    lp.call_soon(move |_| {
        l.borrow_mut().push("killer");
        if let Some(victim) = v.borrow().as_ref() {
            victim.cancel();
        }
    });
    *victim.borrow_mut() = Some(lp.call_soon(push(&log, "victim")));
    lp.call_soon(push(&log, "after"));
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["killer", "after"]);
}

fn cancel_drops_the_callback<L: TestLoop>(lp: L) {
    // asyncio drops a cancelled callback's references at once.
    let captured = Rc::new(());
    let c = Rc::clone(&captured);
    let handle = lp.call_soon(move |_| drop(c));
    let c = Rc::clone(&captured);
    let timer = lp.call_later(Duration::from_secs(60), move |_| drop(c));
    assert_eq!(Rc::strong_count(&captured), 3);
    handle.cancel();
    timer.cancel();
    assert_eq!(Rc::strong_count(&captured), 1);
}

// ---------------------------------------------------------------- timers

fn timers_run_in_deadline_order_and_never_early<L: TestLoop>(lp: L) {
    let fired: Rc<RefCell<Vec<(u64, Instant, Instant)>>> = Rc::default();
    let start = lp.time();
    // Scheduled out of order, including an already-past deadline.
    for ms in [30u64, 0, 10, 50, 1, 20, 5, 40] {
        let fired = Rc::clone(&fired);
        let handle_when = Rc::new(Cell::new(None));
        let hw = Rc::clone(&handle_when);
        let handle = lp.call_later(Duration::from_millis(ms), move |lp| {
            fired.borrow_mut().push((ms, hw.get().unwrap(), lp.time()));
        });
        handle_when.set(Some(handle.when()));
    }
    lp.call_at(start - Duration::from_millis(5), {
        let fired = Rc::clone(&fired);
        move |lp| fired.borrow_mut().push((0, start - Duration::from_millis(5), lp.time()))
    });
    lp.call_later(Duration::from_millis(60), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    let fired = fired.borrow();
    assert_eq!(fired.len(), 9);
    // Deadline order. `call_later` counts from its call, so on a machine
    // slow enough for the calls above to take milliseconds the deadlines
    // are not those of the delays' order: compare with the deadlines.
    let deadlines: Vec<Instant> = fired.iter().map(|&(_, when, _)| when).collect();
    assert!(deadlines.windows(2).all(|pair| pair[0] <= pair[1]), "not in deadline order: {fired:?}");
    let mut order: Vec<u64> = fired.iter().map(|&(ms, _, _)| ms).collect();
    order.sort_unstable();
    assert_eq!(order, [0, 0, 1, 5, 10, 20, 30, 40, 50], "each timer once");
    for &(ms, when, at) in fired.iter() {
        assert!(at >= when, "timer of {ms} ms ran {:?} early", when - at);
        assert!(at - when < LATE, "timer of {ms} ms ran {:?} late", at - when);
    }
}

fn timers_never_run_early_when_the_loop_wakes_just_before<L: TestLoop>(lp: L) {
    // Wake-ups a fraction of a millisecond before a deadline must not pull
    // that timer forward.
    let fired: Rc<RefCell<Vec<(Instant, Instant)>>> = Rc::default();
    let base = lp.time() + Duration::from_millis(5);
    for step in 0..10u64 {
        let target = base + Duration::from_millis(2 * step);
        for before_us in [900u64, 500, 100, 10, 0] {
            let when = target - Duration::from_micros(before_us);
            let fired = Rc::clone(&fired);
            lp.call_at(when, move |lp| fired.borrow_mut().push((when, lp.time())));
        }
    }
    lp.call_at(base + Duration::from_millis(25), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    let fired = fired.borrow();
    assert_eq!(fired.len(), 50);
    for &(when, at) in fired.iter() {
        assert!(at >= when, "ran {:?} early", when - at);
        assert!(at - when < LATE);
    }
    assert!(fired.windows(2).all(|w| w[0].0 <= w[1].0), "deadline order");
}

fn equal_deadlines_run_in_scheduling_order<L: TestLoop>(lp: L) {
    let order = Rc::new(RefCell::new(Vec::new()));
    let when = lp.time() + Duration::from_millis(10);
    let later = when + Duration::from_millis(1);
    for i in 0..50 {
        let order = Rc::clone(&order);
        // Interleave a later deadline so the heap has to reorder.
        let at = if i % 3 == 0 { later } else { when };
        lp.call_at(at, move |_| order.borrow_mut().push((at == later, i)));
    }
    lp.call_at(later, |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    let order = order.borrow();
    let mut expected: Vec<(bool, i32)> = (0..50).map(|i| (i % 3 == 0, i)).collect();
    expected.sort_by_key(|&(is_later, _)| is_later); // stable: scheduling order kept
    assert_eq!(*order, expected);
}

fn timer_handles_cancel_and_clone<L: TestLoop>(lp: L) {
    let log = log();
    let a = lp.call_later(Duration::from_millis(1), push(&log, "a"));
    let b = lp.call_later(Duration::from_millis(2), push(&log, "b"));
    let c = lp.call_later(Duration::from_millis(3), push(&log, "c"));
    let b2 = b.clone();
    assert_eq!(b2.when(), b.when());
    b2.cancel();
    assert!(b.cancelled() && b2.cancelled());
    assert!(!a.cancelled() && !c.cancelled());
    lp.call_later(Duration::from_millis(10), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["a", "c"]);
    assert_eq!(lp.stats().timers_cancelled, 1);
}

fn timer_cancelled_by_a_timer_due_in_the_same_iteration<L: TestLoop>(lp: L) {
    let log = log();
    let when = lp.time() + Duration::from_millis(5);
    let victim = Rc::new(RefCell::new(None::<tulip::TimerHandle>));
    let v = Rc::clone(&victim);
    let l = Rc::clone(&log);
    lp.call_at(when, move |_| {
        l.borrow_mut().push("killer");
        v.borrow().as_ref().unwrap().cancel();
    });
    *victim.borrow_mut() = Some(lp.call_at(when, push(&log, "victim")));
    lp.call_at(when, push(&log, "after"));
    lp.call_later(Duration::from_millis(20), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["killer", "after"]);
}

fn call_later_counts_from_the_call_and_time_is_monotonic<L: TestLoop>(lp: L) {
    let mut previous = lp.time();
    for _ in 0..1000 {
        let now = lp.time();
        assert!(now >= previous);
        previous = now;
    }
    let before = Instant::now();
    let handle = lp.call_later(Duration::from_millis(250), |_| {});
    let after = Instant::now();
    assert!(handle.when() >= before + Duration::from_millis(250));
    assert!(handle.when() <= after + Duration::from_millis(250));
    // `time()` reads the clock at each call: it moves on its own.
    let t0 = lp.time();
    thread::sleep(Duration::from_millis(2));
    assert!(lp.time() >= t0 + Duration::from_millis(2));
    // call_at keeps the deadline it was given.
    let when = lp.time() + Duration::from_millis(7);
    assert_eq!(lp.call_at(when, |_| {}).when(), when);
}

fn a_huge_delay_neither_overflows_nor_blocks_others<L: TestLoop>(lp: L) {
    let huge = lp.call_later(Duration::MAX, |_| panic!("must never run"));
    assert!(huge.when() > lp.time() + Duration::from_secs(365 * 24 * 3600));
    let ran = Rc::new(Cell::new(false));
    let r = Rc::clone(&ran);
    lp.call_later(Duration::from_millis(5), move |lp| {
        r.set(true);
        lp.stop();
    });
    run_bounded(&lp, LIMIT);
    assert!(ran.get());
    huge.cancel();
}

fn a_million_cancelled_timers_do_not_grow_the_heap<L: TestLoop>(lp: L) {
    // Schedule and cancel in batches while the loop iterates: the heap must
    // be purged as it goes, not hold every cancelled timer.
    const TOTAL: usize = 1_000_000;
    const BATCH: usize = 10_000;
    let max_seen = Rc::new(Cell::new(0usize));
    fn batch<L: TestLoop>(lp: &L, left: usize, max_seen: Rc<Cell<usize>>) {
        max_seen.set(max_seen.get().max(lp.stats().timers_in_heap));
        if left == 0 {
            lp.stop();
            return;
        }
        let now = lp.time();
        for i in 0..BATCH {
            lp.call_at(now + Duration::from_secs(3600 + i as u64), |_| {}).cancel();
        }
        max_seen.set(max_seen.get().max(lp.stats().timers_in_heap));
        lp.call_soon(move |lp| batch(lp, left - BATCH, max_seen));
    }
    // One live timer must survive all the purging.
    let kept = lp.call_later(Duration::from_secs(3600), |_| {});
    let m = Rc::clone(&max_seen);
    lp.call_soon(move |lp| batch(lp, TOTAL, m));
    run_bounded(&lp, Duration::from_secs(60));
    assert!(max_seen.get() <= 2 * BATCH + 1, "heap grew to {}", max_seen.get());
    let stats = lp.stats();
    assert_eq!(stats.timers_cancelled, TOTAL as u64);
    assert!(stats.timers_in_heap <= 2 * BATCH + 1);
    assert!(!kept.cancelled());
}

fn cancelled_timers_are_purged_at_the_next_iteration<L: TestLoop>(lp: L) {
    // As asyncio: each iteration drops the cancelled timers at the top of the
    // heap; all of them once they are more than half of over 100 timers.
    let one_iteration = |lp: &L| {
        lp.stop();
        run_bounded(lp, LIMIT);
    };
    let live = lp.call_later(Duration::from_secs(3000), |_| {});
    for _ in 0..2 {
        lp.call_later(Duration::from_secs(3600), |_| {}).cancel();
    }
    for _ in 0..2 {
        lp.call_later(Duration::from_secs(100), |_| {}).cancel();
    }
    assert_eq!(lp.stats().timers_in_heap, 5, "cancelled timers stay until an iteration");
    one_iteration(&lp);
    assert_eq!(lp.stats().timers_in_heap, 3, "only the two at the top went");
    for _ in 0..49 {
        lp.call_later(Duration::from_secs(3600), |_| {});
    }
    for _ in 0..51 {
        lp.call_later(Duration::from_secs(3600), |_| {}).cancel();
    }
    assert_eq!(lp.stats().timers_in_heap, 103);
    one_iteration(&lp);
    assert_eq!(lp.stats().timers_in_heap, 50, "53 of 103 were cancelled: all purged");
    assert!(!live.cancelled());
}

fn a_cancelled_timer_does_not_shorten_the_wait_into_a_spin<L: TestLoop>(lp: L) {
    // A cancelled early timer is purged before the wait is computed: the
    // loop then blocks until the live timer, in a handful of iterations.
    let early = lp.call_later(Duration::from_millis(1), |_| panic!("cancelled"));
    early.cancel();
    lp.call_later(Duration::from_millis(30), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert!(lp.stats().iterations <= 5, "{} iterations", lp.stats().iterations);
}

// ---------------------------------------------------------------- stop

fn a_pre_stopped_empty_loop_polls_once_without_blocking<L: TestLoop>(lp: L) {
    // asyncio's test_run_forever_pre_stopped: one select(0), no blocking.
    let before = lp.stats();
    lp.stop();
    let start = Instant::now();
    lp.run_forever().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1), "the stopped iteration blocked");
    let after = lp.stats();
    assert_eq!(after.iterations, before.iterations + 1);
    assert_eq!(after.select_calls, before.select_calls + 1);
}

fn stop_before_run_forever_runs_exactly_one_iteration<L: TestLoop>(lp: L) {
    let log = log();
    let l = Rc::clone(&log);
    lp.call_soon(move |lp| {
        l.borrow_mut().push("first");
        let l = Rc::clone(&l);
        lp.call_soon(move |_| l.borrow_mut().push("second"));
    });
    // A timer far away must not make the single iteration block.
    lp.call_later(Duration::from_secs(30), push(&log, "timer"));
    lp.stop();
    let before = lp.stats().iterations;
    let start = Instant::now();
    run_bounded(&lp, LIMIT);
    assert!(start.elapsed() < Duration::from_secs(1), "the stopped iteration blocked");
    assert_eq!(lp.stats().iterations, before + 1);
    assert_eq!(*log.borrow(), ["first"]);
    assert!(!lp.is_running());
    // The callback scheduled during that iteration runs at the next run.
    lp.stop();
    run_bounded(&lp, LIMIT);
    assert_eq!(lp.stats().iterations, before + 2);
    assert_eq!(*log.borrow(), ["first", "second"]);
}

fn stop_with_nothing_scheduled_returns<L: TestLoop>(lp: L) {
    lp.stop();
    run_bounded(&lp, LIMIT);
    assert_eq!(lp.stats().iterations, 1);
    // stop() is consumed by that run: the next one needs its own stop.
    let ran = Rc::new(Cell::new(0));
    let r = Rc::clone(&ran);
    lp.call_later(Duration::from_millis(5), move |lp| {
        r.set(r.get() + 1);
        lp.stop();
    });
    run_bounded(&lp, LIMIT);
    assert_eq!(ran.get(), 1);
}

fn callbacks_scheduled_in_the_final_iteration_run_at_the_next_run<L: TestLoop>(lp: L) {
    let log = log();
    let l = Rc::clone(&log);
    lp.call_soon(move |lp| {
        l.borrow_mut().push("stopper");
        lp.stop();
        let l2 = Rc::clone(&l);
        lp.call_soon(move |_| l2.borrow_mut().push("next run"));
    });
    lp.call_soon(push(&log, "same iteration"));
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["stopper", "same iteration"]);
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["stopper", "same iteration", "next run"]);
}

fn an_iteration_runs_only_what_was_queued_when_it_began<L: TestLoop>(lp: L) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = Rc::clone(&seen);
    lp.call_soon(move |lp| {
        s.borrow_mut().push(("a", lp.stats().iterations));
        let s2 = Rc::clone(&s);
        lp.call_soon(move |lp| {
            s2.borrow_mut().push(("b", lp.stats().iterations));
            lp.stop();
        });
    });
    let s = Rc::clone(&seen);
    lp.call_soon(move |lp| s.borrow_mut().push(("c", lp.stats().iterations)));
    run_bounded(&lp, LIMIT);
    let seen = seen.borrow();
    assert_eq!(seen.iter().map(|e| e.0).collect::<Vec<_>>(), ["a", "c", "b"]);
    assert_eq!(seen[0].1, seen[1].1, "a and c share an iteration");
    assert_eq!(seen[2].1, seen[0].1 + 1, "b runs in the next iteration");
}

fn a_self_rescheduling_callback_lets_timers_run<L: TestLoop>(lp: L) {
    // call_soon chains run one link per iteration, so a due timer gets its turn.
    fn spin<L: AbstractEventLoop>(lp: &L, flag: Rc<Cell<bool>>, n: &Rc<Cell<u32>>) {
        n.set(n.get() + 1);
        if !flag.get() {
            let n = Rc::clone(n);
            lp.call_soon(move |lp| spin(lp, flag, &n));
        }
    }
    let flag = Rc::new(Cell::new(false));
    let n = Rc::new(Cell::new(0));
    let (f, n2) = (Rc::clone(&flag), Rc::clone(&n));
    lp.call_soon(move |lp| spin(lp, f, &n2));
    let f = Rc::clone(&flag);
    lp.call_later(Duration::from_millis(10), move |lp| {
        f.set(true);
        lp.stop();
    });
    run_bounded(&lp, LIMIT);
    assert!(flag.get(), "the timer ran while the chain went on");
    // One link per iteration, the last one's included (however slow the
    // machine, so however few iterations it took to reach the timer).
    let (links, iterations) = (u64::from(n.get()), lp.stats().iterations);
    assert!(links == iterations || links + 1 == iterations, "{links} links in {iterations} iterations");
}

// ---------------------------------------------------------------- running, closing

fn run_forever_is_not_reentrant<L: TestLoop>(lp: L) {
    let outcome = Rc::new(RefCell::new(None));
    let o = Rc::clone(&outcome);
    assert!(!lp.is_running());
    lp.call_soon(move |lp| {
        assert!(lp.is_running());
        *o.borrow_mut() = Some(lp.run_forever());
        lp.stop();
    });
    run_bounded(&lp, LIMIT);
    assert!(!lp.is_running());
    let outcome = outcome.borrow_mut().take().expect("the callback ran");
    assert_fails(outcome, io::ErrorKind::Other, "already running");
    // The failed nested call did not disturb the loop: it still runs.
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
}

fn close_while_running_fails<L: TestLoop>(lp: L) {
    let outcome = Rc::new(RefCell::new(None));
    let o = Rc::clone(&outcome);
    lp.call_soon(move |lp| {
        *o.borrow_mut() = Some(lp.close());
        assert!(!lp.is_closed());
        lp.stop();
    });
    run_bounded(&lp, LIMIT);
    assert_fails(
        outcome.borrow_mut().take().unwrap(),
        io::ErrorKind::Other,
        "cannot close a running event loop",
    );
    assert!(!lp.is_closed());
    lp.close().unwrap();
    assert!(lp.is_closed());
    lp.close().unwrap(); // idempotent
    assert!(lp.is_closed());
    // A closed loop does not run.
    assert_fails(lp.run_forever(), io::ErrorKind::Other, "event loop is closed");
}

fn close_drops_what_is_scheduled<L: TestLoop>(lp: L) {
    let captured = Rc::new(());
    let c = Rc::clone(&captured);
    lp.call_soon(move |_| drop(c));
    let c = Rc::clone(&captured);
    let timer = lp.call_later(Duration::from_secs(60), move |_| drop(c));
    let (_a, b) = common::socketpair();
    let c = Rc::clone(&captured);
    lp.add_reader(common::fd(&b), move |_| {
        let _ = &c;
    })
    .unwrap();
    assert_eq!(Rc::strong_count(&captured), 4);
    lp.close().unwrap();
    assert_eq!(Rc::strong_count(&captured), 1);
    assert!(lp.stats().timers_in_heap == 0);
    drop(timer);
}

fn scheduling_on_a_closed_loop_panics<L: TestLoop>(lp: L) {
    lp.close().unwrap();
    assert_panics_with("event loop is closed", || {
        lp.call_soon(|_| {});
    });
    assert_panics_with("event loop is closed", || {
        lp.call_later(Duration::from_millis(1), |_| {});
    });
    assert_panics_with("event loop is closed", || {
        lp.call_at(Instant::now(), |_| {});
    });
    assert_panics_with("event loop is closed", || {
        lp.call_soon_threadsafe(|_| {});
    });
}

fn io_and_handles_on_a_closed_loop_fail_quietly<L: TestLoop>(lp: L) {
    let handle = lp.handle();
    let (_a, b) = common::socketpair();
    let fd = common::fd(&b);
    lp.add_reader(fd, |_| {}).unwrap();
    lp.close().unwrap();
    assert_fails(lp.add_reader(fd, |_| {}), io::ErrorKind::Other, "event loop is closed");
    assert_fails(lp.add_writer(fd, |_| {}), io::ErrorKind::Other, "event loop is closed");
    assert_fails(lp.add_signal_handler(libc::SIGUSR2, |_| {}), io::ErrorKind::Other, "event loop is closed");
    assert!(!lp.remove_reader(fd).unwrap());
    assert!(!lp.remove_writer(fd).unwrap());
    assert!(!lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    assert_fails(handle.call_soon_threadsafe(|_| {}), io::ErrorKind::Other, "event loop is closed");
    assert_fails(handle.stop(), io::ErrorKind::Other, "event loop is closed");
    // A handle taken after close fails too.
    assert_fails(lp.handle().stop(), io::ErrorKind::Other, "event loop is closed");
    // The counters are still readable.
    let _ = lp.stats();
}

// ---------------------------------------------------------------- exceptions, debug

type Contexts = Rc<RefCell<Vec<ExceptionContext>>>;

fn record_exceptions<L: TestLoop>(lp: &L) -> Contexts {
    let contexts: Contexts = Rc::default();
    let c = Rc::clone(&contexts);
    lp.set_exception_handler(Some(Box::new(move |_, ctx| c.borrow_mut().push(ctx.clone()))));
    contexts
}

fn a_panicking_callback_goes_to_the_exception_handler<L: TestLoop>(lp: L) {
    let contexts = record_exceptions(&lp);
    let log = log();
    lp.call_soon(|_| panic!("boom from call_soon"));
    lp.call_soon(push(&log, "after"));
    lp.call_later(Duration::from_millis(1), |_| panic!("boom from a timer"));
    lp.call_later(Duration::from_millis(5), push(&log, "timer after"));
    lp.call_later(Duration::from_millis(10), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["after", "timer after"]);
    let contexts = contexts.borrow();
    assert_eq!(contexts.len(), 2);
    assert_eq!(contexts[0].panic.as_deref(), Some("boom from call_soon"));
    assert_eq!(contexts[1].panic.as_deref(), Some("boom from a timer"));
    for ctx in contexts.iter() {
        let origin = ctx.origin.expect("origin of the callback");
        assert_eq!(origin.file(), file!());
        assert!(!ctx.message.is_empty());
    }
    assert!(contexts[0].origin.unwrap().line() < contexts[1].origin.unwrap().line());
    assert_eq!(lp.stats().panics, 2);
}

fn a_formatted_panic_message_is_kept<L: TestLoop>(lp: L) {
    let contexts = record_exceptions(&lp);
    let n = 42;
    lp.call_soon(move |_| panic!("formatted {n}"));
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(contexts.borrow()[0].panic.as_deref(), Some("formatted 42"));
}

fn the_default_exception_handler_keeps_the_loop_running<L: TestLoop>(lp: L) {
    let contexts = record_exceptions(&lp);
    lp.set_exception_handler(None); // back to the default: one line on stderr
    let log = log();
    lp.call_soon(|_| panic!("reported on stderr by the default handler"));
    lp.call_soon(push(&log, "still running"));
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["still running"]);
    assert!(contexts.borrow().is_empty(), "the replaced handler was not called");
}

fn a_panicking_exception_handler_does_not_stop_the_loop<L: TestLoop>(lp: L) {
    lp.set_exception_handler(Some(Box::new(|_, _| panic!("the handler itself panics"))));
    let log = log();
    lp.call_soon(|_| panic!("first"));
    lp.call_soon(push(&log, "after"));
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["after"]);
}

fn debug_mode_reports_slow_callbacks<L: TestLoop>(lp: L) {
    assert!(!lp.get_debug());
    let contexts = record_exceptions(&lp);
    lp.set_slow_callback_duration(Duration::from_millis(20));
    // Not in debug mode: nothing reported.
    lp.call_soon(|_| thread::sleep(Duration::from_millis(30)));
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert!(contexts.borrow().is_empty());
    lp.set_debug(true);
    assert!(lp.get_debug());
    let slow_line = line!() + 1;
    lp.call_soon(|_| thread::sleep(Duration::from_millis(30)));
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    // (A busy machine may make the stopping callback slow too.)
    let contexts = contexts.borrow();
    let slow: Vec<_> = contexts.iter().filter(|ctx| ctx.origin.unwrap().line() == slow_line).collect();
    assert_eq!(slow.len(), 1, "{contexts:?}");
    assert!(slow[0].panic.is_none());
    assert_eq!(slow[0].origin.unwrap().file(), file!());
    assert!(!slow[0].message.is_empty());
}

/// The handler gets `&L` and may call back into the loop: here it
/// schedules a callback and stops the loop. The stop ends the run (what
/// is queued behind it waits for the next one), and the callback the
/// handler scheduled runs then.
fn the_exception_handler_may_use_the_loop<L: TestLoop>(lp: L) {
    let log = log();
    let handled: Rc<RefCell<Vec<Option<String>>>> = Rc::default();
    let (seen, scheduled) = (Rc::clone(&handled), Rc::clone(&log));
    lp.set_exception_handler(Some(Box::new(move |lp: &L, context: &ExceptionContext| {
        seen.borrow_mut().push(context.panic.clone());
        lp.call_soon(push(&scheduled, "scheduled by the handler"));
        lp.stop();
    })));
    lp.call_soon(|_| panic!("stop the loop through the handler"));
    let watchdog = Watchdog::new(&lp, LIMIT);
    lp.run_forever().unwrap();
    watchdog.disarm();
    assert_eq!(*handled.borrow(), [Some("stop the loop through the handler".to_owned())]);
    assert!(log.borrow().is_empty(), "the stop came first: {:?}", log.borrow());
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["scheduled by the handler"]);
}

// ---------------------------------------------------------------- stats

fn stats_count_iterations_callbacks_and_timers<L: TestLoop>(lp: L) {
    let before = lp.stats();
    assert_eq!((before.callbacks_run, before.iterations, before.timers_in_heap), (0, 0, 0));
    for _ in 0..10 {
        lp.call_soon(|_| {});
    }
    lp.call_soon(|_| {}).cancel(); // cancelled: not run, not counted
    lp.call_later(Duration::from_millis(1), |_| {});
    lp.call_later(Duration::from_millis(2), |lp| lp.stop());
    lp.call_later(Duration::from_secs(60), |_| {}).cancel();
    assert_eq!(lp.stats().timers_in_heap, 3, "cancelled timers count until purged");
    run_bounded(&lp, LIMIT);
    let stats = lp.stats();
    assert_eq!(stats.callbacks_run, 12);
    assert_eq!(stats.timers_fired, 2);
    assert_eq!(stats.timers_cancelled, 1);
    assert!(stats.timers_in_heap <= 1, "at most the cancelled one, purged on the next iteration");
    assert!(stats.iterations >= 1);
    assert!(stats.select_calls <= stats.iterations);
    assert_eq!(stats.panics, 0);
    // A watched fd: each iteration calls select once.
    let (_a, b) = common::readable_pair();
    lp.add_reader(common::fd(&b), |_| {}).unwrap();
    for _ in 0..3 {
        lp.stop();
        run_bounded(&lp, LIMIT);
    }
    let after = lp.stats();
    assert_eq!(after.iterations - stats.iterations, 3);
    assert_eq!(after.select_calls - stats.select_calls, 3);
    assert_eq!(after.events_received - stats.events_received, 3);
    assert_eq!(after.callbacks_run - stats.callbacks_run, 3);
}

per_backend!(
    a_pre_stopped_empty_loop_polls_once_without_blocking,
    call_soon_is_fifo,
    call_soon_threadsafe_on_the_loop_thread_is_fifo_with_call_soon,
    cancelled_handle_never_runs,
    cancel_from_an_earlier_callback_of_the_same_iteration,
    cancel_drops_the_callback,
    timers_run_in_deadline_order_and_never_early,
    timers_never_run_early_when_the_loop_wakes_just_before,
    equal_deadlines_run_in_scheduling_order,
    timer_handles_cancel_and_clone,
    timer_cancelled_by_a_timer_due_in_the_same_iteration,
    call_later_counts_from_the_call_and_time_is_monotonic,
    a_huge_delay_neither_overflows_nor_blocks_others,
    a_million_cancelled_timers_do_not_grow_the_heap,
    cancelled_timers_are_purged_at_the_next_iteration,
    a_cancelled_timer_does_not_shorten_the_wait_into_a_spin,
    stop_before_run_forever_runs_exactly_one_iteration,
    stop_with_nothing_scheduled_returns,
    callbacks_scheduled_in_the_final_iteration_run_at_the_next_run,
    an_iteration_runs_only_what_was_queued_when_it_began,
    a_self_rescheduling_callback_lets_timers_run,
    run_forever_is_not_reentrant,
    close_while_running_fails,
    close_drops_what_is_scheduled,
    scheduling_on_a_closed_loop_panics,
    io_and_handles_on_a_closed_loop_fail_quietly,
    a_panicking_callback_goes_to_the_exception_handler,
    a_formatted_panic_message_is_kept,
    the_default_exception_handler_keeps_the_loop_running,
    a_panicking_exception_handler_does_not_stop_the_loop,
    debug_mode_reports_slow_callbacks,
    the_exception_handler_may_use_the_loop,
    stats_count_iterations_callbacks_and_timers,
);

/// The timer cases again, on virtual time (`tulip::testing::TestLoop`):
/// order, never early, cancellation and purging hold there as on the real
/// clock, and none of them sleeps.
mod virtual_time {
    fn lp() -> tulip::SelectorEventLoop {
        tulip::testing::TestLoop::new().unwrap().into_inner()
    }

    macro_rules! on_virtual_time {
        ($($case:ident),* $(,)?) => {$(
            #[test]
            fn $case() {
                let wall = std::time::Instant::now();
                super::$case(lp());
                assert!(wall.elapsed() < std::time::Duration::from_secs(2), "virtual time slept");
            }
        )*};
    }

    on_virtual_time!(
        timers_run_in_deadline_order_and_never_early,
        timers_never_run_early_when_the_loop_wakes_just_before,
        equal_deadlines_run_in_scheduling_order,
        timer_handles_cancel_and_clone,
        timer_cancelled_by_a_timer_due_in_the_same_iteration,
        a_huge_delay_neither_overflows_nor_blocks_others,
        cancelled_timers_are_purged_at_the_next_iteration,
    );
    // Not `a_self_rescheduling_callback_lets_timers_run`: on virtual time a
    // loop that always has a callback ready never waits, so time never
    // passes and the timer never comes due (asyncio's test loop alike).
}
