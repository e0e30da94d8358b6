//! `run_in_executor` on every backend: a thousand jobs, a panicking one,
//! cancellation before a job starts, closing the loop while a job runs,
//! and the patient `shutdown_default_executor`.

#[macro_use]
mod common;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use tulip::{AbstractEventLoop, DynSelectorEventLoop};

backend_tests!(
    run_on_thread:
    a_thousand_jobs,
    a_panicking_job_fails_its_future_only,
    a_blocked_loop_wakes_for_the_result,
    a_job_cancelled_before_it_starts_never_runs,
    closing_the_loop_does_not_wait_for_a_running_job,
    shutdown_default_executor_runs_the_queue_and_joins,
    bad_settings_and_closed_loops,
);

/// Runs `fut` under a generous timeout; a hang fails the test.
fn run<F: Future>(event_loop: &DynSelectorEventLoop, fut: F) -> F::Output {
    event_loop.run_until_complete(tulip::wait_for(event_loop, fut, Duration::from_secs(30))).unwrap().unwrap()
}

fn a_thousand_jobs(event_loop: DynSelectorEventLoop) {
    let threads = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let futures: Vec<_> = (0..1000u64)
        .map(|i| {
            let threads = Arc::clone(&threads);
            event_loop.run_in_executor(move || {
                threads.lock().unwrap().insert(thread::current().id());
                // A little work, so that jobs overlap.
                (0..1000u64).fold(i, |acc, k| acc.wrapping_mul(31).wrapping_add(k)) % 7 + i * i
            })
        })
        .collect();
    let results = run(&event_loop, tulip::gather(futures));
    for (i, result) in results.into_iter().enumerate() {
        let i = i as u64;
        let expected = (0..1000u64).fold(i, |acc, k| acc.wrapping_mul(31).wrapping_add(k)) % 7 + i * i;
        assert_eq!(result.unwrap(), expected, "job {i}");
    }
    let used = threads.lock().unwrap().len();
    let max = event_loop.executor_max_workers();
    assert!(used >= 1 && used <= max, "{used} threads ran jobs, at most {max} allowed");
    assert!(event_loop.executor_workers() <= max);
    assert!(!threads.lock().unwrap().contains(&thread::current().id()), "no job ran on the loop's thread");
}

fn a_panicking_job_fails_its_future_only(event_loop: DynSelectorEventLoop) {
    let before = event_loop.run_in_executor(|| 1);
    let line = line!() + 1;
    let boom = event_loop.run_in_executor(|| -> u32 { panic!("boom in a worker {}", 7) });
    let after = event_loop.run_in_executor(|| 3);
    let results = run(&event_loop, tulip::gather([before, boom, after]));
    assert_eq!(results[0].as_ref().unwrap(), &1);
    assert_eq!(results[2].as_ref().unwrap(), &3);
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Other);
    let message = err.to_string();
    assert!(message.starts_with("the function panicked at tests/executor.rs:"), "{message}");
    assert!(message.contains(&format!(":{line}:")), "{message}");
    assert!(message.ends_with(": boom in a worker 7"), "{message}");
    // The worker survived its job's panic.
    assert_eq!(run(&event_loop, event_loop.run_in_executor(|| "still working")).unwrap(), "still working");
}

fn a_blocked_loop_wakes_for_the_result(event_loop: DynSelectorEventLoop) {
    let started = Instant::now();
    let slow = event_loop.run_in_executor(|| {
        thread::sleep(Duration::from_millis(50));
        "slept"
    });
    // Nothing else to do: the loop blocks in select until the worker's call wakes it.
    assert_eq!(run(&event_loop, slow).unwrap(), "slept");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(event_loop.stats().time_blocked > Duration::ZERO || cfg!(not(target_os = "linux")));
}

fn a_job_cancelled_before_it_starts_never_runs(event_loop: DynSelectorEventLoop) {
    event_loop.set_executor_max_workers(1).unwrap();
    let (release, gate) = mpsc::channel::<()>();
    let blocker = event_loop.run_in_executor(move || gate.recv_timeout(Duration::from_secs(10)).is_ok());
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let victim = event_loop.run_in_executor(move || flag.store(true, Ordering::SeqCst));
    assert!(victim.cancel());
    let follower = event_loop.run_in_executor(|| "after the victim");
    // One iteration passes the cancellation on to the queued job.
    run(&event_loop, tulip::sleep(&event_loop, Duration::ZERO));
    release.send(()).unwrap();
    assert!(run(&event_loop, blocker).unwrap());
    assert_eq!(run(&event_loop, follower).unwrap(), "after the victim");
    assert!(!ran.load(Ordering::SeqCst), "the cancelled job ran");
    assert!(victim.cancelled());
    assert_eq!(event_loop.executor_workers(), 1);
}

/// Sets its flag when dropped: shows where a job's result went.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn closing_the_loop_does_not_wait_for_a_running_job(event_loop: DynSelectorEventLoop) {
    let (release, gate) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let result_dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&result_dropped);
    let running = event_loop.run_in_executor(move || {
        started_tx.send(()).unwrap();
        let _ = gate.recv_timeout(Duration::from_secs(10));
        Dropped(flag)
    });
    started_rx.recv_timeout(Duration::from_secs(10)).expect("the job started");
    let queued_ran = Arc::new(AtomicUsize::new(0));
    event_loop.set_executor_max_workers(1).unwrap();
    let count = Arc::clone(&queued_ran);
    let queued = event_loop.run_in_executor(move || count.fetch_add(1, Ordering::SeqCst));
    let closing = Instant::now();
    event_loop.close().unwrap();
    assert!(closing.elapsed() < Duration::from_secs(1), "close waited {:?}", closing.elapsed());
    assert!(running.cancelled() && queued.cancelled(), "waiting futures are cancelled at close");
    release.send(()).unwrap();
    // The worker finishes its job, finds the loop closed and drops the result.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !result_dropped.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the job's result was never dropped");
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(20));
    assert_eq!(queued_ran.load(Ordering::SeqCst), 0, "a job queued at close never runs");
}

fn shutdown_default_executor_runs_the_queue_and_joins(event_loop: DynSelectorEventLoop) {
    event_loop.set_executor_max_workers(2).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let jobs: Vec<_> = (0..20)
        .map(|_| {
            let done = Arc::clone(&done);
            event_loop.run_in_executor(move || {
                thread::sleep(Duration::from_millis(2));
                done.fetch_add(1, Ordering::SeqCst)
            })
        })
        .collect();
    run(&event_loop, event_loop.shutdown_default_executor()).unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 20, "every queued job ran before the workers were joined");
    assert_eq!(event_loop.executor_workers(), 0);
    for result in run(&event_loop, tulip::gather(jobs)) {
        result.unwrap();
    }
    let refused = run(&event_loop, event_loop.run_in_executor(|| ())).unwrap_err();
    assert!(refused.to_string().contains("shut down"), "{refused}");
}

fn bad_settings_and_closed_loops(event_loop: DynSelectorEventLoop) {
    let err = event_loop.set_executor_max_workers(0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains('0'), "{err}");
    assert!(event_loop.executor_max_workers() >= 1);
    event_loop.close().unwrap();
    let refused = event_loop.run_in_executor(|| 1);
    assert!(refused.done());
    assert_eq!(refused.result().unwrap_err().to_string(), "event loop is closed");
    assert_eq!(event_loop.executor_workers(), 0, "no thread was started for a closed loop");
}
