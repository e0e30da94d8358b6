//! A port of CPython's `Lib/test/test_selectors.py`, plus one check per
//! sentence of the Layer 1 contract in DESIGN.md, written only against the
//! contract's names (crate-root imports, the trait's own signatures), the way
//! an outside suite would be.
//!
//! CPython runs `BaseSelectorTestCase` once per selector class; here every
//! case is a generic function of a [`Flavour`] (how to make the selector) and
//! the `instantiate!` macro at the bottom makes one `#[test]` per case for
//! each concrete type (`SelectSelector`, `PollSelector`, `EpollSelector` or
//! `KqueueSelector`, `DefaultSelector`) and one more that runs it for every
//! backend in `Backend::available()` through `Box<dyn Selector<_>>`.
//!
//! Cases whose CPython original has no Rust meaning are left out on purpose:
//! `test_select_interrupt_exc` (a Rust signal handler cannot unwind out of
//! `select`), `test_context_manager` and the `RuntimeError` half of
//! `test_close` (a closed selector is moved, so the compiler forbids its use),
//! and the read-only-mapping half of `test_get_map` (`keys()` only borrows).

#![warn(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

use std::collections::HashSet;
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Once, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tulip_selectors::{
    Backend, DefaultSelector, Events, Keys, PollSelector, SelectSelector, Selected, Selector, SelectorKey,
    EVENT_READ, EVENT_WRITE,
};

/// Selector data: not `Copy`, so it really moves in and out.
type Data = String;

const READ: Events = Events::READ;
const WRITE: Events = Events::WRITE;
const BOTH: Events = Events::READ.union(Events::WRITE);

/// The longest a test waits for something that must happen.
const BOUND: Duration = Duration::from_secs(5);
/// How late a timed wait may come back on a loaded machine.
const LATE: Duration = Duration::from_secs(3);
/// `FD_SETSIZE`, whose type differs between libcs.
#[allow(clippy::unnecessary_cast)]
const SETSIZE: usize = libc::FD_SETSIZE as usize;

// ------------------------------------------------------------------ helpers

/// Tests run as threads of one process and share its fd table. Ordinary tests
/// hold the read side; a test that closes an fd and then relies on its number
/// staying closed, or that opens thousands of fds, holds the write side.
static FD_TABLE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    FD_TABLE.read().unwrap_or_else(PoisonError::into_inner)
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FD_TABLE.write().unwrap_or_else(PoisonError::into_inner)
}

/// How to make one kind of selector, and which backend it must report.
struct Flavour<S> {
    backend: Backend,
    make: Box<dyn Fn() -> io::Result<S>>,
}

impl<S: Selector<Data> + 'static> Flavour<S> {
    fn concrete(backend: Backend, make: fn() -> io::Result<S>) -> Self {
        Flavour { backend, make: Box::new(make) }
    }
}

impl<S: Selector<Data>> Flavour<S> {
    fn open(&self) -> S {
        let selector = (self.make)().unwrap_or_else(|e| panic!("creating a {} selector: {e}", self.backend));
        assert_eq!(selector.backend(), self.backend);
        selector
    }

    fn is(&self, backend: Backend) -> bool {
        self.backend == backend
    }

    /// Backends that ask the kernel at `register` (so they refuse a bad fd there).
    fn checks_at_register(&self) -> bool {
        self.backend.capabilities().register_syscall
    }
}

impl Flavour<Box<dyn Selector<Data>>> {
    fn boxed(backend: Backend) -> Self {
        Flavour { backend, make: Box::new(move || backend.open::<Data>()) }
    }
}

/// A connected, non-blocking socketpair (CPython's `make_socketpair`).
fn socketpair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("non-blocking");
    b.set_nonblocking(true).expect("non-blocking");
    (a, b)
}

fn fd_of<F: AsRawFd>(f: &F) -> RawFd {
    f.as_raw_fd()
}

fn s(text: &str) -> Data {
    text.to_owned()
}

/// One `select`, as sorted `(fd, events, data)`, checking that `Selected`
/// announces its length and that no fd appears twice.
fn ready<S: Selector<Data> + ?Sized>(sel: &mut S, timeout: Option<Duration>) -> Vec<(RawFd, Events, Data)> {
    let _watchdog = timeout.is_none().then(|| Watchdog::arm("select(None)"));
    let selected = sel.select(timeout).unwrap_or_else(|e| panic!("select({timeout:?}) failed: {e}"));
    let announced = selected.len();
    let mut out: Vec<_> = selected.map(|(key, events)| (key.fd, events, key.data.clone())).collect();
    assert_eq!(out.len(), announced, "Selected::len() disagrees with what it yields");
    out.sort_by_key(|entry| entry.0);
    for pair in out.windows(2) {
        assert_ne!(pair[0].0, pair[1].0, "fd reported twice in one select: {out:?}");
    }
    for (_, events, _) in &out {
        assert!(!events.is_empty() && BOTH.contains(*events), "bad events in {out:?}");
    }
    out
}

/// Guards a wait that has no timeout of its own (`select(None)`): if it is
/// still blocked after `4 * BOUND`, the test process exits with a message
/// instead of hanging. Dropping the guard disarms it.
struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    fn arm(what: &'static str) -> Self {
        let (disarm, armed) = mpsc::channel::<()>();
        thread::spawn(move || {
            if armed.recv_timeout(4 * BOUND) == Err(RecvTimeoutError::Timeout) {
                eprintln!("{what} still blocked after {:?}: a hang, giving up", 4 * BOUND);
                std::process::exit(101);
            }
        });
        Watchdog { _disarm: disarm }
    }
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let result = f();
    (result, start.elapsed())
}

/// A timed wait that found nothing took at least `timeout`, and not absurdly longer.
fn assert_not_early(elapsed: Duration, timeout: Duration) {
    assert!(elapsed >= timeout, "returned after {elapsed:?}, before the timeout of {timeout:?}");
    assert!(elapsed < timeout + LATE, "took {elapsed:?} for a timeout of {timeout:?}");
}

fn assert_kind<T: Debug>(result: io::Result<T>, kind: ErrorKind) {
    match result {
        Ok(value) => panic!("expected an error of kind {kind:?}, got Ok({value:?})"),
        Err(err) => assert_eq!(err.kind(), kind, "wrong kind: {err}"),
    }
}

fn assert_errno<T: Debug>(result: io::Result<T>, errno: i32) {
    match result {
        Ok(value) => panic!("expected errno {errno}, got Ok({value:?})"),
        Err(err) => assert_eq!(err.raw_os_error(), Some(errno), "wrong error: {err}"),
    }
}

/// Closes a raw fd the caller owns.
fn close_fd(fd: RawFd) {
    // SAFETY: the caller gave up ownership of `fd` (into_raw_fd) and nothing
    // else closes it; close(2) touches no memory of ours.
    let rc = unsafe { libc::close(fd) };
    assert_eq!(rc, 0, "close({fd}): {}", io::Error::last_os_error());
}

fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads descriptor flags; any number may be asked about.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Moves `stream` to the lowest free fd number at or above `min`.
fn moved_to(stream: UnixStream, min: RawFd) -> io::Result<UnixStream> {
    let old = stream.into_raw_fd();
    // SAFETY: `old` is an open fd we own; F_DUPFD_CLOEXEC creates a new one and touches no memory.
    let new = unsafe { libc::fcntl(old, libc::F_DUPFD_CLOEXEC, min) };
    let outcome = if new == -1 { Err(io::Error::last_os_error()) } else { Ok(new) };
    close_fd(old);
    // SAFETY: `new` was just created by fcntl and nobody else owns it.
    outcome.map(|new| unsafe { UnixStream::from_raw_fd(new) })
}

/// Raises the soft `RLIMIT_NOFILE` towards `wanted` (at most the hard
/// limit); returns the soft limit.
fn raise_fd_limit(wanted: usize) -> usize {
    let wanted = wanted as libc::rlim_t;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill in.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max.min(wanted), rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit no higher than the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Writes until the socket's send buffer is full.
fn fill(stream: &mut UnixStream) {
    let chunk = [7u8; 32 * 1024];
    loop {
        match stream.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => panic!("fill: {e}"),
        }
    }
}

// ------------------------------------------------------------------ signals

static SIGNAL_HITS: AtomicUsize = AtomicUsize::new(0);
const TEST_SIGNAL: libc::c_int = libc::SIGUSR2;

extern "C" fn count_signal(_: libc::c_int) {
    SIGNAL_HITS.fetch_add(1, Ordering::SeqCst);
}

/// Installs (once for the whole process, so signal tests can run in
/// parallel) a handler for [`TEST_SIGNAL`] **without** `SA_RESTART`: a
/// blocking syscall it interrupts fails with `EINTR`. It only counts.
fn install_interrupting_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: an all-zero sigaction is valid: SIG_DFL, no flags, empty mask.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0; // no SA_RESTART: interrupted syscalls fail with EINTR
                             // SAFETY: `action.sa_mask` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is valid; the handler only touches an atomic
        // (async-signal-safe); the old disposition is not needed.
        let rc = unsafe { libc::sigaction(TEST_SIGNAL, &action, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "sigaction: {}", io::Error::last_os_error());
    });
}

fn signal_hits() -> usize {
    SIGNAL_HITS.load(Ordering::SeqCst)
}

/// The calling thread, as a target for `pthread_kill` from another thread.
struct ThisThread(libc::pthread_t);

// SAFETY: a pthread_t is an opaque id; it is only passed to pthread_kill,
// which is valid from any thread while the target lives (the target joins
// the signalling thread before it can exit).
unsafe impl Send for ThisThread {}

impl ThisThread {
    fn get() -> Self {
        // SAFETY: pthread_self has no preconditions.
        ThisThread(unsafe { libc::pthread_self() })
    }

    fn signal(&self) {
        // SAFETY: the target thread is alive (it joins us before returning)
        // and TEST_SIGNAL has a handler that only counts (installed first).
        let rc = unsafe { libc::pthread_kill(self.0, TEST_SIGNAL) };
        assert_eq!(rc, 0, "pthread_kill");
    }
}

/// Signals the calling thread `times` times, `every` apart, from another thread,
/// then runs `after` there.
fn signal_me(times: usize, every: Duration, after: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    install_interrupting_handler();
    let target = ThisThread::get();
    thread::spawn(move || {
        for _ in 0..times {
            thread::sleep(every);
            target.signal();
        }
        after();
    })
}

// ------------------------------------------------------------------ CPython: BaseSelectorTestCase

fn test_register<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();

    let key = sel.register(fd_of(&rd), EVENT_READ, s("data")).expect("register").clone();
    assert_eq!(key.fd, fd_of(&rd));
    assert_eq!(key.events, EVENT_READ);
    assert_eq!(key.data, "data");
    assert_eq!(key, SelectorKey { fd: fd_of(&rd), events: EVENT_READ, data: s("data") });

    // An unknown event.
    for bits in [0x04u8, 0x08, 0x80, 0xff, 0x07] {
        assert_kind(
            sel.register(fd_of(&wr), Events::from_bits_retain(bits), s("bad")),
            ErrorKind::InvalidInput,
        );
    }
    // An invalid fd.
    assert_kind(sel.register(-10, EVENT_READ, s("bad")), ErrorKind::InvalidInput);
    // Twice, with the same or other events.
    for events in [READ, WRITE, BOTH] {
        assert_kind(sel.register(fd_of(&rd), events, s("twice")), ErrorKind::AlreadyExists);
    }
    assert_eq!(sel.get_key(fd_of(&rd)), Some(&key), "a refused register leaves the key alone");
    assert!(sel.get_key(fd_of(&wr)).is_none());
    assert_eq!(sel.len(), 1);
}

fn test_unregister<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    let registered = sel.register(fd_of(&rd), EVENT_READ, s("rd")).unwrap().clone();
    let removed = sel.unregister(fd_of(&rd)).expect("unregister");
    assert_eq!(removed, registered);
    // Unknown, and twice.
    assert_kind(sel.unregister(999_999), ErrorKind::NotFound);
    assert_kind(sel.unregister(fd_of(&rd)), ErrorKind::NotFound);
    assert_kind(sel.unregister(-1), ErrorKind::NotFound);
    assert!(sel.get_key(fd_of(&rd)).is_none());
    assert!(sel.is_empty());
}

fn test_unregister_after_fd_close<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = exclusive();
    let mut sel = f.open();
    let (rd, wr) = socketpair();
    let (r, w) = (fd_of(&rd), fd_of(&wr));
    sel.register(r, EVENT_READ, s("r")).unwrap();
    sel.register(w, EVENT_WRITE, s("w")).unwrap();
    drop(rd);
    drop(wr);
    let key = sel.unregister(r).expect("unregister of a closed fd");
    assert_eq!((key.fd, key.events, key.data.as_str()), (r, READ, "r"));
    let key = sel.unregister(w).expect("unregister of a closed fd");
    assert_eq!((key.fd, key.events, key.data.as_str()), (w, WRITE, "w"));
    assert!(sel.is_empty());
    // Nothing of them is left behind: the selector still works.
    assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
}

fn test_unregister_after_fd_close_and_reuse<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();
    let (r, w) = (rd.into_raw_fd(), wr.into_raw_fd());
    sel.register(r, EVENT_READ, s("old r")).unwrap();
    sel.register(w, EVENT_WRITE, s("old w")).unwrap();
    let (rd2, wr2) = socketpair();
    // dup2 closes the old socket on each number and reuses it in one step.
    for (from, to) in [(fd_of(&rd2), r), (fd_of(&wr2), w)] {
        // SAFETY: `to` is ours (into_raw_fd) and `from` is open; dup2 touches no memory.
        let rc = unsafe { libc::dup2(from, to) };
        assert_eq!(rc, to, "dup2: {}", io::Error::last_os_error());
    }
    // SAFETY: the duplicate on `r` is owned by nothing else.
    let r_again = unsafe { UnixStream::from_raw_fd(r) };
    // SAFETY: likewise for `w`.
    let w_again = unsafe { UnixStream::from_raw_fd(w) };
    assert_eq!(sel.unregister(r).expect("unregister after close and reuse").data, "old r");
    assert_eq!(sel.unregister(w).expect("unregister after close and reuse").data, "old w");
    assert!(sel.is_empty());

    // The reused numbers work like any other fd.
    sel.register(r, EVENT_READ, s("new r")).expect("register the reused number");
    assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
    (&w_again).write_all(b"x").unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(r, READ, s("new r"))]);
    drop((r_again, rd2, wr2));
}

fn test_modify<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    let r = fd_of(&rd);

    // Modify the events.
    let key = sel.register(r, EVENT_READ, s("d0")).unwrap().clone();
    let key2 = sel.modify(r, EVENT_WRITE, s("d0")).expect("modify").clone();
    assert_ne!(key.events, key2.events);
    assert_eq!(Some(&key2), sel.get_key(r));
    sel.unregister(r).unwrap();

    // Modify the data only.
    let key = sel.register(r, EVENT_READ, s("d1")).unwrap().clone();
    let key2 = sel.modify(r, EVENT_READ, s("d2")).expect("modify data").clone();
    assert_eq!(key.events, key2.events);
    assert_ne!(key.data, key2.data);
    assert_eq!(Some(&key2), sel.get_key(r));
    assert_eq!(key2.data, "d2");
    assert_eq!(sel.len(), 1);

    // An unknown fd.
    assert_kind(sel.modify(999_999, EVENT_READ, s("x")), ErrorKind::NotFound);
    assert_kind(sel.modify(fd_of(&_wr), EVENT_WRITE, s("x")), ErrorKind::NotFound);
    assert_eq!(sel.len(), 1);
}

/// CPython's "modify uses a shortcut" (no unregister/register for the same
/// events): seen from outside, the same-events `modify` makes no syscall, so
/// it succeeds even on an fd the kernel would refuse.
fn test_modify_data_only_makes_no_syscall<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = exclusive();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    let r = rd.into_raw_fd();
    sel.register(r, EVENT_READ | EVENT_WRITE, s("d1")).unwrap();
    close_fd(r);
    let key = sel.modify(r, EVENT_READ | EVENT_WRITE, s("d2")).expect("a data-only modify makes no syscall");
    assert_eq!((key.fd, key.events, key.data.as_str()), (r, BOTH, "d2"));
    assert_eq!(sel.get_key(r).map(|k| k.data.as_str()), Some("d2"));
    assert_eq!(sel.unregister(r).unwrap().data, "d2");
}

/// bpo-30014: an OS refusal of `modify` removes the key and returns the error.
fn test_modify_unregister<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = exclusive();
    let mut sel = f.open();
    let (other, _peer) = socketpair();
    sel.register(fd_of(&other), EVENT_WRITE, s("other")).unwrap();
    let (rd, _wr) = socketpair();
    let r = rd.into_raw_fd();
    sel.register(r, EVENT_READ, s("doomed")).unwrap();
    assert_eq!(sel.len(), 2);
    close_fd(r);
    let result = sel.modify(r, EVENT_WRITE, s("new"));
    if f.checks_at_register() {
        assert_errno(result, libc::EBADF);
        assert!(sel.get_key(r).is_none(), "bpo-30014: the key must be removed");
        assert_eq!(sel.len(), 1);
        assert!(sel.keys().all(|k| k.fd != r));
        assert_kind(sel.unregister(r), ErrorKind::NotFound);
    } else {
        // select and poll ask nothing of the kernel at modify.
        let key = result.expect("modify without a syscall").clone();
        assert_eq!((key.events, key.data.as_str()), (WRITE, "new"));
        sel.unregister(r).unwrap();
    }
    assert_eq!(ready(&mut sel, Some(BOUND)), [(fd_of(&other), WRITE, s("other"))]);
}

fn test_close<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();
    sel.register(fd_of(&rd), EVENT_READ, s("rd")).unwrap();
    sel.register(fd_of(&wr), EVENT_WRITE, s("wr")).unwrap();
    sel.close().expect("close with keys registered");
    // The fds themselves are untouched by closing the selector.
    assert!(is_open(fd_of(&rd)) && is_open(fd_of(&wr)));
    // A fresh selector of the same kind can take them again.
    let mut sel = f.open();
    sel.register(fd_of(&rd), EVENT_READ, s("rd")).expect("register after the old selector closed");
    sel.register(fd_of(&wr), EVENT_WRITE, s("wr")).unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(fd_of(&wr), WRITE, s("wr"))]);
    // Dropping with keys registered closes too.
    drop(sel);
}

fn test_get_key<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    let key = sel.register(fd_of(&rd), EVENT_READ, s("data")).unwrap().clone();
    assert_eq!(Some(&key), sel.get_key(fd_of(&rd)));
    assert_eq!(sel.get_key(fd_of(&rd)).map(|k| k.data.clone()), Some(s("data")));
    // Unknown fds.
    assert!(sel.get_key(999_999).is_none());
    assert!(sel.get_key(-1).is_none());
    assert!(sel.get_key(fd_of(&_wr)).is_none());
}

fn test_get_map<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();

    assert_eq!(sel.keys().count(), 0);
    assert!(sel.keys().next().is_none());
    assert_eq!(sel.len(), 0);
    assert!(sel.is_empty());

    let key = sel.register(fd_of(&rd), EVENT_READ, s("data")).unwrap().clone();
    assert!(sel.keys().any(|k| k.fd == fd_of(&rd)));
    assert!(sel.keys().all(|k| k.fd != fd_of(&wr)));
    assert_eq!(sel.keys().collect::<Vec<_>>(), [&key]);
    assert_eq!(sel.keys().map(|k| k.fd).collect::<Vec<_>>(), [fd_of(&rd)]);
    assert_eq!(sel.len(), 1);
    assert!(!sel.is_empty());

    let key_w = sel.register(fd_of(&wr), EVENT_WRITE, s("w")).unwrap().clone();
    let mut all: Vec<SelectorKey<Data>> = sel.keys().cloned().collect();
    all.sort_by_key(|k| k.fd);
    let mut expected = vec![key.clone(), key_w];
    expected.sort_by_key(|k| k.fd);
    assert_eq!(all, expected);
    assert_eq!(sel.len(), 2);

    // The view follows the selector.
    sel.unregister(fd_of(&wr)).unwrap();
    assert_eq!(sel.keys().collect::<Vec<_>>(), [&key]);
    sel.unregister(fd_of(&rd)).unwrap();
    assert_eq!(sel.keys().count(), 0);
    assert!(sel.is_empty());
}

fn test_select<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();
    sel.register(fd_of(&rd), EVENT_READ, s("rd")).unwrap();
    let wr_key = sel.register(fd_of(&wr), EVENT_WRITE, s("wr")).unwrap().clone();

    let _watchdog = Watchdog::arm("select(None)");
    let result: Vec<(SelectorKey<Data>, Events)> =
        sel.select(None).expect("select").map(|(key, events)| (key.clone(), events)).collect();
    for (_, events) in &result {
        assert!(!events.is_empty());
        assert!((EVENT_READ | EVENT_WRITE).contains(*events));
    }
    assert_eq!(result, [(wr_key, EVENT_WRITE)]);
}

/// CPython's test_selector: many pairs; each message makes exactly its own
/// reader ready.
fn test_selector<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    const NUM_SOCKETS: usize = 12;
    const MSG: &[u8] = b" This is a test.";
    let pairs: Vec<_> = (0..NUM_SOCKETS).map(|_| socketpair()).collect();
    for (i, (rd, wr)) in pairs.iter().enumerate() {
        sel.register(fd_of(rd), EVENT_READ, format!("r{i}")).unwrap();
        sel.register(fd_of(wr), EVENT_WRITE, format!("w{i}")).unwrap();
    }
    let mut writers: Vec<usize> = (0..NUM_SOCKETS).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut bufs = Vec::new();
    while !writers.is_empty() {
        let entries = ready(&mut sel, None);
        let ready_writers: Vec<RawFd> =
            entries.iter().filter(|(_, ev, _)| ev.contains(EVENT_WRITE)).map(|e| e.0).collect();
        assert!(!ready_writers.is_empty(), "no sockets ready for writing");
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let chosen = ready_writers[(seed >> 33) as usize % ready_writers.len()];
        let i = pairs.iter().position(|(_, wr)| fd_of(wr) == chosen).expect("a known writer");
        assert!(writers.contains(&i));
        (&pairs[i].1).write_all(MSG).unwrap();

        let mut ready_readers = Vec::new();
        for _ in 0..50 {
            ready_readers = ready(&mut sel, Some(Duration::ZERO))
                .into_iter()
                .filter(|(_, ev, _)| ev.contains(EVENT_READ))
                .collect::<Vec<_>>();
            if !ready_readers.is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ready_readers, [(fd_of(&pairs[i].0), READ, format!("r{i}"))]);
        let mut buf = [0u8; MSG.len()];
        (&pairs[i].0).read_exact(&mut buf).unwrap();
        bufs.push(buf.to_vec());
        assert_eq!(sel.unregister(fd_of(&pairs[i].1)).unwrap().data, format!("w{i}"));
        assert_eq!(sel.unregister(fd_of(&pairs[i].0)).unwrap().data, format!("r{i}"));
        writers.retain(|&w| w != i);
    }
    assert_eq!(bufs, vec![MSG.to_vec(); NUM_SOCKETS]);
    assert!(sel.is_empty());
}

/// Issue #23009: select works with nothing registered.
fn test_empty_select<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (entries, elapsed) = timed(|| ready(&mut sel, Some(Duration::ZERO)));
    assert!(entries.is_empty());
    assert!(elapsed < LATE, "select(ZERO) on an empty selector blocked for {elapsed:?}");
    // Also once something was registered and removed again.
    let (rd, _wr) = socketpair();
    sel.register(fd_of(&rd), EVENT_WRITE, s("gone")).unwrap();
    sel.unregister(fd_of(&rd)).unwrap();
    assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
}

/// Issues #23009, #29255 (CPython's kqueue test_empty_select_timeout, run for
/// all): with nothing registered, a timeout is a plain sleep.
fn test_empty_select_timeout<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    for timeout in [Duration::from_millis(60), Duration::from_micros(2_500)] {
        let (entries, elapsed) = timed(|| ready(&mut sel, Some(timeout)));
        assert!(entries.is_empty());
        assert_not_early(elapsed, timeout);
    }
}

fn test_timeout<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();

    sel.register(fd_of(&wr), EVENT_WRITE, s("wr")).unwrap();
    let start = Instant::now();
    assert_eq!(ready(&mut sel, Some(Duration::ZERO)).len(), 1);
    assert_eq!(ready(&mut sel, None).len(), 1);
    assert!(start.elapsed() < LATE);

    sel.unregister(fd_of(&wr)).unwrap();
    sel.register(fd_of(&rd), EVENT_READ, s("rd")).unwrap();
    let start = Instant::now();
    assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
    assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
    assert!(start.elapsed() < LATE, "select(ZERO) blocked");

    let timeout = Duration::from_millis(100);
    let (entries, elapsed) = timed(|| ready(&mut sel, Some(timeout)));
    assert!(entries.is_empty());
    assert_not_early(elapsed, timeout);
}

/// CPython's test_select_interrupt_noraise: a signal handler that returns
/// normally interrupts the wait (`EINTR`), and select retries with the
/// remaining timeout (PEP 475) instead of returning early or failing.
fn test_select_interrupt_noraise<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    sel.register(fd_of(&rd), EVENT_READ, s("rd")).unwrap();
    let timeout = Duration::from_millis(150);
    let hits = signal_hits();
    let signaller = signal_me(3, Duration::from_millis(30), || {});
    let (result, elapsed) = timed(|| sel.select(Some(timeout)).map(|r| r.len()));
    signaller.join().expect("signalling thread");
    assert!(signal_hits() > hits, "no signal arrived, so nothing was interrupted");
    assert_eq!(result.expect("an interrupted select retries, it does not fail"), 0);
    assert_not_early(elapsed, timeout);
}

/// `select(None)` interrupted by signals keeps waiting until an fd is ready.
fn test_select_interrupt_blocking<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();
    sel.register(fd_of(&rd), EVENT_READ, s("rd")).unwrap();
    let hits = signal_hits();
    // The signaller owns `wr`: if it fails, the socket closes and rd is readable anyway.
    let signaller = signal_me(2, Duration::from_millis(25), move || (&wr).write_all(b"wake").unwrap());
    let entries = ready(&mut sel, None);
    signaller.join().expect("signalling thread");
    assert!(signal_hits() > hits, "no signal arrived");
    assert_eq!(entries, [(fd_of(&rd), READ, s("rd"))], "an interrupted select(None) returned early");
}

/// CPython's ScalableSelectorMixIn.test_above_fd_setsize, scaled down: more
/// fds than `FD_SETSIZE`, all in one selector. select(2) cannot take the
/// fds at or above `FD_SETSIZE` (InvalidInput) but keeps the others.
fn test_above_fd_setsize<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = exclusive();
    let setsize = SETSIZE;
    let num_fds = 2 * (setsize + 64);
    let limit = raise_fd_limit(num_fds + 256);
    assert!(limit >= num_fds + 64, "this test needs {num_fds} fds and some room, RLIMIT_NOFILE is {limit}");
    let mut sel = f.open();
    let pairs: Vec<_> = (0..num_fds / 2).map(|_| socketpair()).collect();
    let mut writers = Vec::new();
    let mut highest = 0;
    for (rd, wr) in &pairs {
        for (fd, events) in [(fd_of(rd), EVENT_READ), (fd_of(wr), EVENT_WRITE)] {
            highest = highest.max(fd);
            let result = sel.register(fd, events, fd.to_string()).map(|k| k.fd);
            if f.is(Backend::Select) && fd >= setsize as RawFd {
                assert_kind(result, ErrorKind::InvalidInput);
                assert!(sel.get_key(fd).is_none());
            } else {
                assert_eq!(result.expect("register"), fd);
                if events == EVENT_WRITE {
                    writers.push(fd);
                }
            }
        }
    }
    assert!(highest >= setsize as RawFd, "never got above FD_SETSIZE (highest fd {highest})");
    if !f.is(Backend::Select) {
        assert_eq!(writers.len(), num_fds / 2);
        assert_eq!(sel.len(), num_fds);
    }
    let entries = ready(&mut sel, None);
    let seen: Vec<RawFd> = entries.iter().map(|e| e.0).collect();
    writers.sort_unstable();
    assert_eq!(seen, writers, "one select returns every writable fd, and nothing else");
    assert!(entries.iter().all(|(fd, ev, data)| *ev == WRITE && *data == fd.to_string()));
}

/// gh-110038: an fd registered for both events, ready for both, is seen
/// with both in one select (here: in one entry).
fn test_select_read_write<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (sock1, sock2) = socketpair();
    (&sock2).write_all(b"foo").unwrap();
    let my_key = sel.register(fd_of(&sock1), EVENT_READ | EVENT_WRITE, s("both")).unwrap().clone();
    let _watchdog = Watchdog::arm("select(None)");
    let result: Vec<(SelectorKey<Data>, Events)> =
        sel.select(None).unwrap().map(|(key, events)| (key.clone(), events)).collect();
    assert_eq!(result, [(my_key, EVENT_READ | EVENT_WRITE)]);
}

/// CPython's test_fileno, asked of every selector (reaching the fd itself
/// needs the concrete type; see `epoll_selector_fd` below): a backend whose
/// capabilities declare a kernel object holds exactly one fd of its own,
/// close-on-exec, from `new` until it is dropped; the others hold none.
/// Exclusive, so that no other test opens or closes an fd meanwhile: the
/// selector's fd, if any, is the lowest free number.
fn test_fileno_like<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = exclusive();
    let lowest_free = || fd_of(&std::fs::File::open("/dev/null").expect("open /dev/null"));
    let open_fds = || (0..4096).filter(|&fd| is_open(fd)).count();
    let (before, count) = (lowest_free(), open_fds());
    let sel = f.open();
    let held = open_fds() - count;
    if f.backend.capabilities().kernel_object {
        assert_eq!(held, 1, "{}: exactly one fd of its own", f.backend);
        assert!(is_open(before), "{}: its fd is the lowest free number, {before}", f.backend);
        // SAFETY: F_GETFD only reads the descriptor flags.
        let flags = unsafe { libc::fcntl(before, libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0, "{}: its fd must be close-on-exec", f.backend);
    } else {
        assert_eq!(held, 0, "{}: a selector without a kernel object holds no fd", f.backend);
    }
    drop(sel);
    assert_eq!(open_fds(), count, "{}: dropping the selector frees every fd it held", f.backend);
}

/// CPython's EpollSelectorTestCase.test_register_file, asked of every backend:
/// epoll refuses a regular file (and keeps no key); the others accept it and
/// report it ready at once.
fn test_register_file<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let file = std::fs::File::open(std::env::current_exe().unwrap()).expect("open a regular file");
    let result = sel.register(fd_of(&file), EVENT_READ, s("file")).cloned();
    if f.is(Backend::Epoll) {
        assert_errno(result, libc::EPERM);
        assert!(sel.get_key(fd_of(&file)).is_none(), "the key must not be kept");
        assert!(sel.is_empty());
        assert_kind(sel.unregister(fd_of(&file)), ErrorKind::NotFound);
    } else {
        result.expect("register a regular file");
        assert_eq!(ready(&mut sel, Some(BOUND)), [(fd_of(&file), READ, s("file"))]);
    }
}

/// CPython's KqueueSelectorTestCase.test_register_bad_fd, and the contract's
/// "select/poll make no syscall at register": a closed fd.
fn test_register_bad_fd<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = exclusive();
    let mut sel = f.open();
    let (other, _peer) = socketpair();
    sel.register(fd_of(&other), EVENT_READ, s("other")).unwrap();
    let (rd, _wr) = socketpair();
    let bad = rd.into_raw_fd();
    close_fd(bad);
    assert!(!is_open(bad));

    let result = sel.register(bad, EVENT_READ | EVENT_WRITE, s("bad")).cloned();
    if f.checks_at_register() {
        assert_errno(result, libc::EBADF);
        assert!(sel.get_key(bad).is_none(), "an OS refusal keeps no key");
        assert_eq!(sel.len(), 1);
        assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
        return;
    }
    let key = result.expect("select and poll make no syscall at register");
    assert_eq!((key.fd, key.events), (bad, BOTH));
    assert_eq!(sel.len(), 2);
    if f.is(Backend::Poll) || f.is(Backend::IoUring) {
        // POLLNVAL (io_uring: the poll fails with EBADF): reported ready
        // for everything registered.
        assert_eq!(ready(&mut sel, Some(BOUND)), [(bad, BOTH, s("bad"))]);
    } else {
        // select(2) refuses the whole call.
        let err = sel.select(Some(BOUND)).map(|r| r.len()).expect_err("select(2) on a closed fd");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    }
    assert_eq!(sel.unregister(bad).expect("unregister").data, "bad");
    assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty(), "the selector works again");
}

// ------------------------------------------------------------------ the contract, sentence by sentence

/// register: fd < 0 or empty events → InvalidInput, nothing kept.
fn contract_register_invalid_input<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    for bad in [-1, -2, RawFd::MIN] {
        for events in [READ, WRITE, BOTH] {
            assert_kind(sel.register(bad, events, s("neg")), ErrorKind::InvalidInput);
        }
    }
    assert_kind(sel.register(fd_of(&rd), Events::empty(), s("none")), ErrorKind::InvalidInput);
    assert_kind(sel.register(-1, Events::empty(), s("both wrong")), ErrorKind::InvalidInput);
    assert!(sel.is_empty());
    assert!(sel.get_key(fd_of(&rd)).is_none());
    // Refusals leave the selector usable.
    sel.register(fd_of(&rd), WRITE, s("ok")).unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(fd_of(&rd), WRITE, s("ok"))]);
}

/// register of a registered fd with invalid events reports the events first
/// (as CPython does), and the existing key survives either way.
fn contract_register_twice_keeps_the_first<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    let r = fd_of(&rd);
    sel.register(r, WRITE, s("first")).unwrap();
    assert_kind(sel.register(r, WRITE, s("second")), ErrorKind::AlreadyExists);
    assert_kind(sel.register(r, READ, s("third")), ErrorKind::AlreadyExists);
    assert_kind(sel.register(r, Events::empty(), s("fourth")), ErrorKind::InvalidInput);
    let key = sel.get_key(r).unwrap();
    assert_eq!((key.events, key.data.as_str()), (WRITE, "first"));
    assert_eq!(sel.len(), 1);
    assert_eq!(ready(&mut sel, Some(BOUND)), [(r, WRITE, s("first"))]);
}

/// (select backend) fd ≥ FD_SETSIZE → InvalidInput; FD_SETSIZE - 1 is fine;
/// every other backend takes high fds.
fn contract_fd_setsize<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = exclusive();
    let setsize = SETSIZE as RawFd;
    raise_fd_limit(SETSIZE + 256);
    let mut sel = f.open();
    let (a, b) = socketpair();
    let (c, d) = socketpair();
    let high = moved_to(a, setsize).unwrap_or_else(|err| panic!("cannot open an fd at FD_SETSIZE: {err}"));
    let just_below = moved_to(c, setsize - 1).expect("an fd below FD_SETSIZE");
    assert_eq!(fd_of(&just_below), setsize - 1, "FD_SETSIZE - 1 is free (no other test holds an fd)");
    assert!(fd_of(&high) >= setsize);
    let result = sel.register(fd_of(&high), READ, s("high")).map(|k| k.fd);
    if f.is(Backend::Select) {
        assert_kind(result, ErrorKind::InvalidInput);
        assert!(sel.get_key(fd_of(&high)).is_none());
    } else {
        assert_eq!(result.expect("only select has FD_SETSIZE"), fd_of(&high));
    }
    sel.register(fd_of(&just_below), READ, s("below")).expect("FD_SETSIZE - 1 is a valid fd");
    (&b).write_all(b"x").unwrap();
    (&d).write_all(b"x").unwrap();
    let mut expected: Vec<_> = [(fd_of(&high), "high"), (fd_of(&just_below), "below")]
        .into_iter()
        .filter(|&(fd, _)| sel.get_key(fd).is_some())
        .map(|(fd, data)| (fd, READ, s(data)))
        .collect();
    expected.sort_by_key(|e| e.0);
    assert_eq!(ready(&mut sel, Some(BOUND)), expected);
}

/// modify with empty or unknown events → InvalidInput, key unchanged.
fn contract_modify_invalid_events<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    let r = fd_of(&rd);
    let before = sel.register(r, WRITE, s("kept")).unwrap().clone();
    for bad in [Events::empty(), Events::from_bits_retain(4), Events::from_bits_retain(0xf0)] {
        assert_kind(sel.modify(r, bad, s("lost")), ErrorKind::InvalidInput);
        assert_eq!(sel.get_key(r), Some(&before), "an invalid modify must leave the key unchanged");
    }
    assert_eq!(sel.len(), 1);
    assert_eq!(ready(&mut sel, Some(BOUND)), [(r, WRITE, s("kept"))]);
    // Unregistered and invalid: the fd is looked up first.
    assert_kind(sel.modify(fd_of(&_wr), Events::empty(), s("x")), ErrorKind::NotFound);
}

/// modify changes what the kernel watches, both ways.
fn contract_modify_changes_what_is_reported<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();
    let r = fd_of(&rd);
    sel.register(r, WRITE, s("w")).unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(r, WRITE, s("w"))]);
    let key = sel.modify(r, READ, s("r")).unwrap().clone();
    assert_eq!(key, SelectorKey { fd: r, events: READ, data: s("r") });
    let timeout = Duration::from_millis(40);
    let (entries, elapsed) = timed(|| ready(&mut sel, Some(timeout)));
    assert!(entries.is_empty(), "WRITE is no longer watched: {entries:?}");
    assert_not_early(elapsed, timeout);
    (&wr).write_all(b"x").unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(r, READ, s("r"))]);
    sel.modify(r, READ | WRITE, s("rw")).unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(r, BOTH, s("rw"))]);
}

/// `select(None)` blocks until something is ready.
fn contract_select_none_blocks_until_ready<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, wr) = socketpair();
    sel.register(fd_of(&rd), READ, s("rd")).unwrap();
    let delay = Duration::from_millis(60);
    let start = Instant::now();
    let writer = thread::spawn(move || {
        thread::sleep(delay);
        (&wr).write_all(b"late").unwrap();
        wr
    });
    let entries = ready(&mut sel, None);
    let elapsed = start.elapsed();
    let _wr = writer.join().expect("writer");
    assert_eq!(entries, [(fd_of(&rd), READ, s("rd"))]);
    assert!(elapsed >= delay, "select(None) returned after {elapsed:?}, before anything was ready");
}

/// Timeout rounding: a timeout that is not a whole number of milliseconds
/// (or of microseconds) is rounded up, never down.
fn contract_timeout_rounding<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (rd, _wr) = socketpair();
    sel.register(fd_of(&rd), READ, s("idle")).unwrap();
    for timeout in [
        Duration::from_nanos(1),
        Duration::from_nanos(999),
        Duration::from_micros(1),
        Duration::from_micros(100),
        Duration::from_nanos(999_999),
        Duration::from_nanos(1_000_001),
        Duration::from_micros(1_500),
        Duration::from_nanos(2_999_999),
    ] {
        for _ in 0..3 {
            let (entries, elapsed) = timed(|| ready(&mut sel, Some(timeout)));
            assert!(entries.is_empty());
            assert_not_early(elapsed, timeout);
        }
    }
}

/// A huge timeout is clamped, not overflowed: with something ready it
/// returns at once; with nothing ready it waits (it neither fails nor turns
/// into a zero timeout) until an fd becomes ready.
fn contract_huge_timeout_is_clamped<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let huge = [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(i64::MAX as u64),
        Duration::from_secs(1 << 40),
        Duration::from_millis(i32::MAX as u64 + 1),
        Duration::from_secs(100_000_001),
    ];
    let mut sel = f.open();
    let (rd, wr) = socketpair();
    sel.register(fd_of(&wr), WRITE, s("wr")).unwrap();
    for timeout in huge {
        let (entries, elapsed) = timed(|| ready(&mut sel, Some(timeout)));
        assert_eq!(entries, [(fd_of(&wr), WRITE, s("wr"))], "timeout {timeout:?}");
        assert!(elapsed < LATE);
    }
    sel.unregister(fd_of(&wr)).unwrap();
    sel.register(fd_of(&rd), READ, s("rd")).unwrap();
    let delay = Duration::from_millis(20);
    for timeout in [Duration::MAX, Duration::from_millis(i32::MAX as u64 + 1)] {
        let start = Instant::now();
        let writer = {
            let wr = wr.try_clone().unwrap();
            thread::spawn(move || {
                thread::sleep(delay);
                (&wr).write_all(b"x").unwrap();
            })
        };
        let entries = ready(&mut sel, Some(timeout));
        let elapsed = start.elapsed();
        writer.join().unwrap();
        assert_eq!(entries, [(fd_of(&rd), READ, s("rd"))], "timeout {timeout:?}");
        assert!(elapsed >= delay, "select({timeout:?}) returned early, after {elapsed:?}");
        let mut buf = [0u8; 8];
        assert_eq!((&rd).read(&mut buf).unwrap(), 1);
    }
}

/// Each ready fd appears once, events merged and masked by the key's.
fn contract_once_merged_and_masked<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    // Ready for both, registered for both, read-only, write-only.
    let pairs: Vec<_> = (0..3).map(|_| socketpair()).collect();
    for (_, peer) in &pairs {
        (&*peer).write_all(b"pending").unwrap();
    }
    let fds: Vec<RawFd> = pairs.iter().map(|(a, _)| fd_of(a)).collect();
    sel.register(fds[0], BOTH, s("both")).unwrap();
    sel.register(fds[1], READ, s("read")).unwrap();
    sel.register(fds[2], WRITE, s("write")).unwrap();
    let mut expected =
        vec![(fds[0], BOTH, s("both")), (fds[1], READ, s("read")), (fds[2], WRITE, s("write"))];
    expected.sort_by_key(|e| e.0);
    assert_eq!(ready(&mut sel, Some(BOUND)), expected);

    // Masked readiness neither shows nor ends a wait early: writable but
    // registered for READ; readable but full and registered for WRITE.
    let mut sel = f.open();
    let (idle, _idle_peer) = socketpair();
    let (mut full, full_peer) = socketpair();
    fill(&mut full);
    (&full_peer).write_all(b"unwanted").unwrap();
    sel.register(fd_of(&idle), READ, s("idle")).unwrap();
    sel.register(fd_of(&full), WRITE, s("full")).unwrap();
    let timeout = Duration::from_millis(50);
    let (entries, elapsed) = timed(|| ready(&mut sel, Some(timeout)));
    assert!(entries.is_empty(), "unregistered events were reported: {entries:?}");
    assert_not_early(elapsed, timeout);
}

/// Hang-up/error conditions are readiness for whatever is registered, so the
/// reader or writer makes its next call and sees the condition.
fn contract_hangup_is_readiness<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let (reader, reader_peer) = socketpair();
    let (mut writer, writer_peer) = socketpair();
    let (both, both_peer) = socketpair();
    fill(&mut writer);
    sel.register(fd_of(&reader), READ, s("reader")).unwrap();
    sel.register(fd_of(&writer), WRITE, s("writer")).unwrap();
    sel.register(fd_of(&both), BOTH, s("both")).unwrap();
    let before = ready(&mut sel, Some(Duration::ZERO));
    assert_eq!(before, [(fd_of(&both), WRITE, s("both"))]);
    drop((reader_peer, writer_peer, both_peer));

    let mut expected = vec![
        (fd_of(&reader), READ, s("reader")),
        (fd_of(&writer), WRITE, s("writer")),
        (fd_of(&both), BOTH, s("both")),
    ];
    expected.sort_by_key(|e| e.0);
    assert_eq!(ready(&mut sel, Some(BOUND)), expected);
    let mut buf = [0u8; 4];
    assert_eq!((&reader).read(&mut buf).unwrap(), 0, "the reader sees end of file");
    let err = (&writer).write(b"x").expect_err("the writer sees the error");
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
}

/// All ready fds come back from one call, however many are registered.
fn contract_many_fds_in_one_call<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let pairs: Vec<_> = (0..150).map(|_| socketpair()).collect();
    let mut expected = Vec::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        (&*b).write_all(b"x").unwrap();
        sel.register(fd_of(a), READ, format!("a{i}")).unwrap();
        sel.register(fd_of(b), READ, format!("b{i}")).unwrap();
        expected.push((fd_of(a), READ, format!("a{i}")));
    }
    expected.sort_by_key(|e| e.0);
    assert_eq!(sel.len(), 300);
    assert_eq!(ready(&mut sel, Some(BOUND)), expected);
    // And once they are all readable, all 300 at once.
    for (a, _) in &pairs {
        (&*a).write_all(b"y").unwrap();
    }
    assert_eq!(ready(&mut sel, Some(BOUND)).len(), 300);
}

/// `Selected` is an exact-size iterator of `(&SelectorKey, Events)`; its
/// length follows iteration. Results borrow the selector, so they are
/// collected before calling back into it.
fn contract_selected_is_exact_size<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let pairs: Vec<_> = (0..4).map(|_| socketpair()).collect();
    for (a, _) in &pairs {
        sel.register(fd_of(a), WRITE, s("w")).unwrap();
    }
    let mut selected = sel.select(Some(BOUND)).unwrap();
    assert_eq!(selected.len(), 4);
    assert_eq!(selected.size_hint(), (4, Some(4)));
    let (first, events) = selected.next().unwrap();
    assert_eq!((events, first.data.as_str()), (WRITE, "w"));
    assert_eq!(selected.len(), 3);
    let rest: Vec<RawFd> = selected.by_ref().map(|(key, _)| key.fd).collect();
    assert_eq!(rest.len(), 3);
    assert_eq!(selected.len(), 0);
    assert!(selected.next().is_none());
    // Collected, so the selector can be changed.
    for fd in rest {
        sel.unregister(fd).unwrap();
    }
    assert_eq!(sel.len(), 1);
    let selected = sel.select(Some(Duration::ZERO)).unwrap();
    assert_eq!(selected.len(), 1);
}

/// `Keys` iterates every key once, by reference, and `len` agrees.
fn contract_keys_iterator<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let mut sel = f.open();
    let pairs: Vec<_> = (0..5).map(|_| socketpair()).collect();
    let mut expected = HashSet::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        sel.register(fd_of(a), READ, format!("a{i}")).unwrap();
        sel.register(fd_of(b), BOTH, format!("b{i}")).unwrap();
        expected.insert((fd_of(a), READ, format!("a{i}")));
        expected.insert((fd_of(b), BOTH, format!("b{i}")));
    }
    let keys: Keys<'_, Data> = sel.keys();
    let seen: Vec<(RawFd, Events, Data)> = keys.map(|k| (k.fd, k.events, k.data.clone())).collect();
    assert_eq!(seen.len(), sel.len());
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
    for key in sel.keys() {
        assert_eq!(sel.get_key(key.fd), Some(key));
    }
}

/// Drop closes, with keys registered, and nothing is leaked or freed twice.
fn contract_drop_with_keys<S: Selector<Data>>(f: &Flavour<S>) {
    let _fds = shared();
    let (a, _b) = socketpair();
    for _ in 0..3 {
        let mut sel = f.open();
        sel.register(fd_of(&a), BOTH, "x".repeat(100)).unwrap();
        drop(sel);
    }
    assert!(is_open(fd_of(&a)), "dropping a selector must not close registered fds");
}

// ------------------------------------------------------------------ instantiation

/// One module per selector kind, one `#[test]` per case (CPython's subclasses).
macro_rules! instantiate {
    ($($case:ident),* $(,)?) => {
        mod select_selector {
            use super::*;
            $( #[test] fn $case() {
                super::$case(&Flavour::concrete(Backend::Select, SelectSelector::<Data>::new));
            } )*
        }
        mod poll_selector {
            use super::*;
            $( #[test] fn $case() {
                super::$case(&Flavour::concrete(Backend::Poll, PollSelector::<Data>::new));
            } )*
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        mod epoll_selector {
            use super::*;
            $( #[test] fn $case() {
                super::$case(&Flavour::concrete(Backend::Epoll, tulip_selectors::EpollSelector::<Data>::new));
            } )*
        }
        #[cfg(any(
            target_os = "macos", target_os = "ios", target_os = "freebsd",
            target_os = "netbsd", target_os = "openbsd", target_os = "dragonfly"
        ))]
        mod kqueue_selector {
            use super::*;
            $( #[test] fn $case() {
                super::$case(&Flavour::concrete(Backend::Kqueue, tulip_selectors::KqueueSelector::<Data>::new));
            } )*
        }
        #[cfg(target_os = "linux")]
        mod io_uring_selector {
            use super::*;
            $( #[test] fn $case() {
                // Compiled for Linux; run where the kernel allows io_uring.
                if !Backend::available().contains(&Backend::IoUring) {
                    println!("skipped: {:?}", Backend::IoUring.open::<Data>().err());
                    return;
                }
                super::$case(&Flavour::concrete(Backend::IoUring, tulip_selectors::IoUringSelector::<Data>::new));
            } )*
        }
        mod default_selector {
            use super::*;
            $( #[test] fn $case() {
                super::$case(&Flavour::concrete(Backend::default(), DefaultSelector::<Data>::new));
            } )*
        }
        /// Every backend this target has, boxed as `dyn Selector`.
        mod dyn_available {
            use super::*;
            $( #[test] fn $case() {
                for backend in Backend::available() {
                    println!("backend: {backend}");
                    super::$case(&Flavour::boxed(backend));
                }
            } )*
        }
    };
}

instantiate! {
    test_register,
    test_unregister,
    test_unregister_after_fd_close,
    test_unregister_after_fd_close_and_reuse,
    test_modify,
    test_modify_data_only_makes_no_syscall,
    test_modify_unregister,
    test_close,
    test_get_key,
    test_get_map,
    test_select,
    test_selector,
    test_empty_select,
    test_empty_select_timeout,
    test_timeout,
    test_select_interrupt_noraise,
    test_select_interrupt_blocking,
    test_above_fd_setsize,
    test_select_read_write,
    test_fileno_like,
    test_register_file,
    test_register_bad_fd,
    contract_register_invalid_input,
    contract_register_twice_keeps_the_first,
    contract_fd_setsize,
    contract_modify_invalid_events,
    contract_modify_changes_what_is_reported,
    contract_select_none_blocks_until_ready,
    contract_timeout_rounding,
    contract_huge_timeout_is_clamped,
    contract_once_merged_and_masked,
    contract_hangup_is_readiness,
    contract_many_fds_in_one_call,
    contract_selected_is_exact_size,
    contract_keys_iterator,
    contract_drop_with_keys,
}

// ------------------------------------------------------------------ types, constants, Backend

/// Every contract signature, pinned: a drift fails to compile.
#[test]
fn contract_signatures() {
    type D = u32;

    fn trait_methods<S: Selector<D>>() {
        let _: for<'a> fn(&'a mut S, RawFd, Events, D) -> io::Result<&'a SelectorKey<D>> = S::register;
        let _: fn(&mut S, RawFd) -> io::Result<SelectorKey<D>> = S::unregister;
        let _: for<'a> fn(&'a mut S, RawFd, Events, D) -> io::Result<&'a SelectorKey<D>> = S::modify;
        let _: for<'a> fn(&'a mut S, Option<Duration>) -> io::Result<Selected<'a, D>> = S::select;
        let _: for<'a> fn(&'a S, RawFd) -> Option<&'a SelectorKey<D>> = S::get_key;
        let _: for<'a> fn(&'a S) -> Keys<'a, D> = S::keys;
        let _: fn(&S) -> usize = S::len;
        let _: fn(&S) -> bool = S::is_empty;
        let _: fn(&S) -> Backend = S::backend;
        let _: fn(S) -> io::Result<()> = S::close;
    }
    trait_methods::<SelectSelector<D>>();
    trait_methods::<PollSelector<D>>();
    trait_methods::<DefaultSelector<D>>();
    trait_methods::<Box<dyn Selector<D>>>();
    trait_methods::<Box<SelectSelector<D>>>();

    // impl<T, S: Selector<T> + ?Sized> Selector<T> for Box<S>
    fn boxes<T, S: Selector<T> + ?Sized>() {
        fn is_selector<T, X: Selector<T>>() {}
        is_selector::<T, Box<S>>();
    }
    boxes::<D, dyn Selector<D>>();
    boxes::<String, dyn Selector<String>>();

    // The object-safe part, through `dyn`.
    fn through_dyn(sel: &mut dyn Selector<D>) -> io::Result<usize> {
        let _: Option<&SelectorKey<D>> = sel.get_key(0);
        let _: Keys<'_, D> = sel.keys();
        let _: (usize, bool, Backend) = (sel.len(), sel.is_empty(), sel.backend());
        let selected: Selected<'_, D> = sel.select(Some(Duration::ZERO))?;
        Ok(selected.len())
    }

    // Constructors.
    let _: fn() -> io::Result<SelectSelector<D>> = SelectSelector::<D>::new;
    let _: fn() -> io::Result<PollSelector<D>> = PollSelector::<D>::new;
    let _: fn() -> io::Result<DefaultSelector<D>> = DefaultSelector::<D>::new;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _: fn() -> io::Result<tulip_selectors::EpollSelector<D>> =
            tulip_selectors::EpollSelector::<D>::new;
        fn raw<X: AsRawFd>() {}
        raw::<tulip_selectors::EpollSelector<D>>();
    }
    #[cfg(target_os = "linux")]
    {
        let _: fn() -> io::Result<tulip_selectors::IoUringSelector<D>> =
            tulip_selectors::IoUringSelector::<D>::new;
        fn raw<X: AsRawFd>() {}
        raw::<tulip_selectors::IoUringSelector<D>>();
    }
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    {
        let _: fn() -> io::Result<tulip_selectors::KqueueSelector<D>> =
            tulip_selectors::KqueueSelector::<D>::new;
        fn raw<X: AsRawFd>() {}
        raw::<tulip_selectors::KqueueSelector<D>>();
    }

    // Backend.
    let _: [Backend; 5] = Backend::ALL;
    let _: fn() -> Vec<Backend> = Backend::available;
    let _: fn() -> Backend = Backend::default;
    let _: fn(Backend) -> io::Result<Box<dyn Selector<D>>> = Backend::open::<D>;
    let _: fn(&str) -> Result<Backend, io::Error> = <Backend as FromStr>::from_str;
    fn backend_traits<X: Copy + Eq + Debug + Display + FromStr<Err = io::Error>>() {}
    backend_traits::<Backend>();
    let _ = [Backend::Select, Backend::Poll, Backend::Epoll, Backend::Kqueue, Backend::IoUring];

    // Events, keys, results.
    const R: Events = EVENT_READ;
    const W: Events = EVENT_WRITE;
    let _: u8 = Events::READ.bits();
    fn events_traits<X: Copy + Clone + Debug + Eq + Hash>() {}
    events_traits::<Events>();
    fn key_traits<X: Debug + Clone + PartialEq + Eq>() {}
    key_traits::<SelectorKey<D>>();
    key_traits::<SelectorKey<String>>();
    let key = SelectorKey::<D> { fd: 0 as RawFd, events: R | W, data: 7 };
    let SelectorKey { fd, events, data } = key.clone();
    assert_eq!((fd, events, data), (0, BOTH, 7));

    fn exact<'a, I: ExactSizeIterator<Item = (&'a SelectorKey<D>, Events)>>(it: I) -> usize {
        it.len()
    }
    fn key_iter<'a, I: Iterator<Item = &'a SelectorKey<D>>>(it: I) -> usize {
        it.count()
    }
    let _fds = shared();
    let mut sel = SelectSelector::<D>::new().unwrap();
    assert_eq!(exact(sel.select(Some(Duration::ZERO)).unwrap()), 0);
    assert_eq!(key_iter(sel.keys()), 0);
    assert_eq!(through_dyn(&mut sel).unwrap(), 0);
    let mut boxed: Box<dyn Selector<D>> = Backend::Poll.open::<D>().unwrap();
    assert_eq!(through_dyn(&mut *boxed).unwrap(), 0);
}

#[test]
fn events_constants_and_traits() {
    assert_eq!(EVENT_READ, Events::READ);
    assert_eq!(EVENT_WRITE, Events::WRITE);
    assert_eq!(Events::READ.bits(), 1);
    assert_eq!(Events::WRITE.bits(), 2);
    assert_ne!(EVENT_READ, EVENT_WRITE);
    assert_eq!(EVENT_READ | EVENT_WRITE, Events::all());
    let copy = EVENT_READ;
    let set: HashSet<Events> = [copy, EVENT_READ, EVENT_WRITE, BOTH].into_iter().collect();
    assert_eq!(set.len(), 3);
    assert!(format!("{BOTH:?}").contains("READ"));
}

#[test]
fn selector_key_derives() {
    let key = SelectorKey { fd: 5, events: EVENT_WRITE, data: s("payload") };
    let clone = key.clone();
    assert_eq!(key, clone);
    assert_ne!(key, SelectorKey { data: s("other"), ..clone.clone() });
    assert_ne!(key, SelectorKey { events: EVENT_READ, ..clone.clone() });
    assert_ne!(key, SelectorKey { fd: 6, ..clone });
    let text = format!("{key:?}");
    assert!(text.contains("SelectorKey") && text.contains("payload") && text.contains('5'), "{text}");
}

#[test]
fn backend_display_and_from_str() {
    let names = [
        (Backend::Select, "select"),
        (Backend::Poll, "poll"),
        (Backend::Epoll, "epoll"),
        (Backend::Kqueue, "kqueue"),
        (Backend::IoUring, "io_uring"),
    ];
    for (backend, name) in names {
        assert_eq!(backend.to_string(), name);
        assert_eq!(format!("{backend}"), name);
        let title: String = name[..1].to_uppercase() + &name[1..];
        let alternating: String = name
            .chars()
            .enumerate()
            .map(|(i, c)| if i % 2 == 1 { c.to_ascii_uppercase() } else { c })
            .collect();
        for spelling in [name.to_string(), name.to_uppercase(), title, alternating] {
            assert_eq!(spelling.parse::<Backend>().unwrap(), backend, "{spelling}");
            assert_eq!(Backend::from_str(&spelling).unwrap(), backend);
        }
        // Formatted like the string it is: width, fill and alignment apply.
        assert_eq!(format!("[{backend:>8}]"), format!("[{name:>8}]"));
        assert_eq!(format!("[{backend:-<9}]"), format!("[{name:-<9}]"));
        assert_eq!(format!("[{backend:^10}]"), format!("[{name:^10}]"));
        assert_eq!(format!("[{backend:.2}]"), format!("[{name:.2}]"));
        let copied = backend;
        assert_eq!(copied, backend);
        assert!(!format!("{backend:?}").is_empty());
    }
    for bad in ["", "devpoll", "select2", "epol", "iocp", "poll\n", " kqueue", "io-uring", "iouring", "uring"]
    {
        let err: io::Error = bad.parse::<Backend>().expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
}

#[test]
fn backend_all_available_default() {
    let all: HashSet<String> = Backend::ALL.iter().map(|b| b.to_string()).collect();
    assert_eq!(all.len(), 5, "ALL holds each backend once");
    for b in [Backend::Select, Backend::Poll, Backend::Epoll, Backend::Kqueue, Backend::IoUring] {
        assert!(Backend::ALL.contains(&b));
    }
    let available = Backend::available();
    assert!(!available.is_empty());
    assert_eq!(available[0], Backend::default());
    assert!(available.iter().all(|b| Backend::ALL.contains(b)));
    assert!(available.contains(&Backend::Select) && available.contains(&Backend::Poll));
    if let Some(position) = available.iter().position(|&b| b == Backend::IoUring) {
        assert_eq!(position, available.len() - 1, "io_uring, where there, comes last: {available:?}");
    }
    let unique: HashSet<String> = available.iter().map(|b| b.to_string()).collect();
    assert_eq!(unique.len(), available.len());
    if cfg!(any(target_os = "linux", target_os = "android")) {
        assert_eq!(Backend::default(), Backend::Epoll);
        assert!(available.contains(&Backend::Epoll));
        assert!(!available.contains(&Backend::Kqueue));
    }
    if cfg!(any(target_os = "macos", target_os = "freebsd", target_os = "openbsd", target_os = "netbsd")) {
        assert_eq!(Backend::default(), Backend::Kqueue);
    }
    let _fds = shared();
    assert_eq!(DefaultSelector::<Data>::new().unwrap().backend(), Backend::default());
}

#[test]
fn backend_open() {
    let _fds = shared();
    for backend in Backend::ALL {
        match backend.open::<Data>() {
            Ok(sel) => {
                assert!(Backend::available().contains(&backend), "{backend} opened but is not available");
                assert_eq!(sel.backend(), backend);
                assert!(sel.is_empty());
                sel.close().expect("close of a Box<dyn Selector> drops it");
            }
            Err(err) => {
                assert!(!Backend::available().contains(&backend), "{backend}: {err}");
                assert_eq!(err.kind(), ErrorKind::Unsupported, "{backend}: {err}");
            }
        }
    }
    for backend in Backend::available() {
        assert!(backend.open::<Data>().is_ok());
    }
}

#[test]
fn boxed_concrete_selectors_are_selectors() {
    let _fds = shared();
    fn use_it<S: Selector<Data>>(mut sel: S) {
        let (a, _b) = socketpair();
        sel.register(fd_of(&a), WRITE, s("a")).unwrap();
        assert_eq!(ready(&mut sel, Some(BOUND)), [(fd_of(&a), WRITE, s("a"))]);
        assert_eq!(sel.unregister(fd_of(&a)).unwrap().data, "a");
        sel.close().unwrap();
    }
    use_it(Box::new(SelectSelector::<Data>::new().unwrap()));
    use_it(Box::new(PollSelector::<Data>::new().unwrap()));
    use_it(Box::new(DefaultSelector::<Data>::new().unwrap()));
    let dynamic: Box<dyn Selector<Data>> = Box::new(SelectSelector::<Data>::new().unwrap());
    use_it(dynamic);
    // A box of a box.
    use_it(Box::new(Backend::Poll.open::<Data>().unwrap()));
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll_handle {
    use super::*;
    use tulip_selectors::EpollSelector;

    /// CPython's test_fileno, and "OS handles are created close-on-exec and
    /// closed on drop" (exclusive, so the number cannot be reused meanwhile).
    #[test]
    fn epoll_selector_fd() {
        let _fds = exclusive();
        let sel = EpollSelector::<Data>::new().unwrap();
        let fd = sel.as_raw_fd();
        assert!(fd >= 0);
        // SAFETY: F_GETFD only reads the descriptor flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags != -1 && flags & libc::FD_CLOEXEC != 0, "the epoll fd must be close-on-exec");
        drop(sel);
        assert!(!is_open(fd), "drop must close the epoll fd");

        let sel = EpollSelector::<Data>::new().unwrap();
        let fd = sel.as_raw_fd();
        sel.close().expect("close");
        assert!(!is_open(fd), "close must close the epoll fd");
    }
}

#[cfg(target_os = "linux")]
mod io_uring_handle {
    use super::*;
    use tulip_selectors::IoUringSelector;

    /// The io_uring fd: close-on-exec, an io_uring instance, closed on drop
    /// and by `close` (exclusive, so the number cannot be reused meanwhile).
    #[test]
    fn io_uring_selector_fd() {
        if !Backend::available().contains(&Backend::IoUring) {
            println!("skipped: {:?}", Backend::IoUring.open::<Data>().err());
            return;
        }
        let _fds = exclusive();
        let sel = IoUringSelector::<Data>::new().unwrap();
        let fd = sel.as_raw_fd();
        assert!(fd >= 0);
        // SAFETY: F_GETFD only reads the descriptor flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags != -1 && flags & libc::FD_CLOEXEC != 0, "the io_uring fd must be close-on-exec");
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("readlink");
        assert!(link.to_string_lossy().contains("io_uring"), "{link:?}");
        drop(sel);
        assert!(!is_open(fd), "drop must close the io_uring fd");

        let sel = IoUringSelector::<Data>::new().unwrap();
        let fd = sel.as_raw_fd();
        sel.close().expect("close");
        assert!(!is_open(fd), "close must close the io_uring fd");
    }
}
