//! wait, as_completed and shield, checked the way CPython's
//! `test_asyncio/test_tasks.py` checks asyncio's (its `test_wait*`,
//! `test_as_completed*` and `test_shield*` cases); on every backend.

#[macro_use]
mod common;
mod sync_common;

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sync_common::{one_iteration, run, run_until, SLACK};
use tulip::{is_cancelled, AbstractEventLoop, DynSelectorEventLoop, ReturnWhen, Task, Waitable};

backend_tests!(
    run_on_thread:
    wait_all_completed,
    wait_first_completed,
    wait_really_done,
    wait_first_exception,
    wait_first_exception_in_wait,
    wait_first_exception_ignores_cancellation,
    wait_first_exception_all_fine,
    wait_with_failure_all_completed,
    wait_timeout_cancels_nothing,
    wait_empty_is_refused,
    wait_on_futures,
    wait_cancelled_cancels_nothing,
    as_completed_in_finishing_order,
    as_completed_done_ones_first,
    as_completed_same_iteration_order,
    as_completed_timeout,
    as_completed_empty,
    as_completed_reports_failures_through_the_items,
    shield_result,
    shield_exception,
    shield_inner_cancelled,
    shield_outer_cancelled,
    shield_done_shortcut,
    shield_under_wait_for,
    shield_task,
);

type Lp = Rc<DynSelectorEventLoop>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A task that sleeps `delay` and gives `value`.
fn sleeper<T: 'static>(lp: &Lp, delay: Duration, value: T) -> Task<T> {
    let inner = Rc::clone(lp);
    lp.create_task(async move {
        tulip::sleep(&inner, delay).await;
        value
    })
}

/// A task that sleeps `delay` and fails with `kind`.
fn failer(lp: &Lp, delay: Duration, kind: io::ErrorKind) -> Task<io::Result<u64>> {
    let inner = Rc::clone(lp);
    lp.create_task(async move {
        tulip::sleep(&inner, delay).await;
        Err(io::Error::from(kind))
    })
}

/// A task that sleeps `delay` and succeeds with the delay in ms.
fn succeeder(lp: &Lp, delay: Duration) -> Task<io::Result<u64>> {
    let inner = Rc::clone(lp);
    lp.create_task(async move {
        tulip::sleep(&inner, delay).await;
        Ok(delay.as_millis() as u64)
    })
}

fn wait_all_completed(lp: DynSelectorEventLoop) {
    // test_wait
    let lp = Rc::new(lp);
    let (a, b) = (sleeper(&lp, ms(10), "a"), sleeper(&lp, ms(15), "b"));
    let start = Instant::now();
    let (done, pending) =
        run(&lp, tulip::wait(&*lp, [b.clone(), a.clone()], ReturnWhen::AllCompleted, None)).unwrap();
    assert!(start.elapsed() >= ms(15));
    assert_eq!(done.len(), 2, "both, in the order given");
    assert!(pending.is_empty());
    assert_eq!(run(&lp, done[0].clone()).unwrap(), "b");
    // The results stayed in the tasks.
    assert_eq!(run(&lp, a).unwrap(), "a");
}

fn wait_first_completed(lp: DynSelectorEventLoop) {
    let lp = Rc::new(lp);
    let (a, b) = (sleeper(&lp, Duration::from_secs(10), "a"), sleeper(&lp, ms(10), "b"));
    let start = Instant::now();
    let (done, pending) =
        run(&lp, tulip::wait(&*lp, [a.clone(), b.clone()], ReturnWhen::FirstCompleted, None)).unwrap();
    assert!(start.elapsed() >= ms(10) && start.elapsed() < SLACK);
    assert_eq!((done.len(), pending.len()), (1, 1));
    assert!(b.done() && !a.done() && !a.cancelled(), "a keeps running");
    a.cancel();
    assert!(is_cancelled(&run(&lp, a).unwrap_err()));
}

fn wait_really_done(lp: DynSelectorEventLoop) {
    // Done already: returns without waiting for the rest.
    let lp = Rc::new(lp);
    let done_future = lp.create_future::<u8>();
    done_future.set_result(1).unwrap();
    let never = lp.create_future::<u8>();
    let (done, pending) =
        run(&lp, tulip::wait(&*lp, [never.clone(), done_future.clone()], ReturnWhen::FirstCompleted, None))
            .unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].done());
    assert_eq!(pending.len(), 1);
    assert!(!never.done(), "not cancelled");
}

fn wait_first_exception(lp: DynSelectorEventLoop) {
    // test_wait_first_exception: a failing task ends the wait early.
    let lp = Rc::new(lp);
    let slow = succeeder(&lp, Duration::from_secs(10));
    let failing = failer(&lp, ms(5), io::ErrorKind::InvalidData);
    let start = Instant::now();
    let (done, pending) =
        run(&lp, tulip::wait(&*lp, [slow.clone(), failing.clone()], ReturnWhen::FirstException, None))
            .unwrap();
    assert!(start.elapsed() < SLACK);
    assert_eq!((done.len(), pending.len()), (1, 1));
    assert_eq!(done[0].failure().unwrap().kind(), io::ErrorKind::InvalidData);
    assert_eq!(run(&lp, failing).unwrap().unwrap_err().kind(), io::ErrorKind::InvalidData, "still there");
    slow.cancel();
}

fn wait_first_exception_in_wait(lp: DynSelectorEventLoop) {
    // test_wait_first_exception_in_wait: the failure comes while waiting,
    // after a success that did not end the wait.
    let lp = Rc::new(lp);
    let quick = succeeder(&lp, ms(2));
    let failing = failer(&lp, ms(10), io::ErrorKind::BrokenPipe);
    let slow = succeeder(&lp, Duration::from_secs(10));
    let tasks = [quick.clone(), failing.clone(), slow.clone()];
    let (done, pending) = run(&lp, tulip::wait(&*lp, tasks, ReturnWhen::FirstException, None)).unwrap();
    assert_eq!((done.len(), pending.len()), (2, 1));
    assert!(done[0].failure().is_none() && done[1].failure().is_some());
    slow.cancel();
}

fn wait_first_exception_ignores_cancellation(lp: DynSelectorEventLoop) {
    // A cancelled task is not a failure: the wait goes on to the end.
    let lp = Rc::new(lp);
    let cancelled = sleeper(&lp, Duration::from_secs(10), Ok::<u8, io::Error>(1));
    let finishing = sleeper(&lp, ms(10), Ok(2));
    let canceller = cancelled.clone();
    lp.call_later(ms(1), move |_| {
        canceller.cancel();
    });
    let start = Instant::now();
    let (done, pending) =
        run(&lp, tulip::wait(&*lp, [cancelled.clone(), finishing], ReturnWhen::FirstException, None))
            .unwrap();
    assert!(start.elapsed() >= ms(10));
    assert_eq!((done.len(), pending.len()), (2, 0));
    assert!(cancelled.cancelled());
    assert!(done.iter().all(|task| task.failure().is_none()));
}

fn wait_first_exception_all_fine(lp: DynSelectorEventLoop) {
    let lp = Rc::new(lp);
    let tasks = [succeeder(&lp, ms(1)), succeeder(&lp, ms(3))];
    let (done, pending) = run(&lp, tulip::wait(&*lp, tasks, ReturnWhen::FirstException, None)).unwrap();
    assert_eq!((done.len(), pending.len()), (2, 0));
}

fn wait_with_failure_all_completed(lp: DynSelectorEventLoop) {
    // test_wait_with_exception: ALL_COMPLETED waits past a failure.
    let lp = Rc::new(lp);
    let tasks = [failer(&lp, ms(2), io::ErrorKind::InvalidData), succeeder(&lp, ms(10))];
    let start = Instant::now();
    let (done, pending) = run(&lp, tulip::wait(&*lp, tasks, ReturnWhen::AllCompleted, None)).unwrap();
    assert!(start.elapsed() >= ms(10));
    assert_eq!((done.len(), pending.len()), (2, 0));
}

fn wait_timeout_cancels_nothing(lp: DynSelectorEventLoop) {
    // test_wait_with_timeout: at the timeout, what is done and what is
    // not; nothing is cancelled.
    let lp = Rc::new(lp);
    let (quick, slow) = (sleeper(&lp, ms(5), 1), sleeper(&lp, Duration::from_secs(10), 2));
    let start = Instant::now();
    let (done, pending) =
        run(&lp, tulip::wait(&*lp, [quick.clone(), slow.clone()], ReturnWhen::AllCompleted, ms(20))).unwrap();
    let took = start.elapsed();
    assert!(took >= ms(20) && took < ms(20) + SLACK, "{took:?}");
    assert_eq!((done.len(), pending.len()), (1, 1));
    assert!(!slow.done() && !slow.cancelled());
    slow.cancel();
}

fn wait_empty_is_refused(lp: DynSelectorEventLoop) {
    let err = run(&lp, tulip::wait(&lp, Vec::<Task<()>>::new(), ReturnWhen::AllCompleted, None)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

fn wait_on_futures(lp: DynSelectorEventLoop) {
    // tulip::Futures: set_exception is a failure.
    let lp = Rc::new(lp);
    let (a, b) = (lp.create_future::<u8>(), lp.create_future::<u8>());
    let failing = b.clone();
    lp.call_later(ms(2), move |_| failing.set_exception(io::Error::from(io::ErrorKind::TimedOut)).unwrap());
    let (done, pending) =
        run(&lp, tulip::wait(&*lp, [a.clone(), b.clone()], ReturnWhen::FirstException, None)).unwrap();
    assert_eq!((done.len(), pending.len()), (1, 1));
    assert_eq!(done[0].failure().unwrap().kind(), io::ErrorKind::TimedOut);
    assert!(!a.done());
}

fn wait_cancelled_cancels_nothing(lp: DynSelectorEventLoop) {
    // Cancelling the waiting task cancels none of the futures it waited on
    // (unlike awaiting one directly).
    let lp = Rc::new(lp);
    let fut = lp.create_future::<u8>();
    let (inner, awaited) = (Rc::clone(&lp), fut.clone());
    let waiter = lp.create_task(async move {
        tulip::wait(&*inner, [awaited], ReturnWhen::AllCompleted, None).await.is_ok()
    });
    one_iteration(&lp);
    waiter.cancel();
    assert!(is_cancelled(&run(&lp, waiter).unwrap_err()));
    assert!(!fut.done(), "still pending");
    fut.set_result(3).unwrap();
}

fn as_completed_in_finishing_order(lp: DynSelectorEventLoop) {
    // test_as_completed
    let lp = Rc::new(lp);
    let tasks = [sleeper(&lp, ms(30), "c"), sleeper(&lp, ms(1), "a"), sleeper(&lp, ms(15), "b")];
    let order = run(&lp, async {
        let mut finishing = tulip::as_completed(&*lp, tasks, None);
        assert_eq!(finishing.len(), 3);
        let mut order = Vec::new();
        while let Some(task) = finishing.next().await {
            order.push(task?.await?);
        }
        assert!(finishing.is_empty());
        Ok::<_, io::Error>(order)
    })
    .unwrap();
    assert_eq!(order, ["a", "b", "c"]);
}

fn as_completed_done_ones_first(lp: DynSelectorEventLoop) {
    let lp = Rc::new(lp);
    let (done1, pending, done2) =
        (lp.create_future::<u8>(), lp.create_future::<u8>(), lp.create_future::<u8>());
    done2.set_result(2).unwrap();
    done1.set_result(1).unwrap();
    let setter = pending.clone();
    lp.call_later(ms(1), move |_| setter.set_result(3).unwrap());
    let got = run(&lp, async {
        let mut finishing = tulip::as_completed(&*lp, [pending, done1, done2], None);
        let mut got = Vec::new();
        while let Some(fut) = finishing.next().await {
            got.push(fut?.await?);
        }
        Ok::<_, io::Error>(got)
    })
    .unwrap();
    assert_eq!(got, [1, 2, 3], "those done already first, in the order given");
}

fn as_completed_same_iteration_order(lp: DynSelectorEventLoop) {
    // Finished in one callback, in the order 3, 1, 2: given in that order.
    let lp = Rc::new(lp);
    let futures: Vec<tulip::Future<u8>> = (0..3).map(|_| lp.create_future()).collect();
    let setters = futures.clone();
    lp.call_later(ms(1), move |_| {
        for i in [2, 0, 1] {
            setters[i].set_result(i as u8 + 1).unwrap();
        }
    });
    let got = run(&lp, async {
        let mut finishing = tulip::as_completed(&*lp, futures, None);
        let mut got = Vec::new();
        while let Some(fut) = finishing.next().await {
            got.push(fut?.await?);
        }
        Ok::<_, io::Error>(got)
    })
    .unwrap();
    assert_eq!(got, [3, 1, 2]);
}

fn as_completed_timeout(lp: DynSelectorEventLoop) {
    // test_as_completed_with_timeout: the quick one, then TimedOut, then
    // the end; the slow one left running, given back.
    let lp = Rc::new(lp);
    let (quick, slow) = (sleeper(&lp, ms(1), 1), sleeper(&lp, Duration::from_secs(10), 2));
    let start = Instant::now();
    let rest = run(&lp, async {
        let mut finishing = tulip::as_completed(&*lp, [slow.clone(), quick.clone()], ms(20));
        assert_eq!(finishing.next().await.unwrap().unwrap().await.unwrap(), 1);
        let err = finishing.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(finishing.next().await.is_none());
        assert_eq!(finishing.len(), 1);
        finishing.into_remaining()
    });
    let took = start.elapsed();
    assert!(took >= ms(20) && took < ms(20) + SLACK, "{took:?}");
    assert_eq!(rest.len(), 1);
    assert!(!slow.done() && !slow.cancelled(), "nothing cancelled");
    slow.cancel();
}

fn as_completed_empty(lp: DynSelectorEventLoop) {
    let mut finishing = tulip::as_completed(&lp, Vec::<Task<()>>::new(), ms(1));
    assert!(finishing.is_empty());
    assert!(run(&lp, finishing.next()).is_none());
}

fn as_completed_reports_failures_through_the_items(lp: DynSelectorEventLoop) {
    let lp = Rc::new(lp);
    let tasks = [failer(&lp, ms(2), io::ErrorKind::InvalidData), succeeder(&lp, ms(8))];
    let got = run(&lp, async {
        let mut finishing = tulip::as_completed(&*lp, tasks, None);
        let mut got = Vec::new();
        while let Some(task) = finishing.next().await {
            got.push(task?.await?.map_err(|e| e.kind()));
        }
        Ok::<_, io::Error>(got)
    })
    .unwrap();
    assert_eq!(got, [Err(io::ErrorKind::InvalidData), Ok(8)]);
}

fn shield_result(lp: DynSelectorEventLoop) {
    let lp = Rc::new(lp);
    let inner = lp.create_future::<&str>();
    let setter = inner.clone();
    lp.call_later(ms(1), move |_| setter.set_result("shielded").unwrap());
    assert_eq!(run(&lp, tulip::shield(inner)).unwrap(), "shielded");
}

fn shield_exception(lp: DynSelectorEventLoop) {
    let lp = Rc::new(lp);
    let inner = lp.create_future::<u8>();
    inner.set_exception(io::Error::from(io::ErrorKind::InvalidData)).unwrap();
    assert_eq!(run(&lp, tulip::shield(inner)).unwrap_err().kind(), io::ErrorKind::InvalidData);
}

fn shield_inner_cancelled(lp: DynSelectorEventLoop) {
    // test_shield_cancel_inner: the shield gives the inner cancellation.
    let lp = Rc::new(lp);
    let inner = lp.create_future::<u8>();
    let canceller = inner.clone();
    lp.call_later(ms(1), move |_| {
        canceller.cancel();
    });
    assert!(is_cancelled(&run(&lp, tulip::shield(inner)).unwrap_err()));
}

fn shield_outer_cancelled(lp: DynSelectorEventLoop) {
    // test_shield_cancel_outer / test_shield_effect: cancelling the task
    // that awaits the shield leaves the future running; awaited directly,
    // the same future would have been cancelled.
    let lp = Rc::new(lp);
    let inner = lp.create_future::<u8>();
    let awaited = inner.clone();
    let outer = lp.create_task(async move { tulip::shield(awaited).await });
    one_iteration(&lp);
    outer.cancel();
    assert!(is_cancelled(&run(&lp, outer).unwrap_err()));
    assert!(!inner.done(), "the shield kept the cancellation from it");
    inner.set_result(5).unwrap();
    assert_eq!(run(&lp, inner).unwrap(), 5);

    let unshielded = lp.create_future::<u8>();
    let awaited = unshielded.clone();
    let outer = lp.create_task(awaited);
    one_iteration(&lp);
    outer.cancel();
    assert!(is_cancelled(&run(&lp, outer).unwrap_err()));
    assert!(unshielded.cancelled(), "without a shield, cancelled with its awaiter");
}

fn shield_done_shortcut(lp: DynSelectorEventLoop) {
    // test_shield_shortcut
    let lp = Rc::new(lp);
    let inner = lp.create_future::<u8>();
    inner.set_result(42).unwrap();
    let shielded = tulip::shield(inner);
    assert!(shielded.inner().done());
    assert_eq!(run(&lp, shielded).unwrap(), 42);
}

fn shield_under_wait_for(lp: DynSelectorEventLoop) {
    // A timeout around the shield does not cancel what it shields.
    let lp = Rc::new(lp);
    let inner = lp.create_future::<u8>();
    let err = run(&lp, tulip::wait_for(&*lp, tulip::shield(inner.clone()), ms(5))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(!inner.done());
    // Under a timeout scope too.
    let scope = tulip::timeout(ms(5));
    assert_eq!(
        run(&lp, scope.run(&*lp, tulip::shield(inner.clone()))).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert!(!inner.done());
    inner.set_result(1).unwrap();
}

fn shield_task(lp: DynSelectorEventLoop) {
    // A shielded task runs on after its awaiter is cancelled.
    let lp = Rc::new(lp);
    let task = sleeper(&lp, ms(10), "finished");
    let awaited = task.clone();
    let outer = lp.create_task(async move { tulip::shield(awaited).await });
    one_iteration(&lp);
    outer.cancel();
    assert!(is_cancelled(&run(&lp, outer).unwrap_err()));
    run_until(&lp, "the shielded task", || task.done());
    assert!(!task.cancelled());
    assert_eq!(run(&lp, task).unwrap(), "finished");
}
