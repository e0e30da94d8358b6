//! The Layer 1 contract of DESIGN.md, written once and run for every backend
//! this target has, as CPython's `test_selectors.py` runs one base class for
//! every selector class. Each case is a function of the [`Backend`]; the
//! `conformance!` macro at the bottom turns it into one `#[test]` per backend
//! (`epoll::register_returns_the_key`, `poll::…`, `select::…`), so a failure
//! names the backend.
//!
//! Everything goes through `Box<dyn Selector<String>>` from [`Backend::open`];
//! `concrete.rs` exercises the concrete types.

#![warn(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

mod common;

use std::io::{Read, Write};
use std::os::unix::io::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::thread::JoinHandleExt;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tulip_selectors::mechanism::cvt;
use tulip_selectors::{Backend, ClosedFd, Events, Selector};

const READ: Events = Events::READ;
const WRITE: Events = Events::WRITE;
const BOTH: Events = Events::READ.union(Events::WRITE);

/// Backends whose `register` asks the kernel, so a bad fd fails there:
/// what the backend declares of itself.
fn checks_at_register(backend: Backend) -> bool {
    backend.capabilities().register_syscall
}

// ---------------------------------------------------------------- register

fn register_returns_the_key(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, _b) = pair();
    assert!(sel.is_empty());

    let key = sel.register(fd(&a), READ, data("a")).expect("register").clone();
    assert_eq!((key.fd, key.events, key.data.as_str()), (fd(&a), READ, "a"));
    assert_eq!(sel.get_key(fd(&a)), Some(&key));
    assert_eq!(sel.len(), 1);
    assert!(!sel.is_empty());
    assert_eq!(sel.keys().collect::<Vec<_>>(), [&key]);
    assert_eq!(sel.backend(), backend);
    assert_eq!(sel.backend().to_string(), backend.to_string());
}

fn register_rejects_invalid_arguments(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, _b) = pair();
    let a = fd(&a);
    for bad_fd in [-1, -10, RawFd::MIN] {
        assert_err_names_fd(
            sel.register(bad_fd, READ, data("negative")),
            std::io::ErrorKind::InvalidInput,
            bad_fd,
        );
    }
    for bad_events in [
        Events::empty(),
        Events::from_bits_retain(4),
        Events::from_bits_retain(5),
        Events::from_bits_retain(0xff),
    ] {
        assert_err_names_fd(
            sel.register(a, bad_events, data("bad events")),
            std::io::ErrorKind::InvalidInput,
            a,
        );
    }
    assert!(sel.is_empty(), "nothing may be registered after refused calls");
    assert!(sel.get_key(a).is_none());
    // The selector still works after the refusals.
    sel.register(a, WRITE, data("a")).expect("a valid register after refusals");
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, data("a"))]);
}

fn register_twice_is_already_exists(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, _b) = pair();
    let a = fd(&a);
    sel.register(a, READ, data("first")).expect("register");
    for events in [READ, WRITE, BOTH] {
        assert_err_names_fd(sel.register(a, events, data("second")), std::io::ErrorKind::AlreadyExists, a);
    }
    let key = sel.get_key(a).expect("still registered");
    assert_eq!((key.events, key.data.as_str()), (READ, "first"));
    assert_eq!(sel.len(), 1);
}

/// `select(2)` cannot watch an fd ≥ `FD_SETSIZE`; the other backends can.
fn register_above_fd_setsize(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, mut b) = pair();
    let high = move_to(a, libc::FD_SETSIZE as RawFd);
    let h = fd(&high);
    assert!(h >= libc::FD_SETSIZE as RawFd);
    let result = sel.register(h, READ, data("high"));
    if backend == Backend::Select {
        assert_err_names_fd(result, std::io::ErrorKind::InvalidInput, h);
        assert!(sel.is_empty());
        // The limit itself is named as a number in the message.
        let message = sel.register(h, READ, data("high")).unwrap_err().to_string();
        assert!(message.contains(&libc::FD_SETSIZE.to_string()), "{message}");
    } else {
        result.expect("only select has FD_SETSIZE");
        b.write_all(b"x").unwrap();
        assert_eq!(ready(&mut *sel, Some(BOUND)), [(h, READ, data("high"))]);
    }
}

/// epoll and kqueue ask the kernel at `register`, so a closed fd is refused
/// with `EBADF` and no key is kept; select and poll accept it (no syscall).
fn register_of_a_closed_fd(backend: Backend) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = open(backend);
    let (other, _peer) = pair();
    sel.register(fd(&other), READ, data("other")).unwrap();
    let (a, _b) = high_pair();
    let closed = a.into_raw_fd();
    // SAFETY: we own `closed` (into_raw_fd) and close it exactly once.
    cvt(unsafe { libc::close(closed) }).expect("close");
    assert!(!is_open(closed));

    let result = sel.register(closed, READ, data("closed"));
    if checks_at_register(backend) {
        assert_os_error(result, libc::EBADF);
        assert!(sel.get_key(closed).is_none(), "a refused register must keep no key");
        assert_eq!(sel.len(), 1);
        assert_err_names_fd(sel.unregister(closed), std::io::ErrorKind::NotFound, closed);
    } else {
        result.expect("select and poll make no syscall at register");
        assert_eq!(sel.len(), 2);
        assert_eq!(sel.unregister(closed).expect("unregister").data, "closed");
    }
}

/// epoll refuses regular files (`EPERM`); the others report them ready at once.
fn register_of_a_regular_file(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let file = std::fs::File::open(std::env::current_exe().unwrap()).expect("open a regular file");
    let f = fd(&file);
    let result = sel.register(f, READ, data("file"));
    if backend == Backend::Epoll {
        assert_os_error(result, libc::EPERM);
        assert!(sel.get_key(f).is_none());
        assert!(sel.is_empty());
    } else {
        result.expect("register a regular file");
        assert_eq!(ready(&mut *sel, Some(BOUND)), [(f, READ, data("file"))]);
    }
}

// ---------------------------------------------------------------- unregister

fn unregister_returns_the_key_and_forgets_it(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, mut b) = pair();
    let a = fd(&a);
    sel.register(a, BOTH, data("a")).unwrap();
    b.write_all(b"pending").unwrap();

    let key = sel.unregister(a).expect("unregister");
    assert_eq!((key.fd, key.events, key.data.as_str()), (a, BOTH, "a"));
    assert!(sel.get_key(a).is_none());
    assert!(sel.is_empty());
    assert_err_names_fd(sel.unregister(a), std::io::ErrorKind::NotFound, a);
    assert_err_names_fd(sel.unregister(999_999), std::io::ErrorKind::NotFound, 999_999);
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(Duration::from_millis(30))));
    assert!(entries.is_empty(), "an unregistered fd is never reported: {entries:?}");
    assert!(elapsed >= Duration::from_millis(30));
    // It can come back.
    sel.register(a, READ, data("again")).expect("register after unregister");
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, READ, data("again"))]);
}

/// CPython's test_unregister_after_fd_close: the OS error is ignored.
fn unregister_after_close(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, b) = pair();
    let (ra, rb) = (fd(&a), fd(&b));
    sel.register(ra, READ, data("a")).unwrap();
    sel.register(rb, WRITE, data("b")).unwrap();
    drop((a, b));
    let key = sel.unregister(ra).expect("unregister of a closed fd");
    assert_eq!((key.fd, key.events, key.data.as_str()), (ra, READ, "a"));
    let key = sel.unregister(rb).expect("unregister of a closed fd");
    assert_eq!((key.fd, key.events, key.data.as_str()), (rb, WRITE, "b"));
    assert!(sel.is_empty());
}

/// CPython's test_unregister_after_fd_close_and_reuse. `dup2` puts a new
/// socket on the old number in one step (so no other test can take it in
/// between); the old key comes back and the new socket can then be used.
fn unregister_after_close_and_reuse(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (old, old_peer) = pair();
    let (new, mut new_peer) = pair();
    let number = old.into_raw_fd();
    sel.register(number, READ, data("old")).unwrap();
    // SAFETY: `number` is ours (into_raw_fd): dup2 closes the old socket on it
    // and puts a duplicate of `new` there in one step, touching no memory.
    cvt(unsafe { libc::dup2(fd(&new), number) }).expect("dup2");
    // SAFETY: the duplicate on `number` is owned by nothing else.
    let reused = unsafe { UnixStream::from_raw_fd(number) };
    drop(old_peer);

    let key = sel.unregister(number).expect("unregister after close and reuse");
    assert_eq!((key.fd, key.data.as_str()), (number, "old"));
    assert!(sel.is_empty());

    sel.register(fd(&reused), READ, data("new")).expect("the reused number can be registered");
    assert!(ready(&mut *sel, Some(Duration::ZERO)).is_empty(), "nothing was sent to the new socket yet");
    new_peer.write_all(b"hi").unwrap();
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(number, READ, data("new"))]);
}

// ---------------------------------------------------------------- modify

fn modify_unregistered_is_not_found(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, _b) = pair();
    assert_err_names_fd(sel.modify(fd(&a), READ, data("x")), std::io::ErrorKind::NotFound, fd(&a));
    assert_err_names_fd(sel.modify(999_999, WRITE, data("x")), std::io::ErrorKind::NotFound, 999_999);
    assert!(sel.is_empty());
}

fn modify_with_same_events_replaces_data(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, _b) = pair();
    let a = fd(&a);
    sel.register(a, WRITE, data("d1")).unwrap();
    let key = sel.modify(a, WRITE, data("d2")).expect("modify").clone();
    assert_eq!((key.fd, key.events, key.data.as_str()), (a, WRITE, "d2"));
    assert_eq!(sel.get_key(a), Some(&key));
    assert_eq!(sel.len(), 1);
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, data("d2"))]);
}

/// Same events: only `data` changes, without a syscall, so even a closed fd
/// (which the kernel would refuse) is modified successfully.
fn modify_with_same_events_makes_no_syscall(backend: Backend) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = open(backend);
    let (a, _b) = high_pair();
    let number = fd(&a);
    sel.register(number, READ, data("before")).unwrap();
    drop(a);
    assert!(!is_open(number));
    let key = sel.modify(number, READ, data("after")).expect("a data-only modify makes no syscall");
    assert_eq!((key.events, key.data.as_str()), (READ, "after"));
    assert_eq!(sel.unregister(number).unwrap().data, "after");
}

fn modify_with_invalid_events_keeps_the_key(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, _b) = pair();
    let a = fd(&a);
    sel.register(a, WRITE, data("kept")).unwrap();
    for bad in [Events::empty(), Events::from_bits_retain(4), Events::from_bits_retain(6)] {
        assert_err_names_fd(sel.modify(a, bad, data("lost")), std::io::ErrorKind::InvalidInput, a);
        let key = sel.get_key(a).expect("an invalid modify keeps the key");
        assert_eq!((key.events, key.data.as_str()), (WRITE, "kept"));
    }
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, data("kept"))]);
}

fn modify_changes_the_reported_events(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, mut b) = pair();
    let a = fd(&a);
    // Writable, nothing to read.
    sel.register(a, READ, data("r")).unwrap();
    assert!(ready(&mut *sel, Some(Duration::ZERO)).is_empty());

    let key = sel.modify(a, WRITE, data("w")).expect("READ -> WRITE").clone();
    assert_eq!((key.events, key.data.as_str()), (WRITE, "w"));
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, data("w"))]);

    b.write_all(b"x").unwrap();
    sel.modify(a, READ, data("r again")).expect("WRITE -> READ");
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, READ, data("r again"))]);

    sel.modify(a, BOTH, data("both")).expect("READ -> READ|WRITE");
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, BOTH, data("both"))]);
    assert_eq!(sel.len(), 1);
}

/// bpo-30014: when the kernel refuses a modify, the key is removed and the
/// error returned. epoll and kqueue ask the kernel, and refuse a closed fd;
/// select and poll make no syscall and accept it.
fn modify_refused_by_the_os_removes_the_key(backend: Backend) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = open(backend);
    let (other, _peer) = pair();
    sel.register(fd(&other), WRITE, data("other")).unwrap();
    let (a, _b) = high_pair();
    let number = fd(&a);
    sel.register(number, READ, data("doomed")).unwrap();
    drop(a);
    assert!(!is_open(number));

    let result = sel.modify(number, WRITE, data("new"));
    if checks_at_register(backend) {
        assert_os_error(result, libc::EBADF);
        assert!(sel.get_key(number).is_none(), "bpo-30014: the key must be gone");
        assert_eq!(sel.len(), 1);
        assert_err_names_fd(sel.unregister(number), std::io::ErrorKind::NotFound, number);
    } else {
        let key = result.expect("select and poll make no syscall at modify");
        assert_eq!((key.events, key.data.as_str()), (WRITE, "new"));
        assert_eq!(sel.len(), 2);
        sel.unregister(number).unwrap();
    }
    // The other registration is untouched and still works.
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(fd(&other), WRITE, data("other"))]);
}

// ---------------------------------------------------------------- keys

fn keys_len_and_is_empty_track_registrations(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let pairs: Vec<_> = (0..4).map(|_| pair()).collect();
    let mut expected = Vec::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        sel.register(fd(a), READ, format!("a{i}")).unwrap();
        sel.register(fd(b), WRITE, format!("b{i}")).unwrap();
        expected.push((fd(a), READ, format!("a{i}")));
        expected.push((fd(b), WRITE, format!("b{i}")));
    }
    let collect = |sel: &dyn Selector<String>| {
        let keys = sel.keys();
        assert_eq!(keys.len(), sel.len());
        let mut all: Vec<_> = keys.map(|k| (k.fd, k.events, k.data.clone())).collect();
        all.sort_by_key(|entry| entry.0);
        all
    };
    expected.sort_by_key(|entry| entry.0);
    assert_eq!(collect(&*sel), expected);
    assert_eq!(sel.len(), 8);

    for (a, _) in &pairs {
        sel.unregister(fd(a)).unwrap();
    }
    expected.retain(|(_, events, _)| *events == WRITE);
    assert_eq!(collect(&*sel), expected);
    assert_eq!(sel.len(), 4);
    for (_, b) in &pairs {
        assert_eq!(sel.get_key(fd(b)).map(|k| k.events), Some(WRITE));
        sel.unregister(fd(b)).unwrap();
    }
    assert!(sel.is_empty());
    assert_eq!(sel.keys().count(), 0);
}

// ---------------------------------------------------------------- select: timing

fn zero_timeout_never_blocks(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (idle, _b) = pair();
    sel.register(fd(&idle), READ, data("idle")).unwrap();
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(Duration::ZERO)));
    assert!(entries.is_empty());
    assert!(elapsed < SLACK, "select(ZERO) blocked for {elapsed:?}");

    let (writable, _d) = pair();
    sel.register(fd(&writable), WRITE, data("writable")).unwrap();
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(Duration::ZERO)));
    assert_eq!(entries, [(fd(&writable), WRITE, data("writable"))]);
    assert!(elapsed < SLACK);
}

/// With nothing ready, `select(Some(d))` returns no earlier than `d`, even for
/// durations that are not whole milliseconds.
fn timeout_is_never_early(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (idle, _b) = pair();
    sel.register(fd(&idle), READ, data("idle")).unwrap();
    for d in [
        Duration::from_micros(1),
        Duration::from_micros(1_500),
        Duration::from_millis(20),
        Duration::from_millis(120),
    ] {
        let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
        assert!(entries.is_empty());
        assert!(elapsed >= d, "select({d:?}) returned early, after {elapsed:?}");
        assert!(elapsed < d + SLACK, "select({d:?}) took {elapsed:?}");
    }
}

fn nothing_registered_timeout_is_a_plain_sleep(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let d = Duration::from_millis(60);
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
    assert!(entries.is_empty());
    assert!(elapsed >= d && elapsed < d + SLACK, "slept {elapsed:?} for {d:?}");

    // Also once something was registered and removed again.
    let (a, _b) = pair();
    sel.register(fd(&a), WRITE, data("gone")).unwrap();
    sel.unregister(fd(&a)).unwrap();
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
    assert!(entries.is_empty());
    assert!(elapsed >= d && elapsed < d + SLACK, "slept {elapsed:?} for {d:?}");
    assert!(ready(&mut *sel, Some(Duration::ZERO)).is_empty());
}

/// `select(None)` blocks until something is ready. The writer thread owns its
/// socket, so even if it fails the socket closes and the select wakes (EOF).
fn none_blocks_until_another_thread_writes(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
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
    assert!(elapsed < delay + SLACK);
}

/// A timeout too large for any kernel is clamped, never overflowed.
fn huge_timeouts_are_clamped(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
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
        assert!(elapsed < SLACK);
    }
}

/// PEP 475: a signal handler that runs during `select` (and so makes the
/// syscall fail with `EINTR`) does not cut the timeout short.
fn signal_does_not_cut_the_timeout_short(backend: Backend) {
    let _shared = shared();
    let (idle, _b) = pair();
    let idle_fd = fd(&idle);
    let handler = SignalHandler::install(libc::SIGUSR1);
    let timeout = Duration::from_millis(500);
    let (started_tx, started_rx) = mpsc::channel();
    let selecting = thread::spawn(move || {
        let mut sel = open(backend);
        sel.register(idle_fd, READ, data("idle")).expect("register");
        started_tx.send(()).expect("report start");
        let (result, elapsed) = timed(|| sel.select(Some(timeout)).map(|ready| ready.len()));
        (result.map_err(|e| e.to_string()), elapsed)
    });
    started_rx.recv_timeout(BOUND).expect("the selecting thread started");
    let thread_id = selecting.as_pthread_t();
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(50));
        // SAFETY: the thread is not joined yet, so its pthread_t is valid;
        // SIGUSR1 has our handler, which only stores to an atomic.
        let rc = unsafe { libc::pthread_kill(thread_id, libc::SIGUSR1) };
        assert!(rc == 0 || rc == libc::ESRCH, "pthread_kill: {rc}");
    }
    let (result, elapsed) = selecting.join().expect("selecting thread");
    assert!(handler.ran(), "the signal handler never ran, so nothing was interrupted");
    drop(handler);
    assert_eq!(result, Ok(0), "an interrupted select must retry, not fail or report");
    assert!(elapsed >= timeout, "EINTR cut the timeout short: {elapsed:?} < {timeout:?}");
    assert!(elapsed < timeout + SLACK, "took {elapsed:?}");
}

// ---------------------------------------------------------------- select: what is reported

fn ready_fd_appears_once_with_merged_events(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let pairs: Vec<_> = (0..3).map(|_| pair()).collect();
    for (i, (a, b)) in pairs.iter().enumerate() {
        sel.register(fd(a), BOTH, format!("pair {i}")).unwrap();
        (&*b).write_all(b"data pending").unwrap();
    }
    let mut entries = ready(&mut *sel, Some(BOUND));
    entries.sort_by_key(|entry| entry.0);
    let mut expected: Vec<_> =
        pairs.iter().enumerate().map(|(i, (a, _))| (fd(a), BOTH, format!("pair {i}"))).collect();
    expected.sort_by_key(|entry| entry.0);
    assert_eq!(entries, expected, "one entry per fd, READ and WRITE merged");
}

fn unregistered_events_are_masked(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    // Writable with nothing to read, registered for READ only.
    let (reader, _peer) = pair();
    sel.register(fd(&reader), READ, data("reader")).unwrap();
    // Readable but not writable (send buffer full), registered for WRITE only.
    let (mut writer, mut peer) = pair();
    fill(&mut writer);
    peer.write_all(b"unwanted").unwrap();
    sel.register(fd(&writer), WRITE, data("writer")).unwrap();

    let d = Duration::from_millis(50);
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
    assert!(entries.is_empty(), "events nobody registered were reported: {entries:?}");
    assert!(elapsed >= d, "masked events must not end the wait early ({elapsed:?})");

    // Unmasked, the same fds are reported.
    sel.modify(fd(&reader), WRITE, data("reader")).unwrap();
    sel.modify(fd(&writer), READ, data("writer")).unwrap();
    let mut entries = ready(&mut *sel, Some(BOUND));
    entries.sort_by_key(|entry| entry.0);
    let mut expected = vec![(fd(&reader), WRITE, data("reader")), (fd(&writer), READ, data("writer"))];
    expected.sort_by_key(|entry| entry.0);
    assert_eq!(entries, expected);
}

/// Events dropped by `modify` are no longer watched by the kernel either: a
/// stale interest would wake `select` early even though it is masked out.
fn modify_stops_watching_dropped_events(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, _b) = pair();
    let a = fd(&a);
    sel.register(a, BOTH, data("both")).unwrap();
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, data("both"))]);
    sel.modify(a, READ, data("read only")).unwrap();
    let d = Duration::from_millis(40);
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
    assert!(entries.is_empty(), "{entries:?}");
    assert!(elapsed >= d, "woke after {elapsed:?}: WRITE is still watched");

    sel.modify(a, WRITE, data("write")).unwrap();
    sel.modify(a, READ, data("read again")).unwrap();
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
    assert!(entries.is_empty() && elapsed >= d, "{entries:?} after {elapsed:?}");
}

fn closed_peer_is_readable(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (mut a, b) = pair();
    sel.register(fd(&a), READ, data("a")).unwrap();
    assert!(ready(&mut *sel, Some(Duration::ZERO)).is_empty());
    drop(b);
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(fd(&a), READ, data("a"))]);
    let mut buf = [0u8; 8];
    assert_eq!(a.read(&mut buf).expect("read after hang-up"), 0, "end of file");
}

/// A hang-up counts as readiness for whatever is registered, so the writer
/// makes its next call and sees the error.
fn hang_up_is_reported_for_registered_events(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (mut writer, peer) = pair();
    let (reader_writer, peer2) = pair();
    sel.register(fd(&writer), WRITE, data("writer")).unwrap();
    sel.register(fd(&reader_writer), BOTH, data("both")).unwrap();
    fill(&mut writer);
    assert!(ready(&mut *sel, Some(Duration::ZERO)).iter().all(|(f, _, _)| *f != fd(&writer)));
    drop((peer, peer2));

    let mut entries = ready(&mut *sel, Some(BOUND));
    entries.sort_by_key(|entry| entry.0);
    let mut expected = vec![(fd(&writer), WRITE, data("writer")), (fd(&reader_writer), BOTH, data("both"))];
    expected.sort_by_key(|entry| entry.0);
    assert_eq!(entries, expected);
    let err = writer.write(b"x").expect_err("writing to a hung-up socket");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
}

/// An fd closed while registered: poll reports it ready (`POLLNVAL`), select
/// fails with `EBADF`, and epoll/kqueue forget it with the file (so nothing is
/// reported and the wait runs its course). Unregister works in every case.
fn fd_closed_while_registered(backend: Backend) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = open(backend);
    let (a, _b) = high_pair();
    let number = fd(&a);
    sel.register(number, READ, data("closed")).unwrap();
    drop(a);
    assert!(!is_open(number));
    // What the backend declares it does (Capabilities::closed_fd).
    match backend.capabilities().closed_fd {
        ClosedFd::ReportedReady => {
            assert_eq!(ready(&mut *sel, Some(BOUND)), [(number, READ, data("closed"))])
        }
        ClosedFd::SelectFails => assert_os_error(sel.select(Some(BOUND)).map(|r| r.len()), libc::EBADF),
        ClosedFd::Forgotten => {
            let d = Duration::from_millis(30);
            let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
            assert!(entries.is_empty(), "{entries:?}");
            assert!(elapsed >= d);
        }
    }
    assert_eq!(sel.unregister(number).expect("unregister").data, "closed");
    assert!(ready(&mut *sel, Some(Duration::ZERO)).is_empty(), "after unregister select works again");
}

/// `Selected` is an `ExactSizeIterator` whose length follows iteration.
fn selected_is_exact_size(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let pairs: Vec<_> = (0..3).map(|_| pair()).collect();
    for (a, _) in &pairs {
        sel.register(fd(a), WRITE, data("w")).unwrap();
    }
    let mut selected = sel.select(Some(BOUND)).expect("select");
    assert_eq!(selected.len(), 3);
    assert!(selected.next().is_some());
    assert_eq!(selected.len(), 2);
    assert_eq!(selected.by_ref().count(), 2);
    assert_eq!(selected.len(), 0);
    assert!(selected.next().is_none());
}

/// Port of CPython's test_selector: many pairs, readers and writers all
/// registered; each message makes exactly its own reader ready.
fn each_reader_wakes_for_its_own_writer(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    const PAIRS: usize = 12;
    let message = b" This is a test.";
    let pairs: Vec<_> = (0..PAIRS).map(|_| pair()).collect();
    for (i, (reader, writer)) in pairs.iter().enumerate() {
        sel.register(fd(reader), READ, format!("reader {i}")).unwrap();
        sel.register(fd(writer), WRITE, format!("writer {i}")).unwrap();
    }
    // Send in a scrambled but deterministic order.
    let order: Vec<usize> = (0..PAIRS).map(|i| (i * 5 + 3) % PAIRS).collect();
    for &i in &order {
        let (reader, writer) = &pairs[i];
        let entries = ready(&mut *sel, Some(BOUND));
        assert_eq!(events_of(&entries, fd(writer)), Some(WRITE), "writer {i} must be writable");
        assert!(
            entries.iter().all(|(_, events, _)| *events == WRITE),
            "no reader before a send: {entries:?}"
        );
        (&*writer).write_all(message).unwrap();

        let entries = ready(&mut *sel, Some(BOUND));
        let readers: Vec<_> = entries.iter().filter(|(_, events, _)| events.contains(READ)).collect();
        assert_eq!(readers, [&(fd(reader), READ, format!("reader {i}"))]);
        let mut buf = [0u8; 64];
        assert_eq!((&*reader).read(&mut buf).unwrap(), message.len());
        assert_eq!(sel.unregister(fd(reader)).unwrap().data, format!("reader {i}"));
        assert_eq!(sel.unregister(fd(writer)).unwrap().data, format!("writer {i}"));
    }
    assert!(sel.is_empty());
}

/// All ready fds come back from one call, with thousands registered (the
/// buffers grow with the registration count). select is limited to fds below
/// `FD_SETSIZE` and registers only those.
fn thousands_of_fds_in_one_select(backend: Backend) {
    // select needs only enough fds to fill its FD_SETSIZE range.
    let fds = if backend == Backend::Select { libc::FD_SETSIZE + 64 } else { 4096 };
    let _exclusive = exclusive();
    let limit = raise_fd_limit();
    if limit < (fds + 512) as libc::rlim_t {
        println!("skipped: RLIMIT_NOFILE is {limit}, {fds} fds and some room are needed");
        return;
    }
    let mut sel = open(backend);
    let pairs: Vec<_> = (0..fds / 2).map(|_| pair()).collect();
    let mut registered = Vec::new();
    for (a, b) in &pairs {
        (&*a).write_all(b"a").unwrap();
        (&*b).write_all(b"b").unwrap();
        for end in [fd(a), fd(b)] {
            if backend != Backend::Select || end < libc::FD_SETSIZE as RawFd {
                sel.register(end, READ, end.to_string()).unwrap();
                registered.push(end);
            }
        }
    }
    let minimum = if backend == Backend::Select { 512 } else { fds };
    assert!(registered.len() >= minimum, "only {} fds registered", registered.len());
    assert_eq!(sel.len(), registered.len());

    let entries = ready(&mut *sel, Some(BOUND));
    let mut seen: Vec<RawFd> = entries
        .iter()
        .map(|(f, events, data)| {
            assert_eq!(*events, READ);
            assert_eq!(*data, f.to_string());
            *f
        })
        .collect();
    seen.sort_unstable();
    registered.sort_unstable();
    assert_eq!(seen.len(), registered.len(), "one select must return every ready fd");
    assert_eq!(seen, registered);
}

/// A long pseudo-random run of register/modify/unregister, checked after every
/// step against a model of what must be registered and reported: the kernel's
/// view (pollfd array, fd_sets and highest fd, epoll or kqueue interest list)
/// and the keys must never drift apart.
fn random_operations_match_a_model(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    const PAIRS: usize = 16;
    let pairs: Vec<_> = (0..PAIRS).map(|_| pair()).collect();
    // Every `a` is writable; the even ones are readable too.
    for (_, b) in pairs.iter().step_by(2) {
        (&*b).write_all(b"r").unwrap();
    }
    let possible = |i: usize| if i % 2 == 0 { BOTH } else { WRITE };
    let mut model: Vec<Option<(Events, String)>> = vec![None; PAIRS];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % bound
    };
    for step in 0..300 {
        let i = next(PAIRS as u64) as usize;
        let a = fd(&pairs[i].0);
        let events = Events::from_bits_retain(next(3) as u8 + 1);
        let label = format!("pair {i}, step {step}");
        match (&model[i], next(3)) {
            (None, _) => {
                sel.register(a, events, label.clone()).unwrap();
                model[i] = Some((events, label));
            }
            (Some(_), 0) => {
                let key = sel.unregister(a).unwrap();
                assert_eq!(Some((key.events, key.data)), model[i].take());
            }
            (Some(_), _) => {
                sel.modify(a, events, label.clone()).unwrap();
                model[i] = Some((events, label));
            }
        }
        let mut expected: Vec<_> = model
            .iter()
            .enumerate()
            .filter_map(|(i, entry)| {
                let (events, label) = entry.as_ref()?;
                let reported = *events & possible(i);
                (!reported.is_empty()).then(|| (fd(&pairs[i].0), reported, label.clone()))
            })
            .collect();
        expected.sort_by_key(|entry| entry.0);
        let mut entries = ready(&mut *sel, Some(Duration::ZERO));
        entries.sort_by_key(|entry| entry.0);
        assert_eq!(entries, expected, "after step {step}");
        assert_eq!(sel.len(), model.iter().flatten().count());
    }
}

/// `data` of a non-`Copy` type moves in and out intact, through every method.
fn non_copy_data_round_trips(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let (a, _b) = pair();
    let a = fd(&a);
    let long = "é".repeat(1000);
    sel.register(a, WRITE, long.clone()).unwrap();
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, long.clone())]);
    sel.modify(a, READ, format!("{long}!")).unwrap();
    assert_eq!(sel.get_key(a).unwrap().data, format!("{long}!"));
    assert_eq!(sel.unregister(a).unwrap().data, format!("{long}!"));
    // A selector dropped with keys in it drops their data too (no leak, no double free).
    sel.register(a, READ, long).unwrap();
    drop(sel);
}

// ---------------------------------------------------------------- instantiation

/// One module per backend, with one `#[test]` per case calling `super::case(backend)`.
macro_rules! backend_tests {
    ($module:ident, $backend:expr, $($case:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $case() {
                    super::$case($backend);
                }
            )*
        }
    };
}

/// Instantiates every case for every backend compiled for this target.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        #[cfg(tulip_epoll)]
        backend_tests!(epoll, tulip_selectors::Backend::Epoll, $($case),*);
        #[cfg(tulip_kqueue)]
        backend_tests!(kqueue, tulip_selectors::Backend::Kqueue, $($case),*);
        backend_tests!(poll, tulip_selectors::Backend::Poll, $($case),*);
        backend_tests!(select, tulip_selectors::Backend::Select, $($case),*);
    };
}

conformance! {
    register_returns_the_key,
    register_rejects_invalid_arguments,
    register_twice_is_already_exists,
    register_above_fd_setsize,
    register_of_a_closed_fd,
    register_of_a_regular_file,
    unregister_returns_the_key_and_forgets_it,
    unregister_after_close,
    unregister_after_close_and_reuse,
    modify_unregistered_is_not_found,
    modify_with_same_events_replaces_data,
    modify_with_same_events_makes_no_syscall,
    modify_with_invalid_events_keeps_the_key,
    modify_changes_the_reported_events,
    modify_refused_by_the_os_removes_the_key,
    keys_len_and_is_empty_track_registrations,
    zero_timeout_never_blocks,
    timeout_is_never_early,
    nothing_registered_timeout_is_a_plain_sleep,
    none_blocks_until_another_thread_writes,
    huge_timeouts_are_clamped,
    signal_does_not_cut_the_timeout_short,
    ready_fd_appears_once_with_merged_events,
    unregistered_events_are_masked,
    modify_stops_watching_dropped_events,
    closed_peer_is_readable,
    hang_up_is_reported_for_registered_events,
    fd_closed_while_registered,
    selected_is_exact_size,
    each_reader_wakes_for_its_own_writer,
    thousands_of_fds_in_one_select,
    random_operations_match_a_model,
    non_copy_data_round_trips,
}

/// The modules above cover exactly the backends this target has.
#[test]
fn every_available_backend_is_instantiated() {
    let mut instantiated = Vec::new();
    if cfg!(tulip_epoll) {
        instantiated.push(Backend::Epoll);
    }
    if cfg!(tulip_kqueue) {
        instantiated.push(Backend::Kqueue);
    }
    instantiated.extend([Backend::Poll, Backend::Select]);
    let mut available = Backend::available();
    available.sort_by_key(|b| b.to_string());
    instantiated.sort_by_key(|b| b.to_string());
    assert_eq!(available, instantiated);
}

// ---------------------------------------------------------------- Backend

#[test]
fn backend_names_display_and_parse_in_any_case() {
    let names = [
        (Backend::Select, "select"),
        (Backend::Poll, "poll"),
        (Backend::Epoll, "epoll"),
        (Backend::Kqueue, "kqueue"),
    ];
    assert_eq!(Backend::ALL.len(), names.len());
    for (backend, name) in names {
        assert!(Backend::ALL.contains(&backend));
        assert_eq!(backend.to_string(), name);
        assert_eq!(format!("[{backend}]"), format!("[{name}]"));
        for spelling in [name.to_owned(), name.to_uppercase(), mixed_case(name)] {
            assert_eq!(spelling.parse::<Backend>().expect(&spelling), backend);
        }
    }
    for bad in ["", "devpoll", "epoll ", " poll", "iocp", "selectt"] {
        let err = bad.parse::<Backend>().expect_err(bad);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}");
    }
}

fn mixed_case(name: &str) -> String {
    name.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect()
}

#[test]
fn available_backends_start_with_the_default() {
    let available = Backend::available();
    assert_eq!(available[0], Backend::default());
    assert_eq!(<Backend as Default>::default(), Backend::default());
    assert!(available.contains(&Backend::Poll) && available.contains(&Backend::Select));
    let mut unique = available.clone();
    unique.dedup();
    assert_eq!(unique.len(), available.len());
    if cfg!(any(target_os = "linux", target_os = "android")) {
        assert_eq!(Backend::default(), Backend::Epoll);
        assert!(!available.contains(&Backend::Kqueue));
    }
}

#[test]
fn open_gives_each_available_backend_and_refuses_the_others() {
    let _shared = shared();
    for backend in Backend::ALL {
        match backend.open::<String>() {
            Ok(sel) => {
                assert!(Backend::available().contains(&backend), "{backend} opened but is not available");
                assert_eq!(sel.backend(), backend);
                assert!(sel.close().is_ok(), "close through a Box only drops it");
            }
            Err(err) => {
                assert!(!Backend::available().contains(&backend), "{backend}: {err}");
                assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
                assert!(err.to_string().contains(&backend.to_string()), "{err}");
            }
        }
    }
    if cfg!(any(target_os = "linux", target_os = "android")) {
        let err = Backend::Kqueue.open::<()>().map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    }
}
