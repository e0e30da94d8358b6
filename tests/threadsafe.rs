//! Scheduling from other threads through `LoopHandle`: waking a loop
//! blocked in `select`, many threads at once, `stop`, and what happens once
//! the loop is closed. Every case runs on `SelectorEventLoop` and on each
//! backend.

#[macro_use]
mod common;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_fails, run_bounded, TestLoop, LIMIT};
use tulip::{ExceptionContext, LoopHandle};

/// How long a wake-up may take before we call it lost (generous: 2 cores, shared).
const WAKE_LIMIT: Duration = Duration::from_secs(2);

fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

fn a_blocked_loop_is_woken<L: TestLoop>(lp: L) {
    assert_send_sync_clone::<LoopHandle<L>>();
    // No timers, no fds: the loop can only block in select until woken.
    let handle = lp.handle();
    let (sent_tx, sent_rx) = mpsc::channel::<Instant>();
    let started = Instant::now();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        sent_tx.send(Instant::now()).unwrap();
        handle.call_soon_threadsafe(|lp: &L| lp.stop()).unwrap();
    });
    run_bounded(&lp, LIMIT);
    let returned = Instant::now();
    sender.join().unwrap();
    let sent = sent_rx.recv().unwrap();
    assert!(returned >= sent);
    assert!(returned - sent < WAKE_LIMIT, "woken after {:?}", returned - sent);
    assert!(returned - started >= Duration::from_millis(100));
    let stats = lp.stats();
    assert!(stats.iterations <= 5, "the loop spun instead of blocking: {stats:?}");
    assert!(stats.time_blocked >= Duration::from_millis(50), "{stats:?}");
}

fn handle_stop_wakes_and_stops_a_blocked_loop<L: TestLoop>(lp: L) {
    let handle = lp.handle();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        handle.stop()
    });
    let started = Instant::now();
    run_bounded(&lp, LIMIT);
    assert!(started.elapsed() < WAKE_LIMIT + Duration::from_millis(50));
    stopper.join().unwrap().unwrap();
    assert!(!lp.is_running());
}

fn a_loop_waiting_for_a_timer_is_woken_early<L: TestLoop>(lp: L) {
    lp.call_later(Duration::from_secs(30), |_| panic!("the timer must not be reached"));
    let handle = lp.handle();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        handle.stop().unwrap();
    });
    let started = Instant::now();
    run_bounded(&lp, LIMIT);
    assert!(started.elapsed() < WAKE_LIMIT);
    sender.join().unwrap();
}

fn four_threads_times_ten_thousand_calls_each_run_once<L: TestLoop>(lp: L) {
    const THREADS: usize = 4;
    const CALLS: usize = 10_000;
    // Callbacks must be Send, so each records into a thread-local of the
    // loop's thread.
    thread_local!(static SEEN: RefCell<Vec<Vec<usize>>> = const { RefCell::new(Vec::new()) });
    SEEN.with(|s| *s.borrow_mut() = vec![Vec::new(); THREADS]);
    let total = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(THREADS));
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (handle, total, start) = (lp.handle(), Arc::clone(&total), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..CALLS {
                    let total = Arc::clone(&total);
                    handle
                        .call_soon_threadsafe(move |lp: &L| {
                            SEEN.with(|s| s.borrow_mut()[t].push(i));
                            if total.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * CALLS {
                                lp.stop();
                            }
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    run_bounded(&lp, Duration::from_secs(30));
    for sender in senders {
        sender.join().unwrap();
    }
    assert_eq!(total.load(Ordering::SeqCst), THREADS * CALLS);
    SEEN.with(|s| {
        for (t, seen) in s.borrow().iter().enumerate() {
            // Exactly once each, in the order each thread made its calls.
            assert_eq!(*seen, (0..CALLS).collect::<Vec<_>>(), "thread {t}");
        }
    });
    assert!(lp.stats().callbacks_run >= (THREADS * CALLS) as u64);
}

fn calls_made_before_run_forever_run_in_its_first_iteration<L: TestLoop>(lp: L) {
    let handle = lp.handle();
    let counter = Arc::new(AtomicUsize::new(0));
    thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..3 {
                let counter = Arc::clone(&counter);
                handle
                    .call_soon_threadsafe(move |_: &L| {
                        counter.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
            }
        });
    });
    lp.stop();
    run_bounded(&lp, LIMIT);
    assert_eq!(counter.load(Ordering::SeqCst), 3);
    assert_eq!(lp.stats().iterations, 1);
}

fn a_handle_used_on_the_loop_thread_runs_in_a_later_iteration<L: TestLoop>(lp: L) {
    let iterations = Arc::new(std::sync::Mutex::new(Vec::new()));
    let i = Arc::clone(&iterations);
    lp.call_soon(move |lp: &L| {
        i.lock().unwrap().push(lp.stats().iterations);
        let i = Arc::clone(&i);
        lp.handle()
            .call_soon_threadsafe(move |lp: &L| {
                i.lock().unwrap().push(lp.stats().iterations);
                lp.stop();
            })
            .unwrap();
    });
    run_bounded(&lp, LIMIT);
    let iterations = iterations.lock().unwrap();
    assert_eq!(iterations.len(), 2);
    assert_eq!(iterations[1], iterations[0] + 1);
}

fn a_panicking_threadsafe_callback_is_reported<L: TestLoop>(lp: L) {
    let contexts: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
    let c = Rc::clone(&contexts);
    lp.set_exception_handler(Some(Box::new(move |_, ctx| c.borrow_mut().push(ctx.clone()))));
    let handle = lp.handle();
    let line = line!() + 2;
    let sender = thread::spawn(move || {
        handle.call_soon_threadsafe(|_: &L| panic!("threadsafe boom")).unwrap();
        handle.stop().unwrap();
    });
    sender.join().unwrap();
    run_bounded(&lp, LIMIT);
    let contexts = contexts.borrow();
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0].panic.as_deref(), Some("threadsafe boom"));
    let origin = contexts[0].origin.unwrap();
    assert_eq!((origin.file(), origin.line()), (file!(), line));
}

fn a_handle_fails_once_the_loop_is_closed_or_dropped<L: TestLoop>(lp: L) {
    let handle = lp.handle();
    let clone = handle.clone();
    assert!(!handle.is_closed());
    handle.call_soon_threadsafe(|_: &L| {}).unwrap();
    lp.close().unwrap();
    assert!(handle.is_closed() && clone.is_closed());
    assert_fails(handle.call_soon_threadsafe(|_: &L| {}), io::ErrorKind::Other, "event loop is closed");
    assert_fails(clone.stop(), io::ErrorKind::Other, "event loop is closed");
    // From another thread too.
    thread::spawn(move || {
        assert_fails(clone.call_soon_threadsafe(|_: &L| {}), io::ErrorKind::Other, "event loop is closed")
    })
    .join()
    .unwrap();
}

fn a_handle_fails_once_the_loop_is_dropped<L: TestLoop>(lp: L) {
    let handle = lp.handle();
    drop(lp);
    assert!(handle.is_closed());
    assert_fails(handle.call_soon_threadsafe(|_: &L| {}), io::ErrorKind::Other, "event loop is closed");
    assert_fails(handle.stop(), io::ErrorKind::Other, "event loop is closed");
}

fn many_separate_wakeups_all_arrive<L: TestLoop>(lp: L) {
    // Calls spaced out so the loop goes back to sleep between them: each
    // one needs its own wake-up.
    const CALLS: usize = 50;
    let count = Arc::new(AtomicUsize::new(0));
    let handle = lp.handle();
    let c = Arc::clone(&count);
    let sender = thread::spawn(move || {
        for _ in 0..CALLS {
            thread::sleep(Duration::from_millis(1));
            let c = Arc::clone(&c);
            handle
                .call_soon_threadsafe(move |lp: &L| {
                    if c.fetch_add(1, Ordering::SeqCst) + 1 == CALLS {
                        lp.stop();
                    }
                })
                .unwrap();
        }
    });
    run_bounded(&lp, LIMIT);
    sender.join().unwrap();
    assert_eq!(count.load(Ordering::SeqCst), CALLS);
}

fn threadsafe_calls_and_call_soon_run_in_the_order_they_were_made<L: TestLoop>(lp: L) {
    // asyncio puts both on one queue: a call another thread made before a
    // `call_soon` on the loop's thread runs before it.
    thread_local!(static ORDER: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) });
    ORDER.with(|o| o.borrow_mut().clear());
    fn record(what: &'static str) {
        ORDER.with(|o| o.borrow_mut().push(what));
    }
    let handle = lp.handle();
    let h = handle.clone();
    thread::spawn(move || h.call_soon_threadsafe(|_: &L| record("other thread, first")).unwrap())
        .join()
        .unwrap();
    lp.call_soon(|_| record("loop thread, second"));
    lp.call_soon(move |lp| {
        record("loop thread, third");
        // The same while running: the thread's call, made before the
        // call_soon below, runs before it, both in the next iteration.
        let h = handle.clone();
        thread::spawn(move || h.call_soon_threadsafe(|_: &L| record("other thread, fifth")).unwrap())
            .join()
            .unwrap();
        lp.call_soon(|lp| {
            record("loop thread, sixth");
            lp.stop();
        });
    });
    lp.call_soon(|_| record("loop thread, fourth"));
    run_bounded(&lp, LIMIT);
    assert_eq!(
        ORDER.with(|o| o.borrow().clone()),
        [
            "other thread, first",
            "loop thread, second",
            "loop thread, third",
            "loop thread, fourth",
            "other thread, fifth",
            "loop thread, sixth"
        ]
    );
}

fn a_threadsafe_call_made_before_an_fd_became_ready_runs_before_its_reader<L: TestLoop>(lp: L) {
    thread_local!(static ORDER: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) });
    ORDER.with(|o| o.borrow_mut().clear());
    let (mut a, b) = common::socketpair();
    lp.add_reader(common::fd(&b), |lp| {
        ORDER.with(|o| o.borrow_mut().push("reader"));
        lp.stop();
    })
    .unwrap();
    let handle = lp.handle();
    thread::spawn(move || {
        handle.call_soon_threadsafe(|_: &L| ORDER.with(|o| o.borrow_mut().push("threadsafe"))).unwrap()
    })
    .join()
    .unwrap();
    std::io::Write::write_all(&mut a, b"x").unwrap();
    run_bounded(&lp, LIMIT);
    assert_eq!(ORDER.with(|o| o.borrow().clone()), ["threadsafe", "reader"]);
}

per_backend!(
    a_blocked_loop_is_woken,
    handle_stop_wakes_and_stops_a_blocked_loop,
    a_loop_waiting_for_a_timer_is_woken_early,
    four_threads_times_ten_thousand_calls_each_run_once,
    calls_made_before_run_forever_run_in_its_first_iteration,
    a_handle_used_on_the_loop_thread_runs_in_a_later_iteration,
    a_panicking_threadsafe_callback_is_reported,
    a_handle_fails_once_the_loop_is_closed_or_dropped,
    a_handle_fails_once_the_loop_is_dropped,
    many_separate_wakeups_all_arrive,
    threadsafe_calls_and_call_soon_run_in_the_order_they_were_made,
    a_threadsafe_call_made_before_an_fd_became_ready_runs_before_its_reader,
);
