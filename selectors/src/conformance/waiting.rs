//! The rules of `select`'s timeout: never early, never blocking when told
//! not to, clamped when huge, not cut short by a signal.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use super::support::*;
use super::{Subject, READ, WRITE};

pub(crate) fn zero_timeout_never_blocks(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (idle, _b) = pair();
    sel.register(fd(&idle), READ, data("idle")).unwrap();
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(Duration::ZERO)));
    assert!(entries.is_empty(), "{entries:?}");
    assert!(elapsed < SLACK, "select(ZERO) blocked for {elapsed:?}");

    let (writable, _d) = pair();
    sel.register(fd(&writable), WRITE, data("writable")).unwrap();
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(Duration::ZERO)));
    assert_eq!(entries, [(fd(&writable), WRITE, data("writable"))]);
    assert!(elapsed < SLACK, "select(ZERO) took {elapsed:?}");
}

/// With nothing ready, `select(Some(d))` returns no earlier than `d`, even for
/// durations that are not whole milliseconds.
pub(crate) fn timeout_is_never_early(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (idle, _b) = pair();
    sel.register(fd(&idle), READ, data("idle")).unwrap();
    for d in [
        Duration::from_micros(1),
        Duration::from_micros(1_500),
        Duration::from_millis(20),
        Duration::from_millis(120),
    ] {
        let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
        assert!(entries.is_empty(), "{entries:?}");
        assert!(elapsed >= d, "select({d:?}) returned early, after {elapsed:?}");
        assert!(elapsed < d + SLACK, "select({d:?}) took {elapsed:?}");
    }
}

pub(crate) fn nothing_registered_timeout_is_a_plain_sleep(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let d = Duration::from_millis(60);
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
    assert!(entries.is_empty(), "{entries:?}");
    assert!(elapsed >= d && elapsed < d + SLACK, "slept {elapsed:?} for {d:?}");

    // Also once something was registered and removed again.
    let (a, _b) = pair();
    sel.register(fd(&a), WRITE, data("gone")).unwrap();
    sel.unregister(fd(&a)).unwrap();
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
    assert!(entries.is_empty(), "{entries:?}");
    assert!(elapsed >= d && elapsed < d + SLACK, "slept {elapsed:?} for {d:?}");
    assert!(ready(&mut *sel, Some(Duration::ZERO)).is_empty());
}

/// `select(None)` blocks until something is ready. The writer thread owns its
/// socket, so even if it fails the socket closes and the select wakes (EOF).
pub(crate) fn none_blocks_until_another_thread_writes(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, mut b) = pair();
    sel.register(fd(&a), READ, data("a")).unwrap();
    let delay = Duration::from_millis(80);
    let start = Instant::now();
    let writer = thread::spawn(move || {
        thread::sleep(delay);
        b.write_all(b"wake up").expect("write");
    });
    let entries = ready(&mut *sel, None);
    let elapsed = start.elapsed();
    writer.join().expect("writer thread");
    assert_eq!(entries, [(fd(&a), READ, data("a"))]);
    assert!(elapsed >= delay, "select(None) returned after {elapsed:?}, before the write");
    assert!(elapsed < delay + SLACK, "select(None) took {elapsed:?}");
}

/// A timeout too large for any kernel is clamped, never overflowed.
pub(crate) fn huge_timeouts_are_clamped(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, _b) = pair();
    sel.register(fd(&a), WRITE, data("a")).unwrap();
    for huge in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 2),
        Duration::from_secs(1 << 40),
        Duration::from_millis(u64::from(u32::MAX) + 1),
    ] {
        let (entries, elapsed) = timed(|| ready(&mut *sel, Some(huge)));
        assert_eq!(entries, [(fd(&a), WRITE, data("a"))], "with timeout {huge:?}");
        assert!(elapsed < SLACK, "took {elapsed:?}");
    }
}

/// PEP 475: a signal handler that runs during `select` (and so makes the
/// syscall fail with `EINTR`) does not cut the timeout short. The selector
/// waits on this thread; another one interrupts it three times.
pub(crate) fn signal_does_not_cut_the_timeout_short(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (idle, _b) = pair();
    sel.register(fd(&idle), READ, data("idle")).expect("register");
    let handler = SignalHandler::install(libc::SIGUSR1);
    let timeout = Duration::from_millis(500);
    let target = ThisThread::current();
    let interrupter = thread::spawn(move || {
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(50));
            // SAFETY: the selecting thread joins this one before it returns,
            // so it is alive; SIGUSR1 has our handler, which only stores to
            // an atomic.
            unsafe { target.kill(libc::SIGUSR1) }.expect("pthread_kill");
        }
    });
    let (result, elapsed) = timed(|| sel.select(Some(timeout)).map(|ready| ready.len()));
    interrupter.join().expect("the interrupting thread");
    assert!(handler.ran(), "the signal handler never ran, so nothing was interrupted");
    drop(handler);
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Ok(0),
        "an interrupted select must retry, not fail or report"
    );
    assert!(elapsed >= timeout, "EINTR cut the timeout short: {elapsed:?} < {timeout:?}");
    assert!(elapsed < timeout + SLACK, "took {elapsed:?}");
}
