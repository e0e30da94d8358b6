//! What each backend can do, as data: what a student compares between
//! `select`, `poll`, `epoll`, `kqueue` and `io_uring`, what a crate linking this one
//! may rely on, and what the README's backend table is made from (a test
//! checks the two agree).

use std::fmt;
use std::time::Duration;

use crate::Backend;

/// How the cost of one `select` grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectCost {
    /// With the highest registered fd number: bitmaps up to it are copied
    /// and scanned (`select`).
    HighestFd,
    /// With the number of registered fds: the whole array goes to the
    /// kernel and back (`poll`).
    Registered,
    /// With the number of ready fds: the kernel keeps the interest list and
    /// hands back only what is ready (`epoll`, `kqueue`).
    Ready,
}

impl fmt::Display for SelectCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            SelectCost::HighestFd => "O(highest fd)",
            SelectCost::Registered => "O(registered)",
            SelectCost::Ready => "O(ready)",
        })
    }
}

/// Which fds a backend can watch at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FdLimit {
    /// Only fds below this number (`FD_SETSIZE`): `register` refuses the rest.
    Below(u32),
    /// Any fd the process may open (`RLIMIT_NOFILE` is the only bound).
    OpenFiles,
}

impl fmt::Display for FdLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdLimit::Below(limit) => write!(f, "fd < {limit} (FD_SETSIZE)"),
            FdLimit::OpenFiles => f.write_str("RLIMIT_NOFILE"),
        }
    }
}

/// What happens to a registration whose fd is closed before it is
/// unregistered, at the next `select`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClosedFd {
    /// `select` fails with `EBADF` (the `select` backend).
    SelectFails,
    /// The fd is reported ready, for every registered event (`poll`'s
    /// `POLLNVAL`).
    ReportedReady,
    /// Reported ready as with `ReportedReady` (the poll fails with `EBADF`)
    /// if the fd was closed before its poll reached the kernel; closed
    /// while a poll is armed, the kernel keeps the file open for that poll,
    /// and nothing is reported until the file itself is ready, hung up
    /// included (io_uring's one-shot polls).
    ReportedUntilArmed,
    /// The kernel dropped the registration with the file: nothing is
    /// reported, the key stays until unregistered (`epoll`, `kqueue`).
    Forgotten,
}

impl fmt::Display for ClosedFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClosedFd::SelectFails => "select fails (EBADF)",
            ClosedFd::ReportedReady => "reported ready",
            ClosedFd::ReportedUntilArmed => "reported ready, unless a poll holds the file",
            ClosedFd::Forgotten => "silently forgotten",
        })
    }
}

/// What `register` does with a regular file (a file on disk), which is
/// always ready as far as the kernel is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegularFile {
    /// Accepted and reported ready at once (`select`, `poll`; `kqueue`
    /// reports `READ` while there is data past the file offset).
    Ready,
    /// Refused with `EPERM`, and no key kept (`epoll`).
    Refused,
}

impl fmt::Display for RegularFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegularFile::Ready => "always ready",
            RegularFile::Refused => "refused (EPERM)",
        })
    }
}

/// What the kernel keeps a registration by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Watches {
    /// The fd number, looked up again at every call (`select`, `poll`).
    FdNumber,
    /// The open file the number named at registration (`epoll`, `kqueue`):
    /// closing the number does not end the watch while another fd (a `dup`,
    /// a child process) keeps the file open.
    OpenFile,
}

impl fmt::Display for Watches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Watches::FdNumber => "the fd number",
            Watches::OpenFile => "the open file",
        })
    }
}

/// What one backend can do. Every field is a fact about the kernel
/// mechanism, the same on every target that has it.
///
/// ```
/// use tulip_selectors::{Backend, SelectCost};
/// let epoll = Backend::Epoll.capabilities();
/// assert_eq!(epoll.select_cost, SelectCost::Ready);
/// assert!(epoll.register_syscall && !Backend::Poll.capabilities().register_syscall);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend described.
    pub backend: Backend,
    /// The system calls it makes.
    pub syscalls: &'static [&'static str],
    /// Where it exists.
    pub platforms: &'static str,
    /// A kernel object (the epoll or kqueue fd) holds the interest list
    /// between calls; otherwise the list is passed in at every `select`.
    pub kernel_object: bool,
    /// How the cost of one `select` grows.
    pub select_cost: SelectCost,
    /// `register`, `modify` and `unregister` each make a syscall (and so a
    /// closed fd is refused at `register`); otherwise they only change our
    /// own tables, and the kernel first hears of an fd at `select`.
    pub register_syscall: bool,
    /// The finest timeout the kernel call takes (timeouts are rounded up
    /// to it, never down).
    pub timeout_resolution: Duration,
    /// Which fds it can watch.
    pub fd_limit: FdLimit,
    /// What a registered fd closed before `unregister` does at `select`.
    pub closed_fd: ClosedFd,
    /// What the kernel keeps a registration by.
    pub watches: Watches,
    /// What `register` does with a regular file.
    pub regular_file: RegularFile,
    /// Level-triggered: an fd that stays ready is reported at every
    /// `select` (all the backends here are; edge-triggered modes are not
    /// offered).
    pub level_triggered: bool,
}

impl Backend {
    /// What this backend can do, whether or not this target has it.
    pub fn capabilities(self) -> Capabilities {
        match self {
            Backend::Select => Capabilities {
                backend: self,
                syscalls: &["select"],
                platforms: "every Unix",
                kernel_object: false,
                select_cost: SelectCost::HighestFd,
                register_syscall: false,
                timeout_resolution: Duration::from_micros(1),
                fd_limit: FdLimit::Below(libc::FD_SETSIZE as u32),
                closed_fd: ClosedFd::SelectFails,
                watches: Watches::FdNumber,
                regular_file: RegularFile::Ready,
                level_triggered: true,
            },
            Backend::Poll => Capabilities {
                backend: self,
                syscalls: &["poll"],
                platforms: "every Unix",
                kernel_object: false,
                select_cost: SelectCost::Registered,
                register_syscall: false,
                timeout_resolution: Duration::from_millis(1),
                fd_limit: FdLimit::OpenFiles,
                closed_fd: ClosedFd::ReportedReady,
                watches: Watches::FdNumber,
                regular_file: RegularFile::Ready,
                level_triggered: true,
            },
            Backend::Epoll => Capabilities {
                backend: self,
                syscalls: &["epoll_create1", "epoll_ctl", "epoll_wait"],
                platforms: "Linux, Android",
                kernel_object: true,
                select_cost: SelectCost::Ready,
                register_syscall: true,
                timeout_resolution: Duration::from_millis(1),
                fd_limit: FdLimit::OpenFiles,
                closed_fd: ClosedFd::Forgotten,
                watches: Watches::OpenFile,
                regular_file: RegularFile::Refused,
                level_triggered: true,
            },
            Backend::Kqueue => Capabilities {
                backend: self,
                syscalls: &["kqueue", "kevent"],
                platforms: "macOS, iOS, the BSDs",
                kernel_object: true,
                select_cost: SelectCost::Ready,
                register_syscall: true,
                timeout_resolution: Duration::from_nanos(1),
                fd_limit: FdLimit::OpenFiles,
                closed_fd: ClosedFd::Forgotten,
                watches: Watches::OpenFile,
                regular_file: RegularFile::Ready,
                level_triggered: true,
            },
            Backend::IoUring => Capabilities {
                backend: self,
                syscalls: &["io_uring_setup", "io_uring_enter"],
                platforms: "Linux 5.11+, if allowed",
                // The armed polls live in the ring between calls.
                kernel_object: true,
                // Plus re-arming each poll that fired (one-shot polls).
                select_cost: SelectCost::Ready,
                // Changes wait in the submission ring for the next wait.
                register_syscall: false,
                timeout_resolution: Duration::from_nanos(1),
                fd_limit: FdLimit::OpenFiles,
                // A poll submitted for a closed fd completes at once with
                // EBADF, reported as ready; an armed one holds the file.
                closed_fd: ClosedFd::ReportedUntilArmed,
                // Once armed, a poll holds the open file.
                watches: Watches::OpenFile,
                // A poll of a regular file completes at once, ready both ways.
                regular_file: RegularFile::Ready,
                level_triggered: true,
            },
        }
    }
}

impl fmt::Display for Capabilities {
    /// One line: `epoll: epoll_create1/epoll_ctl/epoll_wait, O(ready), …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}, select {}, register {}, timeouts to {:?}, {}, closed fd {}, watches {}, regular files {}",
            self.backend,
            self.syscalls.join("/"),
            self.select_cost,
            if self.register_syscall { "makes a syscall" } else { "makes no syscall" },
            self.timeout_resolution,
            self.fd_limit,
            self.closed_fd,
            self.watches,
            self.regular_file,
        )
    }
}
