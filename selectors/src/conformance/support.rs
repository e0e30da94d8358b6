//! What the rules are made of, public so that tests of your own in the same
//! test binary can share them: socketpairs, the fd-table locks, fds parked
//! at high numbers, a signal handler that makes syscalls fail with `EINTR`,
//! and assertions that name what went wrong.
//!
//! Tests run as threads of one process, so anything process-wide is taken
//! behind a lock here:
//! - [`shared`] / [`exclusive`]: every rule holds the shared side; a rule
//!   that opens thousands of fds holds the exclusive side, so no other test
//!   is handed an fd above `FD_SETSIZE` or runs out of fds meanwhile. Hold
//!   [`shared`] in tests of your own that open fds, in a binary that runs
//!   the kit.
//! - [`high_fds`]: rules that close an fd and then use its number move it to
//!   a region (`HIGH_BASE..FD_SETSIZE`) that the lowest-free allocation of the
//!   other tests never reaches, so the number stays closed.
//! - [`SignalHandler`]: signal dispositions, serialised and restored.

use std::fmt::Debug;
use std::io::{self, Read, Write};
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use std::{mem, ptr};

use libc::c_int;

use crate::mechanism::cvt;
use crate::{Events, Selector};

/// The longest any rule waits for something that must happen.
pub const BOUND: Duration = Duration::from_secs(5);
/// How late a timed wait may return on a loaded machine.
pub const SLACK: Duration = Duration::from_secs(2);
/// Closed-fd rules park their fds at or above this number (and below `FD_SETSIZE`).
pub const HIGH_BASE: RawFd = 1000;

static FD_TABLE: RwLock<()> = RwLock::new(());
static HIGH_FDS: Mutex<()> = Mutex::new(());
static SIGNALS: Mutex<()> = Mutex::new(());

/// Held by every ordinary test.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    FD_TABLE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by a test that needs the fd table to itself.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FD_TABLE.write().unwrap_or_else(PoisonError::into_inner)
}

/// Held while using fd numbers at or above [`HIGH_BASE`].
pub fn high_fds() -> MutexGuard<'static, ()> {
    HIGH_FDS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One entry of a `select`, as the rules compare them: `(fd, events, data)`.
pub type Entry = (RawFd, Events, String);

/// A connected, non-blocking socketpair.
///
/// # Panics
///
/// If `socketpair(2)` fails (out of fds).
pub fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("non-blocking");
    b.set_nonblocking(true).expect("non-blocking");
    (a, b)
}

/// The fd number of `s`.
pub fn fd<S: AsRawFd>(s: &S) -> RawFd {
    s.as_raw_fd()
}

/// `s` as owned selector data.
pub fn data(s: &str) -> String {
    s.to_owned()
}

/// One `select`, collected as `(fd, events, data)`, checking on the way that
/// `Selected` is an exact-size iterator.
///
/// # Panics
///
/// If `select` fails, or `Selected` yields another number of entries than it announced.
pub fn ready<S: Selector<String> + ?Sized>(selector: &mut S, timeout: Option<Duration>) -> Vec<Entry> {
    let selected = selector.select(timeout).unwrap_or_else(|e| panic!("select: {e}"));
    let announced = selected.len();
    assert_eq!(selected.size_hint(), (announced, Some(announced)));
    let entries: Vec<_> = selected.map(|(key, events)| (key.fd, events, key.data.clone())).collect();
    assert_eq!(entries.len(), announced, "Selected::len() must match what it yields");
    entries
}

/// [`ready`], sorted by fd.
pub fn ready_sorted<S: Selector<String> + ?Sized>(selector: &mut S, timeout: Option<Duration>) -> Vec<Entry> {
    let mut entries = ready(selector, timeout);
    entries.sort_by_key(|entry| entry.0);
    entries
}

/// The events reported for `fd` in `entries`, checking it appears at most once.
///
/// # Panics
///
/// If `fd` appears twice.
pub fn events_of(entries: &[Entry], fd: RawFd) -> Option<Events> {
    let mut found = entries.iter().filter(|(f, _, _)| *f == fd);
    let first = found.next().map(|(_, events, _)| *events);
    assert!(found.next().is_none(), "fd {fd} reported twice in {entries:?}");
    first
}

/// Runs `f`, returning its result and how long it took.
pub fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let result = f();
    (result, start.elapsed())
}

/// Asserts `result` failed with `kind` and that the message names `fd`.
///
/// # Panics
///
/// Otherwise.
pub fn assert_err_names_fd<T: Debug>(result: io::Result<T>, kind: io::ErrorKind, fd: RawFd) {
    let err = result.expect_err("expected an error");
    assert_eq!(err.kind(), kind, "wrong kind for {err}");
    assert!(err.to_string().contains(&fd.to_string()), "message {err:?} should name fd {fd}");
}

/// Asserts `result` failed with the OS error `errno`.
///
/// # Panics
///
/// Otherwise.
pub fn assert_os_error<T: Debug>(result: io::Result<T>, errno: c_int) {
    let err = result.expect_err("expected an OS error");
    assert_eq!(err.raw_os_error(), Some(errno), "expected errno {errno}, got {err}");
}

/// Writes until the socket's send buffer is full; returns how many bytes went in.
///
/// # Panics
///
/// On an error other than "would block".
pub fn fill(mut stream: &UnixStream) -> usize {
    let chunk = [0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("fill: {e}"),
        }
    }
}

/// Reads what is available without blocking; returns how many bytes came out.
///
/// # Panics
///
/// On an error other than "would block".
pub fn drain(mut stream: &UnixStream) -> usize {
    let mut buf = [0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("drain: {e}"),
        }
    }
}

/// `true` if `fd` is an open file descriptor of this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; any number is safe to ask about.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }).is_ok()
}

/// `true` if `fd` is open and close-on-exec.
pub fn is_cloexec(fd: RawFd) -> bool {
    // SAFETY: as in `is_open`.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }).is_ok_and(|flags| flags & libc::FD_CLOEXEC != 0)
}

/// Moves `stream` to the lowest free number at or above `min`, closing its
/// old number.
///
/// # Panics
///
/// With the reason, if the fd limit does not allow it.
pub fn move_to<S: IntoRawFd + FromRawFd>(stream: S, min: RawFd) -> S {
    raise_fd_limit();
    // SAFETY: `into_raw_fd` hands us the stream's open fd; `old` now owns it
    // and closes it at the end of this function.
    let old = unsafe { OwnedFd::from_raw_fd(stream.into_raw_fd()) };
    // SAFETY: F_DUPFD_CLOEXEC on an open fd creates a new one and touches no memory.
    let moved = cvt(unsafe { libc::fcntl(old.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })
        .unwrap_or_else(|e| panic!("cannot move an fd to {min} or above (RLIMIT_NOFILE too low?): {e}"));
    // SAFETY: `moved` was just created and nothing else owns it.
    unsafe { S::from_raw_fd(moved) }
}

/// A socketpair whose first end sits at a number at or above [`HIGH_BASE`]:
/// once closed, that number stays closed while the caller holds [`high_fds`].
pub fn high_pair() -> (UnixStream, UnixStream) {
    let (a, b) = pair();
    (move_to(a, HIGH_BASE), b)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (once) and returns the soft limit.
///
/// # Panics
///
/// If `getrlimit` fails.
pub fn raise_fd_limit() -> libc::rlim_t {
    static RAISE: Once = Once::new();
    RAISE.call_once(|| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is a valid rlimit for the kernel to fill in.
        if cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }).is_err() {
            return;
        }
        // The hard limit first; if the system refuses it (macOS refuses an
        // unlimited one), 65536, then 10240 (macOS's OPEN_MAX).
        for wanted in [limit.rlim_max, 65536, 10240] {
            if wanted <= limit.rlim_cur || wanted > limit.rlim_max {
                continue;
            }
            let raised = libc::rlimit { rlim_cur: wanted, rlim_max: limit.rlim_max };
            // SAFETY: `raised` is a valid rlimit; a soft limit up to the hard one is allowed.
            if cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }).is_ok() {
                return;
            }
        }
    });
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: as above.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }).expect("getrlimit");
    limit.rlim_cur
}

static SIGNAL_SEEN: AtomicBool = AtomicBool::new(false);

extern "C" fn note_signal(_signum: c_int) {
    SIGNAL_SEEN.store(true, Ordering::SeqCst);
}

/// A handler for `signum` installed **without** `SA_RESTART` (so blocking
/// syscalls fail with `EINTR`), serialised with every other signal test
/// that uses this type and replaced by the previous disposition on drop.
pub struct SignalHandler {
    signum: c_int,
    previous: libc::sigaction,
    _serial: MutexGuard<'static, ()>,
}

impl SignalHandler {
    /// Installs the handler for `signum`, waiting for any other test's to be dropped.
    ///
    /// # Panics
    ///
    /// If `sigaction` refuses `signum`.
    pub fn install(signum: c_int) -> SignalHandler {
        let serial = SIGNALS.lock().unwrap_or_else(PoisonError::into_inner);
        SIGNAL_SEEN.store(false, Ordering::SeqCst);
        // SAFETY: all-zero is a valid sigaction (empty mask, no flags, SIG_DFL).
        let mut action: libc::sigaction = unsafe { mem::zeroed() };
        action.sa_sigaction = note_signal as extern "C" fn(c_int) as libc::sighandler_t;
        action.sa_flags = 0; // deliberately no SA_RESTART
                             // SAFETY: as above; the kernel overwrites it with the previous disposition.
        let mut previous: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: `action.sa_mask` is a valid sigset_t to clear.
        cvt(unsafe { libc::sigemptyset(&mut action.sa_mask) }).expect("sigemptyset");
        // SAFETY: `action` and `previous` are valid sigaction structs; the handler
        // only stores to an atomic, which is async-signal-safe.
        cvt(unsafe { libc::sigaction(signum, &action, &mut previous) }).expect("sigaction");
        SignalHandler { signum, previous, _serial: serial }
    }

    /// `true` once the handler has run.
    pub fn ran(&self) -> bool {
        SIGNAL_SEEN.load(Ordering::SeqCst)
    }
}

impl Drop for SignalHandler {
    fn drop(&mut self) {
        // SAFETY: `previous` is the disposition the kernel handed back at install.
        let _ = cvt(unsafe { libc::sigaction(self.signum, &self.previous, ptr::null_mut()) });
    }
}

/// The calling thread, as a target for `pthread_kill` from another thread.
#[derive(Clone, Copy)]
pub struct ThisThread(libc::pthread_t);

// SAFETY: a pthread_t is an identifier (an integer, or an opaque pointer on
// Apple systems that is never dereferenced by us); sending it to another
// thread only lets that thread name this one in pthread_kill.
unsafe impl Send for ThisThread {}

impl ThisThread {
    /// The calling thread.
    pub fn current() -> ThisThread {
        // SAFETY: pthread_self has no preconditions.
        ThisThread(unsafe { libc::pthread_self() })
    }

    /// Sends `signum` to the thread.
    ///
    /// # Safety
    ///
    /// The thread must not have ended (a pthread_t of an ended thread may
    /// name nothing, or another thread): the caller joins it only after
    /// its last `kill`, or otherwise knows it still runs.
    ///
    /// # Errors
    ///
    /// The error `pthread_kill` returns.
    pub unsafe fn kill(self, signum: c_int) -> io::Result<()> {
        // SAFETY: the thread is alive (the caller's promise).
        match unsafe { libc::pthread_kill(self.0, signum) } {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}
