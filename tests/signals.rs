//! Unix signals delivered as loop callbacks. Signal dispositions belong to
//! the whole process, so these cases live in their own test binary and take
//! a lock: at most one runs at a time. Every case runs on
//! `SelectorEventLoop` and on each backend.

#[macro_use]
mod common;

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::mem;
use std::os::raw::c_int;
use std::ptr;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use common::{assert_fails, run_bounded, TestLoop, LIMIT};
use tulip::selectors::mechanism::cvt;
use tulip::{AbstractEventLoop, SelectorEventLoop};

/// Held by every case: signal dispositions are process-wide.
fn serialised() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Installs a handler for `signum` that counts its runs and stops the loop.
fn count_and_stop<L: TestLoop>(lp: &L, signum: c_int) -> Rc<Cell<u32>> {
    let runs = Rc::new(Cell::new(0));
    let r = Rc::clone(&runs);
    lp.add_signal_handler(signum, move |lp| {
        r.set(r.get() + 1);
        lp.stop();
    })
    .unwrap();
    runs
}

/// The handler address currently installed for `signum`.
fn current_handler(signum: c_int) -> libc::sighandler_t {
    // SAFETY: sigaction is plain data; all-zero is a valid value.
    let mut old: libc::sigaction = unsafe { mem::zeroed() };
    // SAFETY: a null new action only reads the disposition into `old`.
    cvt(unsafe { libc::sigaction(signum, ptr::null(), &mut old) }).unwrap();
    old.sa_sigaction
}

/// Installs `handler` (an address or `SIG_DFL`/`SIG_IGN`) for `signum`.
fn set_handler(signum: c_int, handler: libc::sighandler_t) {
    // SAFETY: as above.
    let mut action: libc::sigaction = unsafe { mem::zeroed() };
    action.sa_sigaction = handler;
    // SAFETY: `action` is a live sigaction; the old one is not wanted.
    cvt(unsafe { libc::sigaction(signum, &action, ptr::null_mut()) }).unwrap();
}

extern "C" fn marker_handler(_: c_int) {}

fn marker() -> libc::sighandler_t {
    marker_handler as extern "C" fn(c_int) as libc::sighandler_t
}

/// Sends `signum` to this process.
fn send_to_self(signum: c_int) {
    // SAFETY: kill(2) with our own pid and a signal we handle.
    cvt(unsafe { libc::kill(libc::getpid(), signum) }).unwrap();
}

/// Raises `signum` in this thread: its handler has run when this returns.
fn raise(signum: c_int) {
    // SAFETY: raise(3) with a signal whose handler is installed.
    assert_eq!(unsafe { libc::raise(signum) }, 0);
}

fn a_raised_signal_runs_its_handler<L: TestLoop>(lp: L) {
    let _lock = serialised();
    let runs = Rc::new(Cell::new(0));
    let r = Rc::clone(&runs);
    lp.add_signal_handler(libc::SIGUSR1, move |lp| {
        assert!(lp.is_running(), "signal handlers run as loop callbacks");
        r.set(r.get() + 1);
        lp.stop();
    })
    .unwrap();
    lp.call_soon(|_| raise(libc::SIGUSR1));
    run_bounded(&lp, LIMIT);
    assert_eq!(runs.get(), 1);
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
}

fn a_signal_wakes_a_blocked_loop<L: TestLoop>(lp: L) {
    let _lock = serialised();
    let runs = count_and_stop(&lp, libc::SIGUSR2);
    // Sent from another thread to the whole process while the loop blocks
    // with nothing else to wait for.
    let sender = thread::spawn(|| {
        thread::sleep(Duration::from_millis(50));
        send_to_self(libc::SIGUSR2);
    });
    run_bounded(&lp, LIMIT);
    sender.join().unwrap();
    assert_eq!(runs.get(), 1);
    assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
}

fn a_signal_arriving_during_select_runs_its_handler<L: TestLoop>(lp: L) {
    // asyncio's test: an interval timer sends SIGALRM while the loop blocks.
    let _lock = serialised();
    let caught = count_and_stop(&lp, libc::SIGALRM);
    // SAFETY: itimerval is plain data; all-zero is a valid value.
    let mut timer: libc::itimerval = unsafe { mem::zeroed() };
    timer.it_value.tv_usec = 10_000; // once, in 10 ms
                                     // SAFETY: `timer` is a live itimerval; the old value is not wanted.
    cvt(unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, ptr::null_mut()) }).unwrap();
    lp.call_later(Duration::from_secs(60), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(caught.get(), 1);
    assert!(lp.remove_signal_handler(libc::SIGALRM).unwrap());
}

fn each_delivery_runs_the_handler<L: TestLoop>(lp: L) {
    let _lock = serialised();
    let log = Rc::new(RefCell::new(Vec::new()));
    for signum in [libc::SIGUSR1, libc::SIGUSR2] {
        let log = Rc::clone(&log);
        lp.add_signal_handler(signum, move |_| log.borrow_mut().push(signum)).unwrap();
    }
    raise(libc::SIGUSR1);
    raise(libc::SIGUSR2);
    raise(libc::SIGUSR1);
    // Stop only after the pipe had a chance to be read.
    lp.call_later(Duration::from_millis(20), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), [libc::SIGUSR1, libc::SIGUSR2, libc::SIGUSR1]);
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
}

fn invalid_signals_are_refused<L: TestLoop>(lp: L) {
    let _lock = serialised();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let nsig = libc::SIGRTMAX() + 1;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let nsig = 32;
    for signum in [0, -1, libc::SIGKILL, libc::SIGSTOP, nsig, 65, 1000, c_int::MAX, c_int::MIN] {
        let err = lp.add_signal_handler(signum, |_| {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "add {signum}: {err}");
    }
    for signum in [0, -1, nsig, 65, 1000, c_int::MAX, c_int::MIN] {
        let err = lp.remove_signal_handler(signum).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "remove {signum}: {err}");
    }
    // SIGKILL and SIGSTOP are signals, just uncatchable: removing their
    // (never installed) handler is Ok(false), as asyncio returns False.
    for signum in [libc::SIGKILL, libc::SIGSTOP] {
        assert!(!lp.remove_signal_handler(signum).unwrap(), "remove {signum}");
    }
    // The refusals took nothing: another loop can still handle signals.
    let other = SelectorEventLoop::new().unwrap();
    other.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    other.close().unwrap();
}

fn a_second_handler_replaces_the_first<L: TestLoop>(lp: L) {
    let _lock = serialised();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = Rc::clone(&log);
    lp.add_signal_handler(libc::SIGUSR1, move |_| l.borrow_mut().push("first")).unwrap();
    let l = Rc::clone(&log);
    lp.add_signal_handler(libc::SIGUSR1, move |lp| {
        l.borrow_mut().push("second");
        lp.stop();
    })
    .unwrap();
    raise(libc::SIGUSR1);
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["second"]);
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    assert!(!lp.remove_signal_handler(libc::SIGUSR1).unwrap(), "only one handler to remove");
}

fn a_handler_replaced_after_delivery_does_not_run<L: TestLoop>(lp: L) {
    // The signal arrived for the first handler; replacing it before the loop
    // dispatches means only the new one sees it.
    let _lock = serialised();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = Rc::clone(&log);
    lp.add_signal_handler(libc::SIGUSR1, move |_| l.borrow_mut().push("old")).unwrap();
    raise(libc::SIGUSR1);
    let l = Rc::clone(&log);
    lp.add_signal_handler(libc::SIGUSR1, move |_| l.borrow_mut().push("new")).unwrap();
    lp.call_later(Duration::from_millis(20), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["new"]);
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
}

fn removal_restores_the_previous_disposition<L: TestLoop>(lp: L) {
    let _lock = serialised();
    let signum = libc::SIGUSR2;
    set_handler(signum, marker());
    lp.add_signal_handler(signum, |_| {}).unwrap();
    let installed = current_handler(signum);
    assert_ne!(installed, marker(), "the loop installs its own handler");
    assert_ne!(installed, libc::SIG_DFL);
    // Replacing the loop's handler keeps the disposition saved at first install.
    lp.add_signal_handler(signum, |_| {}).unwrap();
    assert_eq!(current_handler(signum), installed);
    assert!(lp.remove_signal_handler(signum).unwrap());
    assert_eq!(current_handler(signum), marker(), "the previous handler is back");
    // SIG_IGN and SIG_DFL come back too.
    set_handler(signum, libc::SIG_IGN);
    lp.add_signal_handler(signum, |_| {}).unwrap();
    assert!(lp.remove_signal_handler(signum).unwrap());
    assert_eq!(current_handler(signum), libc::SIG_IGN);
    set_handler(signum, libc::SIG_DFL);
    lp.add_signal_handler(signum, |_| {}).unwrap();
    assert!(lp.remove_signal_handler(signum).unwrap());
    assert_eq!(current_handler(signum), libc::SIG_DFL);
}

fn close_restores_every_disposition<L: TestLoop>(lp: L) {
    let _lock = serialised();
    set_handler(libc::SIGUSR1, marker());
    set_handler(libc::SIGUSR2, libc::SIG_IGN);
    lp.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    lp.add_signal_handler(libc::SIGUSR2, |_| {}).unwrap();
    assert_ne!(current_handler(libc::SIGUSR1), marker());
    assert_ne!(current_handler(libc::SIGUSR2), libc::SIG_IGN);
    lp.close().unwrap();
    assert_eq!(current_handler(libc::SIGUSR1), marker());
    assert_eq!(current_handler(libc::SIGUSR2), libc::SIG_IGN);
    set_handler(libc::SIGUSR1, libc::SIG_DFL);
    set_handler(libc::SIGUSR2, libc::SIG_DFL);
}

fn drop_restores_every_disposition<L: TestLoop>(lp: L) {
    let _lock = serialised();
    set_handler(libc::SIGUSR1, marker());
    lp.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    drop(lp);
    assert_eq!(current_handler(libc::SIGUSR1), marker());
    // And the next loop may take signal handling.
    let other = SelectorEventLoop::new().unwrap();
    other.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    other.close().unwrap();
    set_handler(libc::SIGUSR1, libc::SIG_DFL);
}

fn only_one_loop_handles_signals<L: TestLoop>(lp: L) {
    let _lock = serialised();
    let other = SelectorEventLoop::new().unwrap();
    lp.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    lp.add_signal_handler(libc::SIGUSR2, |_| {}).unwrap();
    assert_fails(
        other.add_signal_handler(libc::SIGUSR1, |_| {}),
        ErrorKind::ResourceBusy,
        "another event loop handles signals",
    );
    // Any signal, not just a taken one.
    assert_fails(
        other.add_signal_handler(libc::SIGHUP, |_| {}),
        ErrorKind::ResourceBusy,
        "another event loop handles signals",
    );
    // Removing one of two handlers keeps the claim.
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    assert_fails(
        other.add_signal_handler(libc::SIGUSR1, |_| {}),
        ErrorKind::ResourceBusy,
        "another event loop handles signals",
    );
    // Removing the last one gives it up.
    assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    other.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    // Now the other loop holds it.
    assert_fails(
        lp.add_signal_handler(libc::SIGUSR1, |_| {}),
        ErrorKind::ResourceBusy,
        "another event loop handles signals",
    );
    // Closing the holder gives it up too.
    other.close().unwrap();
    lp.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    // And the new holder's handlers work.
    let runs = count_and_stop(&lp, libc::SIGUSR1);
    raise(libc::SIGUSR1);
    run_bounded(&lp, LIMIT);
    assert_eq!(runs.get(), 1);
    lp.close().unwrap();
}

fn a_handler_may_remove_itself<L: TestLoop>(lp: L) {
    let _lock = serialised();
    set_handler(libc::SIGUSR1, libc::SIG_IGN);
    let outcome = Rc::new(RefCell::new(Vec::new()));
    let o = Rc::clone(&outcome);
    lp.add_signal_handler(libc::SIGUSR1, move |lp| {
        o.borrow_mut().push(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    })
    .unwrap();
    raise(libc::SIGUSR1);
    raise(libc::SIGUSR1); // queued twice: the removed handler must not run again
    lp.call_later(Duration::from_millis(20), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*outcome.borrow(), [true]);
    assert_eq!(current_handler(libc::SIGUSR1), libc::SIG_IGN);
    // The loop no longer watches the signal pipe: another loop may claim.
    let other = SelectorEventLoop::new().unwrap();
    other.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    other.close().unwrap();
    set_handler(libc::SIGUSR1, libc::SIG_DFL);
}

fn a_panicking_signal_handler_is_reported<L: TestLoop>(lp: L) {
    let _lock = serialised();
    let panics = Rc::new(RefCell::new(Vec::new()));
    let p = Rc::clone(&panics);
    lp.set_exception_handler(Some(Box::new(move |lp, ctx| {
        p.borrow_mut().push((ctx.panic.clone(), ctx.origin.map(|o| o.file())));
        lp.stop();
    })));
    lp.add_signal_handler(libc::SIGUSR1, |_| panic!("signal boom")).unwrap();
    raise(libc::SIGUSR1);
    run_bounded(&lp, LIMIT);
    assert_eq!(*panics.borrow(), [(Some("signal boom".to_owned()), Some(file!()))]);
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
}

fn remove_without_a_handler_is_false<L: TestLoop>(lp: L) {
    let _lock = serialised();
    assert!(!lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    assert!(!lp.remove_signal_handler(libc::SIGHUP).unwrap());
    // It claimed nothing.
    let other = SelectorEventLoop::new().unwrap();
    other.add_signal_handler(libc::SIGUSR1, |_| {}).unwrap();
    assert!(other.remove_signal_handler(libc::SIGUSR1).unwrap());
}

fn a_signal_handler_destructor_may_call_back_into_the_loop<L: TestLoop>(lp: L) {
    let _lock = serialised();
    let lp = Rc::new(lp);
    let drops = Rc::new(RefCell::new(Vec::new()));
    let guard = |name: &'static str| {
        let (weak, drops) = (Rc::downgrade(&lp), Rc::clone(&drops));
        common::OnDrop(move || {
            let Some(lp) = weak.upgrade() else { return };
            let added = lp.add_signal_handler(libc::SIGUSR2, |_| {}).is_ok();
            let removed = lp.remove_signal_handler(libc::SIGUSR2).unwrap_or(false);
            drops.borrow_mut().push((name, added, removed));
        })
    };
    let g = guard("replaced");
    lp.add_signal_handler(libc::SIGUSR1, move |_| {
        let _ = &g;
    })
    .unwrap();
    let g = guard("removed");
    lp.add_signal_handler(libc::SIGUSR1, move |_| {
        let _ = &g;
    })
    .unwrap();
    assert_eq!(*drops.borrow(), [("replaced", true, true)]);
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    assert_eq!(drops.borrow()[1], ("removed", true, true));
    let g = guard("closed");
    lp.add_signal_handler(libc::SIGUSR1, move |_| {
        let _ = &g;
    })
    .unwrap();
    lp.close().unwrap();
    assert_eq!(drops.borrow()[2], ("closed", false, false));
    assert_eq!(current_handler(libc::SIGUSR1), libc::SIG_DFL);
    assert_eq!(current_handler(libc::SIGUSR2), libc::SIG_DFL);
}

per_backend!(
    a_raised_signal_runs_its_handler,
    a_signal_wakes_a_blocked_loop,
    a_signal_arriving_during_select_runs_its_handler,
    each_delivery_runs_the_handler,
    invalid_signals_are_refused,
    a_second_handler_replaces_the_first,
    a_handler_replaced_after_delivery_does_not_run,
    removal_restores_the_previous_disposition,
    close_restores_every_disposition,
    drop_restores_every_disposition,
    only_one_loop_handles_signals,
    a_handler_may_remove_itself,
    a_panicking_signal_handler_is_reported,
    remove_without_a_handler_is_false,
    a_signal_handler_destructor_may_call_back_into_the_loop,
);
