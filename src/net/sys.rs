//! The socket syscalls std does not offer in non-blocking form: creating a
//! non-blocking close-on-exec socket, starting a connect without waiting,
//! and `recv`/`send` that never block whatever the socket's mode.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::raw::c_int;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::selectors::mechanism::{cvt, nonblocking};

/// `send` flags: never block, and no `SIGPIPE` where the flag exists (std
/// ignores `SIGPIPE` in Rust programs anyway).
#[cfg(tulip_socket_flags)]
const SEND_FLAGS: c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
#[cfg(not(tulip_socket_flags))]
const SEND_FLAGS: c_int = libc::MSG_DONTWAIT;

/// A new non-blocking, close-on-exec stream socket of `domain`.
pub(crate) fn stream_socket(domain: c_int) -> io::Result<OwnedFd> {
    cfg_if::cfg_if! {
        if #[cfg(tulip_socket_flags)] {
            let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
            // SAFETY: socket(2) takes no pointers.
            let fd = cvt(unsafe { libc::socket(domain, kind, 0) })?;
            // SAFETY: `fd` was just created and is owned by nobody else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        } else {
            // SAFETY: socket(2) takes no pointers.
            let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) })?;
            // SAFETY: `fd` was just created and is owned by nobody else.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            crate::selectors::mechanism::set_cloexec(fd)?;
            crate::selectors::mechanism::set_nonblocking(fd)?;
            Ok(owned)
        }
    }
}

/// A socket address in the kernel's layout.
pub(crate) struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    /// The address family, for [`stream_socket`].
    pub(crate) fn family(&self) -> c_int {
        c_int::from(self.storage.ss_family)
    }

    /// No address yet: [`store`](Self::store) writes one.
    fn empty() -> Self {
        // SAFETY: all-zero bytes are a valid `sockaddr_storage`.
        RawAddr { storage: unsafe { mem::zeroed() }, len: 0 }
    }

    /// Writes a `sockaddr_*` and sets the length to its size.
    fn store<T>(&mut self, addr: T) {
        const { assert!(mem::size_of::<T>() <= mem::size_of::<libc::sockaddr_storage>()) };
        // SAFETY: `T` is a sockaddr type (the callers below), no larger than
        // `sockaddr_storage` (checked at compile time), which is aligned for
        // every sockaddr type.
        unsafe { std::ptr::write((&mut self.storage as *mut libc::sockaddr_storage).cast::<T>(), addr) };
        self.len = mem::size_of::<T>() as libc::socklen_t;
    }
}

impl From<&SocketAddr> for RawAddr {
    fn from(addr: &SocketAddr) -> Self {
        let mut raw = RawAddr::empty();
        match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: all-zero bytes are a valid `sockaddr_in`.
                let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) };
                raw.store(sin);
            }
            SocketAddr::V6(v6) => {
                // SAFETY: all-zero bytes are a valid `sockaddr_in6`.
                let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_flowinfo = v6.flowinfo();
                sin6.sin6_addr = libc::in6_addr { s6_addr: v6.ip().octets() };
                sin6.sin6_scope_id = v6.scope_id();
                raw.store(sin6);
            }
        }
        raw
    }
}

/// The `sockaddr_un` of a filesystem path.
///
/// # Errors
///
/// [`InvalidInput`](io::ErrorKind::InvalidInput) if the path is empty, has a
/// NUL byte, or does not fit (with its NUL) in `sun_path`.
pub(crate) fn unix_addr(path: &Path) -> io::Result<RawAddr> {
    // SAFETY: all-zero bytes are a valid `sockaddr_un`.
    let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.contains(&0) || bytes.len() >= sun.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a Unix socket path must be non-empty, without NUL, and shorter than sun_path",
        ));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, byte) in sun.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    let mut raw = RawAddr::empty();
    raw.store(sun);
    raw.len = (mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1) as libc::socklen_t;
    Ok(raw)
}

/// How a non-blocking `connect` went.
pub(crate) enum Connect {
    /// Connected already (loopback and Unix sockets often are).
    Done,
    /// Under way: the socket becomes writable when it is done (`EINPROGRESS`).
    InProgress,
    /// A Unix socket whose listener's backlog is full (`EAGAIN`): try again later.
    Again,
}

/// Starts connecting `fd` to `addr` without blocking.
pub(crate) fn start_connect(fd: RawFd, addr: &RawAddr) -> io::Result<Connect> {
    let ptr = (&addr.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: `ptr` points to `addr.len` initialized bytes of a sockaddr.
    match cvt(unsafe { libc::connect(fd, ptr, addr.len) }) {
        Ok(_) => Ok(Connect::Done),
        // EINTR: the connect goes on asynchronously, as with EINPROGRESS.
        Err(err) if matches!(err.raw_os_error(), Some(libc::EINPROGRESS) | Some(libc::EINTR)) => {
            Ok(Connect::InProgress)
        }
        Err(err) if err.raw_os_error() == Some(libc::EISCONN) => Ok(Connect::Done),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(Connect::Again),
        Err(err) => Err(err),
    }
}

/// `recv` without blocking; `Ok(None)` if nothing is there yet.
#[inline(always)]
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let got =
        nonblocking(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })?;
    Ok(got.map(|n| n as usize))
}

/// `send` without blocking; `Ok(None)` if the socket's buffer is full.
#[inline(always)]
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
    let sent = nonblocking(|| unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) })?;
    Ok(sent.map(|n| n as usize))
}

/// The pending error of a socket (`SO_ERROR`), clearing it: how a
/// non-blocking connect reports failure.
pub(crate) fn take_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut code: c_int = 0;
    let mut len = mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `code` and `len` are valid for writes; `len` is `code`'s size.
    cvt(unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut code as *mut c_int).cast(), &mut len)
    })?;
    Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
}

/// `true` if the socket has a peer (its connect finished).
pub(crate) fn is_connected(fd: RawFd) -> io::Result<bool> {
    let mut addr = RawAddr::empty();
    addr.len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ptr = (&mut addr.storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: `ptr` is valid for `addr.len` bytes of writes.
    match cvt(unsafe { libc::getpeername(fd, ptr, &mut addr.len) }) {
        Ok(_) => Ok(true),
        Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
        Err(err) => Err(err),
    }
}
