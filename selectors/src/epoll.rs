//! `epoll(7)`: the kernel keeps the interest list, so `select` costs O(ready).
//!
//! epoll watches the open *file*, not the fd number, and drops a watch only
//! when the file's last fd closes. So unregister before closing: if an fd is
//! closed while registered and its file stays open elsewhere (a `dup`, a
//! child process), `EPOLL_CTL_DEL` can no longer name it, the kernel keeps
//! reporting it under the old number, `select` wakes early with nothing for
//! it, and a new fd given that number can be reported ready on its behalf.

use std::fmt;
use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::mechanism::{Change, Mechanism, Readiness};
use crate::syscall::cvt;
use crate::timeout::as_millis_rounded_up;
use crate::transcript::flags;
use crate::{Backend, BaseSelector, Events};

/// The `epoll` mechanism: one close-on-exec epoll fd and a reusable event buffer.
pub struct Epoll {
    epoll_fd: OwnedFd,
    /// Always fully initialised; grown to the registration count so one
    /// `epoll_wait` can return every ready fd.
    buffer: Vec<libc::epoll_event>,
}

/// The epoll bits that ask for `events` (level-triggered).
fn interest(events: Events) -> u32 {
    let mut bits = 0;
    if events.contains(Events::READ) {
        bits |= libc::EPOLLIN;
    }
    if events.contains(Events::WRITE) {
        bits |= libc::EPOLLOUT;
    }
    bits as u32
}

/// `EPOLLIN|EPOLLRDHUP`: epoll bits as the manual names them.
fn bit_names(bits: u32) -> String {
    const NAMES: [(libc::c_int, &str); 6] = [
        (libc::EPOLLIN, "EPOLLIN"),
        (libc::EPOLLPRI, "EPOLLPRI"),
        (libc::EPOLLOUT, "EPOLLOUT"),
        (libc::EPOLLERR, "EPOLLERR"),
        (libc::EPOLLHUP, "EPOLLHUP"),
        (libc::EPOLLRDHUP, "EPOLLRDHUP"),
    ];
    flags(bits as libc::c_int, &NAMES)
}

/// What the epoll bits of one returned event mean.
fn readiness(bits: u32) -> Readiness {
    let has = |flags: libc::c_int| bits & flags as u32 != 0;
    Readiness {
        readable: has(libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP),
        writable: has(libc::EPOLLOUT),
        error: has(libc::EPOLLERR | libc::EPOLLHUP),
    }
}

impl Epoll {
    #[inline]
    fn control(&self, op: libc::c_int, fd: RawFd, events: Events) -> io::Result<()> {
        // The fd travels in the event's data so `wait` can find its key.
        let mut event = libc::epoll_event { events: interest(events), u64: fd as u64 };
        // SAFETY: `event` is a valid epoll_event for the duration of the call
        // (EPOLL_CTL_DEL ignores it, but kernels before 2.6.9 need it non-null).
        cvt(unsafe { libc::epoll_ctl(self.epoll_fd.as_raw_fd(), op, fd, &mut event) })?;
        Ok(())
    }
}

impl Mechanism for Epoll {
    const BACKEND: Backend = Backend::Epoll;

    fn open() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes only flags and returns a new fd or -1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        let epoll_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { epoll_fd, buffer: Vec::new() })
    }

    #[inline]
    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, events)
    }

    #[inline]
    fn modify(&mut self, fd: RawFd, _old: Events, new: Events) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, new)
    }

    #[inline]
    fn remove(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_DEL, fd, events)
    }

    // Always inline: in `select_each` the caller's per-fd closure then runs
    // inside this loop, with no call per select or per ready fd.
    #[inline(always)]
    fn wait<F: FnMut(RawFd, Readiness)>(
        &mut self,
        timeout: Option<Duration>,
        registered: usize,
        mut on_ready: F,
    ) -> io::Result<usize> {
        // epoll_wait needs room for at least one event, even to just sleep.
        let wanted = registered.clamp(1, libc::c_int::MAX as usize);
        if self.buffer.len() < wanted {
            self.buffer.resize(wanted, libc::epoll_event { events: 0, u64: 0 });
        }
        // SAFETY: the buffer holds `buffer.len()` initialised events and the
        // kernel writes at most that many.
        let count = cvt(unsafe {
            libc::epoll_wait(
                self.epoll_fd.as_raw_fd(),
                self.buffer.as_mut_ptr(),
                self.buffer.len() as libc::c_int,
                as_millis_rounded_up(timeout),
            )
        })? as usize;
        for event in &self.buffer[..count] {
            // Copy the fields out: on x86-64 the struct is packed.
            let (bits, fd) = (event.events, event.u64 as RawFd);
            on_ready(fd, readiness(bits));
        }
        Ok(count)
    }

    fn describe_open(&self) -> Option<(&'static str, RawFd)> {
        Some(("epoll_create1(EPOLL_CLOEXEC)", self.epoll_fd.as_raw_fd()))
    }

    fn describe_change(&self, change: Change) -> Vec<String> {
        let epfd = self.epoll_fd.as_raw_fd();
        let call = match change {
            Change::Add(fd, events) => {
                format!("epoll_ctl({epfd}, ADD, fd={fd}, {})", bit_names(interest(events)))
            }
            Change::Modify(fd, _, new) => {
                format!("epoll_ctl({epfd}, MOD, fd={fd}, {})", bit_names(interest(new)))
            }
            Change::Remove(fd, _) => format!("epoll_ctl({epfd}, DEL, fd={fd})"),
        };
        vec![call]
    }

    fn describe_wait(&self, timeout: Option<Duration>, reported: &[(RawFd, Readiness)]) -> (String, String) {
        let call = format!(
            "epoll_wait({}, max={}, timeout={})",
            self.epoll_fd.as_raw_fd(),
            self.buffer.len(),
            as_millis_rounded_up(timeout)
        );
        let events: Vec<String> = self.buffer[..reported.len().min(self.buffer.len())]
            .iter()
            .map(|event| {
                let (bits, fd) = (event.events, event.u64 as RawFd);
                format!("fd {fd} {}", bit_names(bits))
            })
            .collect();
        (call, format!("[{}]", events.join(", ")))
    }

    fn close(self) -> io::Result<()> {
        let fd = std::os::unix::io::IntoRawFd::into_raw_fd(self.epoll_fd);
        // SAFETY: we owned `fd` and give up ownership here; nobody else closes it.
        cvt(unsafe { libc::close(fd) })?;
        Ok(())
    }
}

// Written by hand: `libc::epoll_event` implements `Debug` only from libc
// 0.2.176 on, and we promise to build with 0.2.155.
impl fmt::Debug for Epoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Epoll").field("epoll_fd", &self.epoll_fd).field("buffer", &self.buffer.len()).finish()
    }
}

impl<T> AsRawFd for BaseSelector<T, Epoll> {
    /// The epoll fd, for nesting this selector inside another.
    fn as_raw_fd(&self) -> RawFd {
        self.mechanism.epoll_fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangup_and_error_are_errors() {
        assert!(readiness(libc::EPOLLHUP as u32).error);
        assert!(readiness(libc::EPOLLERR as u32).error);
        assert!(!readiness(libc::EPOLLIN as u32).error);
    }

    #[test]
    fn bits_translate_both_ways() {
        let both = interest(Events::READ | Events::WRITE);
        let seen = readiness(both);
        assert!(seen.readable && seen.writable);
        assert_eq!(interest(Events::READ), libc::EPOLLIN as u32);
        assert!(readiness(libc::EPOLLRDHUP as u32).readable);
    }
}
