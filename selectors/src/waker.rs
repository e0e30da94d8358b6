//! Waking a blocked `select` from another thread (mio's `Waker`, polling's
//! `notify`): an fd that any selector can watch for reading, made readable
//! by [`Waker::wake`]. An `eventfd(2)` where the kernel has one (Linux,
//! Android), a non-blocking pipe elsewhere.
//!
//! A burst of wakes costs one syscall: a flag remembers that the fd is
//! already readable, until the owner [`drain`](Waker::drain)s it.

use std::fmt;
use std::io;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::fork::fork_generation;
use crate::syscall as sys;

/// An fd to register for [`READ`](crate::Events::READ), which
/// [`wake`](Self::wake) makes readable from any thread. `Send + Sync`: share
/// it in an `Arc`.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tulip_selectors::{DefaultSelector, Events, Selector, Waker};
///
/// let mut selector = DefaultSelector::new()?;
/// let waker = Arc::new(Waker::new()?);
/// selector.register(waker.fd(), Events::READ, "waker")?;
/// let remote = Arc::clone(&waker);
/// std::thread::spawn(move || remote.wake().unwrap());
/// let woken: Vec<_> = selector.select(Some(Duration::from_secs(10)))?.map(|(key, _)| key.data).collect();
/// assert_eq!(woken, ["waker"]);
/// waker.drain(); // not readable any more
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Waker {
    /// The end to watch: the eventfd itself, or the pipe's read end.
    read: OwnedFd,
    /// The pipe's write end; `None` for an eventfd, which is both ends.
    write: Option<OwnedFd>,
    /// A wake was written and not drained yet: further wakes need no syscall.
    pending: AtomicBool,
    /// The fork generation of its fds (see [`after_fork`](Self::after_fork)).
    born: AtomicU64,
}

impl Waker {
    /// A waker over an `eventfd` where the kernel has one, else over a pipe.
    /// Both ends are close-on-exec and non-blocking.
    ///
    /// # Errors
    ///
    /// The error of creating the fd(s), e.g. `EMFILE`.
    pub fn new() -> io::Result<Waker> {
        cfg_if::cfg_if! {
            if #[cfg(tulip_eventfd)] {
                use std::os::unix::io::FromRawFd;
                // SAFETY: eventfd takes only an initial value and flags.
                let fd = sys::cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
                // SAFETY: `fd` was just created and is owned by nobody else.
                let read = unsafe { OwnedFd::from_raw_fd(fd) };
                Ok(Waker { read, write: None, pending: AtomicBool::new(false), born: AtomicU64::new(fork_generation()) })
            } else {
                Waker::with_pipe()
            }
        }
    }

    /// A waker over a pipe, whatever the target: what [`new`](Self::new)
    /// makes where there is no `eventfd`, so it can be run (and taught) on
    /// Linux too.
    ///
    /// # Errors
    ///
    /// The error of creating the pipe, e.g. `EMFILE`.
    pub fn with_pipe() -> io::Result<Waker> {
        let (read, write) = sys::nonblocking_pipe()?;
        Ok(Waker {
            read,
            write: Some(write),
            pending: AtomicBool::new(false),
            born: AtomicU64::new(fork_generation()),
        })
    }

    /// The fd to register for reading.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// `true` if this waker is a pipe (two fds), `false` for an eventfd.
    pub fn is_pipe(&self) -> bool {
        self.write.is_some()
    }

    /// Makes [`fd`](Self::fd) readable, from any thread. Only the first
    /// wake after a [`drain`](Self::drain) makes a syscall.
    ///
    /// # Errors
    ///
    /// The error of `write`; a full pipe or a saturated eventfd is already
    /// readable, so "would block" is success.
    pub fn wake(&self) -> io::Result<()> {
        if self.pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let written = match &self.write {
            Some(write) => sys::write_nonblocking(write.as_raw_fd(), &[1]),
            None => sys::write_nonblocking(self.read.as_raw_fd(), &1u64.to_ne_bytes()),
        };
        if let Err(err) = written {
            self.pending.store(false, Ordering::Release);
            return Err(err);
        }
        Ok(())
    }

    /// Consumes every wake so far, so [`fd`](Self::fd) stops being
    /// readable. Call it when the selector reports the fd readable. A wake
    /// that races with it either is consumed here or leaves the fd readable:
    /// the fd is read first, and the flag cleared after.
    pub fn drain(&self) {
        sys::drain(self.fd(), |_| {});
        self.pending.store(false, Ordering::Release);
    }
}

impl Waker {
    /// In a child process made by `fork()`: gives the waker a fresh eventfd
    /// or pipe under the same fd numbers, so a wake in the child no longer
    /// wakes the parent (the inherited fds name the parent's), and a
    /// selector's key for [`fd`](Self::fd) still fits. A no-op in the
    /// process that made it. Call it before the selector's own
    /// [`after_fork`](crate::Selector::after_fork), which registers the
    /// fd again.
    ///
    /// # Errors
    ///
    /// The error of creating or duplicating the new fds.
    pub fn after_fork(&self) -> io::Result<()> {
        if self.born.load(Ordering::Relaxed) == fork_generation() {
            return Ok(());
        }
        let fresh = if self.is_pipe() { Waker::with_pipe()? } else { Waker::new()? };
        sys::replace_fd(fresh.read, self.read.as_raw_fd())?;
        if let (Some(new), Some(old)) = (fresh.write, &self.write) {
            sys::replace_fd(new, old.as_raw_fd())?;
        }
        self.pending.store(false, Ordering::Release);
        self.born.store(fork_generation(), Ordering::Relaxed);
        Ok(())
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waker")
            .field("fd", &self.fd())
            .field("pipe", &self.is_pipe())
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        let n = sys::cvt(unsafe { libc::poll(&mut pfd, 1, 0) }).unwrap();
        n == 1 && pfd.revents & libc::POLLIN != 0
    }

    fn check(waker: Waker) {
        assert!(!readable(waker.fd()));
        for _ in 0..1000 {
            waker.wake().unwrap();
        }
        assert!(readable(waker.fd()));
        waker.drain();
        assert!(!readable(waker.fd()));
        waker.wake().unwrap();
        assert!(readable(waker.fd()), "a wake after a drain writes again");
        waker.drain();
    }

    #[test]
    fn eventfd_and_pipe_wakers_coalesce_and_drain() {
        check(Waker::new().unwrap());
        let pipe = Waker::with_pipe().unwrap();
        assert!(pipe.is_pipe());
        check(pipe);
    }

    #[test]
    fn the_waker_fds_are_close_on_exec() {
        let waker = Waker::with_pipe().unwrap();
        for fd in [waker.fd(), waker.write.as_ref().unwrap().as_raw_fd()] {
            // SAFETY: fcntl(F_GETFD) takes no pointer.
            let flags = sys::cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0);
        }
    }
}
