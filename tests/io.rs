//! Readers and writers: `add_reader`, `add_writer`, their removal and
//! replacement (also from inside callbacks), one selector key per fd, the
//! rule that loop and selector never disagree, and selector errors. Every
//! case runs on `SelectorEventLoop` and on each backend, over socketpairs.

#[macro_use]
mod common;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Write};
use std::os::unix::io::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use common::{drain, fd, readable_pair, run_bounded, socketpair, TestLoop, LIMIT};
use tulip::selectors::Backend;
use tulip::ExceptionContext;

/// Moves `sock` to an fd number of its own far above those the other tests
/// (running in parallel threads) get, so that closing it cannot hand its
/// number to another test's socket. Returns the only fd of the socket.
fn isolated_fd(sock: UnixStream) -> RawFd {
    static NEXT: AtomicI32 = AtomicI32::new(700);
    let target = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!(target < 1000, "select needs fds below FD_SETSIZE");
    // SAFETY: dup2 onto a number nothing in this process uses (the counter
    // hands each one out once); the original is closed when `sock` drops.
    let fd = tulip::selectors::mechanism::cvt(unsafe { libc::dup2(fd(&sock), target) }).unwrap();
    drop(sock);
    fd
}

fn close_fd(fd: RawFd) {
    // SAFETY: `fd` came from `isolated_fd` and is closed exactly once here.
    drop(unsafe { UnixStream::from_raw_fd(fd) });
}

fn counter() -> Rc<Cell<u32>> {
    Rc::new(Cell::new(0))
}

fn bump<L>(c: &Rc<Cell<u32>>) -> impl FnMut(&L) + 'static {
    let c = Rc::clone(c);
    move |_: &L| c.set(c.get() + 1)
}

/// Runs one iteration: `stop()` first makes `run_forever` do exactly one.
fn one_iteration<L: TestLoop>(lp: &L) {
    lp.stop();
    run_bounded(lp, LIMIT);
}

fn a_reader_runs_when_data_arrives<L: TestLoop>(lp: L) {
    let (a, b) = socketpair();
    let sent_at = Rc::new(Cell::new(None::<Instant>));
    let got = Rc::new(RefCell::new(Vec::new()));
    let (b_fd, g, s) = (fd(&b), Rc::clone(&got), Rc::clone(&sent_at));
    lp.add_reader(b_fd, move |lp| {
        assert!(s.get().is_some(), "the reader ran before anything was sent");
        let mut buf = [0u8; 16];
        let n = std::io::Read::read(&mut &b, &mut buf).unwrap();
        g.borrow_mut().extend_from_slice(&buf[..n]);
        lp.stop();
    })
    .unwrap();
    let s = Rc::clone(&sent_at);
    lp.call_later(Duration::from_millis(20), move |_| {
        s.set(Some(Instant::now()));
        (&a).write_all(b"ping").unwrap();
    });
    run_bounded(&lp, LIMIT);
    assert_eq!(*got.borrow(), b"ping");
    assert!(lp.remove_reader(b_fd).unwrap());
}

fn a_writer_runs_when_writable<L: TestLoop>(lp: L) {
    let (_a, b) = socketpair();
    let b_fd = fd(&b);
    let runs = counter();
    let r = Rc::clone(&runs);
    lp.add_writer(b_fd, move |lp| {
        r.set(r.get() + 1);
        (&b).write_all(b"x").unwrap();
        assert!(lp.remove_writer(b_fd).unwrap());
        lp.stop();
    })
    .unwrap();
    run_bounded(&lp, LIMIT);
    assert_eq!(runs.get(), 1);
}

fn a_writer_waits_for_room<L: TestLoop>(lp: L) {
    // Fill the socket's buffer: the writer must not run until the peer reads.
    let (a, b) = socketpair();
    let chunk = [0u8; 4096];
    loop {
        match (&b).write(&chunk) {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) => panic!("{err}"),
        }
    }
    let drained_at = Rc::new(Cell::new(None::<Instant>));
    let d = Rc::clone(&drained_at);
    lp.add_writer(fd(&b), move |lp| {
        assert!(d.get().is_some(), "the writer ran while the buffer was full");
        assert!(lp.remove_writer(fd(&b)).unwrap());
        lp.stop();
    })
    .unwrap();
    let d = Rc::clone(&drained_at);
    lp.call_later(Duration::from_millis(20), move |_| {
        drain(&a);
        d.set(Some(Instant::now()));
    });
    run_bounded(&lp, LIMIT);
    assert!(drained_at.get().is_some());
}

fn add_reader_replaces_the_previous_reader<L: TestLoop>(lp: L) {
    let (_a, b) = readable_pair();
    let (old, new) = (counter(), counter());
    lp.add_reader(fd(&b), bump(&old)).unwrap();
    lp.add_reader(fd(&b), bump(&new)).unwrap();
    one_iteration(&lp);
    one_iteration(&lp);
    assert_eq!((old.get(), new.get()), (0, 2));
    // Same for writers.
    let (w_old, w_new) = (counter(), counter());
    lp.add_writer(fd(&b), bump(&w_old)).unwrap();
    lp.add_writer(fd(&b), bump(&w_new)).unwrap();
    one_iteration(&lp);
    assert_eq!((w_old.get(), w_new.get()), (0, 1));
    assert_eq!(new.get(), 3);
}

fn remove_reports_whether_a_handler_was_removed<L: TestLoop>(lp: L) {
    let (_a, b) = readable_pair();
    let b_fd = fd(&b);
    assert!(!lp.remove_reader(b_fd).unwrap(), "nothing was added");
    assert!(!lp.remove_writer(b_fd).unwrap(), "nothing was added");
    let runs = counter();
    lp.add_reader(b_fd, bump(&runs)).unwrap();
    assert!(!lp.remove_writer(b_fd).unwrap(), "the fd has a reader, not a writer");
    one_iteration(&lp);
    assert_eq!(runs.get(), 1, "removing the absent writer kept the reader");
    assert!(lp.remove_reader(b_fd).unwrap());
    assert!(!lp.remove_reader(b_fd).unwrap());
    one_iteration(&lp);
    assert_eq!(runs.get(), 1, "a removed reader does not run");
    // The fd can be watched again.
    lp.add_reader(b_fd, bump(&runs)).unwrap();
    one_iteration(&lp);
    assert_eq!(runs.get(), 2);
    assert!(lp.remove_reader(b_fd).unwrap());
}

fn a_reader_may_remove_itself<L: TestLoop>(lp: L) {
    let (_a, b) = readable_pair(); // stays readable: never drained
    let b_fd = fd(&b);
    let outcome = Rc::new(RefCell::new(Vec::new()));
    let o = Rc::clone(&outcome);
    lp.add_reader(b_fd, move |lp| o.borrow_mut().push(lp.remove_reader(b_fd).unwrap())).unwrap();
    lp.call_later(Duration::from_millis(20), |lp| lp.stop());
    run_bounded(&lp, LIMIT);
    assert_eq!(*outcome.borrow(), [true], "it ran once and its removal returned Ok(true)");
    drop(b);
}

fn a_writer_may_remove_itself_and_add_another<L: TestLoop>(lp: L) {
    let (_a, b) = socketpair();
    let b_fd = fd(&b);
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = Rc::clone(&log);
    lp.add_writer(b_fd, move |lp| {
        l.borrow_mut().push("first");
        assert!(lp.remove_writer(b_fd).unwrap());
        let l = Rc::clone(&l);
        lp.add_writer(b_fd, move |lp| {
            l.borrow_mut().push("second");
            assert!(lp.remove_writer(b_fd).unwrap());
            lp.stop();
        })
        .unwrap();
    })
    .unwrap();
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["first", "second"]);
}

fn a_reader_removed_earlier_in_the_iteration_does_not_run<L: TestLoop>(lp: L) {
    // Two readable fds reported by the same select: whichever reader runs
    // first removes the other, which then must not run, even though its fd
    // was reported ready.
    let (_a1, b1) = readable_pair();
    let (_a2, b2) = readable_pair();
    let (fd1, fd2) = (fd(&b1), fd(&b2));
    let ran = Rc::new(RefCell::new(Vec::new()));
    for (me, other) in [(fd1, fd2), (fd2, fd1)] {
        let ran = Rc::clone(&ran);
        lp.add_reader(me, move |lp| {
            ran.borrow_mut().push(me);
            assert!(lp.remove_reader(other).unwrap());
            assert!(lp.remove_reader(me).unwrap());
        })
        .unwrap();
    }
    let events_before = lp.stats().events_received;
    one_iteration(&lp);
    assert_eq!(lp.stats().events_received - events_before, 2, "both fds were reported ready");
    assert_eq!(ran.borrow().len(), 1, "only the first reader ran: {:?}", ran.borrow());
}

fn a_reader_replaced_earlier_in_the_iteration_runs_only_in_its_new_form<L: TestLoop>(lp: L) {
    let (_a1, b1) = readable_pair();
    let (_a2, b2) = readable_pair();
    let (fd1, fd2) = (fd(&b1), fd(&b2));
    let log = Rc::new(RefCell::new(Vec::new()));
    let first_done = Rc::new(Cell::new(false));
    for (me, other) in [(fd1, fd2), (fd2, fd1)] {
        let (log, first_done) = (Rc::clone(&log), Rc::clone(&first_done));
        lp.add_reader(me, move |lp| {
            if first_done.replace(true) {
                log.borrow_mut().push("old reader ran after its replacement");
                return;
            }
            log.borrow_mut().push("first");
            assert!(lp.remove_reader(me).unwrap());
            let log = Rc::clone(&log);
            let iteration = lp.stats().iterations;
            lp.add_reader(other, move |lp| {
                assert!(lp.stats().iterations > iteration, "the new reader ran in the same iteration");
                log.borrow_mut().push("replacement");
                assert!(lp.remove_reader(other).unwrap());
                lp.stop();
            })
            .unwrap();
        })
        .unwrap();
    }
    run_bounded(&lp, LIMIT);
    assert_eq!(*log.borrow(), ["first", "replacement"]);
}

fn reader_and_writer_share_one_key<L: TestLoop>(lp: L) {
    // A readable and writable fd with both handlers: one select entry, both
    // callbacks in the same iteration.
    let (_a, b) = readable_pair();
    let b_fd = fd(&b);
    let (reads, writes) = (counter(), counter());
    lp.add_reader(b_fd, bump(&reads)).unwrap();
    lp.add_writer(b_fd, bump(&writes)).unwrap();
    let before = lp.stats();
    one_iteration(&lp);
    let after = lp.stats();
    assert_eq!((reads.get(), writes.get()), (1, 1));
    assert_eq!(after.select_calls - before.select_calls, 1);
    assert_eq!(after.events_received - before.events_received, 1, "one entry per ready fd");
    assert_eq!(after.callbacks_run - before.callbacks_run, 2);
    // Removing one side keeps the other.
    assert!(lp.remove_writer(b_fd).unwrap());
    one_iteration(&lp);
    assert_eq!((reads.get(), writes.get()), (2, 1));
    lp.add_writer(b_fd, bump(&writes)).unwrap();
    assert!(lp.remove_reader(b_fd).unwrap());
    one_iteration(&lp);
    assert_eq!((reads.get(), writes.get()), (2, 2));
    assert!(lp.remove_writer(b_fd).unwrap());
    one_iteration(&lp);
    assert_eq!((reads.get(), writes.get()), (2, 2));
    assert!(!lp.remove_reader(b_fd).unwrap());
    assert!(!lp.remove_writer(b_fd).unwrap());
}

fn stats_count_one_event_per_ready_fd<L: TestLoop>(lp: L) {
    let pairs: Vec<_> = (0..3).map(|_| readable_pair()).collect();
    let runs = counter();
    for (_, b) in &pairs {
        lp.add_reader(fd(b), bump(&runs)).unwrap();
        lp.add_writer(fd(b), bump(&runs)).unwrap();
    }
    let before = lp.stats();
    one_iteration(&lp);
    let after = lp.stats();
    assert_eq!(runs.get(), 6);
    assert_eq!(after.iterations - before.iterations, 1);
    assert_eq!(after.select_calls - before.select_calls, 1);
    assert_eq!(after.events_received - before.events_received, 3);
    assert_eq!(after.callbacks_run - before.callbacks_run, 6);
}

fn a_panicking_reader_is_reported_with_where_it_was_added<L: TestLoop>(lp: L) {
    let contexts: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
    let c = Rc::clone(&contexts);
    lp.set_exception_handler(Some(Box::new(move |_, ctx| c.borrow_mut().push(ctx.clone()))));
    let (_a, b) = readable_pair();
    let b_fd = fd(&b);
    let line = line!() + 1;
    lp.add_reader(b_fd, |lp| {
        lp.stop();
        panic!("reader boom")
    })
    .unwrap();
    run_bounded(&lp, LIMIT);
    let contexts = contexts.borrow();
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0].panic.as_deref(), Some("reader boom"));
    let origin = contexts[0].origin.unwrap();
    assert_eq!((origin.file(), origin.line()), (file!(), line));
    // The reader stays installed, as in asyncio.
    assert!(lp.remove_reader(b_fd).unwrap());
}

fn add_reader_on_a_closed_fd<L: TestLoop>(lp: L) {
    let (_a, b) = socketpair();
    let closed = isolated_fd(b);
    close_fd(closed);
    let outcome = lp.add_reader(closed, |_| panic!("a closed fd's reader ran"));
    match lp.backend() {
        // epoll and kqueue ask the kernel at once: refused, nothing kept.
        Backend::Epoll | Backend::Kqueue => {
            assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EBADF));
            assert!(!lp.remove_reader(closed).unwrap());
            assert!(!lp.remove_writer(closed).unwrap());
            // Nothing is left that could fire.
            lp.call_later(Duration::from_millis(10), |lp| lp.stop());
            run_bounded(&lp, LIMIT);
        }
        // select and poll make no syscall to register.
        Backend::Select | Backend::Poll => {
            outcome.unwrap();
            assert!(lp.remove_reader(closed).unwrap());
        }
    }
}

fn loop_and_selector_never_disagree<L: TestLoop>(lp: L) {
    // add_reader(fd), close fd, add_writer(fd): where the OS refuses the
    // modify, the selector drops the key and the loop drops the reader too.
    let (_a, b) = socketpair();
    let watched = isolated_fd(b);
    lp.add_reader(watched, |_| panic!("the reader of a closed fd ran")).unwrap();
    close_fd(watched);
    let outcome = lp.add_writer(watched, |_| panic!("the writer of a closed fd ran"));
    match lp.backend() {
        Backend::Epoll | Backend::Kqueue => {
            assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EBADF));
            assert!(!lp.remove_reader(watched).unwrap(), "the reader went with the key");
            assert!(!lp.remove_writer(watched).unwrap());
            lp.call_later(Duration::from_millis(10), |lp| lp.stop());
            run_bounded(&lp, LIMIT);
        }
        Backend::Select | Backend::Poll => {
            outcome.unwrap();
            assert!(lp.remove_reader(watched).unwrap());
            assert!(lp.remove_writer(watched).unwrap());
        }
    }
}

fn a_selector_error_ends_run_forever_and_the_loop_stays_usable<L: TestLoop>(lp: L) {
    // An fd closed while watched: select(2) fails with EBADF, poll(2)
    // reports it ready (POLLNVAL), epoll and kqueue forget it.
    let (_a, b) = socketpair();
    let watched = isolated_fd(b);
    let runs = counter();
    let r = Rc::clone(&runs);
    lp.add_reader(watched, move |lp| {
        r.set(r.get() + 1);
        assert!(lp.remove_reader(watched).unwrap());
    })
    .unwrap();
    close_fd(watched);
    lp.call_later(Duration::from_millis(20), |lp| lp.stop());
    let watchdog = common::Watchdog::new(&lp, LIMIT);
    let outcome = lp.run_forever();
    watchdog.disarm();
    assert!(!lp.is_running());
    match lp.backend() {
        Backend::Select => {
            assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EBADF));
            assert_eq!(runs.get(), 0);
            assert!(lp.remove_reader(watched).unwrap());
            // Usable again: the pending stop timer still fires.
            run_bounded(&lp, LIMIT);
        }
        Backend::Poll => {
            outcome.unwrap();
            assert_eq!(runs.get(), 1, "POLLNVAL is reported as readiness");
        }
        Backend::Epoll | Backend::Kqueue => {
            outcome.unwrap();
            assert_eq!(runs.get(), 0);
            assert!(lp.remove_reader(watched).unwrap());
        }
    }
    lp.call_soon(|lp| lp.stop());
    run_bounded(&lp, LIMIT);
    lp.close().unwrap();
}

fn readers_stop_firing_once_the_data_is_consumed<L: TestLoop>(lp: L) {
    // Level-triggered: a reader runs every iteration while data waits, and
    // not once it is read.
    let (a, b) = socketpair();
    let b_fd = fd(&b);
    let runs = counter();
    let r = Rc::clone(&runs);
    lp.add_reader(b_fd, move |_| {
        r.set(r.get() + 1);
        if r.get() == 3 {
            drain(&b);
        }
    })
    .unwrap();
    (&a).write_all(b"data").unwrap();
    for _ in 0..5 {
        one_iteration(&lp);
    }
    assert_eq!(runs.get(), 3);
    assert!(lp.remove_reader(b_fd).unwrap());
}

fn an_fd_that_hangs_up_wakes_its_reader<L: TestLoop>(lp: L) {
    let (a, b) = socketpair();
    let b_fd = fd(&b);
    let eof = Rc::new(Cell::new(false));
    let e = Rc::clone(&eof);
    lp.add_reader(b_fd, move |lp| {
        let mut buf = [0u8; 8];
        if std::io::Read::read(&mut &b, &mut buf).unwrap() == 0 {
            e.set(true);
            assert!(lp.remove_reader(b_fd).unwrap());
            lp.stop();
        }
    })
    .unwrap();
    lp.call_later(Duration::from_millis(10), move |_| drop(a));
    run_bounded(&lp, LIMIT);
    assert!(eof.get());
}

fn a_handler_destructor_may_call_back_into_the_loop<L: TestLoop>(lp: L) {
    // What a callback captured is dropped when the callback is replaced,
    // removed or the loop closed; its destructor may use the loop then.
    let lp = Rc::new(lp);
    let (_a, b) = readable_pair();
    let (_c, d) = socketpair();
    let (b_fd, d_fd) = (fd(&b), fd(&d));
    let drops = Rc::new(RefCell::new(Vec::new()));
    let guard = |name: &'static str| {
        let (weak, drops) = (Rc::downgrade(&lp), Rc::clone(&drops));
        common::OnDrop(move || {
            let Some(lp) = weak.upgrade() else { return };
            // Use the loop's I/O tables from inside the destructor.
            let added = lp.add_writer(d_fd, |_| {}).is_ok();
            let removed = lp.remove_writer(d_fd).unwrap_or(false);
            drops.borrow_mut().push((name, added, removed));
        })
    };
    let g = guard("replaced");
    lp.add_reader(b_fd, move |_| {
        let _ = &g;
    })
    .unwrap();
    let g = guard("removed");
    lp.add_reader(b_fd, move |_| {
        let _ = &g;
    })
    .unwrap();
    assert_eq!(*drops.borrow(), [("replaced", true, true)]);
    assert!(lp.remove_reader(b_fd).unwrap());
    assert_eq!(drops.borrow()[1], ("removed", true, true));
    // Both sides of one fd, dropped by close: the loop is closed by then.
    let g = guard("closed reader");
    lp.add_reader(b_fd, move |_| {
        let _ = &g;
    })
    .unwrap();
    let g = guard("closed writer");
    lp.add_writer(b_fd, move |_| {
        let _ = &g;
    })
    .unwrap();
    lp.close().unwrap();
    let mut closed = drops.borrow()[2..].to_vec();
    closed.sort();
    assert_eq!(closed, [("closed reader", false, false), ("closed writer", false, false)]);
}

fn a_panic_in_a_handler_destructor_is_reported<L: TestLoop>(lp: L) {
    // A reader that removes itself is dropped right after it ran; if what it
    // captured panics on drop, that is reported like the callback's own panic.
    let contexts: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
    let c = Rc::clone(&contexts);
    lp.set_exception_handler(Some(Box::new(move |_, ctx| c.borrow_mut().push(ctx.clone()))));
    let (_a, b) = readable_pair();
    let b_fd = fd(&b);
    let bomb = common::OnDrop(|| panic!("destructor boom"));
    lp.add_reader(b_fd, move |lp| {
        let _ = &bomb;
        assert!(lp.remove_reader(b_fd).unwrap());
        lp.call_soon(|lp| lp.stop());
    })
    .unwrap();
    run_bounded(&lp, LIMIT);
    let contexts = contexts.borrow();
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0].panic.as_deref(), Some("destructor boom"));
    assert_eq!(contexts[0].origin.unwrap().file(), file!());
}

fn a_reader_added_again_after_its_fd_was_closed_and_reused_runs<L: TestLoop>(lp: L) {
    // add_reader(fd); close(fd) without remove_reader; a new socket gets the
    // same number; add_reader(fd) again. epoll and kqueue dropped the closed
    // file's registration, so replacing the reader must register anew:
    // the new reader runs (it never did before: 0 calls).
    let (_a, b) = socketpair();
    let number = isolated_fd(b);
    lp.add_reader(number, |_| panic!("the closed socket's reader ran")).unwrap();
    close_fd(number);
    let (mut c, d) = socketpair();
    // SAFETY: `number` was closed above and is ours to reuse (isolated_fd).
    let reused = tulip::selectors::mechanism::cvt(unsafe { libc::dup2(fd(&d), number) }).unwrap();
    assert_eq!(reused, number);
    drop(d);
    c.write_all(b"x").unwrap();
    let runs = counter();
    let r = Rc::clone(&runs);
    lp.add_reader(number, move |lp| {
        r.set(r.get() + 1);
        assert!(lp.remove_reader(number).unwrap());
        lp.stop();
    })
    .unwrap();
    lp.call_later(LIMIT, |lp| lp.stop());
    run_bounded(&lp, LIMIT + LIMIT);
    assert_eq!(runs.get(), 1, "the reader of the reused fd ran");
    close_fd(number);
}

fn a_reader_replaced_on_a_closed_fd_is_an_error_or_still_watched<L: TestLoop>(lp: L) {
    // Replacing the reader of an fd closed meanwhile: never silence. epoll
    // and kqueue refuse the closed fd (the loop drops its handlers); poll
    // and select ask nothing at registration, as with add_reader.
    let (_a, b) = socketpair();
    let number = isolated_fd(b);
    lp.add_reader(number, |_| panic!("the closed socket's reader ran")).unwrap();
    close_fd(number);
    let outcome = lp.add_reader(number, |_| panic!("the replacement ran"));
    match lp.backend() {
        Backend::Epoll | Backend::Kqueue => {
            assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EBADF));
            assert!(!lp.remove_reader(number).unwrap(), "nothing is left behind");
        }
        Backend::Select | Backend::Poll => {
            outcome.unwrap();
            assert!(lp.remove_reader(number).unwrap());
        }
    }
}

fn the_io_safe_forms_take_a_borrowed_socket<L: TestLoop>(lp: L) {
    let (mut a, b) = socketpair();
    let runs = counter();
    let r = Rc::clone(&runs);
    lp.add_reader_fd(&b, move |lp| {
        r.set(r.get() + 1);
        lp.stop();
    })
    .unwrap();
    lp.add_writer_fd(&b, |_| {}).unwrap();
    assert!(lp.remove_writer_fd(&b).unwrap());
    a.write_all(b"x").unwrap();
    run_bounded(&lp, LIMIT);
    assert_eq!(runs.get(), 1);
    assert!(lp.remove_reader_fd(&b).unwrap());
    assert!(!lp.remove_reader_fd(&b).unwrap());
    // The origin of a handler added the I/O-safe way is the caller's line.
    let seen: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
    let s = Rc::clone(&seen);
    lp.set_exception_handler(Some(Box::new(move |_, ctx| s.borrow_mut().push(ctx.clone()))));
    let line2 = line!() + 1;
    lp.add_reader_fd(&b, |lp| {
        lp.stop();
        panic!("boom");
    })
    .unwrap();
    run_bounded(&lp, LIMIT);
    let origin = seen.borrow()[0].origin.unwrap();
    assert_eq!((origin.file(), origin.line()), (file!(), line2));
}

per_backend!(
    the_io_safe_forms_take_a_borrowed_socket,
    a_reader_added_again_after_its_fd_was_closed_and_reused_runs,
    a_reader_replaced_on_a_closed_fd_is_an_error_or_still_watched,
    a_reader_runs_when_data_arrives,
    a_writer_runs_when_writable,
    a_writer_waits_for_room,
    add_reader_replaces_the_previous_reader,
    remove_reports_whether_a_handler_was_removed,
    a_reader_may_remove_itself,
    a_writer_may_remove_itself_and_add_another,
    a_reader_removed_earlier_in_the_iteration_does_not_run,
    a_reader_replaced_earlier_in_the_iteration_runs_only_in_its_new_form,
    reader_and_writer_share_one_key,
    stats_count_one_event_per_ready_fd,
    a_panicking_reader_is_reported_with_where_it_was_added,
    add_reader_on_a_closed_fd,
    loop_and_selector_never_disagree,
    a_selector_error_ends_run_forever_and_the_loop_stays_usable,
    readers_stop_firing_once_the_data_is_consumed,
    an_fd_that_hangs_up_wakes_its_reader,
    a_handler_destructor_may_call_back_into_the_loop,
    a_panic_in_a_handler_destructor_is_reported,
);
