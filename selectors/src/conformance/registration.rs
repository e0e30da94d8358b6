//! The rules of `register`, `unregister`, `modify` and the key table.

use std::io::{ErrorKind, Write};
use std::os::unix::io::{AsFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::support::*;
use super::{Subject, BOTH, READ, WRITE};
use crate::mechanism::cvt;
use crate::{Events, FdLimit, RegularFile, Selector};

pub(crate) fn register_returns_the_key(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, _b) = pair();
    assert!(sel.is_empty());

    let key = sel.register(fd(&a), READ, data("a")).expect("register").clone();
    assert_eq!((key.fd, key.events, key.data.as_str()), (fd(&a), READ, "a"));
    assert_eq!(sel.get_key(fd(&a)), Some(&key));
    assert_eq!(sel.len(), 1);
    assert!(!sel.is_empty());
    assert_eq!(sel.keys().collect::<Vec<_>>(), [&key]);
    assert_eq!(sel.backend(), s.capabilities.backend, "backend() is the backend the capabilities describe");
}

pub(crate) fn register_rejects_invalid_arguments(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, _b) = pair();
    let a = fd(&a);
    for bad_fd in [-1, -10, RawFd::MIN] {
        assert_err_names_fd(sel.register(bad_fd, READ, data("negative")), ErrorKind::InvalidInput, bad_fd);
    }
    for bad_events in [
        Events::empty(),
        Events::from_bits_retain(4),
        Events::from_bits_retain(5),
        Events::from_bits_retain(0xff),
    ] {
        assert_err_names_fd(sel.register(a, bad_events, data("bad events")), ErrorKind::InvalidInput, a);
    }
    assert!(sel.is_empty(), "nothing may be registered after refused calls");
    assert!(sel.get_key(a).is_none());
    // The selector still works after the refusals.
    sel.register(a, WRITE, data("a")).expect("a valid register after refusals");
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, data("a"))]);
}

pub(crate) fn register_twice_is_already_exists(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, _b) = pair();
    let a = fd(&a);
    sel.register(a, READ, data("first")).expect("register");
    for events in [READ, WRITE, BOTH] {
        assert_err_names_fd(sel.register(a, events, data("second")), ErrorKind::AlreadyExists, a);
    }
    let key = sel.get_key(a).expect("still registered");
    assert_eq!((key.events, key.data.as_str()), (READ, "first"));
    assert_eq!(sel.len(), 1);
}

/// An fd at the declared limit (`FdLimit::Below`, select's `FD_SETSIZE`)
/// is refused with `InvalidInput` naming the fd and the limit; a backend
/// without one takes an fd above `FD_SETSIZE` and reports it.
pub(crate) fn register_above_fd_setsize(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, mut b) = pair();
    let at_least = match s.capabilities.fd_limit {
        FdLimit::Below(limit) => limit as RawFd,
        FdLimit::OpenFiles => libc::FD_SETSIZE as RawFd,
    };
    let high = move_to(a, at_least);
    let h = fd(&high);
    assert!(h >= at_least);
    let result = sel.register(h, READ, data("high"));
    match s.capabilities.fd_limit {
        FdLimit::Below(limit) => {
            assert_err_names_fd(result, ErrorKind::InvalidInput, h);
            assert!(sel.is_empty());
            // The limit itself is named as a number in the message.
            let message = sel.register(h, READ, data("high")).unwrap_err().to_string();
            assert!(message.contains(&limit.to_string()), "{message}");
        }
        FdLimit::OpenFiles => {
            result.expect("no fd limit is declared");
            b.write_all(b"x").unwrap();
            assert_eq!(ready(&mut *sel, Some(BOUND)), [(h, READ, data("high"))]);
        }
    }
}

/// A backend whose `register` asks the kernel refuses a closed fd with
/// `EBADF` and keeps no key; one that makes no syscall accepts it.
pub(crate) fn register_of_a_closed_fd(s: &Subject) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = s.open();
    let (other, _peer) = pair();
    sel.register(fd(&other), READ, data("other")).unwrap();
    let (a, _b) = high_pair();
    let closed = a.into_raw_fd();
    // SAFETY: we own `closed` (into_raw_fd) and close it exactly once.
    cvt(unsafe { libc::close(closed) }).expect("close");
    assert!(!is_open(closed));

    let result = sel.register(closed, READ, data("closed"));
    if s.capabilities.register_syscall {
        assert_os_error(result, libc::EBADF);
        assert!(sel.get_key(closed).is_none(), "a refused register must keep no key");
        assert_eq!(sel.len(), 1);
        assert_err_names_fd(sel.unregister(closed), ErrorKind::NotFound, closed);
    } else {
        result.expect("a register that makes no syscall cannot see that the fd is closed");
        assert_eq!(sel.len(), 2);
        assert_eq!(sel.unregister(closed).expect("unregister").data, "closed");
    }
}

/// A regular file: refused with `EPERM` (epoll) or reported ready at once,
/// as the capabilities declare.
pub(crate) fn register_of_a_regular_file(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let file = std::fs::File::open(std::env::current_exe().unwrap()).expect("open a regular file");
    let f = fd(&file);
    let result = sel.register(f, READ, data("file"));
    match s.capabilities.regular_file {
        RegularFile::Refused => {
            assert_os_error(result, libc::EPERM);
            assert!(sel.get_key(f).is_none());
            assert!(sel.is_empty());
        }
        RegularFile::Ready => {
            result.expect("register a regular file");
            assert_eq!(ready(&mut *sel, Some(BOUND)), [(f, READ, data("file"))]);
        }
    }
}

pub(crate) fn unregister_returns_the_key_and_forgets_it(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, mut b) = pair();
    let a = fd(&a);
    sel.register(a, BOTH, data("a")).unwrap();
    b.write_all(b"pending").unwrap();

    let key = sel.unregister(a).expect("unregister");
    assert_eq!((key.fd, key.events, key.data.as_str()), (a, BOTH, "a"));
    assert!(sel.get_key(a).is_none());
    assert!(sel.is_empty());
    assert_err_names_fd(sel.unregister(a), ErrorKind::NotFound, a);
    assert_err_names_fd(sel.unregister(999_999), ErrorKind::NotFound, 999_999);
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(Duration::from_millis(30))));
    assert!(entries.is_empty(), "an unregistered fd is never reported: {entries:?}");
    assert!(elapsed >= Duration::from_millis(30));
    // It can come back.
    sel.register(a, READ, data("again")).expect("register after unregister");
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, READ, data("again"))]);
}

/// CPython's test_unregister_after_fd_close: the OS error is ignored.
pub(crate) fn unregister_after_close(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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
pub(crate) fn unregister_after_close_and_reuse(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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

pub(crate) fn modify_unregistered_is_not_found(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, _b) = pair();
    assert_err_names_fd(sel.modify(fd(&a), READ, data("x")), ErrorKind::NotFound, fd(&a));
    assert_err_names_fd(sel.modify(999_999, WRITE, data("x")), ErrorKind::NotFound, 999_999);
    assert!(sel.is_empty());
}

pub(crate) fn modify_with_same_events_replaces_data(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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
pub(crate) fn modify_with_same_events_makes_no_syscall(s: &Subject) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = s.open();
    let (a, _b) = high_pair();
    let number = fd(&a);
    sel.register(number, READ, data("before")).unwrap();
    drop(a);
    assert!(!is_open(number));
    let key = sel.modify(number, READ, data("after")).expect("a data-only modify makes no syscall");
    assert_eq!((key.events, key.data.as_str()), (READ, "after"));
    assert_eq!(sel.unregister(number).unwrap().data, "after");
}

pub(crate) fn modify_with_invalid_events_keeps_the_key(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, _b) = pair();
    let a = fd(&a);
    sel.register(a, WRITE, data("kept")).unwrap();
    for bad in [Events::empty(), Events::from_bits_retain(4), Events::from_bits_retain(6)] {
        assert_err_names_fd(sel.modify(a, bad, data("lost")), ErrorKind::InvalidInput, a);
        let key = sel.get_key(a).expect("an invalid modify keeps the key");
        assert_eq!((key.events, key.data.as_str()), (WRITE, "kept"));
    }
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, data("kept"))]);
}

pub(crate) fn modify_changes_the_reported_events(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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
/// error returned. A backend whose changes are syscalls refuses a closed
/// fd; one that makes none accepts it.
pub(crate) fn modify_refused_by_the_os_removes_the_key(s: &Subject) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = s.open();
    let (other, _peer) = pair();
    sel.register(fd(&other), WRITE, data("other")).unwrap();
    let (a, _b) = high_pair();
    let number = fd(&a);
    sel.register(number, READ, data("doomed")).unwrap();
    drop(a);
    assert!(!is_open(number));

    let result = sel.modify(number, WRITE, data("new"));
    if s.capabilities.register_syscall {
        assert_os_error(result, libc::EBADF);
        assert!(sel.get_key(number).is_none(), "bpo-30014: the key must be gone");
        assert_eq!(sel.len(), 1);
        assert_err_names_fd(sel.unregister(number), ErrorKind::NotFound, number);
    } else {
        let key = result.expect("a modify that makes no syscall cannot see that the fd is closed");
        assert_eq!((key.events, key.data.as_str()), (WRITE, "new"));
        assert_eq!(sel.len(), 2);
        sel.unregister(number).unwrap();
    }
    // The other registration is untouched and still works.
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(fd(&other), WRITE, data("other"))]);
}

pub(crate) fn keys_len_and_is_empty_track_registrations(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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

/// The I/O-safe forms (`register_fd`, `modify_fd`, `unregister_fd`) act
/// as the `RawFd` forms do on the borrowed fd's number.
pub(crate) fn io_safe_forms_act_as_the_raw_forms(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (mut a, b) = pair();
    assert_eq!(sel.register_fd(b.as_fd(), WRITE, data("b")).expect("register_fd").fd, fd(&b));
    assert_eq!(sel.get_key(fd(&b)).map(|key| key.events), Some(WRITE));
    assert_err_names_fd(sel.register_fd(b.as_fd(), READ, data("again")), ErrorKind::AlreadyExists, fd(&b));
    sel.modify_fd(b.as_fd(), READ, data("b read")).expect("modify_fd");
    a.write_all(b"x").unwrap();
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(fd(&b), READ, data("b read"))]);
    assert_eq!(sel.unregister_fd(b.as_fd()).expect("unregister_fd").data, "b read");
    assert!(sel.is_empty());
    assert_err_names_fd(sel.unregister_fd(b.as_fd()), ErrorKind::NotFound, fd(&b));
    assert_err_names_fd(sel.modify_fd(a.as_fd(), READ, data("never")), ErrorKind::NotFound, fd(&a));
}

/// `data` of a non-`Copy` type moves in and out intact, through every method.
pub(crate) fn non_copy_data_round_trips(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (a, _b) = pair();
    let a = fd(&a);
    let long = "é".repeat(1000);
    sel.register(a, WRITE, long.clone()).unwrap();
    assert_eq!(ready(&mut *sel, Some(BOUND)), [(a, WRITE, long.clone())]);
    sel.modify(a, READ, format!("{long}!")).unwrap();
    assert_eq!(sel.get_key(a).unwrap().data, format!("{long}!"));
    assert_eq!(sel.unregister(a).unwrap().data, format!("{long}!"));
    // A selector dropped with keys in it drops their data too (no leak, no
    // double free: the valgrind run checks it).
    sel.register(a, READ, long).unwrap();
    drop(sel);
}
