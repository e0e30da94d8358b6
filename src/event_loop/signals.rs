//! Unix signals, delivered as ordinary callbacks. The C-level handler only
//! writes the signal number to a non-blocking pipe (the one async-signal-safe
//! thing it needs); the loop watches the pipe and runs the Rust handlers.
//!
//! A signal disposition is process-wide, so one loop at a time owns signal
//! handling: from its first `add_signal_handler` until it removes its last
//! handler or is closed. Another loop asking meanwhile gets `ResourceBusy`.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::os::raw::c_int;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::selectors::mechanism::{cvt, drain, fork_generation, nonblocking_pipe, replace_fd};

/// The id of the loop that owns signal handling; 0 when none does.
static OWNER: Mutex<u64> = Mutex::new(0);
/// The write end of the owner's pipe, for the C handler; -1 when none.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// The fork generation of the process whose loop owns the pipe: a child
/// made by `fork()` inherits the handler and the pipe, and must not write
/// its signals into its parent's loop (until its loop's `after_fork`).
static OWNER_GENERATION: AtomicU64 = AtomicU64::new(0);

/// One past the highest signal number (Python's `signal.NSIG`).
pub(crate) fn nsig() -> c_int {
    cfg_if::cfg_if! {
        if #[cfg(tulip_sigrtmax)] {
            libc::SIGRTMAX() + 1
        } else {
            32
        }
    }
}

/// Refuses numbers that are not signals (Python's `signal.valid_signals()`).
pub(crate) fn check_signal_number(signum: c_int) -> io::Result<()> {
    if signum < 1 || signum >= nsig() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal number {signum} out of range 1..{}", nsig()),
        ));
    }
    Ok(())
}

/// Refuses what `check_signal_number` refuses, and the signals that cannot be caught.
pub(crate) fn check_catchable(signum: c_int) -> io::Result<()> {
    check_signal_number(signum)?;
    if signum == libc::SIGKILL || signum == libc::SIGSTOP {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signum} (SIGKILL or SIGSTOP) cannot be caught"),
        ));
    }
    Ok(())
}

fn errno_location() -> *mut c_int {
    cfg_if::cfg_if! {
        if #[cfg(tulip_errno_location)] {
            // SAFETY: returns the calling thread's errno; no preconditions.
            unsafe { libc::__errno_location() }
        } else if #[cfg(tulip_errno_double_underscore)] {
            // SAFETY: returns the calling thread's errno; no preconditions.
            unsafe { libc::__errno() }
        } else {
            // SAFETY: returns the calling thread's errno; no preconditions.
            unsafe { libc::__error() }
        }
    }
}

/// The C-level handler: write the signal number, preserving `errno` for the
/// code the signal interrupted. Only async-signal-safe calls.
extern "C" fn on_signal(signum: c_int) {
    let errno = errno_location();
    // SAFETY: errno_location points at this thread's errno.
    let saved = unsafe { *errno };
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 && OWNER_GENERATION.load(Ordering::Relaxed) == fork_generation() {
        let byte = signum as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` lives for the call. A
        // full pipe (EAGAIN) already means the loop will wake.
        unsafe { libc::write(fd, ptr::addr_of!(byte).cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// One loop's side of signal handling.
pub(crate) struct Signals {
    loop_id: u64,
    /// The pipe the C handler writes to, while this loop owns signals.
    pipe: Option<(OwnedFd, OwnedFd)>,
    /// The disposition each signal had before this loop installed its own.
    previous: HashMap<c_int, libc::sigaction>,
}

impl Signals {
    pub(crate) fn new(loop_id: u64) -> Self {
        Signals { loop_id, pipe: None, previous: HashMap::new() }
    }

    /// The pipe's read end, while this loop owns signal handling.
    pub(crate) fn read_fd(&self) -> Option<RawFd> {
        self.pipe.as_ref().map(|(read, _)| read.as_raw_fd())
    }

    /// Takes signal handling for this loop (a no-op if it has it already);
    /// `Ok(Some(fd))` with the new pipe's read end the first time.
    ///
    /// The caller registers that fd; if that fails it must call `release`.
    pub(crate) fn claim(&mut self) -> io::Result<Option<RawFd>> {
        if self.pipe.is_some() {
            return Ok(None);
        }
        let mut owner = OWNER.lock().unwrap_or_else(PoisonError::into_inner);
        if *owner != 0 && *owner != self.loop_id {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "another event loop handles signals in this process",
            ));
        }
        let (read, write) = nonblocking_pipe()?;
        OWNER_GENERATION.store(fork_generation(), Ordering::SeqCst);
        WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        *owner = self.loop_id;
        let read_fd = read.as_raw_fd();
        self.pipe = Some((read, write));
        Ok(Some(read_fd))
    }

    /// In a child process made by `fork()`: a fresh pipe under the same fd
    /// numbers (the inherited one is shared with the parent, whose loop
    /// would read the child's signals), and the C handler writes again.
    /// A no-op if this loop does not handle signals.
    pub(crate) fn after_fork(&mut self) -> io::Result<()> {
        let Some((read, write)) = &self.pipe else { return Ok(()) };
        let (new_read, new_write) = nonblocking_pipe()?;
        replace_fd(new_read, read.as_raw_fd())?;
        replace_fd(new_write, write.as_raw_fd())?;
        OWNER_GENERATION.store(fork_generation(), Ordering::SeqCst);
        Ok(())
    }

    /// Installs the C handler for `signum`, remembering what was there.
    pub(crate) fn install(&mut self, signum: c_int) -> io::Result<()> {
        if self.previous.contains_key(&signum) {
            return Ok(());
        }
        // SAFETY: sigaction is plain data; all-zero is a valid starting point.
        let mut action: libc::sigaction = unsafe { mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
        // Restart interrupted syscalls elsewhere in the process; the selector
        // retries EINTR itself anyway.
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: both pointers are to live sigaction structs; signum was checked.
        cvt(unsafe { libc::sigaction(signum, &action, &mut previous) })?;
        self.previous.insert(signum, previous);
        Ok(())
    }

    /// Puts back the disposition `signum` had before; `false` if this loop had not changed it.
    pub(crate) fn restore(&mut self, signum: c_int) -> io::Result<bool> {
        let Some(previous) = self.previous.remove(&signum) else { return Ok(false) };
        // SAFETY: `previous` is the struct the kernel filled in at install.
        cvt(unsafe { libc::sigaction(signum, &previous, ptr::null_mut()) })?;
        Ok(true)
    }

    /// `true` while this loop has a disposition installed for some signal.
    pub(crate) fn is_empty(&self) -> bool {
        self.previous.is_empty()
    }

    /// Restores every disposition and gives up signal handling, closing the
    /// pipe (the caller stops watching [`read_fd`](Self::read_fd) first).
    pub(crate) fn release(&mut self) {
        let signums: Vec<c_int> = self.previous.keys().copied().collect();
        for signum in signums {
            let _ = self.restore(signum);
        }
        if self.pipe.is_none() {
            return;
        }
        let mut owner = OWNER.lock().unwrap_or_else(PoisonError::into_inner);
        if *owner == self.loop_id {
            // Stop the C handler writing before the pipe closes.
            WRITE_FD.store(-1, Ordering::SeqCst);
            *owner = 0;
        }
        self.pipe = None;
    }

    /// Reads the signal numbers that arrived, in order.
    pub(crate) fn drain(&self, mut on_signal: impl FnMut(c_int)) {
        let Some(fd) = self.read_fd() else { return };
        drain(fd, |signums| signums.iter().for_each(|&signum| on_signal(c_int::from(signum))));
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.release();
    }
}
