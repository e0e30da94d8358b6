//! Lock, Event, Condition, Semaphore and BoundedSemaphore, checked the way
//! CPython's `test_asyncio/test_locks.py` checks asyncio's: FIFO fairness,
//! cancellation of a waiter, no lost wake-up when a waiter that was woken
//! is cancelled, notifications passed on; on every backend.
//!
//! asyncio's tests step the loop with `await asyncio.sleep(0)`; these step
//! it with `one_iteration` from outside. A guard is `forget()`ten where the
//! ported test acquires without `async with` and releases elsewhere.

#[macro_use]
mod common;
mod sync_common;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sync_common::{iterations, one_iteration, run, run_until, strings, yield_now, Log, SLACK};
use tulip::{
    is_cancelled, AbstractEventLoop, BoundedSemaphore, Condition, DynSelectorEventLoop, Event, Lock,
    Semaphore, Task, TaskGroup,
};

backend_tests!(
    run_on_thread:
    // Lock
    lock_acquire_is_fifo,
    lock_acquire_cancelled_leaves_no_waiter,
    lock_cancel_race,
    lock_cancel_release_race,
    lock_finished_waiter_cancelled,
    lock_woken_waiter_cancelled_passes_the_lock_on,
    lock_newcomer_queues_behind_a_woken_waiter,
    lock_release_not_acquired,
    lock_release_no_waiters,
    lock_guard_releases_on_drop,
    lock_random_cancellations_never_lose_the_lock,
    lock_acquire_under_wait_for_times_out_cleanly,
    // Event
    event_wait,
    event_wait_on_set,
    event_wait_cancel,
    event_clear,
    event_clear_with_waiters,
    // Condition
    condition_wait,
    condition_wait_cancel_releases_the_lock,
    condition_wait_cancel_after_notify,
    condition_cancelled_after_notify_passes_it_on,
    condition_wait_with_another_locks_guard,
    condition_wait_for,
    condition_wait_for_true_at_once,
    condition_notify,
    condition_notify_all,
    condition_notify_unacquired,
    condition_explicit_lock,
    condition_wait_under_wait_for,
    // Semaphore, BoundedSemaphore
    semaphore_initial_value_zero,
    semaphore_acquire,
    semaphore_acquire_cancel,
    semaphore_acquire_cancel_before_awoken,
    semaphore_acquire_hang,
    semaphore_acquire_no_hang,
    semaphore_release_no_waiters,
    semaphore_fifo_order,
    semaphore_fifo_order_2,
    semaphore_fifo_order_3,
    bounded_semaphore_release_too_many,
    bounded_semaphore_guard_keeps_the_bound,
);

type Lp = DynSelectorEventLoop;

/// Takes `lock` on the loop and keeps it (no guard).
fn hold(lp: &Lp, lock: &Lock) {
    run(lp, lock.acquire()).forget();
    assert!(lock.locked());
}

/// A task that takes `lock`, logs `tag`, and keeps the lock (asyncio's
/// `await lock.acquire(); result.append(tag)`).
fn lock_and_log(lp: &Lp, lock: &Lock, log: &Log, tag: &'static str) -> Task<()> {
    let (lock, log) = (lock.clone(), log.clone());
    lp.create_task(async move {
        lock.acquire().await.forget();
        log.push(tag);
    })
}

fn assert_cancelled<T: std::fmt::Debug>(outcome: io::Result<T>) {
    let err = outcome.expect_err("cancelled");
    assert!(is_cancelled(&err), "{err}");
}

// ---------------------------------------------------------------------------
// Lock

fn lock_acquire_is_fifo(lp: Lp) {
    // test_acquire
    let lock = Lock::new();
    let log = Log::default();
    hold(&lp, &lock);
    let t1 = lock_and_log(&lp, &lock, &log, "1");
    let t2 = lock_and_log(&lp, &lock, &log, "2");
    one_iteration(&lp);
    assert!(log.get().is_empty());
    assert_eq!(lock.waiters(), 2);
    lock.release().unwrap();
    one_iteration(&lp);
    assert_eq!(log.get(), strings(&["1"]));
    one_iteration(&lp);
    assert_eq!(log.get(), strings(&["1"]), "t1 keeps the lock");
    let t3 = lock_and_log(&lp, &lock, &log, "3");
    lock.release().unwrap();
    one_iteration(&lp);
    assert_eq!(log.get(), strings(&["1", "2"]), "t3 arrived later: it waits behind t2");
    lock.release().unwrap();
    one_iteration(&lp);
    assert_eq!(log.get(), strings(&["1", "2", "3"]));
    assert!(t1.done() && t2.done() && t3.done());
    assert!(lock.locked());
}

fn lock_acquire_cancelled_leaves_no_waiter(lp: Lp) {
    // test_acquire_cancel
    let lock = Lock::new();
    hold(&lp, &lock);
    let task = lp.create_task(lock.acquire());
    let canceller = task.clone();
    lp.call_soon(move |_| {
        canceller.cancel();
    });
    assert_cancelled(run(&lp, task));
    assert_eq!(lock.waiters(), 0);
    assert!(lock.locked(), "still held by its owner");
}

/// A task that takes `lock`, awaits `blocker` (if any), and releases.
fn lockit(lp: &Lp, lock: &Lock, blocker: Option<tulip::Future<()>>) -> Task<()> {
    let lock = lock.clone();
    lp.create_task(async move {
        let _guard = lock.acquire().await;
        if let Some(blocker) = blocker {
            let _ = blocker.await;
        }
    })
}

fn lock_cancel_race(lp: Lp) {
    // test_cancel_race: A holds the lock, B and C wait; B is cancelled as
    // A releases: C must get the lock.
    let lock = Lock::new();
    let fa = lp.create_future::<()>();
    let ta = lockit(&lp, &lock, Some(fa.clone()));
    one_iteration(&lp);
    assert!(lock.locked());
    let tb = lockit(&lp, &lock, None);
    one_iteration(&lp);
    assert_eq!(lock.waiters(), 1);
    let tc = lockit(&lp, &lock, None);
    one_iteration(&lp);
    assert_eq!(lock.waiters(), 2);

    fa.set_result(()).unwrap();
    tb.cancel();
    run(&lp, tc.clone()).unwrap();
    assert!(ta.done() && tb.cancelled() && tc.done());
    assert!(!lock.locked());
    assert_eq!(lock.waiters(), 0);
}

fn lock_cancel_release_race(lp: Lp) {
    // test_cancel_release_race (bpo-32734): the first waiter is cancelled
    // as the lock is released: only one of the others takes it.
    let lock = Lock::new();
    let taken = Rc::new(Cell::new(0));
    let calls = Rc::new(Cell::new(0));
    let lockit = |lock: &Lock| {
        let (lock, taken, calls) = (lock.clone(), Rc::clone(&taken), Rc::clone(&calls));
        lp.create_task(async move {
            calls.set(calls.get() + 1);
            lock.acquire().await.forget();
            taken.set(taken.get() + 1);
        })
    };
    hold(&lp, &lock);
    let t1 = lockit(&lock);
    let t2 = lockit(&lock);
    let t3 = lockit(&lock);
    one_iteration(&lp);
    let (trigger_lock, trigger_t1) = (lock.clone(), t1.clone());
    lp.call_soon(move |_| {
        trigger_t1.cancel();
        trigger_lock.release().unwrap();
    });
    assert_cancelled(run(&lp, t1.clone()));
    run_until(&lp, "t2 to take the lock", || t2.done());
    iterations(&lp, 3);
    assert_eq!(taken.get(), 1, "only one took the lock");
    assert_eq!(calls.get(), 3);
    assert!(t1.cancelled() && t2.done() && !t3.done());
    t3.cancel();
    assert_cancelled(run(&lp, t3.clone()));
}

fn lock_finished_waiter_cancelled(lp: Lp) {
    // test_finished_waiter_cancelled: a waiter woken by the release, then
    // cancelled, hands the lock to the next one.
    let lock = Lock::new();
    hold(&lp, &lock);
    let tb = lp.create_task(lock.acquire());
    one_iteration(&lp);
    assert_eq!(lock.waiters(), 1);
    let tc = lp.create_task(lock.acquire());
    tb.cancel();
    lock.release().unwrap();
    run_until(&lp, "tc to take the lock", || tc.done());
    assert!(lock.locked(), "tc holds it");
    assert!(tb.cancelled());
    drop(run(&lp, tc).unwrap());
    assert!(!lock.locked());
}

fn lock_woken_waiter_cancelled_passes_the_lock_on(lp: Lp) {
    // No lost wake-up: the lock is released, which wakes W1; W1 is
    // cancelled before it runs; W2 (and later W3) still get the lock.
    let lock = Lock::new();
    let log = Log::default();
    hold(&lp, &lock);
    let w1 = lock_and_log(&lp, &lock, &log, "w1");
    let w2 = lock_and_log(&lp, &lock, &log, "w2");
    let w3 = lock_and_log(&lp, &lock, &log, "w3");
    one_iteration(&lp);
    assert_eq!(lock.waiters(), 3);
    lock.release().unwrap();
    assert!(!lock.locked(), "free until the woken waiter runs");
    w1.cancel();
    one_iteration(&lp);
    assert!(w1.cancelled());
    run_until(&lp, "w2 to take the lock", || w2.done());
    assert_eq!(log.get(), strings(&["w2"]));
    lock.release().unwrap();
    run_until(&lp, "w3 to take the lock", || w3.done());
    assert_eq!(log.get(), strings(&["w2", "w3"]));
    assert_eq!(lock.waiters(), 0);
}

fn lock_newcomer_queues_behind_a_woken_waiter(lp: Lp) {
    // Fairness: while the woken first waiter has not run, the lock is free
    // (locked() is false) but a newcomer still queues behind it.
    let lock = Lock::new();
    let log = Log::default();
    hold(&lp, &lock);
    let waiter = lock_and_log(&lp, &lock, &log, "waiter");
    one_iteration(&lp);
    // Created first, so it runs before the waiter in the next iteration.
    let newcomer = lock_and_log(&lp, &lock, &log, "newcomer");
    lock.release().unwrap();
    assert!(!lock.locked());
    one_iteration(&lp);
    assert_eq!(log.get(), strings(&["waiter"]));
    assert!(waiter.done() && !newcomer.done());
    lock.release().unwrap();
    run(&lp, newcomer).unwrap();
    assert_eq!(log.get(), strings(&["waiter", "newcomer"]));
}

fn lock_release_not_acquired(_lp: Lp) {
    let err = Lock::new().release().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(err.to_string(), "lock is not acquired");
}

fn lock_release_no_waiters(lp: Lp) {
    let lock = Lock::new();
    hold(&lp, &lock);
    lock.release().unwrap();
    assert!(!lock.locked());
}

fn lock_guard_releases_on_drop(lp: Lp) {
    // test_context_manager
    let lock = Lock::new();
    assert!(!lock.locked());
    let guard = run(&lp, lock.acquire());
    assert!(lock.locked());
    assert!(guard.lock().locked());
    drop(guard);
    assert!(!lock.locked());
    assert_eq!(format!("{lock:?}"), "Lock { locked: false, waiters: 0 }");
}

fn lock_random_cancellations_never_lose_the_lock(lp: Lp) {
    // Many tasks take the lock for a moment while others are cancelled at
    // every stage (queued, woken, holding): never two inside, the rest
    // all get through in the order they came.
    let lp = Rc::new(lp);
    let lock = Lock::new();
    let inside = Rc::new(Cell::new(0));
    let log = Log::default();
    let tasks: Vec<Task<()>> = (0..40)
        .map(|i| {
            let (lock, inside, log) = (lock.clone(), Rc::clone(&inside), log.clone());
            lp.create_task(async move {
                let _guard = lock.acquire().await;
                inside.set(inside.get() + 1);
                assert_eq!(inside.get(), 1, "two tasks inside the lock");
                log.push(i);
                yield_now().await;
                inside.set(inside.get() - 1);
            })
        })
        .collect();
    // Cancel every third task, spread over the first iterations.
    let mut seed = 7u32;
    for task in tasks.iter().skip(1).step_by(3) {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        if seed % 2 == 0 {
            one_iteration(&lp);
        }
        task.cancel();
    }
    run_until(&lp, "every task to end", || tasks.iter().all(Task::done));
    let finished: Vec<usize> =
        tasks.iter().enumerate().filter(|(_, t)| !t.cancelled()).map(|(i, _)| i).collect();
    let logged: Vec<usize> = log.get().iter().map(|s| s.parse().unwrap()).collect();
    // Cancelled while holding the lock is possible too: those logged but
    // ended cancelled. All the others got the lock, in order.
    assert!(finished.iter().all(|i| logged.contains(i)), "{finished:?} vs {logged:?}");
    let mut sorted = logged.clone();
    sorted.sort_unstable();
    assert_eq!(logged, sorted, "FIFO");
    assert!(!lock.locked());
    assert_eq!(lock.waiters(), 0);
}

fn lock_acquire_under_wait_for_times_out_cleanly(lp: Lp) {
    // test_waitfor's shape on a lock: the timed-out acquire leaves the line.
    let lock = Lock::new();
    hold(&lp, &lock);
    let start = Instant::now();
    let err = run(&lp, tulip::wait_for(&lp, lock.acquire(), Duration::from_millis(10))).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(took >= Duration::from_millis(10) && took < Duration::from_millis(10) + SLACK, "{took:?}");
    assert_eq!(lock.waiters(), 0);
    lock.release().unwrap();
    drop(run(&lp, lock.acquire()));
}

// ---------------------------------------------------------------------------
// Event

fn wait_and_log(lp: &Lp, event: &Event, log: &Log, tag: &'static str) -> Task<()> {
    let (event, log) = (event.clone(), log.clone());
    lp.create_task(async move {
        event.wait().await;
        log.push(tag);
    })
}

fn event_wait(lp: Lp) {
    // test_wait: t3 starts after the set, so it passes first.
    let event = Event::new();
    assert!(!event.is_set());
    let log = Log::default();
    let t1 = wait_and_log(&lp, &event, &log, "1");
    let t2 = wait_and_log(&lp, &event, &log, "2");
    one_iteration(&lp);
    assert!(log.get().is_empty());
    let t3 = wait_and_log(&lp, &event, &log, "3");
    event.set();
    one_iteration(&lp);
    assert_eq!(log.get(), strings(&["3", "1", "2"]));
    assert!(t1.done() && t2.done() && t3.done());
}

fn event_wait_on_set(lp: Lp) {
    let event = Event::new();
    event.set();
    run(&lp, event.wait());
    assert!(event.is_set());
}

fn event_wait_cancel(lp: Lp) {
    let event = Event::new();
    let task = lp.create_task(event.wait());
    let canceller = task.clone();
    lp.call_soon(move |_| {
        canceller.cancel();
    });
    assert_cancelled(run(&lp, task));
    assert_eq!(event.waiters(), 0);
}

fn event_clear(_lp: Lp) {
    let event = Event::new();
    assert!(!event.is_set());
    event.set();
    assert!(event.is_set());
    event.clear();
    assert!(!event.is_set());
}

fn event_clear_with_waiters(lp: Lp) {
    // A set wakes the waiters of that moment, even if cleared before they run.
    let event = Event::new();
    let log = Log::default();
    let task = wait_and_log(&lp, &event, &log, "1");
    one_iteration(&lp);
    assert!(log.get().is_empty());
    event.set();
    event.clear();
    assert!(!event.is_set());
    event.set();
    event.set();
    assert_eq!(event.waiters(), 1);
    one_iteration(&lp);
    assert_eq!(log.get(), strings(&["1"]));
    assert_eq!(event.waiters(), 0);
    assert!(task.done());
}

// ---------------------------------------------------------------------------
// Condition

/// A task that takes the condition's lock, waits once, logs `tag` and
/// keeps the lock.
fn cond_wait_and_log(lp: &Lp, cond: &Condition, log: &Log, tag: &'static str) -> Task<io::Result<()>> {
    let (cond, log) = (cond.clone(), log.clone());
    lp.create_task(async move {
        let guard = cond.acquire().await;
        let guard = cond.wait(guard).await?;
        log.push(tag);
        guard.forget();
        Ok(())
    })
}

fn condition_wait(lp: Lp) {
    // test_wait
    let cond = Condition::new();
    let log = Log::default();
    let tasks: Vec<_> = ["1", "2", "3"].map(|tag| cond_wait_and_log(&lp, &cond, &log, tag)).into();
    one_iteration(&lp);
    assert!(log.get().is_empty());
    assert!(!cond.locked());
    assert_eq!(cond.waiters(), 3);

    run(&lp, cond.acquire()).forget();
    cond.notify(1).unwrap();
    one_iteration(&lp);
    assert!(log.get().is_empty(), "notified, but the lock is held");
    assert!(cond.locked());

    cond.lock().release().unwrap();
    iterations(&lp, 2);
    assert_eq!(log.get(), strings(&["1"]));
    assert!(cond.locked(), "t1 holds the lock now");

    cond.notify(2).unwrap();
    iterations(&lp, 2);
    assert_eq!(log.get(), strings(&["1"]));
    assert!(cond.locked());

    cond.lock().release().unwrap();
    iterations(&lp, 2);
    assert_eq!(log.get(), strings(&["1", "2"]));
    assert!(cond.locked());

    cond.lock().release().unwrap();
    iterations(&lp, 2);
    assert_eq!(log.get(), strings(&["1", "2", "3"]));
    assert!(cond.locked());
    for task in tasks {
        run(&lp, task).unwrap().unwrap();
    }
}

fn condition_wait_cancel_releases_the_lock(lp: Lp) {
    // test_wait_cancel, in Rust's shape: the guard went into the cancelled
    // wait, so the lock is released (asyncio re-acquires it first).
    let cond = Condition::new();
    let guard = run(&lp, cond.acquire());
    let wait = lp.create_task(cond.wait(guard));
    one_iteration(&lp);
    assert!(!cond.locked(), "released while waiting");
    assert_eq!(cond.waiters(), 1);
    wait.cancel();
    assert_cancelled(run(&lp, wait));
    assert_eq!(cond.waiters(), 0);
    assert!(!cond.locked());
}

fn condition_wait_cancel_after_notify(lp: Lp) {
    // test_wait_cancel_after_notify (bpo-32841): notified, then cancelled
    // while waiting for the lock: the task ends cancelled, the lock free.
    let cond = Condition::new();
    let waited = Rc::new(Cell::new(false));
    let (c, w) = (cond.clone(), Rc::clone(&waited));
    let waiter = lp.create_task(async move {
        let guard = c.acquire().await;
        w.set(true);
        let _guard = c.wait(guard).await;
    });
    one_iteration(&lp);
    run(&lp, cond.acquire()).forget();
    cond.notify(1).unwrap();
    one_iteration(&lp); // to the re-acquire
    waiter.cancel();
    one_iteration(&lp); // the cancellation
    cond.lock().release().unwrap();
    one_iteration(&lp);
    assert!(waiter.cancelled());
    assert!(waited.get());
    assert!(!cond.locked());
    assert_eq!(cond.lock().waiters(), 0);
}

fn condition_cancelled_after_notify_passes_it_on(lp: Lp) {
    // A notification that reached a task cancelled before it could act on
    // it goes to the next waiter: none is lost.
    let cond = Condition::new();
    let log = Log::default();
    let first = cond_wait_and_log(&lp, &cond, &log, "first");
    let second = cond_wait_and_log(&lp, &cond, &log, "second");
    one_iteration(&lp);
    assert_eq!(cond.waiters(), 2);
    run(&lp, cond.acquire()).forget();
    cond.notify(1).unwrap();
    first.cancel();
    cond.lock().release().unwrap();
    run_until(&lp, "the second waiter to be notified", || second.done());
    assert_eq!(log.get(), strings(&["second"]));
    assert!(first.cancelled());
    run(&lp, second).unwrap().unwrap();
}

fn condition_wait_with_another_locks_guard(lp: Lp) {
    // test_wait_unacquired: waiting needs this condition's lock.
    let cond = Condition::new();
    let other = Lock::new();
    let guard = run(&lp, other.acquire());
    let err = run(&lp, cond.wait(guard)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(!other.locked(), "the guard was dropped");
    let guard = run(&lp, other.acquire());
    let err = run(&lp, cond.wait_for(guard, || true)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

fn condition_wait_for(lp: Lp) {
    // test_wait_for
    let cond = Condition::new();
    let ready = Rc::new(Cell::new(false));
    let log = Log::default();
    let (c, r, l) = (cond.clone(), Rc::clone(&ready), log.clone());
    let task = lp.create_task(async move {
        let guard = c.acquire().await;
        let guard = c.wait_for(guard, || r.get()).await?;
        l.push("1");
        drop(guard);
        Ok::<_, io::Error>(())
    });
    one_iteration(&lp);
    assert!(log.get().is_empty());

    let notify = |cond: &Condition| {
        let guard = run(&lp, cond.acquire());
        cond.notify(1).unwrap();
        drop(guard);
    };
    notify(&cond);
    iterations(&lp, 3);
    assert!(log.get().is_empty(), "notified, predicate still false: waits again");

    ready.set(true);
    notify(&cond);
    iterations(&lp, 3);
    assert_eq!(log.get(), strings(&["1"]));
    run(&lp, task).unwrap().unwrap();
    assert!(!cond.locked());
}

fn condition_wait_for_true_at_once(lp: Lp) {
    // test_wait_for_unacquired's first half: a true predicate returns at once.
    let cond = Condition::new();
    let guard = run(&lp, cond.acquire());
    let guard = run(&lp, cond.wait_for(guard, || true)).unwrap();
    assert!(cond.locked());
    drop(guard);
    assert!(!cond.locked());
}

/// A task that waits on `cond`, logs `tag` and releases.
fn cond_wait_release(lp: &Lp, cond: &Condition, log: &Log, tag: &'static str) -> Task<io::Result<()>> {
    let (cond, log) = (cond.clone(), log.clone());
    lp.create_task(async move {
        let guard = cond.acquire().await;
        let _guard = cond.wait(guard).await?;
        log.push(tag);
        Ok(())
    })
}

fn condition_notify(lp: Lp) {
    // test_notify
    let cond = Condition::new();
    let log = Log::default();
    let tasks: Vec<_> = ["1", "2", "3"].map(|tag| cond_wait_release(&lp, &cond, &log, tag)).into();
    one_iteration(&lp);
    assert!(log.get().is_empty());

    let guard = run(&lp, cond.acquire());
    cond.notify(1).unwrap();
    drop(guard);
    iterations(&lp, 2);
    assert_eq!(log.get(), strings(&["1"]));

    let guard = run(&lp, cond.acquire());
    cond.notify(1).unwrap();
    cond.notify(2048).unwrap();
    drop(guard);
    iterations(&lp, 4);
    assert_eq!(log.get(), strings(&["1", "2", "3"]));
    for task in tasks {
        run(&lp, task).unwrap().unwrap();
    }
}

fn condition_notify_all(lp: Lp) {
    let cond = Condition::new();
    let log = Log::default();
    let tasks: Vec<_> = ["1", "2"].map(|tag| cond_wait_release(&lp, &cond, &log, tag)).into();
    one_iteration(&lp);
    let guard = run(&lp, cond.acquire());
    cond.notify_all().unwrap();
    drop(guard);
    iterations(&lp, 3);
    assert_eq!(log.get(), strings(&["1", "2"]));
    for task in tasks {
        run(&lp, task).unwrap().unwrap();
    }
}

fn condition_notify_unacquired(_lp: Lp) {
    let cond = Condition::new();
    assert_eq!(cond.notify(1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(cond.notify_all().unwrap_err().to_string(), "cannot notify on un-acquired lock");
}

fn condition_explicit_lock(lp: Lp) {
    // test_explicit_lock: a condition over a lock shares its state.
    let lock = Lock::new();
    let cond = Condition::with_lock(lock.clone());
    assert!(!lock.locked() && !cond.locked());
    let guard = run(&lp, cond.acquire());
    assert!(lock.locked() && cond.locked());
    drop(guard);
    assert!(!lock.locked() && !cond.locked());
    let guard = run(&lp, lock.acquire());
    assert!(cond.locked());
    // The guard of the shared lock is the condition's guard.
    let waiting = lp.create_task(cond.wait(guard));
    one_iteration(&lp);
    assert!(!lock.locked());
    let guard = run(&lp, lock.acquire());
    cond.notify(1).unwrap();
    drop(guard);
    drop(run(&lp, waiting).unwrap().unwrap());
    assert!(!lock.locked());
}

fn condition_wait_under_wait_for(lp: Lp) {
    // test_timeout_in_block
    let cond = Condition::new();
    let guard = run(&lp, cond.acquire());
    let start = Instant::now();
    let err = run(&lp, tulip::wait_for(&lp, cond.wait(guard), Duration::from_millis(20))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(cond.waiters(), 0);
}

// ---------------------------------------------------------------------------
// Semaphore

fn semaphore_initial_value_zero(_lp: Lp) {
    let sem = Semaphore::new(0);
    assert!(sem.locked());
    assert_eq!(sem.value(), 0);
}

fn sem_acquire_and_log(lp: &Lp, sem: &Semaphore, log: &Log, tag: &'static str) -> Task<()> {
    let (sem, log) = (sem.clone(), log.clone());
    lp.create_task(async move {
        sem.acquire().await.forget();
        log.push(tag);
    })
}

fn semaphore_acquire(lp: Lp) {
    // test_acquire
    let sem = Semaphore::new(3);
    let log = Log::default();
    run(&lp, sem.acquire()).forget();
    run(&lp, sem.acquire()).forget();
    assert!(!sem.locked());
    let t1 = sem_acquire_and_log(&lp, &sem, &log, "1");
    let t2 = sem_acquire_and_log(&lp, &sem, &log, "2");
    let t3 = sem_acquire_and_log(&lp, &sem, &log, "3");
    one_iteration(&lp);
    assert_eq!(log.get(), strings(&["1"]));
    assert!(sem.locked());
    assert_eq!(sem.waiters(), 2);
    assert_eq!(sem.value(), 0);

    let t4 = sem_acquire_and_log(&lp, &sem, &log, "4");
    sem.release();
    sem.release();
    assert_eq!(sem.value(), 0, "both permits handed to waiters at once");
    one_iteration(&lp);
    assert_eq!(sem.value(), 0);
    assert_eq!(log.len(), 3);
    assert!(sem.locked());
    assert_eq!(sem.waiters(), 1);
    assert!(t1.done());
    let done = [&t2, &t3, &t4].iter().filter(|t| t.done()).count();
    assert_eq!(done, 2);
    assert!(t2.done() && t3.done(), "FIFO: t2 and t3 came first");
    sem.release();
    run(&lp, t4).unwrap();
}

fn semaphore_acquire_cancel(lp: Lp) {
    let sem = Semaphore::new(1);
    run(&lp, sem.acquire()).forget();
    let acquire = lp.create_task(sem.acquire());
    let canceller = acquire.clone();
    lp.call_soon(move |_| {
        canceller.cancel();
    });
    assert_cancelled(run(&lp, acquire));
    assert_eq!(sem.waiters(), 0);
    assert_eq!(sem.value(), 0);
}

fn semaphore_acquire_cancel_before_awoken(lp: Lp) {
    let sem = Semaphore::new(0);
    let tasks: Vec<Task<tulip::SemaphoreGuard>> = (0..4).map(|_| lp.create_task(sem.acquire())).collect();
    one_iteration(&lp);
    tasks[0].cancel();
    tasks[1].cancel();
    sem.release();
    iterations(&lp, 2);
    assert!(tasks[2].done(), "the permit went to the first waiter left");
    assert!(!tasks[3].done());
    tasks[2].cancel(); // done already: keeps its permit
    tasks[3].cancel();
    one_iteration(&lp);
    assert_eq!(sem.waiters(), 0);
}

fn semaphore_acquire_hang(lp: Lp) {
    let sem = Semaphore::new(0);
    let t1 = lp.create_task(sem.acquire());
    let t2 = lp.create_task(sem.acquire());
    one_iteration(&lp);
    t1.cancel();
    sem.release();
    iterations(&lp, 2);
    assert!(sem.locked());
    assert!(t2.done(), "the cancelled waiter's permit went on to t2");
    assert!(t1.cancelled());
}

fn semaphore_acquire_no_hang(lp: Lp) {
    let lp = Rc::new(lp);
    let sem = Semaphore::new(1);
    let t2_slot: Rc<std::cell::RefCell<Option<Task<()>>>> = Rc::default();
    let (s, slot) = (sem.clone(), Rc::clone(&t2_slot));
    let t1 = lp.create_task(async move {
        let guard = s.acquire().await;
        yield_now().await;
        drop(guard);
        if let Some(t2) = slot.borrow().as_ref() {
            t2.cancel();
        }
    });
    let s = sem.clone();
    let t2 = lp.create_task(async move {
        let _guard = s.acquire().await;
        panic!("t2 is cancelled before it gets the permit");
    });
    *t2_slot.borrow_mut() = Some(t2.clone());
    run(&lp, t1).unwrap();
    assert_cancelled(run(&lp, t2));
    drop(run(&lp, tulip::wait_for(&*lp, sem.acquire(), Duration::from_secs(1))).unwrap());
}

fn semaphore_release_no_waiters(lp: Lp) {
    let sem = Semaphore::new(1);
    let guard = run(&lp, sem.acquire());
    assert!(sem.locked());
    drop(guard);
    assert!(!sem.locked());
    assert_eq!(sem.value(), 1);
}

fn semaphore_fifo_order(lp: Lp) {
    // test_acquire_fifo_order, in a TaskGroup.
    let lp = Rc::new(lp);
    let sem = Semaphore::new(1);
    let log = Log::default();
    let group = TaskGroup::new();
    run(
        &lp,
        group.run(async {
            for tag in ["c1", "c2", "c3"] {
                let (sem, log, inner) = (sem.clone(), log.clone(), Rc::clone(&lp));
                group.create_task(&lp, async move {
                    for round in 1..=2 {
                        let permit = sem.acquire().await;
                        log.push(format!("{tag}_{round}"));
                        tulip::sleep(&inner, Duration::from_millis(5)).await;
                        drop(permit);
                    }
                })?;
            }
            Ok::<_, io::Error>(())
        }),
    )
    .unwrap()
    .unwrap();
    assert_eq!(log.get(), strings(&["c1_1", "c2_1", "c3_1", "c1_2", "c2_2", "c3_2"]));
}

fn semaphore_fifo_order_2(lp: Lp) {
    // test_acquire_fifo_order_2: c1 takes the only permit; two releases
    // wake c2 and c3; c2's release and re-acquire must wait behind c3.
    let sem = Semaphore::new(1);
    let log = Log::default();
    let c1 = sem_acquire_and_log(&lp, &sem, &log, "1");
    let (s, l) = (sem.clone(), log.clone());
    let c2 = lp.create_task(async move {
        s.acquire().await.forget();
        l.push("2");
        s.release();
        s.acquire().await.forget();
        l.push("4");
    });
    let c3 = sem_acquire_and_log(&lp, &sem, &log, "3");
    one_iteration(&lp);
    sem.release();
    sem.release();
    run_until(&lp, "c1 and c2 and c3", || c1.done() && c2.done() && c3.done());
    assert_eq!(log.get(), strings(&["1", "2", "3", "4"]));
}

fn semaphore_fifo_order_3(lp: Lp) {
    let sem = Semaphore::new(0);
    let log = Log::default();
    let c1 = sem_acquire_and_log(&lp, &sem, &log, "1");
    let c2 = sem_acquire_and_log(&lp, &sem, &log, "2");
    let c3 = sem_acquire_and_log(&lp, &sem, &log, "3");
    one_iteration(&lp);
    c1.cancel();
    one_iteration(&lp);
    sem.release();
    sem.release();
    run_until(&lp, "c2 and c3", || c2.done() && c3.done());
    assert_eq!(log.get(), strings(&["2", "3"]));
    assert!(c1.cancelled());
}

fn bounded_semaphore_release_too_many(lp: Lp) {
    // test_release_not_acquired
    let sem = BoundedSemaphore::new(1);
    let err = sem.release().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(err.to_string(), "BoundedSemaphore released too many times");
    assert_eq!(sem.value(), 1, "unchanged");
    run(&lp, sem.acquire()).forget();
    assert!(sem.locked());
    sem.release().unwrap();
    assert!(sem.release().is_err());
}

fn bounded_semaphore_guard_keeps_the_bound(lp: Lp) {
    // A guard dropped after an extra release gives nothing back rather
    // than go over the bound.
    let sem = BoundedSemaphore::new(2);
    let guard = run(&lp, sem.acquire());
    assert_eq!(sem.value(), 1);
    sem.release().unwrap();
    assert_eq!(sem.value(), 2);
    drop(guard);
    assert_eq!(sem.value(), 2, "never above the bound");
}
