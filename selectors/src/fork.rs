//! Noticing `fork(2)`. A child process inherits the parent's fds, and with
//! them the parent's epoll instance (the same kernel object, not a copy):
//! an `EPOLL_CTL_DEL` in the child removes the parent's registration. So
//! every selector remembers the *fork generation* it was made in, a number
//! that a `pthread_atfork` handler bumps in each child; an object whose
//! generation is not the current one was inherited, and leaves the kernel
//! state alone until its owner calls `after_fork`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Runs in the child of every `fork()`: async-signal-safe, one atomic add.
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's fork generation: 0 in a process that was not forked from
/// one using this crate, one more in each child of a `fork()` after that.
/// Installs the `pthread_atfork` handler the first time; async-signal-safe
/// once installed (one atomic load).
pub fn fork_generation() -> u64 {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only does an atomic add; the
        // other two are null, which pthread_atfork allows. If it fails
        // (ENOMEM), forks go unnoticed: the generation stays 0.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    GENERATION.load(Ordering::Relaxed)
}

/// The current fork generation, for objects made after
/// [`fork_generation`] installed the handler (every selector's
/// constructor calls it): one atomic load, inlined into `select`.
#[inline]
pub(crate) fn current_generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// The error of an inherited object used before `after_fork`.
pub(crate) fn inherited_error(what: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "this {what} was inherited from the parent process by fork(): call after_fork() first"
    ))
}
