//! Event loops across `fork()`, after libuv's `test-fork.c`: a reader in
//! parent and child, signals to the child only, the child closing its copy
//! while the parent goes on serving, a timer in the child. One test, so no
//! other test thread runs while the process forks; each case on every
//! backend. A child reports by its exit status and never unwinds.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use tulip::selectors::mechanism::cvt;
use tulip::selectors::Backend;
use tulip::{AbstractEventLoop, DynSelectorEventLoop};

use common::in_child;

const BOUND: Duration = Duration::from_secs(5);

/// Runs `lp` until its callbacks stop it, or `BOUND` passes (then `Err`).
fn run_bounded(lp: &DynSelectorEventLoop) -> Result<(), String> {
    let timed_out = Rc::new(Cell::new(false));
    let t = Rc::clone(&timed_out);
    let guard = lp.call_later(BOUND, move |lp| {
        t.set(true);
        lp.stop();
    });
    lp.run_forever().map_err(|err| format!("run_forever: {err}"))?;
    guard.cancel();
    if timed_out.get() {
        return Err("timed out".into());
    }
    Ok(())
}

/// A reader, registered before the fork, fires in the child (after
/// `after_fork`) and, afterwards, in the parent.
fn a_reader_in_parent_and_child(backend: Backend) -> Result<(), String> {
    let lp = tulip::new_event_loop(backend).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let reads = Rc::new(Cell::new(0));
    let (fd, r) = (b.as_raw_fd(), Rc::clone(&reads));
    lp.add_reader(fd, move |lp| {
        let mut byte = [0];
        let _ = (&b).read(&mut byte);
        r.set(r.get() + 1);
        lp.stop();
    })
    .unwrap();
    in_child(|| {
        if lp.run_forever().is_ok() {
            return Err("an inherited loop ran before after_fork".into());
        }
        lp.after_fork().map_err(|err| format!("after_fork: {err}"))?;
        (&a).write_all(b"c").map_err(|err| err.to_string())?;
        run_bounded(&lp)?;
        if reads.get() != 1 {
            return Err(format!("the child's reader ran {} times", reads.get()));
        }
        Ok(())
    })?;
    (&a).write_all(b"p").unwrap();
    run_bounded(&lp)?;
    assert_eq!(reads.get(), 1, "{backend}: the parent's reader");
    lp.close().map_err(|err| err.to_string())
}

/// A signal sent to the child runs the child's handler only; the parent's
/// loop, which handled signals before the fork, hears nothing of it.
fn signals_to_the_child_only(backend: Backend) -> Result<(), String> {
    let lp = tulip::new_event_loop(backend).unwrap();
    let caught = Rc::new(Cell::new(0));
    let c = Rc::clone(&caught);
    lp.add_signal_handler(libc::SIGUSR1, move |lp| {
        c.set(c.get() + 1);
        lp.stop();
    })
    .unwrap();
    // A child that never calls after_fork: its signal must not be written
    // into the pipe it shares with the parent.
    in_child(|| {
        // SAFETY: signals this process, which inherited the handler.
        cvt(unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) }).map_err(|err| err.to_string())?;
        Ok(())
    })?;
    in_child(|| {
        lp.after_fork().map_err(|err| format!("after_fork: {err}"))?;
        // SAFETY: signals this process, whose loop handles SIGUSR1.
        cvt(unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) }).map_err(|err| err.to_string())?;
        run_bounded(&lp)?;
        if caught.get() != 1 {
            return Err(format!("the child's handler ran {} times", caught.get()));
        }
        Ok(())
    })?;
    // The parent's loop: nothing came through its pipe.
    lp.call_later(Duration::from_millis(50), |lp| lp.stop());
    lp.run_forever().unwrap();
    assert_eq!(caught.get(), 0, "{backend}: the child's signal reached the parent's loop");
    // SAFETY: signals this process, whose loop handles SIGUSR1.
    cvt(unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) }).unwrap();
    run_bounded(&lp)?;
    assert_eq!(caught.get(), 1, "{backend}: the parent's own signal");
    lp.close().map_err(|err| err.to_string())
}

/// The child closes (and drops) its copy of the loop without `after_fork`:
/// the parent's reader and signal handling go on.
fn the_child_closes_and_the_parent_serves_on(backend: Backend) -> Result<(), String> {
    let lp = tulip::new_event_loop(backend).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let reads = Rc::new(Cell::new(0));
    let (fd, r) = (b.as_raw_fd(), Rc::clone(&reads));
    lp.add_reader(fd, move |lp| {
        let mut byte = [0];
        let _ = (&b).read(&mut byte);
        r.set(r.get() + 1);
        lp.stop();
    })
    .unwrap();
    lp.add_signal_handler(libc::SIGUSR2, |lp| lp.stop()).unwrap();
    in_child(|| lp.close().map_err(|err| format!("close in the child: {err}")))?;
    (&a).write_all(b"p").unwrap();
    run_bounded(&lp)?;
    assert_eq!(reads.get(), 1, "{backend}: the parent's reader after the child closed its loop");
    lp.close().map_err(|err| err.to_string())
}

/// A timer scheduled in the child, after `after_fork`, fires there.
fn a_timer_in_the_child(backend: Backend) -> Result<(), String> {
    let lp = tulip::new_event_loop(backend).unwrap();
    in_child(|| {
        lp.after_fork().map_err(|err| format!("after_fork: {err}"))?;
        let fired = Rc::new(Cell::new(false));
        let f = Rc::clone(&fired);
        lp.call_later(Duration::from_millis(10), move |lp| {
            f.set(true);
            lp.stop();
        });
        run_bounded(&lp)?;
        if !fired.get() {
            return Err("the child's timer did not fire".into());
        }
        Ok(())
    })?;
    lp.close().map_err(|err| err.to_string())
}

#[test]
fn event_loops_across_fork() {
    for backend in Backend::available() {
        for case in [
            a_reader_in_parent_and_child,
            signals_to_the_child_only,
            the_child_closes_and_the_parent_serves_on,
            a_timer_in_the_child,
        ] {
            case(backend).unwrap_or_else(|err| panic!("{backend}: {err}"));
        }
    }
}
