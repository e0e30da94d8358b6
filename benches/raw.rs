//! The floors: each readiness syscall driven directly, with the least work a
//! caller can do and still learn which fds are ready. tulip's backends are
//! measured against these, on the same fds and the same workload.
//!
//! Every wait takes a timeout in the kernel's own unit (`-1`/`None` blocks,
//! `0` polls) and calls `on_ready(fd)` for each ready fd, as a selector's
//! caller would look at each result.

use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;
use std::{mem, ptr};

use tulip_selectors::mechanism::cvt;

use crate::Wait;

/// The floors take only the two timeouts the benches use: block or poll.
#[inline]
fn blocks(timeout: Option<Duration>) -> bool {
    match timeout {
        None => true,
        Some(d) if d.is_zero() => false,
        Some(d) => panic!("the raw floors take no timeout but none or zero, not {d:?}"),
    }
}

/// `epoll_create1` + `epoll_ctl` + `epoll_wait`, level-triggered, the fd kept
/// in the event's data.
#[derive(Debug)]
pub struct RawEpoll {
    epoll_fd: OwnedFd,
    buffer: Vec<libc::epoll_event>,
}

impl RawEpoll {
    /// A new epoll fd whose result buffer holds `capacity` events (at least one).
    ///
    /// # Panics
    ///
    /// If `epoll_create1` fails.
    pub fn new(capacity: usize) -> RawEpoll {
        // SAFETY: epoll_create1 takes only flags.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).expect("epoll_create1");
        // SAFETY: `fd` was just created and nobody else owns it.
        let epoll_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let buffer = vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)];
        RawEpoll { epoll_fd, buffer }
    }

    #[inline]
    fn control(&self, op: libc::c_int, fd: RawFd, events: u32) {
        let mut event = libc::epoll_event { events, u64: fd as u64 };
        // SAFETY: `event` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.epoll_fd.as_raw_fd(), op, fd, &mut event) }).expect("epoll_ctl");
    }

    /// A new epoll fd watching every fd of `fds` for `EPOLLIN`.
    pub fn readers(fds: &[RawFd]) -> RawEpoll {
        let epoll = RawEpoll::new(fds.len());
        fds.iter().for_each(|&fd| epoll.add(fd, libc::EPOLLIN));
        epoll
    }

    /// `EPOLL_CTL_ADD` for `events` (`EPOLLIN`, `EPOLLOUT`, …).
    #[inline]
    pub fn add(&self, fd: RawFd, events: libc::c_int) {
        self.control(libc::EPOLL_CTL_ADD, fd, events as u32);
    }

    /// `EPOLL_CTL_MOD` to `events`.
    #[inline]
    pub fn modify(&self, fd: RawFd, events: libc::c_int) {
        self.control(libc::EPOLL_CTL_MOD, fd, events as u32);
    }

    /// `EPOLL_CTL_DEL`.
    #[inline]
    pub fn delete(&self, fd: RawFd) {
        self.control(libc::EPOLL_CTL_DEL, fd, 0);
    }

    /// One `epoll_wait` of at most `timeout_ms` (`-1` blocks); returns how
    /// many fds were ready.
    #[inline]
    pub fn wait(&mut self, timeout_ms: libc::c_int, mut on_ready: impl FnMut(RawFd)) -> usize {
        // SAFETY: the buffer holds `buffer.len()` initialised events and the
        // kernel writes at most that many.
        let count = cvt(unsafe {
            libc::epoll_wait(
                self.epoll_fd.as_raw_fd(),
                self.buffer.as_mut_ptr(),
                self.buffer.len() as libc::c_int,
                timeout_ms,
            )
        })
        .expect("epoll_wait") as usize;
        for event in &self.buffer[..count] {
            on_ready(event.u64 as RawFd);
        }
        count
    }
}

/// `poll` over a `pollfd` array built once, scanned for `revents` after each call.
#[derive(Debug)]
pub struct RawPoll {
    fds: Vec<libc::pollfd>,
}

impl RawPoll {
    /// The array watching every fd of `fds` for `POLLIN`.
    pub fn readers(fds: &[RawFd]) -> RawPoll {
        RawPoll { fds: fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect() }
    }

    /// One `poll` of at most `timeout_ms` (`-1` blocks); returns how many fds
    /// were ready. The scan stops once it has seen that many.
    #[inline]
    pub fn wait(&mut self, timeout_ms: libc::c_int, mut on_ready: impl FnMut(RawFd)) -> usize {
        // SAFETY: `fds` points at `fds.len()` initialised pollfds the kernel may update.
        let count =
            cvt(unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, timeout_ms) })
                .expect("poll") as usize;
        let mut left = count;
        for entry in &self.fds {
            if left == 0 {
                break;
            }
            if entry.revents != 0 {
                left -= 1;
                on_ready(entry.fd);
            }
        }
        count
    }
}

/// `select` with a master read set copied before each call and an
/// `FD_ISSET` scan up to the highest fd.
pub struct RawSelect {
    readers: libc::fd_set,
    max_fd: RawFd,
}

impl RawSelect {
    /// The read set of every fd of `fds`.
    ///
    /// # Panics
    ///
    /// If an fd is negative or not below `FD_SETSIZE`.
    pub fn readers(fds: &[RawFd]) -> RawSelect {
        // SAFETY: an all-zero fd_set is a valid empty set.
        let mut readers: libc::fd_set = unsafe { mem::zeroed() };
        let mut max_fd = -1;
        for &fd in fds {
            assert!((0..libc::FD_SETSIZE as RawFd).contains(&fd), "fd {fd} does not fit an fd_set");
            // SAFETY: the set is valid and 0 <= fd < FD_SETSIZE.
            unsafe { libc::FD_SET(fd, &mut readers) };
            max_fd = max_fd.max(fd);
        }
        RawSelect { readers, max_fd }
    }

    /// One `select`, blocking (`poll_only == false`) or with a zero timeout;
    /// returns how many fds were ready. The scan stops once it has seen that many.
    #[inline]
    pub fn wait(&mut self, poll_only: bool, mut on_ready: impl FnMut(RawFd)) -> usize {
        let mut readable = self.readers;
        let mut zero = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let timeout = if poll_only { &mut zero as *mut libc::timeval } else { ptr::null_mut() };
        // SAFETY: `readable` is a valid set we own, `max_fd + 1` bounds the
        // fds in it, and `timeout` is null or points at a live timeval.
        let count = cvt(unsafe {
            libc::select(self.max_fd + 1, &mut readable, ptr::null_mut(), ptr::null_mut(), timeout)
        })
        .expect("select") as usize;
        let mut left = count;
        let mut fd = 0;
        while left > 0 && fd <= self.max_fd {
            // SAFETY: `readable` is a valid set and 0 <= fd <= max_fd < FD_SETSIZE.
            if unsafe { libc::FD_ISSET(fd, &readable) } {
                left -= 1;
                on_ready(fd);
            }
            fd += 1;
        }
        count
    }
}

impl Wait for RawEpoll {
    #[inline]
    fn wait_ready(&mut self, timeout: Option<Duration>) -> usize {
        let mut sum = 0;
        self.wait(if blocks(timeout) { -1 } else { 0 }, |fd| sum += fd as usize);
        sum
    }
}

impl Wait for RawPoll {
    #[inline]
    fn wait_ready(&mut self, timeout: Option<Duration>) -> usize {
        let mut sum = 0;
        self.wait(if blocks(timeout) { -1 } else { 0 }, |fd| sum += fd as usize);
        sum
    }
}

impl Wait for RawSelect {
    #[inline]
    fn wait_ready(&mut self, timeout: Option<Duration>) -> usize {
        let mut sum = 0;
        self.wait(!blocks(timeout), |fd| sum += fd as usize);
        sum
    }
}

impl std::fmt::Debug for RawSelect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSelect").field("max_fd", &self.max_fd).finish_non_exhaustive()
    }
}
