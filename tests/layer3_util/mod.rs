//! Shared by the Layer 3 tests: one test per backend, each under a watchdog.
#![allow(dead_code)] // each test file uses part of it

use std::panic;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tulip::selectors::Backend;
use tulip::{AbstractEventLoop, DynSelectorEventLoop};

thread_local! {
    /// What the loop of the test on this thread reported.
    static REPORTS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How long any one test may take before it is failed.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `test` with a fresh loop over `backend` on its own thread, failing
/// if it takes longer than [`WATCHDOG`]. Backends not built here are skipped.
pub fn run(backend: Backend, test: fn(DynSelectorEventLoop)) {
    if !Backend::available().contains(&backend) {
        eprintln!("{backend} is not available here: skipped");
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
    match finished.recv_timeout(WATCHDOG) {
        Ok(()) => worker.join().expect("test thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => unreachable!("the test thread ended without reporting"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{backend}: test still running after {WATCHDOG:?}"),
    }
}

/// `backend_tests!(a, b)` makes `select::a`, `poll::a`, `epoll::a`,
/// `kqueue::a`, … each running the function `a(event_loop)` on that backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(@backend select, Select, $($name),*);
        $crate::backend_tests!(@backend poll, Poll, $($name),*);
        $crate::backend_tests!(@backend epoll, Epoll, $($name),*);
        $crate::backend_tests!(@backend kqueue, Kqueue, $($name),*);
    };
    (@backend $module:ident, $variant:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    $crate::layer3_util::run(tulip::selectors::Backend::$variant, super::$name);
                }
            )*
        }
    };
}

/// Sets a flag when dropped: shows that a future (or what it owns) was dropped.
pub struct DropFlag(pub std::rc::Rc<std::cell::Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// A new flag and the guard that sets it.
pub fn drop_flag() -> (std::rc::Rc<std::cell::Cell<bool>>, DropFlag) {
    let flag = std::rc::Rc::new(std::cell::Cell::new(false));
    (flag.clone(), DropFlag(flag))
}
