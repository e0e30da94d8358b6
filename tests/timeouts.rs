//! Timeout scopes, checked the way CPython's `test_asyncio/test_timeouts.py`
//! checks asyncio's: expiry (never early) with TimedOut, `when`, disabled
//! and zero deadlines, nesting, a foreign cancellation that is not an
//! expiry, and rescheduling while the scope runs; on every backend.

#[macro_use]
mod common;
mod sync_common;

use std::cell::RefCell;
use std::future::pending;
use std::io;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use common::drop_flag;
use sync_common::{one_iteration, run, yield_now, SLACK};
use tulip::{is_cancelled, AbstractEventLoop, DynSelectorEventLoop, Timeout};

backend_tests!(
    run_on_thread:
    timeout_basic,
    timeout_at_basic,
    nested_timeouts_same_deadline,
    expiry_cancels_the_awaited_future,
    timeout_not_reached,
    timeout_disabled,
    timeout_at_disabled,
    timeout_zero,
    timeout_zero_with_a_yield,
    timeout_in_the_past,
    ready_body_wins_a_zero_timeout,
    foreign_cancel_is_not_an_expiry,
    outer_task_is_not_cancelled,
    nested_timeouts_concurrent,
    nested_timeouts_loop_busy,
    reschedule_later_and_off,
    reschedule_sooner_expires_then,
    reschedule_from_inside_the_body,
    reschedule_extends_a_deadline,
    reschedule_outside_the_scope_life,
    run_twice_is_refused,
    huge_delay_never_expires,
    debug_shows_the_state,
);

type Lp = DynSelectorEventLoop;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn long_sleep(lp: &Lp) -> tulip::Sleep {
    tulip::sleep(lp, Duration::from_secs(60))
}

fn assert_timed_out<T: std::fmt::Debug>(outcome: io::Result<T>) {
    let err = outcome.expect_err("timed out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
}

/// `took` is at least `at_least`, and not much more.
fn assert_took(took: Duration, at_least: Duration) {
    assert!(took >= at_least, "{took:?} is earlier than {at_least:?}");
    assert!(took < at_least + SLACK, "{took:?} is far later than {at_least:?}");
}

fn timeout_basic(lp: Lp) {
    let cm = tulip::timeout(ms(10));
    let start = Instant::now();
    assert_timed_out(run(&lp, cm.run(&lp, long_sleep(&lp))));
    assert_took(start.elapsed(), ms(10));
    assert!(cm.expired());
}

fn timeout_at_basic(lp: Lp) {
    let deadline = lp.time() + ms(10);
    let cm = tulip::timeout_at(deadline);
    assert_timed_out(run(&lp, cm.run(&lp, long_sleep(&lp))));
    assert!(Instant::now() >= deadline, "never early");
    assert!(cm.expired());
    assert_eq!(cm.when(), Some(deadline));
}

fn nested_timeouts_same_deadline(lp: Lp) {
    // test_nested_timeouts: only the outer scope gives TimedOut; both
    // expired; the inner body was dropped (cancelled).
    let deadline = lp.time() + ms(10);
    let (outer, inner) = (tulip::timeout_at(deadline), tulip::timeout_at(deadline));
    let (dropped, guard) = drop_flag();
    let body = async {
        let _guard = guard;
        long_sleep(&lp).await;
    };
    let got = run(&lp, outer.run(&lp, inner.run(&lp, body)));
    assert_timed_out(got);
    assert!(dropped.get());
    assert!(outer.expired());
    assert!(inner.expired());
}

fn expiry_cancels_the_awaited_future(lp: Lp) {
    // test_waiter_cancelled: the body is cancelled, and a tulip::Future it
    // awaited is cancelled with it, as with a cancelled task.
    let fut = lp.create_future::<u8>();
    let cm = tulip::timeout(ms(10));
    assert_timed_out(run(&lp, cm.run(&lp, fut.clone())));
    assert!(fut.cancelled());
}

fn timeout_not_reached(lp: Lp) {
    // test_timeout_not_called
    let t0 = lp.time();
    let cm = tulip::timeout(Duration::from_secs(10));
    run(&lp, cm.run(&lp, tulip::sleep(&lp, ms(10)))).unwrap();
    let t1 = lp.time();
    assert!(!cm.expired());
    assert!(t1 - t0 < SLACK);
    assert!(cm.when().unwrap() > t1);
}

fn timeout_disabled(lp: Lp) {
    let cm = tulip::timeout(None);
    run(&lp, cm.run(&lp, tulip::sleep(&lp, ms(10)))).unwrap();
    assert!(!cm.expired());
    assert_eq!(cm.when(), None);
}

fn timeout_at_disabled(lp: Lp) {
    let cm = tulip::timeout_at(None);
    run(&lp, cm.run(&lp, tulip::sleep(&lp, ms(10)))).unwrap();
    assert!(!cm.expired());
    assert_eq!(cm.when(), None);
}

fn timeout_zero(lp: Lp) {
    let t0 = lp.time();
    let cm = tulip::timeout(Duration::ZERO);
    assert_timed_out(run(&lp, cm.run(&lp, long_sleep(&lp))));
    let t1 = lp.time();
    assert!(cm.expired());
    assert!(t1 - t0 < SLACK);
    assert!(t0 <= cm.when().unwrap() && cm.when().unwrap() <= t1);
}

fn timeout_zero_with_a_yield(lp: Lp) {
    // test_timeout_zero_sleep_zero
    let cm = tulip::timeout(Duration::ZERO);
    assert_timed_out(run(&lp, cm.run(&lp, async { yield_now().await })));
    assert!(cm.expired());
}

fn timeout_in_the_past(lp: Lp) {
    // test_timeout_in_the_past_sleep_zero
    let t0 = lp.time();
    let cm = tulip::timeout_at(t0.checked_sub(Duration::from_secs(11)).unwrap_or(t0));
    assert_timed_out(run(&lp, cm.run(&lp, async { yield_now().await })));
    assert!(cm.expired());
    assert!(cm.when().unwrap() <= t0);
}

fn ready_body_wins_a_zero_timeout(lp: Lp) {
    // A body that finishes without waiting beats a deadline that is due
    // only on the next iteration.
    let cm = tulip::timeout(Duration::ZERO);
    assert_eq!(run(&lp, cm.run(&lp, async { 7 })).unwrap(), 7);
    assert!(!cm.expired());
}

fn foreign_cancel_is_not_an_expiry(lp: Lp) {
    // test_foreign_cancel_doesnt_timeout_if_not_expired
    let lp = Rc::new(lp);
    let cm = tulip::timeout(Duration::from_secs(10));
    let (scope, inner) = (cm.clone(), Rc::clone(&lp));
    let task =
        lp.create_task(async move { scope.run(&inner, tulip::sleep(&inner, Duration::from_secs(10))).await });
    one_iteration(&lp);
    task.cancel();
    assert!(is_cancelled(&run(&lp, task).unwrap_err()));
    assert!(!cm.expired());
    let err = cm.reschedule(None).unwrap_err();
    assert_eq!(err.to_string(), "cannot reschedule a finished timeout");
}

fn outer_task_is_not_cancelled(lp: Lp) {
    // test_outer_task_is_not_cancelled: the expiry is an error of the
    // scope, the task itself ends normally.
    let lp = Rc::new(lp);
    let inner = Rc::clone(&lp);
    let task = lp.create_task(async move {
        let got = tulip::timeout(ms(1)).run(&inner, long_sleep(&inner)).await;
        got.map_err(|err| err.kind())
    });
    assert_eq!(run(&lp, task.clone()).unwrap(), Err(io::ErrorKind::TimedOut));
    assert!(task.done() && !task.cancelled());
}

fn nested_timeouts_concurrent(lp: Lp) {
    // The outer deadline passes while the inner one has time left, the
    // loop busy meanwhile: the outer one expires.
    let (outer, inner) = (tulip::timeout(ms(2)), tulip::timeout(ms(100)));
    let body = async {
        thread::sleep(ms(10)); // crunching numbers
        long_sleep(&lp).await;
    };
    assert_timed_out(run(&lp, outer.run(&lp, inner.run(&lp, body))));
    assert!(outer.expired());
    assert!(!inner.expired(), "dropped by the outer scope before its own deadline");
}

fn nested_timeouts_loop_busy(lp: Lp) {
    // test_nested_timeouts_loop_busy: the inner scope expires during a busy
    // stretch, its TimedOut is handled, and the outer one then interrupts
    // the long sleep that follows.
    let t0 = lp.time();
    let (outer, inner) = (tulip::timeout(ms(100)), tulip::timeout(ms(10)));
    let body = async {
        let inner_got = inner
            .run(&lp, async {
                thread::sleep(ms(100));
                long_sleep(&lp).await;
            })
            .await;
        assert_timed_out(inner_got);
        long_sleep(&lp).await;
    };
    assert_timed_out(run(&lp, outer.run(&lp, body)));
    let t1 = lp.time();
    assert!(t1 - t0 >= ms(100) && t1 - t0 < ms(100) + SLACK, "{:?}", t1 - t0);
    assert!(inner.expired() && outer.expired());
}

fn reschedule_later_and_off(lp: Lp) {
    // test_reschedule: moved and turned off from another task while the
    // scope runs; a foreign cancellation then is no expiry.
    let lp = Rc::new(lp);
    let deadline1 = lp.time() + Duration::from_secs(10);
    let deadline2 = deadline1 + Duration::from_secs(20);
    let cm = tulip::timeout_at(deadline1);
    let (scope, inner) = (cm.clone(), Rc::clone(&lp));
    let task = lp.create_task(async move {
        scope.run(&inner, tulip::sleep(&inner, Duration::from_secs(50))).await.map_err(|e| e.kind())
    });
    one_iteration(&lp);
    assert_eq!(cm.when(), Some(deadline1));
    cm.reschedule(deadline2).unwrap();
    assert_eq!(cm.when(), Some(deadline2));
    cm.reschedule(None).unwrap();
    assert_eq!(cm.when(), None);
    one_iteration(&lp);
    task.cancel();
    assert!(is_cancelled(&run(&lp, task).unwrap_err()));
    assert!(!cm.expired());
}

fn reschedule_sooner_expires_then(lp: Lp) {
    // Moved from an hour to 20 ms from now: expires then, never earlier.
    let lp = Rc::new(lp);
    let cm = tulip::timeout(Duration::from_secs(3600));
    let (scope, inner) = (cm.clone(), Rc::clone(&lp));
    let task = lp.create_task(async move { scope.run(&inner, long_sleep(&inner)).await });
    one_iteration(&lp);
    let moved_at = Instant::now();
    let when = lp.time() + ms(20);
    cm.reschedule(when).unwrap();
    assert_timed_out(run(&lp, task).unwrap());
    assert!(Instant::now() >= when, "never before the new deadline");
    assert_took(moved_at.elapsed(), ms(20));
    assert!(cm.expired());
}

fn reschedule_from_inside_the_body(lp: Lp) {
    let cm = tulip::timeout(Duration::from_secs(3600));
    let handle = cm.clone();
    let start = Instant::now();
    let body = async {
        handle.reschedule(Instant::now() + ms(10))?;
        long_sleep(&lp).await;
        Ok::<_, io::Error>(())
    };
    assert_timed_out(run(&lp, cm.run(&lp, body)));
    assert_took(start.elapsed(), ms(10));
    // Into the past, from inside: expires on the next iteration.
    let cm = tulip::timeout(Duration::from_secs(3600));
    let handle = cm.clone();
    let body = async {
        let now = Instant::now();
        handle.reschedule(now.checked_sub(ms(1)).unwrap_or(now))?;
        long_sleep(&lp).await;
        Ok::<_, io::Error>(())
    };
    let start = Instant::now();
    assert_timed_out(run(&lp, cm.run(&lp, body)));
    assert!(start.elapsed() < SLACK);
}

fn reschedule_extends_a_deadline(lp: Lp) {
    // Pushed back before it fires: the body finishes in time.
    let lp = Rc::new(lp);
    let cm = tulip::timeout(ms(20));
    let (scope, inner) = (cm.clone(), Rc::clone(&lp));
    let task = lp.create_task(async move { scope.run(&inner, tulip::sleep(&inner, ms(40))).await });
    one_iteration(&lp);
    cm.reschedule(lp.time() + Duration::from_secs(10)).unwrap();
    run(&lp, task).unwrap().unwrap();
    assert!(!cm.expired());
}

fn reschedule_outside_the_scope_life(lp: Lp) {
    let cm = tulip::timeout(ms(10));
    let err = cm.reschedule(None).unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string().as_str()),
        (io::ErrorKind::InvalidInput, "timeout has not been entered")
    );
    assert!(cm.when().is_some(), "unchanged");
    assert_timed_out(run(&lp, cm.run(&lp, long_sleep(&lp))));
    let err = cm.reschedule(None).unwrap_err();
    assert_eq!(err.to_string(), "cannot reschedule an expired timeout");
}

fn run_twice_is_refused(lp: Lp) {
    let cm = tulip::timeout(Duration::from_secs(10));
    run(&lp, cm.run(&lp, async {})).unwrap();
    let (dropped, guard) = drop_flag();
    let err = run(&lp, cm.run(&lp, async move { drop(guard) })).unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string().as_str()),
        (io::ErrorKind::InvalidInput, "timeout has already been entered")
    );
    assert!(dropped.get(), "the refused future was dropped unpolled");
    let clone: Timeout = cm.clone();
    assert!(run(&lp, clone.run(&lp, pending::<()>())).is_err(), "a clone is the same scope");
}

fn huge_delay_never_expires(lp: Lp) {
    let cm = tulip::timeout(Duration::MAX);
    assert_eq!(cm.when(), None, "too far for the clock: never");
    run(&lp, cm.run(&lp, tulip::sleep(&lp, ms(1)))).unwrap();
    assert!(!cm.expired());
}

fn debug_shows_the_state(lp: Lp) {
    let cm = tulip::timeout(None);
    let states = Rc::new(RefCell::new(vec![format!("{cm:?}")]));
    let (handle, log) = (cm.clone(), Rc::clone(&states));
    run(&lp, cm.run(&lp, async move { log.borrow_mut().push(format!("{handle:?}")) })).unwrap();
    states.borrow_mut().push(format!("{cm:?}"));
    assert_eq!(
        *states.borrow(),
        [
            "Timeout { state: \"created\", when: None }",
            "Timeout { state: \"active\", when: None }",
            "Timeout { state: \"finished\", when: None }"
        ]
    );
}
