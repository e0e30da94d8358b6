//! `BaseSelectorEventLoop::with_selector` over a selector of our own that
//! wraps a real backend and can be told to fail or panic in `select`: the
//! loop must return the error (or let the panic through) and stay usable.

#[macro_use]
mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::faulty::{faulty_loop, Fault};
use common::{readable_pair, run_bounded, LIMIT};
use tulip::selectors::Backend;
use tulip::AbstractEventLoop;

fn a_custom_selector_drives_the_loop(backend: Backend) {
    let (lp, faults) = faulty_loop(backend);
    assert_eq!(lp.backend().unwrap(), backend);
    let (_a, b) = readable_pair();
    let b_fd = common::fd(&b);
    let runs = Rc::new(Cell::new(0));
    let r = Rc::clone(&runs);
    lp.add_reader(b_fd, move |lp| {
        r.set(r.get() + 1);
        assert!(lp.remove_reader(b_fd).unwrap());
        lp.stop();
    })
    .unwrap();
    run_bounded(&lp, LIMIT);
    assert_eq!(runs.get(), 1);
    assert_eq!(u64::from(faults.selects.get()), lp.stats().select_calls);
    lp.close().unwrap();
}

fn a_select_error_ends_run_forever_and_the_loop_stays_usable(backend: Backend) {
    let (lp, faults) = faulty_loop(backend);
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = Rc::clone(&log);
    lp.call_later(Duration::from_millis(5), move |lp| {
        l.borrow_mut().push("timer");
        lp.stop();
    });
    faults.next.set(Fault::Error);
    let err = lp.run_forever().unwrap_err();
    assert_eq!(err.to_string(), "injected select failure");
    assert!(!lp.is_running());
    assert!(log.borrow().is_empty());
    // Usable: the timer still fires on the next run, and it closes.
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["timer"]);
    lp.close().unwrap();
}

fn a_panicking_select_leaves_the_loop_not_running(backend: Backend) {
    let (lp, faults) = faulty_loop(backend);
    lp.call_later(Duration::from_millis(5), |lp| lp.stop());
    faults.next.set(Fault::Panic);
    // The selector's panic goes through run_forever.
    common::assert_panics_with("injected select panic", || drop(lp.run_forever()));
    assert!(!lp.is_running(), "a panic must not leave the loop marked running");
    lp.close().expect("a loop that is not running can be closed");
}

fn a_panic_after_stop_does_not_leak_into_the_next_run(backend: Backend) {
    // stop() was requested, then the iteration panicked: the request is
    // consumed with that run, as when run_forever returns normally.
    let (lp, faults) = faulty_loop(backend);
    // An fd to watch, so the stopped iteration calls select.
    let (_a, b) = common::socketpair();
    lp.add_reader(common::fd(&b), |_| panic!("nothing was sent")).unwrap();
    let runs = Rc::new(Cell::new(0));
    lp.stop();
    faults.next.set(Fault::Panic);
    common::assert_panics_with("injected select panic", || drop(lp.run_forever()));
    let r = Rc::clone(&runs);
    lp.call_later(Duration::from_millis(20), move |lp| {
        r.set(r.get() + 1);
        lp.stop();
    });
    run_bounded(&lp, LIMIT);
    assert_eq!(runs.get(), 1, "the next run lasted until its own stop");
}

backend_tests!(
    with_backend:
    a_custom_selector_drives_the_loop,
    a_select_error_ends_run_forever_and_the_loop_stays_usable,
    a_panicking_select_leaves_the_loop_not_running,
    a_panic_after_stop_does_not_leak_into_the_next_run,
);
