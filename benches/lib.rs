//! Shared helpers for the criterion benches in this directory: raising the fd
//! limit, making idle and ready file descriptors, one-byte I/O, and the raw
//! `epoll_wait`/`poll`/`select` loops that are the floors tulip's backends
//! are measured against.
//!
//! Everything here panics on error: a bench that cannot set up its fds has
//! nothing meaningful to measure.

use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tulip_selectors::sys::cvt;

pub mod raw;

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
