//! The concrete selector types (`SelectSelector`, `PollSelector`,
//! `EpollSelector`, `DefaultSelector`), used directly rather than through
//! `Backend::open`: a generic walk through the API, `close`, the kernel
//! handle's flags and lifetime, and boxing a concrete type as `dyn Selector`.
//! (The contract's rules, `select_each` and the I/O-safe forms among them,
//! run on the concrete types in `conformance.rs`.)

#![warn(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use tulip_selectors::{Backend, DefaultSelector, Events, PollSelector, SelectSelector, Selector};

/// Every method of the trait, called on a concrete `S` (static dispatch).
fn walk_through<S: Selector<String>>(mut sel: S, backend: Backend) {
    assert_eq!(sel.backend(), backend);
    assert!(sel.is_empty());
    let (a, mut b) = pair();
    let key = sel.register(fd(&a), Events::READ, data("a")).unwrap().clone();
    assert_eq!(sel.get_key(fd(&a)), Some(&key));
    assert_eq!(sel.keys().len(), 1);
    assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
    b.write_all(b"x").unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(fd(&a), Events::READ, data("a"))]);
    sel.modify(fd(&a), Events::READ | Events::WRITE, data("both")).unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(fd(&a), Events::all(), data("both"))]);
    assert_eq!(sel.unregister(fd(&a)).unwrap().data, "both");
    assert_eq!(sel.len(), 0);
    sel.register(fd(&a), Events::WRITE, data("left registered")).unwrap();
    sel.close().expect("close with a key still registered");
}

#[test]
fn select_selector() {
    let _shared = shared();
    walk_through(SelectSelector::<String>::new().unwrap(), Backend::Select);
}

#[test]
fn poll_selector() {
    let _shared = shared();
    walk_through(PollSelector::<String>::new().unwrap(), Backend::Poll);
}

#[test]
fn default_selector_is_the_default_backend() {
    let _shared = shared();
    walk_through(DefaultSelector::<String>::new().unwrap(), Backend::default());
}

#[test]
fn boxed_concrete_selectors_are_dyn_selectors() {
    let _shared = shared();
    let mut boxes: Vec<Box<dyn Selector<String>>> =
        vec![Box::new(SelectSelector::new().unwrap()), Box::new(PollSelector::new().unwrap())];
    #[cfg(tulip_epoll)]
    boxes.push(Box::new(tulip_selectors::EpollSelector::new().unwrap()));
    #[cfg(tulip_io_uring)]
    if Backend::available().contains(&Backend::IoUring) {
        boxes.push(Box::new(tulip_selectors::IoUringSelector::new().unwrap()));
    }
    boxes.push(Box::new(DefaultSelector::new().unwrap()));
    for sel in boxes {
        let backend = sel.backend();
        walk_through(sel, backend);
    }
    // A Box of a concrete type is itself a selector of that type.
    walk_through(Box::new(PollSelector::<String>::new().unwrap()), Backend::Poll);
}

/// Selectors can move to another thread (an event loop may be built on one
/// thread and run on another). Checked when this file compiles, not as a
/// test: there is nothing for it to do at run time.
const _: () = {
    fn assert_send<S: Send>() {}
    let _ = assert_send::<SelectSelector<String>>;
    let _ = assert_send::<PollSelector<String>>;
    let _ = assert_send::<DefaultSelector<String>>;
    #[cfg(tulip_epoll)]
    let _ = assert_send::<tulip_selectors::EpollSelector<String>>;
    #[cfg(tulip_kqueue)]
    let _ = assert_send::<tulip_selectors::KqueueSelector<String>>;
    #[cfg(tulip_io_uring)]
    let _ = assert_send::<tulip_selectors::IoUringSelector<String>>;
};

#[cfg(tulip_epoll)]
mod epoll {
    use std::os::unix::io::{AsRawFd, RawFd};

    use super::*;
    use tulip_selectors::EpollSelector;

    #[test]
    fn epoll_selector() {
        let _shared = shared();
        walk_through(EpollSelector::<String>::new().unwrap(), Backend::Epoll);
    }

    /// What `/proc/self/fd/N` links to, if N is open.
    fn link_of(fd: RawFd) -> Option<String> {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).ok().map(|p| p.to_string_lossy().into_owned())
    }

    /// The epoll fd is close-on-exec, is an epoll instance, and is closed on
    /// drop. Exclusive, so no other test can take its number once it is closed.
    #[test]
    fn epoll_fd_is_cloexec_and_closed_on_drop() {
        let _exclusive = exclusive();
        let sel = EpollSelector::<String>::new().unwrap();
        let epfd = sel.as_raw_fd();
        assert!(epfd >= 0);
        assert!(is_cloexec(epfd), "the epoll fd must be close-on-exec");
        assert_eq!(link_of(epfd).as_deref(), Some("anon_inode:[eventpoll]"));
        drop(sel);
        assert!(!is_open(epfd), "drop must close the epoll fd");
        assert_eq!(link_of(epfd), None);
    }

    #[test]
    fn close_reports_success_and_releases_the_fd() {
        let _exclusive = exclusive();
        let mut sel = EpollSelector::<String>::new().unwrap();
        let (a, _b) = pair();
        sel.register(fd(&a), Events::READ, data("a")).unwrap();
        let epfd = sel.as_raw_fd();
        assert!(is_open(epfd));
        sel.close().expect("close");
        assert!(!is_open(epfd), "close must close the epoll fd");
    }

    /// Each selector has its own epoll instance.
    #[test]
    fn each_selector_owns_its_epoll_fd() {
        let _shared = shared();
        let one = EpollSelector::<String>::new().unwrap();
        let two = EpollSelector::<String>::new().unwrap();
        assert_ne!(one.as_raw_fd(), two.as_raw_fd());
    }

    /// An epoll selector can be nested in another one through its fd.
    #[test]
    fn epoll_fd_is_readable_when_an_inner_fd_is_ready() {
        let _shared = shared();
        let mut inner = EpollSelector::<String>::new().unwrap();
        let mut outer = PollSelector::<String>::new().unwrap();
        let (a, mut b) = pair();
        inner.register(fd(&a), Events::READ, data("a")).unwrap();
        outer.register(inner.as_raw_fd(), Events::READ, data("inner")).unwrap();
        assert!(ready(&mut outer, Some(Duration::ZERO)).is_empty());
        b.write_all(b"x").unwrap();
        assert_eq!(ready(&mut outer, Some(BOUND)), [(inner.as_raw_fd(), Events::READ, data("inner"))]);
        assert_eq!(ready(&mut inner, Some(BOUND)), [(fd(&a), Events::READ, data("a"))]);
    }
}

#[cfg(tulip_io_uring)]
mod io_uring {
    use std::os::unix::io::{AsRawFd, RawFd};

    use super::*;
    use tulip_selectors::IoUringSelector;

    /// A new io_uring selector, or `None` (with a note) where the kernel
    /// refuses io_uring.
    fn open() -> Option<IoUringSelector<String>> {
        if !runnable(Backend::IoUring) {
            return None;
        }
        Some(IoUringSelector::new().expect("io_uring is available"))
    }

    #[test]
    fn io_uring_selector() {
        let _shared = shared();
        let Some(sel) = open() else { return };
        walk_through(sel, Backend::IoUring);
    }

    fn link_of(fd: RawFd) -> Option<String> {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).ok().map(|p| p.to_string_lossy().into_owned())
    }

    /// The ring fd is close-on-exec, is an io_uring instance, and is closed
    /// (its rings unmapped) on drop, with registrations still in it.
    #[test]
    fn ring_fd_is_cloexec_and_closed_on_drop() {
        let _exclusive = exclusive();
        let Some(mut sel) = open() else { return };
        let (a, _b) = pair();
        sel.register(fd(&a), Events::READ, data("queued")).unwrap();
        let (c, _d) = pair();
        sel.register(fd(&c), Events::READ, data("armed")).unwrap();
        assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
        let ring = sel.as_raw_fd();
        assert!(is_cloexec(ring), "the io_uring fd must be close-on-exec");
        assert_eq!(link_of(ring).as_deref(), Some("anon_inode:[io_uring]"));
        drop(sel);
        assert!(!is_open(ring), "drop must close the io_uring fd");
        assert!(is_open(fd(&a)) && is_open(fd(&c)), "registered fds stay open");
    }

    #[test]
    fn close_reports_success_and_releases_the_fd() {
        let _exclusive = exclusive();
        let Some(mut sel) = open() else { return };
        let (a, _b) = pair();
        sel.register(fd(&a), Events::READ, data("a")).unwrap();
        let ring = sel.as_raw_fd();
        sel.close().expect("close");
        assert!(!is_open(ring), "close must close the io_uring fd");
    }

    /// `unregister` of an fd whose poll the kernel holds cancels it at once,
    /// so closing the fd right after closes the socket: the peer sees EOF
    /// without another `select`.
    #[test]
    fn unregister_then_close_releases_the_socket() {
        let _shared = shared();
        let Some(mut sel) = open() else { return };
        let (a, mut b) = pair();
        sel.register(fd(&a), Events::READ, data("a")).unwrap();
        assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty(), "the poll is now armed");
        sel.unregister(fd(&a)).unwrap();
        drop(a);
        b.set_nonblocking(false).unwrap();
        b.set_read_timeout(Some(BOUND)).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut b, &mut buf).expect("EOF, not a timeout"), 0);
    }

    /// What the kernel says about a ring in `/proc/self/fdinfo`: how many
    /// submissions it has consumed in all (`CachedSqHead`), and how many
    /// polls it holds armed (the lines of `PollList`).
    fn kernel_view(ring: RawFd) -> (u32, usize) {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{ring}")).expect("fdinfo");
        let consumed = info
            .lines()
            .find_map(|line| line.strip_prefix("CachedSqHead:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no CachedSqHead in {info}"));
        let polls = info
            .lines()
            .skip_while(|line| !line.starts_with("PollList:"))
            .skip(1)
            .take_while(|line| line.starts_with([' ', '\t']))
            .count();
        (consumed, polls)
    }

    /// A register/unregister pair (a modify in between too) before any wait
    /// never reaches the kernel: the queued poll is taken back out of the
    /// submission ring, and the `select` that follows submits nothing.
    #[test]
    fn register_unregister_pairs_before_a_wait_never_reach_the_kernel() {
        let _shared = shared();
        let Some(mut sel) = open() else { return };
        let pairs: Vec<_> = (0..200).map(|_| pair()).collect();
        // One at a time, many times over (a connection accepted and closed
        // between two waits)...
        for round in 0..10 {
            for (i, (a, _)) in pairs.iter().enumerate() {
                sel.register(fd(a), Events::WRITE, format!("a{i}")).unwrap();
                if i % 3 == round % 3 {
                    sel.modify(fd(a), Events::READ, format!("read {i}")).unwrap();
                }
                sel.unregister(fd(a)).unwrap();
            }
        }
        // ... and 200 at once, taken back in another order.
        for (i, (a, _)) in pairs.iter().enumerate() {
            sel.register(fd(a), Events::WRITE, format!("a{i}")).unwrap();
        }
        for (a, _) in pairs.iter().step_by(2).chain(pairs.iter().skip(1).step_by(2)) {
            sel.unregister(fd(a)).unwrap();
        }
        assert_eq!(kernel_view(sel.as_raw_fd()), (0, 0), "nothing was sent yet");
        let d = Duration::from_millis(20);
        let (entries, elapsed) = timed(|| ready(&mut sel, Some(d)));
        assert!(entries.is_empty() && elapsed >= d, "{entries:?} after {elapsed:?}");
        assert_eq!(kernel_view(sel.as_raw_fd()), (0, 0), "the wait sent nothing either");
    }

    /// More registrations than the submission ring holds (256) before any
    /// wait: the full ring is handed to the kernel without waiting, nothing
    /// is lost, and one `select` reports every fd; an fd unregistered after
    /// its poll was sent is cancelled in the kernel at once.
    #[test]
    fn registrations_beyond_the_ring_are_flushed_not_lost() {
        let _exclusive = exclusive();
        let Some(mut sel) = open() else { return };
        let pairs: Vec<_> = (0..1000).map(|_| pair()).collect();
        for (i, (a, _)) in pairs.iter().enumerate() {
            sel.register(fd(a), Events::WRITE, format!("a{i}")).unwrap();
        }
        let (consumed, _) = kernel_view(sel.as_raw_fd());
        assert!(consumed >= 1000 - 256, "full rings were flushed: {consumed} consumed");
        let mut expected: Vec<RawFd> = pairs.iter().map(|(a, _)| fd(a)).collect();
        expected.sort_unstable();
        for round in 0..2 {
            let mut seen: Vec<RawFd> = ready(&mut sel, Some(BOUND)).iter().map(|entry| entry.0).collect();
            seen.sort_unstable();
            assert_eq!(seen, expected, "round {round}: one select reports every fd");
        }
        // Armed in the kernel now (the re-arms went out with the last wait).
        assert!(ready(&mut sel, Some(BOUND)).len() == 1000);
        let (_, armed) = kernel_view(sel.as_raw_fd());
        assert_eq!(armed, 0, "writable fds complete as soon as they are armed");
        let (r, _w) = pair();
        sel.register(fd(&r), Events::READ, data("idle")).unwrap();
        for (a, _) in &pairs {
            sel.unregister(fd(a)).unwrap();
        }
        assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
        assert_eq!(kernel_view(sel.as_raw_fd()).1, 1, "only the idle reader's poll is armed");
        sel.unregister(fd(&r)).unwrap();
        assert_eq!(kernel_view(sel.as_raw_fd()).1, 0, "unregister cancels an armed poll at once");
    }

    /// 10,000 registered fds: one ready among them is reported alone, and
    /// when all are ready one `select` reports all of them.
    #[test]
    fn ten_thousand_fds() {
        const FDS: usize = 10_000;
        let _exclusive = exclusive();
        let limit = raise_fd_limit();
        if limit < (FDS + 512) as libc::rlim_t {
            println!("skipped: RLIMIT_NOFILE is {limit} even raised to the hard limit; {FDS} fds and some room are needed");
            return;
        }
        let Some(mut sel) = open() else { return };
        let pairs: Vec<_> = (0..FDS / 2).map(|_| pair()).collect();
        for (a, b) in &pairs {
            sel.register(fd(a), Events::READ, fd(a).to_string()).unwrap();
            sel.register(fd(b), Events::READ, fd(b).to_string()).unwrap();
        }
        assert_eq!(sel.len(), FDS);
        assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
        let (one, other) = &pairs[FDS / 4];
        (&*other).write_all(b"1").unwrap();
        assert_eq!(ready(&mut sel, Some(BOUND)), [(fd(one), Events::READ, fd(one).to_string())]);
        for (a, b) in &pairs {
            (&*a).write_all(b"a").unwrap();
            (&*b).write_all(b"b").unwrap();
        }
        let entries = ready(&mut sel, Some(BOUND));
        assert_eq!(entries.len(), FDS, "one select returns every ready fd");
        assert!(entries.iter().all(|(f, events, data)| *events == Events::READ && *data == f.to_string()));
        // Level-triggered, all 10,000 again.
        assert_eq!(ready(&mut sel, Some(BOUND)).len(), FDS);
    }

    /// A zero-timeout `select` that finds nothing to do makes no syscall
    /// (the kernel flags woken polls in the ring); it must still see a write
    /// made by another thread before that thread said so, with no syscall
    /// of ours in between (this thread spins in user space).
    #[test]
    fn zero_timeout_select_sees_another_threads_write() {
        let _shared = shared();
        let Some(mut sel) = open() else { return };
        let (a, b) = pair();
        sel.register(fd(&a), Events::READ, data("a")).unwrap();
        assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
        let said = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (go, start) = std::sync::mpsc::channel::<()>();
        let writer = {
            let said = std::sync::Arc::clone(&said);
            std::thread::spawn(move || {
                let mut b = b;
                for () in start {
                    b.write_all(b"x").unwrap();
                    said.store(true, std::sync::atomic::Ordering::Release);
                }
            })
        };
        for round in 0..200 {
            assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty(), "round {round}: nothing yet");
            go.send(()).unwrap();
            while !said.swap(false, std::sync::atomic::Ordering::Acquire) {
                std::hint::spin_loop();
            }
            assert_eq!(
                ready(&mut sel, Some(Duration::ZERO)),
                [(fd(&a), Events::READ, data("a"))],
                "round {round}"
            );
            assert_eq!(drain(&a), 1);
        }
        drop(go);
        writer.join().unwrap();
    }

    /// The io_uring fd is readable while completions wait in its ring, so
    /// the selector nests in another one. Polls reach the kernel at this
    /// selector's `select` (registered ones, and those re-armed after a
    /// report), so before each wait of the outer selector, call `select`
    /// with a zero timeout until it reports nothing: then every poll is armed.
    #[test]
    fn ring_fd_is_readable_when_an_inner_fd_is_ready() {
        let _shared = shared();
        let Some(mut inner) = open() else { return };
        let mut outer = PollSelector::<String>::new().unwrap();
        let (a, mut b) = pair();
        inner.register(fd(&a), Events::READ, data("a")).unwrap();
        outer.register(inner.as_raw_fd(), Events::READ, data("inner")).unwrap();
        assert!(ready(&mut inner, Some(Duration::ZERO)).is_empty());
        assert!(ready(&mut outer, Some(Duration::ZERO)).is_empty());
        b.write_all(b"x").unwrap();
        assert_eq!(ready(&mut outer, Some(BOUND)), [(inner.as_raw_fd(), Events::READ, data("inner"))]);
        assert_eq!(ready(&mut inner, Some(BOUND)), [(fd(&a), Events::READ, data("a"))]);
        // Still readable (nothing was read): reported again as it is re-armed.
        assert_eq!(ready(&mut inner, Some(Duration::ZERO)), [(fd(&a), Events::READ, data("a"))]);
        assert_eq!(drain(&a), 1);
        assert!(ready(&mut inner, Some(Duration::ZERO)).is_empty(), "every poll is armed again");
        assert!(ready(&mut outer, Some(Duration::ZERO)).is_empty());
        b.write_all(b"y").unwrap();
        assert_eq!(ready(&mut outer, Some(BOUND)), [(inner.as_raw_fd(), Events::READ, data("inner"))]);
        assert_eq!(ready(&mut inner, Some(BOUND)), [(fd(&a), Events::READ, data("a"))]);
    }
}

#[test]
fn select_and_poll_close_is_ok() {
    let _shared = shared();
    assert!(SelectSelector::<()>::new().unwrap().close().is_ok());
    assert!(PollSelector::<()>::new().unwrap().close().is_ok());
}

#[test]
fn debug_output_names_the_backend() {
    let _shared = shared();
    let sel = PollSelector::<String>::new().unwrap();
    let text = format!("{sel:?}");
    assert!(text.contains("Poll"), "{text}");
    let text = format!("{:?}", DefaultSelector::<String>::new().unwrap());
    assert!(text.to_lowercase().contains(&Backend::default().to_string()), "{text}");
}
