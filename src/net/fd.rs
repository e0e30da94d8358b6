//! Small file-descriptor helpers: close-on-exec non-blocking pipes, and
//! reads/writes that report "would block" as `Ok(None)`.

use std::io;
use std::os::unix::io::{FromRawFd, OwnedFd, RawFd};

use crate::selectors::sys::cvt;

/// A pipe whose both ends are non-blocking and close-on-exec: `(read, write)`.
pub(crate) fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd",
                     target_os = "netbsd", target_os = "openbsd", target_os = "dragonfly"))] {
            // SAFETY: `fds` has room for the two fds pipe2 writes.
            cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
            // SAFETY: both fds were just created and are owned by nobody else.
            Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
        } else {
            // SAFETY: `fds` has room for the two fds pipe writes.
            cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
            // SAFETY: both fds were just created and are owned by nobody else.
            let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            for fd in fds {
                // SAFETY: fcntl with integer arguments on fds we own.
                cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
                set_nonblocking(fd)?;
            }
            Ok(ends)
        }
    }
}

/// Puts `fd` in non-blocking mode.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFL) takes no pointer argument.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: fcntl(F_SETFL) with an integer argument.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// Reads into `buf`; `Ok(None)` if the fd has nothing now (`EAGAIN`).
pub(crate) fn read_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        match cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }) {
            Ok(n) => return Ok(Some(n as usize)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}

/// Writes `buf`; `Ok(None)` if the fd cannot take it now (`EAGAIN`).
pub(crate) fn write_nonblocking(fd: RawFd, buf: &[u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
        match cvt(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }) {
            Ok(n) => return Ok(Some(n as usize)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}
