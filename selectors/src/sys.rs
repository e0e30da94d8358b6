//! The one place that turns a raw syscall's `-1` return into an [`io::Error`].
//!
//! Every `libc` call in tulip goes through [`cvt`], so no other code reads
//! `errno`: callers read like ordinary fallible Rust.

use std::io;

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
/// use tulip_selectors::sys::cvt;
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
