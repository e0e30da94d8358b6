//! Layer 3: sleep, wait_for and gather, on every backend.

#[macro_use]
mod common;

use std::cell::Cell;
use std::future::{pending, Future};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::drop_flag;
use tulip::{AbstractEventLoop, DynSelectorEventLoop};

backend_tests!(
    run_on_thread:
    sleep_is_never_early,
    sleep_zero,
    dropped_sleep_cancels_its_timer,
    wait_for_times_out_and_drops,
    wait_for_in_time,
    wait_for_ready_future_wins,
    gather_keeps_order,
    gather_tasks_run_concurrently,
    gather_empty,
);

fn sleep_is_never_early(event_loop: DynSelectorEventLoop) {
    for ms in [1, 3, 10, 25] {
        let delay = Duration::from_millis(ms);
        let start = Instant::now();
        let sleep = tulip::sleep(&event_loop, delay);
        assert!(sleep.deadline().unwrap() >= start + delay);
        event_loop.run_until_complete(sleep).unwrap();
        let took = start.elapsed();
        assert!(took >= delay, "slept {took:?} < {delay:?}");
        assert!(took < delay + Duration::from_secs(2), "slept {took:?}");
    }
}

fn sleep_zero(event_loop: DynSelectorEventLoop) {
    event_loop.run_until_complete(tulip::sleep(&event_loop, Duration::ZERO)).unwrap();
    let deadline = Instant::now() + Duration::from_millis(3);
    event_loop.run_until_complete(tulip::sleep_until(&event_loop, deadline)).unwrap();
    assert!(Instant::now() >= deadline);
}

fn dropped_sleep_cancels_its_timer(event_loop: DynSelectorEventLoop) {
    let sleep = tulip::sleep(&event_loop, Duration::from_secs(3600));
    assert_eq!(event_loop.stats().timers_in_heap, 1);
    drop(sleep);
    assert_eq!(event_loop.stats().timers_cancelled, 1);
    event_loop.stop();
    event_loop.run_forever().unwrap();
    assert_eq!(event_loop.stats().timers_in_heap, 0, "purged");
}

fn wait_for_times_out_and_drops(event_loop: DynSelectorEventLoop) {
    let (dropped, guard) = drop_flag();
    let never = async move {
        let _guard = guard;
        pending::<u32>().await
    };
    let start = Instant::now();
    let outcome = event_loop
        .run_until_complete(tulip::wait_for(&event_loop, never, Duration::from_millis(10)))
        .unwrap();
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(10));
    assert!(dropped.get(), "the inner future was dropped at the timeout");
}

fn wait_for_in_time(event_loop: DynSelectorEventLoop) {
    let quick = {
        let sleep = tulip::sleep(&event_loop, Duration::from_millis(2));
        async move {
            sleep.await;
            "quick"
        }
    };
    let outcome =
        event_loop.run_until_complete(tulip::wait_for(&event_loop, quick, Duration::from_secs(30))).unwrap();
    assert_eq!(outcome.unwrap(), "quick");
    assert_eq!(event_loop.stats().timers_cancelled, 1, "the timeout's timer was cancelled");
}

fn wait_for_ready_future_wins(event_loop: DynSelectorEventLoop) {
    // Both due: the future's result is taken over the timeout.
    let fut = tulip::sleep(&event_loop, Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(3));
    let outcome =
        event_loop.run_until_complete(tulip::wait_for(&event_loop, fut, Duration::from_millis(1))).unwrap();
    assert!(outcome.is_ok());
}

fn gather_keeps_order(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    let waits: Vec<Pin<Box<dyn Future<Output = u64>>>> = vec![
        Box::pin(async move {
            tulip::sleep(lp, Duration::from_millis(15)).await;
            1
        }),
        Box::pin(async { 2 }),
        Box::pin(async move {
            tulip::sleep(lp, Duration::from_millis(5)).await;
            3
        }),
    ];
    let start = Instant::now();
    assert_eq!(event_loop.run_until_complete(tulip::gather(waits)).unwrap(), [1, 2, 3]);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(15) && took < Duration::from_secs(5), "{took:?}");
}

fn gather_tasks_run_concurrently(event_loop: DynSelectorEventLoop) {
    let event_loop = Rc::new(event_loop);
    let running = Rc::new(Cell::new(0));
    let most = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let (lp, running, most) = (event_loop.clone(), running.clone(), most.clone());
            event_loop.create_task(async move {
                running.set(running.get() + 1);
                most.set(most.get().max(running.get()));
                tulip::sleep(&*lp, Duration::from_millis(20 - i)).await;
                running.set(running.get() - 1);
                i
            })
        })
        .collect();
    let start = Instant::now();
    let outputs = event_loop.run_until_complete(tulip::gather(tasks)).unwrap();
    let outputs: Vec<u64> = outputs.into_iter().map(Result::unwrap).collect();
    assert_eq!(outputs, (0..20).collect::<Vec<_>>());
    assert_eq!(most.get(), 20, "all 20 slept at once");
    assert!(start.elapsed() < Duration::from_secs(5));
    event_loop.close().unwrap();
}

fn gather_empty(event_loop: DynSelectorEventLoop) {
    let none: Vec<std::future::Ready<u8>> = Vec::new();
    assert!(event_loop.run_until_complete(tulip::gather(none)).unwrap().is_empty());
}
