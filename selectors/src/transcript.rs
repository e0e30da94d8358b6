//! Watching a selector talk to the kernel: every system call it makes,
//! in the kernel's own words, next to the selector operation it serves.
//!
//! ```text
//! epoll_ctl(7, ADD, fd=5, EPOLLIN) = 0                      register(fd 5, READ)
//! epoll_wait(7, max=4, timeout=10) = 1 [fd 5 EPOLLIN]       select(10 ms)
//! poll([{fd=5, POLLIN}, {fd=6, POLLOUT}], 2, 10) = 1 [fd 6 POLLOUT]
//! select(nfds=7, r={5}, w={6}, timeout=10.000ms) = 1 [w: 6]
//! epoll_ctl(7, ADD, fd=9, EPOLLIN) = -1 EBADF               register(fd 9, READ)
//! ```
//!
//! Give a selector an [`Observer`] with
//! [`Selector::set_observer`](crate::Selector::set_observer) (a
//! [`WriteTranscript`] writes lines like the above), or set `TULIP_TRACE=1`
//! in the environment: every selector made then writes its transcript to
//! stderr. Without an observer, a selector pays one test per call.

use std::fmt;
use std::io::{self, Write};

/// One system call a selector made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall<'a> {
    /// The call and its arguments, as the kernel's manual writes them:
    /// `epoll_ctl(7, ADD, fd=5, EPOLLIN)`.
    pub call: &'a str,
    /// What it returned: `0`, `2 [fd 5 EPOLLIN, fd 6 EPOLLOUT]`, `-1 EBADF`.
    pub result: &'a str,
    /// The selector operation it serves: `register(fd 5, READ)`.
    pub operation: &'a str,
}

impl fmt::Display for Syscall<'_> {
    /// `call = result`, then the operation from column 58 on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let said = format!("{} = {}", self.call, self.result);
        write!(f, "{said:<57} {}", self.operation)
    }
}

/// Something told about every system call a selector makes. `Send`, so a
/// selector with an observer can still move between threads.
pub trait Observer: Send {
    /// One call, made just now.
    fn syscall(&mut self, call: &Syscall<'_>);
}

/// Writes one line per system call (see the module docs) to a [`Write`].
/// Write errors are ignored: watching never stops a selector.
#[derive(Debug)]
pub struct WriteTranscript<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> WriteTranscript<W> {
    /// A transcript written to `out`.
    pub fn new(out: W) -> Self {
        WriteTranscript { out }
    }
}

impl WriteTranscript<io::Stderr> {
    /// A transcript written to stderr.
    pub fn stderr() -> Self {
        WriteTranscript::new(io::stderr())
    }
}

impl<W: Write + Send> Observer for WriteTranscript<W> {
    fn syscall(&mut self, call: &Syscall<'_>) {
        let _ = writeln!(self.out, "{call}");
    }
}

/// The observer `TULIP_TRACE` asks for: set, and neither empty nor `0`.
pub(crate) fn from_environment() -> Option<Box<dyn Observer>> {
    let value = std::env::var_os("TULIP_TRACE")?;
    if value.is_empty() || value == "0" {
        return None;
    }
    Some(Box::new(WriteTranscript::stderr()))
}

/// A syscall's result as the transcript writes it: the value, or `-1` and
/// the errno's name.
pub(crate) fn result<T: fmt::Display>(outcome: Result<T, &io::Error>) -> String {
    match outcome {
        Ok(value) => value.to_string(),
        Err(err) => format!("-1 {}", errno_name(err)),
    }
}

/// The name of `err`'s errno (`EBADF`), as `strace` writes it.
pub fn errno_name(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else { return err.to_string() };
    let name = match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ELOOP => "ELOOP",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("errno {code}"),
    };
    name.to_owned()
}

/// `{5, 9}`: a set of fds as the transcript writes it.
pub(crate) fn fd_set(fds: impl Iterator<Item = std::os::unix::io::RawFd>) -> String {
    let fds: Vec<String> = fds.map(|fd| fd.to_string()).collect();
    format!("{{{}}}", fds.join(", "))
}

/// `A|B`: the names of the flags of `bits` that `names` knows, in order.
pub(crate) fn flags<B: Copy + Into<i64>>(bits: B, names: &[(B, &str)]) -> String {
    let bits: i64 = bits.into();
    let set: Vec<&str> =
        names.iter().filter(|&&(flag, _)| bits & flag.into() != 0).map(|&(_, name)| name).collect();
    if set.is_empty() {
        format!("{bits:#x}")
    } else {
        set.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_pads_the_call_and_names_the_errno() {
        let line = Syscall {
            call: "epoll_ctl(7, ADD, fd=5, EPOLLIN)",
            result: "0",
            operation: "register(fd 5, READ)",
        };
        let text = line.to_string();
        assert!(text.starts_with("epoll_ctl(7, ADD, fd=5, EPOLLIN) = 0 "));
        assert_eq!(text.find("register"), Some(58));
        assert_eq!(result::<i32>(Err(&io::Error::from_raw_os_error(libc::EBADF))), "-1 EBADF");
        assert_eq!(result(Ok(3)), "3");
        assert_eq!(flags(0x5i32, &[(1, "A"), (2, "B"), (4, "C")]), "A|C");
        assert_eq!(fd_set([5, 9].into_iter()), "{5, 9}");
    }
}
