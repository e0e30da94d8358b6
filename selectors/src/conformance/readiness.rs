//! The rules of what `select` reports: once per fd, merged, masked, errors
//! and hang-ups as readiness, every ready fd in one call.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::RawFd;
use std::time::Duration;

use super::support::*;
use super::{Subject, BOTH, READ, WRITE};
use crate::{ClosedFd, FdLimit};

pub(crate) fn ready_fd_appears_once_with_merged_events(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let pairs: Vec<_> = (0..3).map(|_| pair()).collect();
    for (i, (a, b)) in pairs.iter().enumerate() {
        sel.register(fd(a), BOTH, format!("pair {i}")).unwrap();
        (&*b).write_all(b"data pending").unwrap();
    }
    let entries = ready_sorted(&mut *sel, Some(BOUND));
    let mut expected: Vec<_> =
        pairs.iter().enumerate().map(|(i, (a, _))| (fd(a), BOTH, format!("pair {i}"))).collect();
    expected.sort_by_key(|entry| entry.0);
    assert_eq!(entries, expected, "one entry per fd, READ and WRITE merged");
}

pub(crate) fn unregistered_events_are_masked(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    // Writable with nothing to read, registered for READ only.
    let (reader, _peer) = pair();
    sel.register(fd(&reader), READ, data("reader")).unwrap();
    // Readable but not writable (send buffer full), registered for WRITE only.
    let (writer, mut peer) = pair();
    fill(&writer);
    peer.write_all(b"unwanted").unwrap();
    sel.register(fd(&writer), WRITE, data("writer")).unwrap();

    let d = Duration::from_millis(50);
    let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
    assert!(entries.is_empty(), "events nobody registered were reported: {entries:?}");
    assert!(elapsed >= d, "masked events must not end the wait early ({elapsed:?})");

    // Unmasked, the same fds are reported.
    sel.modify(fd(&reader), WRITE, data("reader")).unwrap();
    sel.modify(fd(&writer), READ, data("writer")).unwrap();
    let entries = ready_sorted(&mut *sel, Some(BOUND));
    let mut expected = vec![(fd(&reader), WRITE, data("reader")), (fd(&writer), READ, data("writer"))];
    expected.sort_by_key(|entry| entry.0);
    assert_eq!(entries, expected);
}

/// Events dropped by `modify` are no longer watched by the kernel either: a
/// stale interest would wake `select` early even though it is masked out.
pub(crate) fn modify_stops_watching_dropped_events(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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

pub(crate) fn closed_peer_is_readable(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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
pub(crate) fn hang_up_is_reported_for_registered_events(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let (mut writer, peer) = pair();
    let (reader_writer, peer2) = pair();
    sel.register(fd(&writer), WRITE, data("writer")).unwrap();
    sel.register(fd(&reader_writer), BOTH, data("both")).unwrap();
    fill(&writer);
    assert!(ready(&mut *sel, Some(Duration::ZERO)).iter().all(|(f, _, _)| *f != fd(&writer)));
    drop((peer, peer2));

    let entries = ready_sorted(&mut *sel, Some(BOUND));
    let mut expected = vec![(fd(&writer), WRITE, data("writer")), (fd(&reader_writer), BOTH, data("both"))];
    expected.sort_by_key(|entry| entry.0);
    assert_eq!(entries, expected);
    let err = writer.write(b"x").expect_err("writing to a hung-up socket");
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
}

/// An fd closed while registered does what the capabilities declare
/// (`ClosedFd`): reported ready (poll's `POLLNVAL`; io_uring's until a poll
/// is armed, which holds the file), `select` fails with
/// `EBADF` (select), or forgotten with the file, so nothing is reported and
/// the wait runs its course (epoll, kqueue). Unregister works in every case.
pub(crate) fn fd_closed_while_registered(s: &Subject) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = s.open();
    let (a, _b) = high_pair();
    let number = fd(&a);
    sel.register(number, READ, data("closed")).unwrap();
    drop(a);
    assert!(!is_open(number));
    match s.capabilities.closed_fd {
        ClosedFd::ReportedReady | ClosedFd::ReportedUntilArmed => {
            assert_eq!(ready(&mut *sel, Some(BOUND)), [(number, READ, data("closed"))])
        }
        ClosedFd::SelectFails => assert_os_error(sel.select(Some(BOUND)).map(|r| r.len()), libc::EBADF),
        ClosedFd::Forgotten => {
            let d = Duration::from_millis(30);
            let (entries, elapsed) = timed(|| ready(&mut *sel, Some(d)));
            assert!(entries.is_empty(), "{entries:?}");
            assert!(elapsed >= d, "woke after {elapsed:?}");
        }
    }
    assert_eq!(sel.unregister(number).expect("unregister").data, "closed");
    assert!(ready(&mut *sel, Some(Duration::ZERO)).is_empty(), "after unregister select works again");

    if s.capabilities.closed_fd == ClosedFd::ReportedUntilArmed {
        // Closed after a `select` armed its poll: the poll holds the file,
        // which is not ready, so nothing is reported; the peer hanging up
        // makes that held file ready, and the key is reported.
        let (a, b) = high_pair();
        let number = fd(&a);
        sel.register(number, READ, data("held")).unwrap();
        assert!(ready(&mut *sel, Some(Duration::ZERO)).is_empty());
        drop(a);
        assert!(ready(&mut *sel, Some(Duration::from_millis(30))).is_empty(), "the held file is not ready");
        drop(b);
        assert_eq!(ready(&mut *sel, Some(BOUND)), [(number, READ, data("held"))]);
        assert_eq!(sel.unregister(number).expect("unregister").data, "held");
    }
}

/// `Selected` is an `ExactSizeIterator` whose length follows iteration.
pub(crate) fn selected_is_exact_size(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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

/// `select_each` hands over what `select` returns: the same fds, events
/// and data, in the same order, and their number.
pub(crate) fn select_each_matches_select(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
    let pairs: Vec<_> = (0..4).map(|_| pair()).collect();
    for (i, (a, b)) in pairs.iter().enumerate() {
        sel.register(fd(a), BOTH, format!("a{i}")).unwrap();
        sel.register(fd(b), READ, format!("b{i}")).unwrap();
    }
    (&pairs[1].0).write_all(b"x").unwrap();
    (&pairs[3].1).write_all(b"y").unwrap();
    let expected = ready(&mut *sel, Some(BOUND));
    let mut seen = Vec::new();
    let count = sel
        .select_each(Some(BOUND), &mut |key, events| seen.push((key.fd, events, key.data.clone())))
        .expect("select_each");
    assert_eq!(count, seen.len());
    assert_eq!(seen, expected);
    assert_eq!(seen.len(), 5, "four writable a's, one readable b: {seen:?}");
    for (a, b) in &pairs {
        sel.unregister(fd(a)).unwrap();
        sel.unregister(fd(b)).unwrap();
    }
    let mut calls = 0;
    let count = sel.select_each(Some(Duration::ZERO), &mut |_, _| calls += 1).expect("select_each");
    assert_eq!((count, calls), (0, 0));
}

/// Port of CPython's test_selector: many pairs, readers and writers all
/// registered; each message makes exactly its own reader ready.
pub(crate) fn each_reader_wakes_for_its_own_writer(s: &Subject) {
    let _shared = shared();
    let mut sel = s.open();
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
/// buffers grow with the registration count). A backend with an fd limit
/// (`FdLimit::Below`) gets fds on both sides of it: those below are
/// registered, those at or above refused with `InvalidInput`.
pub(crate) fn thousands_of_fds_in_one_select(s: &Subject) {
    // Room for the fds of the test harness and of the rules that wait.
    const ROOM: usize = 256;
    const AT_LEAST: usize = 256;
    let wanted = match s.capabilities.fd_limit {
        FdLimit::Below(limit) => limit as usize + 64,
        FdLimit::OpenFiles => 4096,
    };
    let _exclusive = exclusive();
    let limit = usize::try_from(raise_fd_limit()).unwrap_or(usize::MAX);
    let fds = wanted.min(limit.saturating_sub(ROOM)) & !1;
    assert!(
        fds >= AT_LEAST,
        "this rule needs {AT_LEAST} fds and room for {ROOM} more, but RLIMIT_NOFILE is {limit} (raise it: ulimit -n)"
    );
    let mut sel = s.open();
    let pairs: Vec<_> = (0..fds / 2).map(|_| pair()).collect();
    let mut registered = Vec::new();
    let mut refused = 0;
    for (a, b) in &pairs {
        (&*a).write_all(b"a").unwrap();
        (&*b).write_all(b"b").unwrap();
        for end in [fd(a), fd(b)] {
            match s.capabilities.fd_limit {
                FdLimit::Below(limit) if end >= limit as RawFd => {
                    assert_err_names_fd(
                        sel.register(end, READ, end.to_string()),
                        ErrorKind::InvalidInput,
                        end,
                    );
                    refused += 1;
                }
                _ => {
                    sel.register(end, READ, end.to_string()).unwrap();
                    registered.push(end);
                }
            }
        }
    }
    assert_eq!(registered.len() + refused, fds);
    match s.capabilities.fd_limit {
        FdLimit::OpenFiles => assert_eq!(refused, 0),
        FdLimit::Below(limit) => {
            // The fds already open sit below the limit too: at most a few hundred.
            let below = fds.min(limit as usize);
            assert!(registered.len() >= below / 2, "only {} of {fds} fds registered", registered.len());
            if fds > limit as usize {
                assert!(refused > 0, "fds above the declared limit {limit} were opened, none refused");
            }
        }
    }
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
