//! Shared by the integration tests: the macros that instantiate each test
//! case once per selector backend, watchdogs so no test can hang, a few
//! socket helpers, the fork-and-wait of the fork tests, and (in [`example`])
//! the harness that runs the examples.

#![allow(dead_code, unused_macros)] // each test binary uses its own subset

pub mod example;
pub mod faulty;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tulip::selectors::mechanism::cvt;
use tulip::selectors::{Backend, Selector};
use tulip::{AbstractEventLoop, BaseSelectorEventLoop, DynSelectorEventLoop, IoHandlers, LoopHandle};

/// What the test cases need beyond [`AbstractEventLoop`]: the backend's
/// name and the debug-mode threshold, both inherent methods of
/// [`BaseSelectorEventLoop`].
pub trait TestLoop: AbstractEventLoop {
    fn backend(&self) -> Backend;
    fn set_slow_callback_duration(&self, threshold: Duration);
    fn set_observer(&self, observer: Option<Box<dyn tulip::trace::LoopObserver>>);
}

impl<S: Selector<IoHandlers> + 'static> TestLoop for BaseSelectorEventLoop<S> {
    fn backend(&self) -> Backend {
        BaseSelectorEventLoop::backend(self).expect("the loop is open")
    }
    fn set_slow_callback_duration(&self, threshold: Duration) {
        BaseSelectorEventLoop::set_slow_callback_duration(self, threshold);
    }
    fn set_observer(&self, observer: Option<Box<dyn tulip::trace::LoopObserver>>) {
        BaseSelectorEventLoop::set_observer(self, observer);
    }
}

/// `backend_tests!(runner: a, b)` makes `select::a`, `poll::a`, and
/// `epoll::a`, `kqueue::a` or `io_uring::a`, each calling
/// `common::runner(Backend::…, super::a)`, so a failure names the backend
/// it failed on. A backend's module exists only on targets that build it
/// (the `tulip_epoll`, `tulip_kqueue` and `tulip_io_uring` cfgs, handed over
/// by `tulip-selectors`' build script): a test that cannot run here is not
/// made, rather than passing. io_uring is built on every Linux, but the
/// kernel may refuse it (an old kernel, the sysctl, seccomp): the runners
/// then skip its tests, saying so on stderr.
macro_rules! backend_tests {
    ($runner:ident: $($case:ident),* $(,)?) => {
        #[cfg(tulip_epoll)]
        backend_tests!(@module epoll, Epoll, $runner, $($case),*);
        #[cfg(tulip_kqueue)]
        backend_tests!(@module kqueue, Kqueue, $runner, $($case),*);
        #[cfg(tulip_io_uring)]
        backend_tests!(@module io_uring, IoUring, $runner, $($case),*);
        backend_tests!(@module poll, Poll, $runner, $($case),*);
        backend_tests!(@module select, Select, $runner, $($case),*);

        /// The modules above cover exactly the backends this target has:
        /// their gates and `Backend::available()` must agree.
        #[test]
        fn every_available_backend_is_tested() {
            use tulip::selectors::Backend;
            let mut tested = vec![
                #[cfg(tulip_epoll)]
                epoll::BACKEND,
                #[cfg(tulip_kqueue)]
                kqueue::BACKEND,
                #[cfg(tulip_io_uring)]
                io_uring::BACKEND,
                poll::BACKEND,
                select::BACKEND,
            ];
            let mut available = Backend::available();
            // Built, but refused by this kernel: its tests skip, saying why.
            tested.retain(|backend| *backend != Backend::IoUring || available.contains(backend));
            tested.sort_by_key(|b| b.name());
            available.sort_by_key(|b| b.name());
            assert_eq!(tested, available, "the backends tested here against those built here");
        }
    };
    (@module $module:ident, $variant:ident, $runner:ident, $($case:ident),*) => {
        mod $module {
            /// The backend this module tests.
            pub const BACKEND: tulip::selectors::Backend = tulip::selectors::Backend::$variant;
            $(
                #[test]
                fn $case() {
                    $crate::common::$runner(BACKEND, super::$case);
                }
            )*
        }
    };
}

/// Instantiates every listed case (a `fn case<L: TestLoop>(lp: L)`) once
/// for `SelectorEventLoop` and once per backend through
/// `tulip::new_event_loop` ([`with_loop`]), so a failure names the loop it
/// failed on: `select::fifo`, `epoll::fifo`, `default_loop::fifo`, …
macro_rules! per_backend {
    ($($case:ident),* $(,)?) => {
        mod default_loop {
            $( #[test] fn $case() { super::$case(tulip::SelectorEventLoop::new().unwrap()) } )*
        }
        backend_tests!(with_loop: $($case),*);
    };
}

/// `true` if this kernel refuses `backend` though it is built here (only
/// io_uring can be: an old kernel, the sysctl, a seccomp filter), after
/// saying so on stderr: the test is then skipped, with its reason shown.
fn refused_here(backend: Backend) -> bool {
    if Backend::available().contains(&backend) {
        return false;
    }
    let reason = tulip::new_event_loop(backend).err().map_or_else(String::new, |err| err.to_string());
    eprintln!("skipped: this kernel refuses {backend}: {reason}");
    true
}

/// Runs `test(backend)`.
pub fn with_backend(backend: Backend, test: fn(Backend)) {
    if refused_here(backend) {
        return;
    }
    test(backend);
}

/// Runs `test` on this thread with a fresh loop over `backend`.
pub fn with_loop(backend: Backend, test: fn(DynSelectorEventLoop)) {
    if refused_here(backend) {
        return;
    }
    test(tulip::new_event_loop(backend).expect("new_event_loop"));
}

thread_local! {
    /// What the loop of the test on this thread reported.
    static REPORTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// How long any one test run by [`run_on_thread`] may take before it is failed.
pub const THREAD_LIMIT: Duration = Duration::from_secs(60);

/// Runs `test` with a fresh loop over `backend` on its own thread, failing
/// if it takes longer than [`THREAD_LIMIT`] or if anything reaches the
/// loop's exception handler.
pub fn run_on_thread(backend: Backend, test: fn(DynSelectorEventLoop)) {
    if refused_here(backend) {
        return;
    }
    let (done, finished) = mpsc::channel();
    let worker = thread::Builder::new()
        .name(format!("test-{backend}"))
        .spawn(move || {
            let event_loop = tulip::new_event_loop(backend).expect("new_event_loop");
            // Anything reported to the default handler fails the test; tests
            // that expect reports install their own handler.
            event_loop.set_exception_handler(Some(Box::new(|_, context| {
                REPORTS.with(|reports| reports.borrow_mut().push(context.to_string()));
            })));
            test(event_loop);
            let reports = REPORTS.with(|reports| reports.take());
            assert!(reports.is_empty(), "the loop reported: {reports:?}");
            let _ = done.send(());
        })
        .expect("spawn test thread");
    match finished.recv_timeout(THREAD_LIMIT) {
        Ok(()) => worker.join().expect("test thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => unreachable!("the test thread ended without reporting"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{backend}: test still running after {THREAD_LIMIT:?}")
        }
    }
}

/// Stops a loop from another thread if the test has not finished within
/// `limit`, so a broken loop fails the test instead of hanging it. Drop it
/// (or call [`Watchdog::disarm`]) when the loop has returned.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn new<L: AbstractEventLoop>(event_loop: &L, limit: Duration) -> Watchdog {
        let handle: LoopHandle<L> = event_loop.handle();
        let (done, wait) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&fired);
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                flag.store(true, Ordering::SeqCst);
                // Keep stopping until the loop is closed or the test ends: one
                // stop may land between two `run_forever` calls.
                while handle.stop().is_ok() {
                    if wait.recv_timeout(Duration::from_millis(100)).is_ok() {
                        break;
                    }
                }
            }
        });
        Watchdog { done: Some(done), fired, thread: Some(thread) }
    }

    /// `true` if the limit passed and the watchdog stopped the loop.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Ends the watchdog, failing the test if it had to stop the loop.
    pub fn disarm(mut self) {
        self.finish();
        assert!(!self.fired(), "the watchdog had to stop the loop: the test would have hung");
    }

    fn finish(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            thread.join().expect("watchdog thread");
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Runs `lp` until stopped, with a watchdog of `limit`; panics if the loop
/// fails or had to be stopped by the watchdog.
pub fn run_bounded<L: AbstractEventLoop>(lp: &L, limit: Duration) {
    let watchdog = Watchdog::new(lp, limit);
    lp.run_forever().expect("run_forever");
    watchdog.disarm();
}

/// Five seconds: the longest any single loop run in these tests may take.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Forks; the child runs `child` and exits with 0 if it passed (its error
/// on stderr, 1, otherwise; 2 if it panicked), at once, without unwinding
/// into the parent's code or running its destructors; the parent waits
/// for it and gets the verdict. For a test binary of one test, so that no
/// other test thread runs while the process forks.
pub fn in_child(child: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    // SAFETY: fork(2); the child only runs `child`, then _exit.
    let pid = cvt(unsafe { libc::fork() }).map_err(|err| format!("fork: {err}"))?;
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)) {
            Ok(Ok(())) => 0,
            Ok(Err(message)) => {
                let _ = std::io::stderr().write_all(format!("child: {message}\n").as_bytes());
                1
            }
            Err(_) => 2,
        };
        // SAFETY: ends the child at once, without the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is writable.
    cvt(unsafe { libc::waitpid(pid, &mut status, 0) }).map_err(|err| format!("waitpid: {err}"))?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("the child failed (status {status:#x})"))
    }
}

/// A connected pair of non-blocking Unix sockets.
pub fn socketpair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// A socketpair whose second end is readable (one byte waiting).
pub fn readable_pair() -> (UnixStream, UnixStream) {
    let (mut a, b) = socketpair();
    a.write_all(b"x").unwrap();
    (a, b)
}

/// Sets `SO_LINGER` to zero and closes: the peer gets a reset, not an EOF.
pub fn reset(stream: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt with a valid pointer to a `linger` and its size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(stream);
}

/// Reads and discards what is waiting on a non-blocking socket.
pub fn drain(mut sock: &UnixStream) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return total,
            Err(err) => panic!("read: {err}"),
        }
    }
}

pub fn fd(sock: &UnixStream) -> RawFd {
    sock.as_raw_fd()
}

/// Asserts that `result` failed with `kind` and a message containing `text`.
#[track_caller]
pub fn assert_fails<T: std::fmt::Debug>(result: io::Result<T>, kind: io::ErrorKind, text: &str) {
    let err = result.expect_err("expected an error");
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.to_string().contains(text), "{err:?} should say {text:?}");
}

/// Runs `f`, expecting a panic whose message contains `expected`.
pub fn assert_panics_with(expected: &str, f: impl FnOnce()) {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.contains(expected), "panic message {message:?} does not contain {expected:?}");
}

/// Runs a closure when dropped: stands for a value captured by a callback
/// whose destructor calls back into the loop (a transport unregistering
/// itself, say).
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// A new flag and the guard that sets it when dropped: shows that a future
/// (or what it owns) was dropped.
pub fn drop_flag() -> (Rc<Cell<bool>>, OnDrop<impl FnMut()>) {
    let flag = Rc::new(Cell::new(false));
    let setter = Rc::clone(&flag);
    (flag, OnDrop(move || setter.set(true)))
}

/// A fresh Unix socket path under the temp dir, removed on drop.
pub struct UnixPath(pub PathBuf);

impl UnixPath {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("tulip-test-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        UnixPath(path)
    }
}

impl Drop for UnixPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
