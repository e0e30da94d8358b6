//! Helpers shared by the tests of the synchronization primitives, queues,
//! task groups, timeouts and `wait`/`as_completed`/`shield`: stepping the
//! loop one iteration at a time (asyncio's tests step with `sleep(0)`),
//! bounded runs, and an ordered log.

#![allow(dead_code)] // each test binary uses its own subset

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tulip::{AbstractEventLoop, DynSelectorEventLoop};

/// The longest one bounded run may take.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Slack for "not much later than": generous, for loaded machines.
pub const SLACK: Duration = Duration::from_secs(2);

/// Runs exactly one loop iteration: what was ready runs, and what it
/// wakes runs on the next one.
pub fn one_iteration(lp: &DynSelectorEventLoop) {
    lp.stop();
    lp.run_forever().expect("run_forever");
}

/// Runs `n` loop iterations.
pub fn iterations(lp: &DynSelectorEventLoop, n: usize) {
    (0..n).for_each(|_| one_iteration(lp));
}

/// Runs `fut` to its end within [`LIMIT`]; a hang fails the test.
pub fn run<F: Future>(lp: &DynSelectorEventLoop, fut: F) -> F::Output {
    lp.run_until_complete(tulip::wait_for(lp, fut, LIMIT)).expect("run_until_complete").expect("in time")
}

/// Runs the loop an iteration at a time (with a short pause when nothing
/// is ready) until `done()`, at most [`LIMIT`].
pub fn run_until(lp: &DynSelectorEventLoop, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "still waiting for {what} after {LIMIT:?}");
        run(lp, tulip::sleep(lp, Duration::from_millis(1)));
    }
}

/// A future that is pending once, waking its task first (asyncio's `sleep(0)`).
pub fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// An ordered record of what the tasks did.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    pub fn push(&self, what: impl ToString) {
        self.0.borrow_mut().push(what.to_string());
    }

    pub fn get(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

/// `["a", "b"]` as the `Vec<String>` a [`Log`] holds.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
