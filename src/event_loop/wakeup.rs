//! The fd another thread writes to wake a loop blocked in `select`:
//! an `eventfd` where the kernel has one, a pipe elsewhere.

use std::io;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};

#[derive(Debug)]
pub(crate) struct Wakeup {
    /// The end the loop registers for reading (the eventfd itself, or the
    /// pipe's read end).
    read: OwnedFd,
    #[cfg(not(tulip_eventfd))]
    write: OwnedFd,
}

impl Wakeup {
    #[cfg(tulip_eventfd)]
    pub(crate) fn new() -> io::Result<Self> {
        use std::os::unix::io::FromRawFd;
        // SAFETY: eventfd takes only an initial value and flags.
        let fd =
            crate::selectors::sys::cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Wakeup { read: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    #[cfg(not(tulip_eventfd))]
    pub(crate) fn new() -> io::Result<Self> {
        let (read, write) = crate::net::fd::nonblocking_pipe()?;
        Ok(Wakeup { read, write })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Makes `fd()` readable. A full pipe or a saturated eventfd already is,
    /// so "would block" is success.
    pub(crate) fn wake(&self) -> io::Result<()> {
        #[cfg(tulip_eventfd)]
        let (fd, bytes) = (self.read.as_raw_fd(), 1u64.to_ne_bytes());
        #[cfg(not(tulip_eventfd))]
        let (fd, bytes) = (self.write.as_raw_fd(), [0u8]);
        crate::net::fd::write_nonblocking(fd, &bytes).map(drop)
    }

    /// Consumes every pending wake-up so `fd()` stops being readable.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(Some(n)) = crate::net::fd::read_nonblocking(self.fd(), &mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }
}
