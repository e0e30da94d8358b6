//! Watching child processes (asyncio's child watchers, from
//! `unix_events.py`): the loop learns that a child ended, reaps it with
//! `waitpid`, and runs the callback given to
//! [`add_child_handler`](crate::BaseSelectorEventLoop::add_child_handler).
//!
//! A child's end reaches its parent as an fd that becomes readable (a
//! pidfd, on Linux) or as a signal (`SIGCHLD`, everywhere): one watcher
//! each, described at [`ChildWatcher`]. With the signal, the loop asks
//! `waitpid(pid, WNOHANG)` of every child it watches, since signals of one
//! number coalesce and one `SIGCHLD` may stand for many exits; each pid is
//! also asked once right after it is watched, for a child that ended
//! before.
//!
//! No zombie is left behind: every watched child is reaped when it ends,
//! while the loop runs. When the loop is closed (or dropped) with children
//! still watched, they are handed to a thread of their own that waits for
//! each (`waitpid` without `WNOHANG`) and exits: `close` does not block
//! for a child that takes its time. (Children started by
//! [`subprocess_exec`](crate::BaseSelectorEventLoop::subprocess_exec) are
//! killed first, as asyncio's transports do.)

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::raw::c_int;
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::thread;

use crate::event_loop::threadsafe::closed_error;
use crate::selectors::mechanism::{fork_generation, nonblocking};
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, ExceptionContext, IoHandlers};

/// How a loop learns that its children ended, and reaps them.
///
/// - **`Pidfd`** (Linux 5.3 and newer; the default there): `pidfd_open(2)`
///   gives an fd per child that becomes readable when the child exits; the
///   selector watches it like any other fd (select, poll and epoll alike).
///   Each child is its own event, and other code's children are never
///   touched.
/// - **`Signal`** (every Unix; the default elsewhere): `SIGCHLD` arrives
///   through the loop's [signal handling](crate::AbstractEventLoop::add_signal_handler)
///   and the loop asks `waitpid(pid, WNOHANG)` of every child it watches,
///   since one signal may stand for many exits. It takes the loop's
///   `SIGCHLD` handler while children are watched (replacing one of
///   yours), and signal handling is process-wide: one loop at a time.
///
/// kqueue's `EVFILT_PROC` with `NOTE_EXIT` (macOS, the BSDs) would be a
/// third way, an exit reported as a kernel event as a pidfd does; it is not
/// built, as the `Selector` trait registers only read and write interest.
///
/// Either way, every watched child is reaped when it ends; children still
/// watched when the loop closes are waited for on a thread of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildWatcher {
    /// A `pidfd_open(2)` fd per child, watched by the selector (Linux 5.3+).
    Pidfd,
    /// `SIGCHLD`, through the loop's signal handling, then `waitpid` per child.
    Signal,
}

impl ChildWatcher {
    /// The best watcher here: `Pidfd` where the kernel has `pidfd_open`,
    /// else `Signal`.
    pub fn best() -> ChildWatcher {
        if ChildWatcher::Pidfd.is_available() {
            ChildWatcher::Pidfd
        } else {
            ChildWatcher::Signal
        }
    }

    /// `true` if this watcher works here: `Signal` always; `Pidfd` on
    /// Linux when the kernel (and a seccomp filter, if any) allows
    /// `pidfd_open` (asked once per process).
    pub fn is_available(self) -> bool {
        match self {
            ChildWatcher::Signal => true,
            ChildWatcher::Pidfd => pidfd_available(),
        }
    }
}

impl fmt::Display for ChildWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ChildWatcher::Pidfd => "pidfd",
            ChildWatcher::Signal => "SIGCHLD",
        })
    }
}

/// `pidfd_open(pid, 0)`: an fd, close-on-exec, readable once `pid` exits.
#[cfg(tulip_pidfd)]
fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    use crate::selectors::mechanism::cvt;
    use std::os::unix::io::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags, no pointers; its fd is
    // close-on-exec by definition.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) })?;
    // SAFETY: the kernel just made this fd (an int, as every fd) and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

#[cfg(not(tulip_pidfd))]
fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    Err(io::Error::new(io::ErrorKind::Unsupported, format!("no pidfd_open here to watch process {pid}")))
}

/// Asks the kernel once whether `pidfd_open` works (for this process itself).
fn pidfd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: getpid has no preconditions.
    *AVAILABLE.get_or_init(|| pidfd_open(unsafe { libc::getpid() }).is_ok())
}

/// `waitpid(pid, WNOHANG)`: the status if the child ended (it is reaped
/// now), `None` if it still runs.
fn try_reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    let mut status: c_int = 0;
    // SAFETY: `status` is valid for the write waitpid makes.
    let reaped = nonblocking(|| unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    Ok(match reaped {
        Some(found) if found == pid => Some(ExitStatus::from_raw(status)),
        _ => None,
    })
}

/// `true` while `pid` is a child of ours that nobody reaped: a signal
/// sent to it cannot reach another process (its pid is not free for
/// reuse). `waitid` with `WNOWAIT` looks without reaping.
pub(crate) fn is_unreaped_child(pid: libc::pid_t) -> bool {
    // SAFETY: all-zero bytes are a valid `siginfo_t`.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is valid for the write waitid makes; EINTR is retried.
    let looked = nonblocking(|| unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) });
    looked.is_ok()
}

/// Waits for `pid` on a thread of its own, so that a child nobody watches
/// is not left a zombie.
pub(crate) fn reap_in_background(pid: libc::pid_t) {
    let spawned = thread::Builder::new().name("tulip-reaper".to_owned()).spawn(move || reap_blocking(pid));
    if spawned.is_err() {
        // No thread: try once now; a child still running stays a zombie until we exit.
        let _ = try_reap(pid);
    }
}

/// `waitpid(pid, 0)`: waits for the child to end and reaps it.
fn reap_blocking(pid: libc::pid_t) {
    let mut status: c_int = 0;
    // SAFETY: as in `try_reap`; EINTR is retried by `nonblocking`.
    let _ = nonblocking(|| unsafe { libc::waitpid(pid, &mut status, 0) });
}

fn not_a_child(pid: libc::pid_t) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("process {pid} is not a child of this process waiting to be reaped"),
    )
}

/// What asyncio reports for a child whose status is lost (someone else
/// reaped it): exit code 255.
fn lost_status() -> ExitStatus {
    ExitStatus::from_raw(255 << 8)
}

type ChildCallback<L> = Box<dyn FnOnce(&L, ExitStatus)>;

/// One watched child.
struct Watched<L> {
    /// Its pidfd (the `Pidfd` watcher), watched by the selector.
    pidfd: Option<OwnedFd>,
    callback: ChildCallback<L>,
}

/// A loop's watched children.
pub(crate) struct Children<L> {
    /// The watcher chosen, once the first child is watched (or set).
    kind: Cell<Option<ChildWatcher>>,
    watched: RefCell<HashMap<libc::pid_t, Watched<L>>>,
    /// The `Signal` watcher's `SIGCHLD` handler is installed.
    sigchld: Cell<bool>,
    /// The fork generation the watched pids are children of.
    generation: Cell<u64>,
}

impl<L> Children<L> {
    pub(crate) fn new() -> Self {
        Children {
            kind: Cell::new(None),
            watched: RefCell::new(HashMap::new()),
            sigchld: Cell::new(false),
            generation: Cell::new(fork_generation()),
        }
    }

    fn kind(&self) -> ChildWatcher {
        match self.kind.get() {
            Some(kind) => kind,
            None => {
                let kind = ChildWatcher::best();
                self.kind.set(Some(kind));
                kind
            }
        }
    }

    /// The loop is closing: its callbacks will never run. Each child still
    /// watched is waited for on a thread of its own, so that none is left
    /// a zombie and `close` does not block.
    pub(crate) fn release(&self) {
        let watched = std::mem::take(&mut *self.watched.borrow_mut());
        self.sigchld.set(false);
        if self.generation.get() != fork_generation() {
            // Inherited by fork: the parent's children, not ours to wait for.
            return;
        }
        let pids: Vec<libc::pid_t> = watched.keys().copied().collect();
        drop(watched); // the pidfds close; the callbacks go
        if pids.is_empty() {
            return;
        }
        let reaper = thread::Builder::new()
            .name("tulip-reaper".to_owned())
            .spawn(move || pids.into_iter().for_each(reap_blocking));
        if let Err(err) = reaper {
            // No thread: reap what has ended; the rest stay zombies until we exit.
            eprintln!("tulip: cannot start a thread to reap the children of a closed loop: {err}");
        }
    }
}

impl<L> fmt::Debug for Children<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Children")
            .field("watcher", &self.kind.get())
            .field("watched", &self.watched.borrow().len())
            .finish()
    }
}

/// Child processes on the selector loop (asyncio's `add_child_handler`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Calls `callback` (as a loop callback) with the exit status of child
    /// process `pid` once it ends, and reaps it (asyncio's
    /// `add_child_handler`). `pid` must be a child of this process not yet
    /// reaped by anyone: a `std::process::Child`'s `id()` (then never call
    /// its `wait`). A second handler for the same pid replaces the first.
    /// The watcher is [`child_watcher`](Self::child_watcher)'s.
    ///
    /// If someone else reaps the child first (a `wait` elsewhere in the
    /// program), its status is lost: the callback gets exit code 255 and
    /// the exception handler is told, as in asyncio.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use tulip::selectors::Backend;
    ///
    /// let event_loop = tulip::new_event_loop(Backend::Poll)?;
    /// let child = std::process::Command::new("sh").args(["-c", "exit 3"]).spawn()?;
    /// let code = Rc::new(Cell::new(None));
    /// let seen = Rc::clone(&code);
    /// event_loop.add_child_handler(child.id(), move |_, status| seen.set(status.code()))?;
    /// while code.get().is_none() {
    ///     event_loop.run_until_complete(tulip::sleep(&event_loop, std::time::Duration::from_millis(1)))?;
    /// }
    /// assert_eq!(code.get(), Some(3));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for pid 0 or one beyond
    /// `pid_t`, or a process that is not an unreaped child of this one
    /// (`ECHILD`, or `ESRCH` from `pidfd_open`); the other errors of
    /// `pidfd_open` (e.g. `EMFILE`) or of installing the `SIGCHLD` handler ([`ResourceBusy`](io::ErrorKind::ResourceBusy)
    /// when another loop handles signals); an error if the loop is closed.
    pub fn add_child_handler(
        &self,
        pid: u32,
        callback: impl FnOnce(&Self, ExitStatus) + 'static,
    ) -> io::Result<()> {
        if self.is_closed() {
            return Err(closed_error());
        }
        let pid = match libc::pid_t::try_from(pid) {
            Ok(pid) if pid > 0 => pid,
            _ => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{pid} is not a process id")))
            }
        };
        let children = self.children();
        let callback: ChildCallback<Self> = Box::new(callback);
        if let Some(watched) = children.watched.borrow_mut().get_mut(&pid) {
            // Watched already: only the callback changes.
            let replaced = std::mem::replace(&mut watched.callback, callback);
            drop(replaced);
            return Ok(());
        }
        let pidfd = match children.kind() {
            ChildWatcher::Pidfd => {
                let pidfd = pidfd_open(pid).map_err(|err| match err.raw_os_error() {
                    // Gone: never ours, or reaped already.
                    Some(libc::ESRCH) => not_a_child(pid),
                    _ => {
                        io::Error::new(err.kind(), format!("cannot watch process {pid} (pidfd_open): {err}"))
                    }
                })?;
                self.add_reader(pidfd.as_raw_fd(), move |event_loop| event_loop.check_child(pid))?;
                Some(pidfd)
            }
            ChildWatcher::Signal => {
                self.prepare_child_watcher()?;
                None
            }
        };
        children.watched.borrow_mut().insert(pid, Watched { pidfd, callback });
        // It may have ended already (before its pidfd, or before SIGCHLD was
        // handled): ask now. This also finds a pid that is not our child.
        match try_reap(pid) {
            Err(err) if err.raw_os_error() == Some(libc::ECHILD) => {
                self.unwatch(pid);
                Err(not_a_child(pid))
            }
            Err(err) => {
                self.unwatch(pid);
                Err(err)
            }
            Ok(Some(status)) => {
                self.child_ended(pid, status);
                Ok(())
            }
            Ok(None) => Ok(()),
        }
    }

    /// The watcher this loop uses for its children: the one set with
    /// [`set_child_watcher`](Self::set_child_watcher), else
    /// [`ChildWatcher::best`].
    pub fn child_watcher(&self) -> ChildWatcher {
        self.children().kind()
    }

    /// Chooses how this loop watches its children (asyncio's
    /// `set_child_watcher`); the default is [`ChildWatcher::best`]. Mostly
    /// for tests and teaching: `Signal` runs everywhere.
    ///
    /// # Errors
    ///
    /// [`Unsupported`](io::ErrorKind::Unsupported) if `watcher` does not
    /// work here; [`ResourceBusy`](io::ErrorKind::ResourceBusy) while
    /// children are watched.
    pub fn set_child_watcher(&self, watcher: ChildWatcher) -> io::Result<()> {
        if !watcher.is_available() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the {watcher} child watcher does not work here"),
            ));
        }
        let children = self.children();
        if !children.watched.borrow().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "children are being watched: the watcher can change once they ended",
            ));
        }
        children.kind.set(Some(watcher));
        Ok(())
    }

    /// How many child processes the loop watches now.
    pub fn watched_children(&self) -> usize {
        self.children().watched.borrow().len()
    }

    /// In a child process made by `fork()`: the parent's children are not
    /// this process's, so they are forgotten (their pidfds unwatched and
    /// closed, their callbacks dropped unrun; a `Process` of the parent's
    /// never completes its `wait` here). A no-op in the process that made
    /// the loop.
    pub(crate) fn forget_inherited_children(&self) {
        let children = self.children();
        if children.generation.get() == fork_generation() {
            return;
        }
        children.generation.set(fork_generation());
        let inherited = std::mem::take(&mut *children.watched.borrow_mut());
        for watched in inherited.values() {
            if let Some(pidfd) = &watched.pidfd {
                let _ = self.remove_reader(pidfd.as_raw_fd());
            }
        }
        drop(inherited);
        self.release_idle_child_watcher();
    }

    /// Gets the watcher ready before a child is started, so that watching
    /// it cannot fail for want of `SIGCHLD` (the `Signal` watcher, while
    /// another loop handles signals): asked before spawning, it fails
    /// before there is a child to clean up after.
    pub(crate) fn prepare_child_watcher(&self) -> io::Result<()> {
        let children = self.children();
        if children.kind() == ChildWatcher::Signal && !children.sigchld.get() {
            self.add_signal_handler(libc::SIGCHLD, |event_loop| event_loop.check_children())?;
            children.sigchld.set(true);
        }
        Ok(())
    }

    /// Undoes [`prepare_child_watcher`](Self::prepare_child_watcher) when
    /// no child came of it.
    pub(crate) fn release_idle_child_watcher(&self) {
        let children = self.children();
        if children.sigchld.get() && children.watched.borrow().is_empty() {
            children.sigchld.set(false);
            let _ = self.remove_signal_handler(libc::SIGCHLD);
        }
    }

    /// The `Pidfd` watcher: `pid`'s pidfd is readable.
    fn check_child(&self, pid: libc::pid_t) {
        match try_reap(pid) {
            Ok(Some(status)) => self.child_ended(pid, status),
            Ok(None) => {} // readable, yet not reaped: ask again next time
            Err(_) => self.child_lost(pid),
        }
    }

    /// The `Signal` watcher: `SIGCHLD` came, for one child or many.
    fn check_children(&self) {
        let pids: Vec<libc::pid_t> = self.children().watched.borrow().keys().copied().collect();
        for pid in pids {
            match try_reap(pid) {
                Ok(Some(status)) => self.child_ended(pid, status),
                Ok(None) => {}
                Err(_) => self.child_lost(pid),
            }
        }
    }

    /// Someone else reaped `pid`: report it, and give 255, as asyncio.
    fn child_lost(&self, pid: libc::pid_t) {
        self.call_exception_handler(&ExceptionContext {
            message: format!(
                "child process {pid} was reaped elsewhere: its exit status is lost (255 reported)"
            ),
            panic: None,
            origin: None,
        });
        self.child_ended(pid, lost_status());
    }

    /// `pid` was reaped: stop watching it and queue its callback.
    fn child_ended(&self, pid: libc::pid_t, status: ExitStatus) {
        if let Some(callback) = self.unwatch(pid) {
            self.call_soon(move |event_loop| callback(event_loop, status));
        }
    }

    /// Forgets `pid`: its pidfd is unwatched and closed; the `SIGCHLD`
    /// handler goes with the last child (giving signal handling back).
    fn unwatch(&self, pid: libc::pid_t) -> Option<ChildCallback<Self>> {
        let children = self.children();
        let removed = children.watched.borrow_mut().remove(&pid)?;
        if let Some(pidfd) = &removed.pidfd {
            let _ = self.remove_reader(pidfd.as_raw_fd());
        }
        self.release_idle_child_watcher();
        Some(removed.callback)
    }
}
