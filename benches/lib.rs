//! Shared helpers for the criterion benches in this directory: raising the fd
//! limit, making idle and ready file descriptors, one-byte I/O, and the raw
//! `epoll_wait`/`poll`/`select` loops that are the floors tulip's backends
//! are measured against.
//!
//! Everything here panics on error: a bench that cannot set up its fds has
//! nothing meaningful to measure.

use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tulip_selectors::mechanism::cvt;
use tulip_selectors::{Events, Selector};

pub mod raw;

/// One way of waiting for readiness: a tulip selector, a raw syscall, or a
/// peer crate. Every implementation registers fds with their own number as
/// data (token, key) and looks at each result the same way.
pub trait Wait {
    /// One wait (`None` blocks, `Some(ZERO)` polls): the sum of the ready
    /// fds, so that a step's result can be checked and is never optimised out.
    fn wait_ready(&mut self, timeout: Option<Duration>) -> usize;
}

/// A tulip selector (static dispatch, no `Box`) with each fd's number as its data.
#[derive(Debug)]
pub struct Tulip<S>(pub S);

impl<S: Selector<usize>> Tulip<S> {
    /// `selector` with every fd of `fds` registered for reading.
    ///
    /// # Panics
    ///
    /// If a registration fails.
    pub fn readers(mut selector: S, fds: &[RawFd]) -> Tulip<S> {
        for &fd in fds {
            selector.register(fd, Events::READ, fd as usize).expect("register");
        }
        Tulip(selector)
    }
}

impl<S: Selector<usize>> Wait for Tulip<S> {
    #[inline]
    fn wait_ready(&mut self, timeout: Option<Duration>) -> usize {
        self.0.select(timeout).expect("select").map(|(key, _events)| key.data).sum()
    }
}

/// The 1-of-N step: write a byte to `writer`, wait (blocking), read the byte
/// from `reader`. Returns the sum of the ready fds: `reader`.
#[inline]
pub fn one_ready_step(waiter: &mut impl Wait, writer: RawFd, reader: RawFd) -> usize {
    write_byte(writer);
    let ready = waiter.wait_ready(None);
    read_byte(reader);
    ready
}

/// The idle step: one zero-timeout wait with nothing ready. Returns 0.
#[inline]
pub fn idle_step(waiter: &mut impl Wait) -> usize {
    waiter.wait_ready(Some(Duration::ZERO))
}

/// One ping-pong round trip between the ends `a` and `b` of a socketpair,
/// both registered in `waiter`: write on A, wait, read on B, write on B,
/// wait, read on A. Returns `a + b`.
#[inline]
pub fn ping_pong_step(waiter: &mut impl Wait, a: RawFd, b: RawFd) -> usize {
    write_byte(a);
    let first = waiter.wait_ready(None);
    read_byte(b);
    write_byte(b);
    let second = waiter.wait_ready(None);
    read_byte(a);
    first + second
}

/// Register `fd` for reading and unregister it. Returns `fd`.
#[inline]
pub fn register_unregister_step<S: Selector<usize>>(selector: &mut S, fd: RawFd) -> usize {
    selector.register(fd, Events::READ, fd as usize).expect("register");
    selector.unregister(fd).expect("unregister").data
}

/// Modify a registered `fd` to WRITE and back to READ. Returns `fd`.
#[inline]
pub fn modify_step<S: Selector<usize>>(selector: &mut S, fd: RawFd) -> usize {
    selector.modify(fd, Events::WRITE, fd as usize).expect("modify");
    selector.modify(fd, Events::READ, fd as usize).expect("modify").data
}

/// The raw floor of [`register_unregister_step`]: `EPOLL_CTL_ADD` + `EPOLL_CTL_DEL`.
#[inline]
pub fn raw_register_unregister_step(epoll: &raw::RawEpoll, fd: RawFd) -> usize {
    epoll.add(fd, libc::EPOLLIN);
    epoll.delete(fd);
    fd as usize
}

/// The raw floor of [`modify_step`]: two `EPOLL_CTL_MOD`s.
#[inline]
pub fn raw_modify_step(epoll: &raw::RawEpoll, fd: RawFd) -> usize {
    epoll.modify(fd, libc::EPOLLOUT);
    epoll.modify(fd, libc::EPOLLIN);
    fd as usize
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new
/// soft limit, so that a bench can hold 10,000 idle fds.
///
/// # Panics
///
/// If `getrlimit` or `setrlimit` fails.
pub fn raise_fd_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the call.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }).expect("getrlimit");
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the
        // hard limit needs no privilege.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }).expect("setrlimit");
    }
    limit.rlim_cur
}

/// Starts a thread that sleeps for the rest of the process, and returns at once.
///
/// Criterion starts a thread pool for its statistics after the first
/// benchmark of a run. From then on the process has several threads sharing
/// one fd table, and Linux takes its slower path in every syscall that
/// looks up an fd (reference-counting the file instead of borrowing it):
/// about 50 ns more per `epoll_wait`/`poll`/`read`/`write` on the machine in
/// docs/benchmarks.md. Calling this first puts every benchmark of the run in
/// that same multi-threaded state, so the first one is not measured under
/// different conditions from the rest.
pub fn share_fd_table() {
    std::thread::spawn(|| loop {
        std::thread::park();
    });
}

/// A new non-blocking, close-on-exec eventfd with a zero counter: one fd that
/// is never readable (nobody writes to it), the cheapest idle fd there is.
///
/// # Panics
///
/// If the kernel refuses (`EMFILE` when the fd limit is reached).
pub fn eventfd() -> OwnedFd {
    // SAFETY: eventfd takes only an initial value and flags.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
        .expect("eventfd (is RLIMIT_NOFILE high enough?)");
    // SAFETY: `fd` was just created and nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A connected pair of non-blocking, close-on-exec UNIX stream sockets.
///
/// # Panics
///
/// If the kernel refuses.
pub fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` has room for the two fds socketpair writes.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) }).expect("socketpair");
    // SAFETY: both fds were just created and nobody else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Writes one byte to `fd`, which must have room for it.
///
/// # Panics
///
/// If the write fails or is short.
#[inline]
pub fn write_byte(fd: RawFd) {
    let byte = 1u8;
    // SAFETY: the buffer is one valid byte.
    let written = cvt(unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) });
    assert_eq!(written.ok(), Some(1), "write of one byte to fd {fd}");
}

/// Reads one byte from `fd`, which must have one to read.
///
/// # Panics
///
/// If the read fails or finds nothing.
#[inline]
pub fn read_byte(fd: RawFd) {
    let mut byte = 0u8;
    // SAFETY: the buffer is one valid, writable byte.
    let read = cvt(unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) });
    assert_eq!(read.ok(), Some(1), "read of one byte from fd {fd}");
}

/// The "one ready fd among N registered" workload: `N - 1` idle eventfds and
/// a socketpair whose `reader` end is the N-th registered fd. Writing a byte
/// to `writer` makes exactly `reader` ready.
///
/// The idle fds are made first, so `reader` is the highest fd: the worst
/// case for `select`'s and `poll`'s linear scans, and the same case for
/// every implementation.
#[derive(Debug)]
pub struct OneReady {
    idle: Vec<OwnedFd>,
    /// The unregistered end; write here to make `reader` ready.
    pub writer: OwnedFd,
    /// The registered end that becomes ready.
    pub reader: OwnedFd,
}

impl OneReady {
    /// `n - 1` idle fds and one socketpair (`n ≥ 1`).
    ///
    /// # Panics
    ///
    /// If `n` is 0 or the fds cannot be made.
    pub fn new(n: usize) -> OneReady {
        assert!(n >= 1, "one ready fd needs n >= 1");
        let idle = (1..n).map(|_| eventfd()).collect();
        let (writer, reader) = socketpair();
        OneReady { idle, writer, reader }
    }

    /// The `n` fds to register: every idle fd, then `reader`.
    pub fn registered(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.idle.iter().map(AsRawFd::as_raw_fd).collect();
        fds.push(self.reader.as_raw_fd());
        fds
    }

    /// The highest registered fd.
    pub fn max_fd(&self) -> RawFd {
        self.reader.as_raw_fd().max(self.idle.iter().map(AsRawFd::as_raw_fd).max().unwrap_or(-1))
    }
}

/// `n` idle eventfds, for the "nothing ready" workload.
pub fn idle_fds(n: usize) -> Vec<OwnedFd> {
    (0..n).map(|_| eventfd()).collect()
}
