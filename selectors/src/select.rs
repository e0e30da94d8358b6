//! `select(2)`: the oldest mechanism. The master `fd_set`s and the highest fd
//! are kept between calls; each `select` copies them (the kernel overwrites
//! its arguments) and scans the result up to the highest fd.

use std::io;
use std::os::unix::io::RawFd;
use std::time::Duration;
use std::{fmt, mem, ptr};

use crate::sys::cvt;
use crate::timeout::clamped;
use crate::{Backend, Events, Mechanism, Readiness};

/// The `select` mechanism: master read and write sets and the highest fd in them.
pub struct Select {
    readers: libc::fd_set,
    writers: libc::fd_set,
    /// The highest fd in either set, or -1 when both are empty.
    max_fd: RawFd,
}

fn empty_set() -> libc::fd_set {
    // SAFETY: an all-zero fd_set is a valid, empty set (it is what FD_ZERO writes).
    unsafe { mem::zeroed() }
}

fn contains(set: &libc::fd_set, fd: RawFd) -> bool {
    // SAFETY: `set` is a valid fd_set and callers keep 0 <= fd < FD_SETSIZE.
    unsafe { libc::FD_ISSET(fd, set) }
}

/// `timeout` as a `timeval`, rounded up to the next microsecond.
fn as_timeval(timeout: Duration) -> libc::timeval {
    let timeout = clamped(timeout);
    let mut seconds = timeout.as_secs();
    let mut micros = timeout.subsec_nanos().div_ceil(1_000);
    if micros == 1_000_000 {
        seconds += 1;
        micros = 0;
    }
    libc::timeval { tv_sec: seconds as libc::time_t, tv_usec: micros as libc::suseconds_t }
}

impl Select {
    fn set(&mut self, fd: RawFd, events: Events) {
        if events.contains(Events::READ) {
            // SAFETY: the set is valid and check_fd kept 0 <= fd < FD_SETSIZE.
            unsafe { libc::FD_SET(fd, &mut self.readers) };
        }
        if events.contains(Events::WRITE) {
            // SAFETY: as above.
            unsafe { libc::FD_SET(fd, &mut self.writers) };
        }
    }

    fn clear(&mut self, fd: RawFd) {
        // SAFETY: the set is valid and check_fd kept 0 <= fd < FD_SETSIZE.
        unsafe { libc::FD_CLR(fd, &mut self.readers) };
        // SAFETY: as above.
        unsafe { libc::FD_CLR(fd, &mut self.writers) };
    }
}

impl Mechanism for Select {
    const BACKEND: Backend = Backend::Select;

    fn open() -> io::Result<Self> {
        Ok(Select { readers: empty_set(), writers: empty_set(), max_fd: -1 })
    }

    fn check_fd(fd: RawFd) -> io::Result<()> {
        if fd >= libc::FD_SETSIZE as RawFd {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is too large for select(): FD_SETSIZE is {}", libc::FD_SETSIZE),
            ));
        }
        Ok(())
    }

    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        self.set(fd, events);
        self.max_fd = self.max_fd.max(fd);
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, _old: Events, new: Events) -> io::Result<()> {
        self.clear(fd);
        self.set(fd, new);
        Ok(())
    }

    fn remove(&mut self, fd: RawFd, _events: Events) -> io::Result<()> {
        self.clear(fd);
        while self.max_fd >= 0
            && !contains(&self.readers, self.max_fd)
            && !contains(&self.writers, self.max_fd)
        {
            self.max_fd -= 1;
        }
        Ok(())
    }

    fn wait<F: FnMut(RawFd, Readiness)>(
        &mut self,
        timeout: Option<Duration>,
        _registered: usize,
        mut on_ready: F,
    ) -> io::Result<usize> {
        let (mut readable, mut writable) = (self.readers, self.writers);
        let mut timeval = timeout.map(as_timeval);
        let timeval_ptr = timeval.as_mut().map_or(ptr::null_mut(), |t| t as *mut libc::timeval);
        // SAFETY: the sets are valid copies we own, `max_fd + 1` bounds the fds
        // in them, and `timeval_ptr` is null or points at a live timeval.
        let bits = cvt(unsafe {
            libc::select(self.max_fd + 1, &mut readable, &mut writable, ptr::null_mut(), timeval_ptr)
        })? as usize;
        // `bits` counts set bits over both sets: stop scanning once all are found.
        let (mut left, mut fds) = (bits, 0);
        let mut fd = 0;
        while left > 0 && fd <= self.max_fd {
            let (r, w) = (contains(&readable, fd), contains(&writable, fd));
            if r || w {
                left = left.saturating_sub(usize::from(r) + usize::from(w));
                fds += 1;
                on_ready(fd, Readiness { readable: r, writable: w, error: false });
            }
            fd += 1;
        }
        Ok(fds)
    }

    fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select").field("max_fd", &self.max_fd).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeval_rounds_up_to_the_microsecond() {
        let t = as_timeval(Duration::from_nanos(1));
        assert_eq!((t.tv_sec, t.tv_usec), (0, 1));
        let t = as_timeval(Duration::new(1, 999_999_001));
        assert_eq!((t.tv_sec, t.tv_usec), (2, 0));
        let t = as_timeval(Duration::MAX);
        assert_eq!(t.tv_sec as u64, crate::timeout::LONGEST_WAIT.as_secs());
    }

    #[test]
    fn max_fd_follows_removals() {
        let mut select = Select::open().unwrap();
        select.add(3, Events::READ).unwrap();
        select.add(9, Events::WRITE).unwrap();
        assert_eq!(select.max_fd, 9);
        select.remove(9, Events::WRITE).unwrap();
        assert_eq!(select.max_fd, 3);
        select.remove(3, Events::READ).unwrap();
        assert_eq!(select.max_fd, -1);
    }

    #[test]
    fn fd_setsize_is_the_limit() {
        assert!(Select::check_fd(libc::FD_SETSIZE as RawFd - 1).is_ok());
        let err = Select::check_fd(libc::FD_SETSIZE as RawFd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("FD_SETSIZE"));
    }
}
