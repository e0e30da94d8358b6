//! The iteration record (`tulip::trace`): what an observer is told about
//! each iteration, on every backend, and what `TULIP_TRACE=1` prints.

#[macro_use]
mod common;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use common::{fd, run_bounded, socketpair, TestLoop, LIMIT};
use tulip::trace::{Iteration, LoopObserver, TimeoutReason, WriteObserver};

/// Keeps every record.
struct Keep(Rc<RefCell<Vec<Iteration>>>);

impl LoopObserver for Keep {
    fn iteration(&mut self, record: &Iteration) {
        self.0.borrow_mut().push(record.clone());
    }
}

fn observed<L: TestLoop>(lp: &L) -> Rc<RefCell<Vec<Iteration>>> {
    let records = Rc::default();
    lp.set_observer(Some(Box::new(Keep(Rc::clone(&records)))));
    records
}

fn a_timer_iteration_says_why_it_waited_and_what_fired<L: TestLoop>(lp: L) {
    let records = observed(&lp);
    let line = line!() + 1;
    let timer = lp.call_later(Duration::from_millis(5), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    let records = records.borrow();
    let last = records.last().expect("a record per iteration");
    assert_eq!(last.number, lp.stats().iterations);
    assert!(records.iter().any(|r| r.timeout_reason == Some(TimeoutReason::Timer(timer.when()))));
    assert_eq!(last.timers_fired.len(), 1);
    assert_eq!((last.timers_fired[0].file(), last.timers_fired[0].line()), (file!(), line));
    assert_eq!(last.callbacks.len(), 1);
    assert_eq!(last.callbacks[0].origin.line(), line);
    let waited: Duration = records.iter().map(|r| r.blocked).sum();
    assert!(waited >= Duration::from_millis(4), "blocked {waited:?}");
}

fn a_ready_fd_is_recorded_with_its_events<L: TestLoop>(lp: L) {
    let records = observed(&lp);
    let (mut a, b) = socketpair();
    let b_fd = fd(&b);
    lp.add_reader(b_fd, move |lp| {
        assert!(lp.remove_reader(b_fd).unwrap());
        lp.stop();
    })
    .unwrap();
    a.write_all(b"x").unwrap();
    run_bounded(&lp, LIMIT);
    let records = records.borrow();
    let last = records.last().unwrap();
    assert_eq!(last.ready, [(b_fd, tulip::Events::READ)]);
    assert!(last.wait_end.fds_ready && !last.wait_end.woken && !last.wait_end.timed_out());
    assert_eq!(last.timeout_reason, Some(TimeoutReason::NothingToWaitFor));
}

fn callbacks_ready_and_stop_pending_are_reasons_not_to_wait<L: TestLoop>(lp: L) {
    let records = observed(&lp);
    lp.call_soon(|_| {});
    lp.stop();
    run_bounded(&lp, LIMIT);
    assert_eq!(records.borrow()[0].timeout_reason, Some(TimeoutReason::CallbacksReady));
    assert_eq!(records.borrow()[0].timeout, Some(Duration::ZERO));
    lp.stop();
    run_bounded(&lp, LIMIT);
    assert_eq!(records.borrow()[1].timeout_reason, Some(TimeoutReason::StopPending));
}

fn a_wake_from_another_thread_is_recorded<L: TestLoop>(lp: L) {
    let records = observed(&lp);
    // The call wakes the loop only if the loop is asleep when it comes; a
    // loop slow to reach its wait (under valgrind, say) finds the call
    // first and never sleeps. So the other thread waits longer each time
    // until the loop was asleep, as it is at once on a normal machine.
    for delay_ms in [20, 200, 2_000] {
        records.borrow_mut().clear();
        let handle = lp.handle();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            handle.call_soon_threadsafe(|lp: &L| lp.stop()).unwrap();
        });
        run_bounded(&lp, LIMIT);
        thread.join().unwrap();
        if records.borrow().iter().any(|r| r.wait_end.woken) {
            return;
        }
    }
    panic!("no wake recorded: {:?}", records.borrow());
}

fn no_observer_no_record<L: TestLoop>(lp: L) {
    let records = observed(&lp);
    lp.set_observer(None);
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert!(records.borrow().is_empty());
}

per_backend!(
    a_timer_iteration_says_why_it_waited_and_what_fired,
    a_ready_fd_is_recorded_with_its_events,
    callbacks_ready_and_stop_pending_are_reasons_not_to_wait,
    a_wake_from_another_thread_is_recorded,
    no_observer_no_record,
);

/// The block `WriteObserver` writes for one iteration.
#[test]
fn the_written_block_reads_as_the_iteration() {
    let lp = tulip::SelectorEventLoop::new().unwrap();
    let out = Rc::new(RefCell::new(Vec::new()));
    struct Shared(Rc<RefCell<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    lp.set_observer(Some(Box::new(WriteObserver::new(Shared(Rc::clone(&out))))));
    use tulip::AbstractEventLoop;
    lp.call_later(Duration::from_millis(2), |lp| lp.stop());
    lp.run_forever().unwrap();
    let text = String::from_utf8(out.borrow().clone()).unwrap();
    assert!(text.starts_with("#1 "), "{text}");
    assert!(text.contains("the earliest timer, at +"), "{text}");
    assert!(text.contains("select waited"), "{text}");
    assert!(text.contains("timed out"), "{text}");
    assert!(text.contains(&format!("timer fired (scheduled at {}", file!())), "{text}");
    assert!(text.contains("blocked "), "{text}");
}
