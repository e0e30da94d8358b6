//! The entry point (asyncio's `runners.py`): [`run`] makes a loop, runs a
//! program's main future on it, winds the loop down and closes it;
//! [`get_running_loop`] finds that loop from code deep inside the program.
//!
//! How the main future reaches the loop: `run` hands it an
//! `Rc<DynSelectorEventLoop>`, the type [`new_event_loop`] makes, so the
//! main future can borrow the loop, clone the `Rc` into tasks, and pick the
//! backend at run time ([`run_on`]).
//!
//! How code reaches the running loop without being handed it: `run` keeps
//! a weak reference to its loop in a thread-local for as long as it runs,
//! and [`get_running_loop`] upgrades it. That is honest in Rust's terms
//! because `run` owns the loop in an `Rc`: the getter hands out a strong
//! reference, never a borrow that could outlive the loop, and the
//! thread-local keeps nothing alive. A loop run otherwise
//! ([`run_until_complete`](crate::BaseSelectorEventLoop::run_until_complete)
//! or `run_forever` on a loop of your own) is not seen: those take
//! `&self`, and a `&self` cannot become an `Rc` (and a loop of another
//! selector type would need a getter per type).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use crate::selectors::Backend;
use crate::{new_event_loop, AbstractEventLoop, DynSelectorEventLoop};

thread_local! {
    /// The loop of the [`run`] in progress on this thread.
    static RUNNING: RefCell<Option<Weak<DynSelectorEventLoop>>> = const { RefCell::new(None) };
}

/// Keeps the loop in [`RUNNING`] for the duration of a [`run`], however
/// the run ends.
struct Entered;

impl Entered {
    fn enter(event_loop: &Rc<DynSelectorEventLoop>) -> io::Result<Entered> {
        RUNNING
            .try_with(|running| {
                let mut running = running.borrow_mut();
                if running.as_ref().is_some_and(|lp| lp.strong_count() > 0) {
                    return Err(io::Error::other("tulip::run cannot be called from a running tulip::run"));
                }
                *running = Some(Rc::downgrade(event_loop));
                Ok(Entered)
            })
            .unwrap_or_else(|_| Err(io::Error::other("the thread is exiting")))
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = RUNNING.try_with(|running| running.borrow_mut().take());
    }
}

/// Runs a program's main future on a new loop over the default backend
/// and returns its output (asyncio's `asyncio.run`).
///
/// `main` is called with the loop (an `Rc`, to clone into tasks) and
/// returns the future to run; the future may borrow the loop. When it is
/// done, the tasks still pending are cancelled (as by
/// [`Task::cancel`](crate::Task::cancel): a [`Future`](crate::Future) a
/// task awaits is cancelled with it) and the loop runs until they have
/// ended, plus one iteration for what their drops queued. (Rust has no
/// asynchronous clean-up: a task ends by cancellation when its future is
/// dropped, so "letting it finish its cancellation" is running that drop
/// on the loop.) Then the loop is closed, which also closes the
/// transports and servers left open.
/// While `run` runs, [`get_running_loop`] returns its loop.
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
///
/// let answer = tulip::run(|event_loop| async move {
///     let lp = Rc::clone(&event_loop);
///     let helper = event_loop.create_task(async move {
///         tulip::sleep(&lp, Duration::from_millis(1)).await;
///         21
///     });
///     let forgotten = event_loop.create_task(std::future::pending::<()>()); // cancelled at the end
///     let _ = forgotten;
///     helper.await.map(|half| half * 2)
/// })??;
/// assert_eq!(answer, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// If the loop cannot be made; if `run` is called inside another `run` on
/// this thread (asyncio: "cannot be called from a running event loop");
/// if the loop was stopped before the main future completed, or its
/// selector failed; if closing the loop fails.
///
/// # Panics
///
/// If the main future panics: the panic goes on to the caller, after the
/// tasks were cancelled and the loop closed.
pub fn run<M, F>(main: M) -> io::Result<F::Output>
where
    M: FnOnce(Rc<DynSelectorEventLoop>) -> F,
    F: Future,
{
    run_on(Backend::default(), main)
}

/// [`run`] on a loop over `backend` (asyncio's `loop_factory`).
///
/// ```
/// use tulip::selectors::Backend;
///
/// let name = tulip::run_on(Backend::Poll, |event_loop| async move { event_loop.backend() })??;
/// assert_eq!(name, Backend::Poll);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// As [`run`]; [`Unsupported`](io::ErrorKind::Unsupported) if `backend`
/// is not built for this target.
///
/// # Panics
///
/// As [`run`].
pub fn run_on<M, F>(backend: Backend, main: M) -> io::Result<F::Output>
where
    M: FnOnce(Rc<DynSelectorEventLoop>) -> F,
    F: Future,
{
    let event_loop = Rc::new(new_event_loop(backend)?);
    let entered = Entered::enter(&event_loop)?;
    let outcome =
        panic::catch_unwind(AssertUnwindSafe(|| event_loop.run_until_complete(main(Rc::clone(&event_loop)))));
    let wound_down = panic::catch_unwind(AssertUnwindSafe(|| cancel_pending_tasks(&event_loop)));
    drop(entered);
    let closed = event_loop.close();
    let output = match outcome {
        Ok(output) => output,
        Err(payload) => panic::resume_unwind(payload),
    };
    let output = output?;
    match wound_down {
        Ok(wound_down) => wound_down?,
        Err(payload) => panic::resume_unwind(payload),
    }
    closed?;
    Ok(output)
}

/// Cancels the tasks still pending and runs the loop until each has ended
/// (asyncio's `_cancel_all_tasks`), then one more iteration, which does
/// not wait, for what their drops queued (a transport's `connection_lost`,
/// say). Tasks made meanwhile are left to `close`, which drops them.
fn cancel_pending_tasks(event_loop: &DynSelectorEventLoop) -> io::Result<()> {
    let engine = event_loop.engine();
    let queue = engine.ready();
    let cancelled = queue.cancel_parked();
    if cancelled.is_empty() {
        return Ok(());
    }
    engine.run_until(event_loop, || cancelled.iter().all(|&id| !queue.is_parked(id)))?;
    // A stop before `run_forever` makes it one iteration with no wait.
    event_loop.stop();
    event_loop.run_forever()
}

/// The loop of the [`run`] (or [`run_on`]) in progress on this thread
/// (asyncio's `get_running_loop`), for code that was not handed it.
///
/// ```
/// async fn deep_inside() -> std::io::Result<()> {
///     let event_loop = tulip::get_running_loop()?;
///     tulip::sleep(&event_loop, std::time::Duration::from_millis(1)).await;
///     Ok(())
/// }
///
/// tulip::run(|_| deep_inside())??;
/// assert!(tulip::get_running_loop().is_err()); // no run in progress
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// `run` keeps a weak reference to its loop in a thread-local while it
/// runs, and this upgrades it: a strong reference, never a borrow that
/// could outlive the loop, and the thread-local keeps nothing alive. A
/// loop run otherwise (`run_until_complete` or `run_forever` on a loop of
/// your own) is not seen: those take `&self`, and a `&self` cannot become
/// the `Rc` this returns (nor would one getter fit loops of every selector
/// type). Hand such a loop, or an `Rc` of it, to the code that needs it.
///
/// # Errors
///
/// [`NotFound`](io::ErrorKind::NotFound) outside `run`, or while its loop
/// is not running (as it closes).
pub fn get_running_loop() -> io::Result<Rc<DynSelectorEventLoop>> {
    RUNNING
        .try_with(|running| running.borrow().as_ref().and_then(Weak::upgrade))
        .ok()
        .flatten()
        .filter(|event_loop| event_loop.is_running())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no running event loop (get_running_loop sees tulip::run's loop)",
            )
        })
}
