//! The one place that turns a raw syscall's `-1` return into an [`io::Error`],
//! and the two retry rules every caller needs: `EINTR` means "call again",
//! `EAGAIN` on a non-blocking fd means "nothing now".
//!
//! Every `libc` call in tulip (both crates) goes through [`cvt`] or one of
//! the helpers here, so no other code reads `errno`: callers read like
//! ordinary fallible Rust.

use std::io;
use std::os::unix::io::{FromRawFd, OwnedFd, RawFd};

/// Integer types a syscall can return, with `-1` meaning "failed, see errno".
pub trait SyscallReturn: Copy + PartialEq {
    /// The failure sentinel, `-1` of this type.
    const FAILED: Self;
}

macro_rules! syscall_return {
    ($($t:ty)*) => { $(impl SyscallReturn for $t { const FAILED: Self = -1; })* };
}
syscall_return! { i8 i16 i32 i64 isize }

/// Turns a syscall's return value into `Ok(value)`, or `Err` with the
/// current `errno` when the value is `-1`.
///
/// # Errors
///
/// Returns [`io::Error::last_os_error`] when `ret` is `-1`.
///
/// # Example
///
/// ```
/// use tulip_selectors::mechanism::cvt;
/// // SAFETY: close(2) on an fd that is certainly not open only sets errno.
/// let err = cvt(unsafe { libc::close(-1) }).unwrap_err();
/// assert_eq!(err.raw_os_error(), Some(libc::EBADF));
/// ```
#[inline]
pub fn cvt<R: SyscallReturn>(ret: R) -> io::Result<R> {
    if ret == R::FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `true` when `err` is `EINTR`: the call was interrupted by a signal handler.
#[inline]
pub fn is_interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

/// Makes the syscall `call` until a signal does not interrupt it (PEP 475),
/// and reports "would block" (`EAGAIN`) as `Ok(None)`: the shape of every
/// read, write, send and recv on a non-blocking fd.
///
/// # Errors
///
/// The syscall's error, other than `EINTR` and `EAGAIN`.
///
/// ```
/// use tulip_selectors::mechanism::{nonblocking, nonblocking_pipe};
/// use std::os::unix::io::AsRawFd;
/// let (read, _write) = nonblocking_pipe()?;
/// let mut buf = [0u8; 8];
/// // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
/// let got = nonblocking(|| unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
/// assert_eq!(got, None, "an empty pipe would block");
/// # Ok::<(), std::io::Error>(())
/// ```
#[inline]
pub fn nonblocking<R: SyscallReturn>(mut call: impl FnMut() -> R) -> io::Result<Option<R>> {
    loop {
        match cvt(call()) {
            Ok(value) => return Ok(Some(value)),
            Err(err) if is_interrupted(&err) => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

/// A pipe whose two ends are non-blocking and close-on-exec: `(read, write)`.
///
/// # Errors
///
/// The error of `pipe2` (or `pipe` and `fcntl`), e.g. `EMFILE`.
pub fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    cfg_if::cfg_if! {
        if #[cfg(tulip_pipe2)] {
            // SAFETY: `fds` has room for the two fds pipe2 writes.
            cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
            // SAFETY: both fds were just created and are owned by nobody else.
            let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
            // SAFETY: as above.
            let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
            Ok((read, write))
        } else {
            // SAFETY: `fds` has room for the two fds pipe writes.
            cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
            // SAFETY: both fds were just created and are owned by nobody else.
            let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
            // SAFETY: as above.
            let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
            for fd in fds {
                set_cloexec(fd)?;
                set_nonblocking(fd)?;
            }
            Ok((read, write))
        }
    }
}

/// Marks `fd` close-on-exec (for targets whose syscalls take no `*_CLOEXEC` flag).
///
/// # Errors
///
/// The error of `fcntl`, e.g. `EBADF`.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_SETFD) with an integer argument.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Puts `fd` in non-blocking mode.
///
/// # Errors
///
/// The error of `fcntl`, e.g. `EBADF`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFL) takes no pointer argument.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: fcntl(F_SETFL) with an integer argument.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// Reads into `buf` from a non-blocking fd; `Ok(None)` if it has nothing now.
///
/// # Errors
///
/// The error of `read`, other than `EINTR` and `EAGAIN`.
pub fn read_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let got = nonblocking(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(got.map(|n| n as usize))
}

/// Writes `buf` to a non-blocking fd; `Ok(None)` if it cannot take it now.
///
/// # Errors
///
/// The error of `write`, other than `EINTR` and `EAGAIN`.
pub fn write_nonblocking(fd: RawFd, buf: &[u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
    let sent = nonblocking(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })?;
    Ok(sent.map(|n| n as usize))
}

/// Reads a non-blocking fd until it has nothing left (a wake-up fd, a
/// signal pipe), handing each chunk to `on_bytes`.
pub fn drain(fd: RawFd, mut on_bytes: impl FnMut(&[u8])) {
    let mut buf = [0u8; 64];
    while let Ok(Some(n)) = read_nonblocking(fd, &mut buf) {
        on_bytes(&buf[..n]);
        if n < buf.len() {
            break;
        }
    }
}

/// Makes the fd number `old` refer to the file of `new` (close-on-exec),
/// closing `new`'s own number: after a `fork`, a fresh kernel object can
/// take the place of an inherited one under the same number, so everything
/// that knows the number (a selector's key, a signal handler) still works.
///
/// # Errors
///
/// The error of `dup3` (or `dup2` and `fcntl`), e.g. `EBADF`.
pub fn replace_fd(new: OwnedFd, old: RawFd) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    cfg_if::cfg_if! {
        if #[cfg(tulip_dup3)] {
            // SAFETY: dup3 takes two fd numbers and flags; `new` is open.
            cvt(unsafe { libc::dup3(new.as_raw_fd(), old, libc::O_CLOEXEC) })?;
        } else {
            // SAFETY: dup2 takes two fd numbers; `new` is open.
            cvt(unsafe { libc::dup2(new.as_raw_fd(), old) })?;
            set_cloexec(old)?;
        }
    }
    Ok(())
}
