//! Layer 3: futures, tasks and run_until_complete, on every backend.

#[macro_use]
mod common;

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::drop_flag;
use tulip::{AbstractEventLoop, DynSelectorEventLoop};

backend_tests!(
    run_on_thread:
    future_set_result,
    future_set_twice_is_an_error,
    future_exception,
    future_cancel,
    future_done_callbacks_run_soon,
    threadsafe_calls_made_first_run_before_done_callbacks,
    future_awaited_twice,
    task_result,
    task_cancel_drops_the_future,
    task_cancel_before_first_poll,
    task_cancel_after_done,
    task_cancelled_while_running_ends_cancelled,
    task_whose_future_panics_when_dropped_still_ends,
    task_panic_is_reported,
    task_awaits_task,
    task_wake_from_other_thread,
    root_wake_from_other_thread,
    many_wakes_one_poll,
    many_wakes_from_other_thread_one_poll,
    run_until_complete_rules,
    run_until_complete_stopped,
    run_until_complete_stopped_as_it_completes,
    close_drops_pending_tasks,
    create_task_on_closed_loop,
);

fn future_set_result(event_loop: DynSelectorEventLoop) {
    let fut = event_loop.create_future::<u32>();
    assert!(!fut.done());
    assert_eq!(fut.result().unwrap_err().kind(), io::ErrorKind::InvalidInput);
    let setter = fut.clone();
    event_loop.call_later(Duration::from_millis(2), move |_| setter.set_result(42).unwrap());
    assert_eq!(event_loop.run_until_complete(fut.clone()).unwrap().unwrap(), 42);
    assert!(fut.done());
    assert!(!fut.cancelled());
}

fn future_set_twice_is_an_error(event_loop: DynSelectorEventLoop) {
    let fut = event_loop.create_future::<&str>();
    fut.set_result("first").unwrap();
    let err = fut.set_result("second").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(err.to_string(), "future already done");
    let err = fut.set_exception(io::Error::other("late")).unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string()),
        (io::ErrorKind::InvalidInput, "future already done".to_owned())
    );
    assert!(!fut.cancel(), "a done future cannot be cancelled");
    assert_eq!(fut.result().unwrap(), "first");
    assert_eq!(fut.take_result().unwrap(), "first");
    assert_eq!(fut.result().unwrap_err().kind(), io::ErrorKind::InvalidInput, "taken");
}

fn future_exception(event_loop: DynSelectorEventLoop) {
    let fut = event_loop.create_future::<u8>();
    fut.set_exception(io::Error::from(io::ErrorKind::ConnectionReset)).unwrap();
    assert_eq!(fut.result().unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    let awaited = event_loop.run_until_complete(fut).unwrap();
    assert_eq!(awaited.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
}

fn future_cancel(event_loop: DynSelectorEventLoop) {
    let fut = event_loop.create_future::<u8>();
    let canceller = fut.clone();
    event_loop.call_soon(move |_| assert!(canceller.cancel()));
    let awaited = event_loop.run_until_complete(fut.clone()).unwrap();
    assert!(tulip::is_cancelled(&awaited.unwrap_err()));
    assert!(fut.cancelled() && fut.done());
    assert!(!fut.cancel());
    assert!(tulip::is_cancelled(&fut.result().unwrap_err()));
    assert_eq!(fut.set_result(1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

fn future_done_callbacks_run_soon(event_loop: DynSelectorEventLoop) {
    let fut = event_loop.create_future::<u32>();
    let seen = Rc::new(RefCell::new(Vec::new()));
    for tag in ["a", "b"] {
        let seen = seen.clone();
        fut.add_done_callback(move |f| seen.borrow_mut().push((tag, f.result().unwrap())));
    }
    fut.set_result(7).unwrap();
    assert!(seen.borrow().is_empty(), "done callbacks never run inside set_result");
    event_loop.stop();
    event_loop.run_forever().unwrap();
    assert_eq!(*seen.borrow(), [("a", 7), ("b", 7)]);
    // Added once done: scheduled at once.
    let late = seen.clone();
    fut.add_done_callback(move |f| late.borrow_mut().push(("late", f.result().unwrap())));
    event_loop.stop();
    event_loop.run_forever().unwrap();
    assert_eq!(seen.borrow().len(), 3);
}

fn threadsafe_calls_made_first_run_before_done_callbacks(event_loop: DynSelectorEventLoop) {
    // One FIFO, as asyncio's single ready deque: a call another thread made
    // before a future completed runs before that future's done callback.
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handle = event_loop.handle();
    let remote = Arc::clone(&order);
    thread::spawn(move || handle.call_soon_threadsafe(move |_| remote.lock().unwrap().push("threadsafe")))
        .join()
        .unwrap()
        .unwrap();
    let fut = event_loop.create_future::<()>();
    let local = Arc::clone(&order);
    fut.add_done_callback(move |_| local.lock().unwrap().push("done"));
    fut.set_result(()).unwrap();
    event_loop.stop();
    event_loop.run_forever().unwrap();
    assert_eq!(*order.lock().unwrap(), ["threadsafe", "done"]);
}

fn future_awaited_twice(event_loop: DynSelectorEventLoop) {
    let fut = event_loop.create_future::<String>();
    fut.set_result("once".to_owned()).unwrap();
    let (a, b) = event_loop.run_until_complete(async { (fut.clone().await, fut.clone().await) }).unwrap();
    assert_eq!(a.unwrap(), "once");
    assert_eq!(b.unwrap_err().kind(), io::ErrorKind::InvalidInput, "the value moved to the first awaiter");
}

fn task_result(event_loop: DynSelectorEventLoop) {
    let task = event_loop.create_task(async { 6 * 7 });
    assert!(!task.done());
    assert_eq!(event_loop.pending_tasks(), 1);
    assert_eq!(event_loop.run_until_complete(task).unwrap().unwrap(), 42);
    assert_eq!(event_loop.pending_tasks(), 0);
}

/// A task that sleeps for an hour holding an `Rc` of the loop (a cycle
/// only cancellation or `close` breaks) and a drop guard: the flag is set
/// once the task's future has been dropped.
fn hour_long_task(event_loop: &Rc<DynSelectorEventLoop>) -> (tulip::Task<()>, Rc<Cell<bool>>) {
    let (dropped, guard) = drop_flag();
    let lp = Rc::clone(event_loop);
    let task = event_loop.create_task(async move {
        let _guard = guard;
        tulip::sleep(&*lp, Duration::from_secs(3600)).await;
    });
    (task, dropped)
}

fn task_cancel_drops_the_future(event_loop: DynSelectorEventLoop) {
    let event_loop = Rc::new(event_loop);
    let (task, dropped) = hour_long_task(&event_loop);
    let canceller = task.clone();
    event_loop.call_later(Duration::from_millis(5), move |_| assert!(canceller.cancel()));
    let outcome = event_loop.run_until_complete(task.clone()).unwrap();
    assert!(tulip::is_cancelled(&outcome.unwrap_err()));
    assert!(dropped.get(), "the inner future was dropped");
    assert!(task.cancelled() && task.done());
    assert_eq!(event_loop.pending_tasks(), 0);
    assert_eq!(event_loop.stats().timers_cancelled, 1, "the sleep's timer went with it");
    event_loop.close().unwrap();
}

fn task_cancel_before_first_poll(event_loop: DynSelectorEventLoop) {
    let polled = Rc::new(Cell::new(false));
    let flag = polled.clone();
    let task = event_loop.create_task(async move { flag.set(true) });
    assert!(task.cancel());
    assert!(task.cancel(), "asking again is harmless");
    let outcome = event_loop.run_until_complete(task).unwrap();
    assert!(tulip::is_cancelled(&outcome.unwrap_err()));
    assert!(!polled.get(), "a task cancelled before it ran is never polled");
}

fn task_cancel_after_done(event_loop: DynSelectorEventLoop) {
    let task = event_loop.create_task(async { 1 });
    event_loop.stop();
    event_loop.run_forever().unwrap();
    assert!(task.done());
    assert!(!task.cancel());
    assert!(!task.cancelled());
    assert_eq!(event_loop.run_until_complete(task).unwrap().unwrap(), 1);
}

fn task_cancelled_while_running_ends_cancelled(event_loop: DynSelectorEventLoop) {
    // The task cancels itself in its last poll: `cancel` said true, so the
    // task ends cancelled, its output dropped (asyncio's `_must_cancel`).
    let slot: Rc<RefCell<Option<tulip::Task<u32>>>> = Rc::default();
    let me = slot.clone();
    let (dropped, guard) = drop_flag();
    let task = event_loop.create_task(async move {
        let task = me.borrow_mut().take().unwrap();
        assert!(task.cancel(), "running: not done yet");
        drop(guard);
        5
    });
    *slot.borrow_mut() = Some(task.clone());
    let err = event_loop.run_until_complete(task.clone()).unwrap().unwrap_err();
    assert!(tulip::is_cancelled(&err), "{err}");
    assert!(task.done() && task.cancelled());
    assert!(dropped.get());
    assert!(!task.cancel(), "done now");
}

fn task_whose_future_panics_when_dropped_still_ends(event_loop: DynSelectorEventLoop) {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("dropped");
        }
    }
    let reports = Rc::new(RefCell::new(Vec::new()));
    let sink = reports.clone();
    event_loop
        .set_exception_handler(Some(Box::new(move |_, context| sink.borrow_mut().push(context.to_string()))));
    let event_loop = Rc::new(event_loop);
    let lp = Rc::clone(&event_loop);
    let task = event_loop.create_task(async move {
        let _guard = PanicsOnDrop;
        tulip::sleep(&*lp, Duration::from_secs(3600)).await;
    });
    run_one_iteration(&event_loop);
    assert!(task.cancel());
    // Cancelling drops the future, whose drop panics: the awaiter still
    // hears that the task is over.
    let waited = tulip::wait_for(&*event_loop, task.clone(), Duration::from_secs(10));
    let err = event_loop.run_until_complete(waited).unwrap().unwrap().unwrap_err();
    assert!(tulip::is_cancelled(&err), "{err}");
    assert!(task.done() && task.cancelled());
    assert_eq!(event_loop.pending_tasks(), 0);
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("dropped"), "{reports:?}");
}

fn task_panic_is_reported(event_loop: DynSelectorEventLoop) {
    let reports = Rc::new(RefCell::new(Vec::new()));
    let sink = reports.clone();
    event_loop
        .set_exception_handler(Some(Box::new(move |_, context| sink.borrow_mut().push(context.to_string()))));
    let task = event_loop.create_task(async {
        if true {
            panic!("boom");
        }
    });
    let after = event_loop.create_task(async { "still running" });
    let outcome = event_loop.run_until_complete(task).unwrap();
    let err = outcome.unwrap_err();
    assert!(err.to_string().contains("task panicked") && err.to_string().contains("boom"), "{err}");
    assert_eq!(event_loop.run_until_complete(after).unwrap().unwrap(), "still running");
    assert_eq!(event_loop.stats().panics, 1);
    assert_eq!(reports.borrow().len(), 1);
    assert!(reports.borrow()[0].contains("boom"), "{:?}", reports.borrow());
}

fn task_awaits_task(event_loop: DynSelectorEventLoop) {
    let event_loop = Rc::new(event_loop);
    let lp = event_loop.clone();
    let inner = event_loop.create_task(async move {
        tulip::sleep(&*lp, Duration::from_millis(2)).await;
        5
    });
    let outer = event_loop.create_task(async move { inner.await.unwrap() * 2 });
    assert_eq!(event_loop.run_until_complete(outer).unwrap().unwrap(), 10);
    event_loop.close().unwrap();
}

/// A future completed by another thread: it sends its waker to `waker_tx`
/// on first poll, and is ready once `flag` is set.
fn remote_future(flag: Arc<AtomicBool>, waker_tx: mpsc::Sender<Waker>) -> impl Future<Output = ()> {
    let mut sent = false;
    poll_fn(move |cx| {
        if flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !sent {
            sent = true;
            waker_tx.send(cx.waker().clone()).unwrap();
        }
        Poll::Pending
    })
}

fn spawn_waker_thread(flag: Arc<AtomicBool>, waker_rx: mpsc::Receiver<Waker>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let waker = waker_rx.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::Release);
        waker.wake();
    })
}

fn task_wake_from_other_thread(event_loop: DynSelectorEventLoop) {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let waker_thread = spawn_waker_thread(flag.clone(), rx);
    let task = event_loop.create_task(remote_future(flag, tx));
    let start = Instant::now();
    event_loop.run_until_complete(task).unwrap().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(20));
    waker_thread.join().unwrap();
}

/// The future given to `run_until_complete` itself, woken from another
/// thread: it completes after the wake, polled once before and once after
/// it, and the loop sleeps in `select` meanwhile rather than spinning.
fn root_wake_from_other_thread(event_loop: DynSelectorEventLoop) {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let waker_thread = spawn_waker_thread(flag.clone(), rx);
    let polls = Rc::new(Cell::new(0));
    let counted = polls.clone();
    let mut remote = std::pin::pin!(remote_future(flag, tx));
    let start = Instant::now();
    event_loop
        .run_until_complete(poll_fn(move |cx| {
            counted.set(counted.get() + 1);
            remote.as_mut().poll(cx)
        }))
        .unwrap();
    let elapsed = start.elapsed();
    waker_thread.join().unwrap();
    assert!(elapsed >= Duration::from_millis(20), "done after {elapsed:?}, before the other thread woke it");
    assert_eq!(polls.get(), 2, "polled once, then once when woken");
    let selects = event_loop.stats().select_calls;
    assert!(selects <= 4, "{selects} selects while waiting for one wake: the loop spun");
}

/// A task, its poll count, its latest waker, and the flag that makes it ready.
type Counting = (tulip::Task<()>, Rc<Cell<u32>>, Rc<RefCell<Option<Waker>>>, Rc<Cell<bool>>);

/// A task that counts its polls and hands out its waker; ready when told.
fn counting_task(event_loop: &DynSelectorEventLoop) -> Counting {
    let polls = Rc::new(Cell::new(0));
    let waker = Rc::new(RefCell::new(None));
    let finish = Rc::new(Cell::new(false));
    let (p, w, f) = (polls.clone(), waker.clone(), finish.clone());
    let task = event_loop.create_task(poll_fn(move |cx| {
        p.set(p.get() + 1);
        *w.borrow_mut() = Some(cx.waker().clone());
        if f.get() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    (task, polls, waker, finish)
}

fn run_one_iteration(event_loop: &DynSelectorEventLoop) {
    event_loop.stop();
    event_loop.run_forever().unwrap();
}

fn many_wakes_one_poll(event_loop: DynSelectorEventLoop) {
    let (task, polls, waker, finish) = counting_task(&event_loop);
    run_one_iteration(&event_loop);
    assert_eq!(polls.get(), 1);
    // Woken 1,000 times by a callback: polled once, on the next iteration.
    let w = waker.borrow().clone().unwrap();
    event_loop.call_soon(move |_| (0..1000).for_each(|_| w.wake_by_ref()));
    run_one_iteration(&event_loop);
    assert_eq!(polls.get(), 1, "woken during this iteration: polled on the next");
    run_one_iteration(&event_loop);
    assert_eq!(polls.get(), 2);
    run_one_iteration(&event_loop);
    assert_eq!(polls.get(), 2, "no spurious poll");
    // Woken 1,000 times outside the loop, by clones, then run.
    let w = waker.borrow().clone().unwrap();
    (0..1000).map(|_| w.clone()).for_each(Waker::wake);
    run_one_iteration(&event_loop);
    assert_eq!(polls.get(), 3);
    finish.set(true);
    w.wake();
    event_loop.run_until_complete(task).unwrap().unwrap();
    assert_eq!(polls.get(), 4);
}

fn many_wakes_from_other_thread_one_poll(event_loop: DynSelectorEventLoop) {
    let (task, polls, waker, finish) = counting_task(&event_loop);
    run_one_iteration(&event_loop);
    let w = waker.borrow().clone().unwrap();
    thread::spawn(move || (0..1000).for_each(|_| w.wake_by_ref())).join().unwrap();
    let before = event_loop.stats().callbacks_run;
    event_loop.run_until_complete(tulip::sleep(&event_loop, Duration::from_millis(5))).unwrap();
    assert_eq!(polls.get(), 2, "1,000 wakes from another thread: one poll");
    assert!(event_loop.stats().callbacks_run - before < 10, "one threadsafe callback, not 1,000");
    finish.set(true);
    let w = waker.borrow().clone().unwrap();
    thread::spawn(move || w.wake()).join().unwrap();
    event_loop.run_until_complete(task).unwrap().unwrap();
    assert_eq!(polls.get(), 3);
}

fn run_until_complete_rules(event_loop: DynSelectorEventLoop) {
    let nested = event_loop
        .run_until_complete(async {
            assert!(event_loop.is_running());
            event_loop.run_until_complete(async {}).unwrap_err().to_string()
        })
        .unwrap();
    assert!(nested.contains("already running"), "{nested}");
    assert!(!event_loop.is_running());
    event_loop.close().unwrap();
    let err = event_loop.run_until_complete(async {}).unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}

fn run_until_complete_stopped(event_loop: DynSelectorEventLoop) {
    let outcome = event_loop.run_until_complete(async {
        event_loop.stop();
        tulip::sleep(&event_loop, Duration::from_secs(3600)).await;
    });
    assert!(outcome.unwrap_err().to_string().contains("stopped before the future completed"));
    // The loop is still usable.
    assert_eq!(event_loop.run_until_complete(async { 3 }).unwrap(), 3);
}

fn run_until_complete_stopped_as_it_completes(event_loop: DynSelectorEventLoop) {
    // One callback completes the future and stops the loop: asyncio finds
    // the future done and returns its result.
    let fut = event_loop.create_future::<u32>();
    let setter = fut.clone();
    event_loop.call_soon(move |event_loop| {
        setter.set_result(7).unwrap();
        event_loop.stop();
    });
    assert_eq!(event_loop.run_until_complete(fut).unwrap().unwrap(), 7);
    assert!(!event_loop.is_running());
    // The same through a task.
    let task = event_loop.create_task(async { 8 });
    event_loop.call_soon(|event_loop| event_loop.stop());
    assert_eq!(event_loop.run_until_complete(task).unwrap().unwrap(), 8);
}

fn close_drops_pending_tasks(event_loop: DynSelectorEventLoop) {
    let event_loop = Rc::new(event_loop);
    let (task, dropped) = hour_long_task(&event_loop);
    run_one_iteration(&event_loop);
    assert!(!dropped.get());
    // One more, queued but never run.
    let (queued_dropped, queued_guard) = drop_flag();
    let queued = event_loop.create_task(async move { drop(queued_guard) });
    event_loop.close().unwrap();
    assert!(dropped.get(), "close dropped the pending task");
    assert!(queued_dropped.get() && queued.cancelled(), "and the queued one");
    assert_eq!(Rc::strong_count(&event_loop), 1, "the task's Rc of the loop is gone");
    assert!(task.done() && task.cancelled(), "a task dropped by close ends cancelled");
}

fn create_task_on_closed_loop(event_loop: DynSelectorEventLoop) {
    event_loop.close().unwrap();
    let (dropped, guard) = drop_flag();
    let task = event_loop.create_task(async move { drop(guard) });
    assert!(task.done());
    assert!(dropped.get());
    let fut = event_loop.create_future::<()>();
    fut.set_result(()).unwrap();
    fut.add_done_callback(|_| unreachable!("a closed loop runs nothing"));
}
