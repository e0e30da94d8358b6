//! Tasks (Tulip's `tasks.py`): a [`Task`] drives a Rust future on the loop,
//! polling it each time its waker fires; [`run_until_complete`] runs the
//! loop until one future is done.
//!
//! [`run_until_complete`]: crate::BaseSelectorEventLoop::run_until_complete
//!
//! A task is polled as an ordinary callback of the ready queue. Its waker
//! ([`TaskWaker`]) queues it at most once however often it fires before
//! the task runs; a wake from another thread goes through the threadsafe
//! queue (see `local.rs`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::base_events::PollIo;
use crate::callbacks::{Callback, Ran};
use crate::events::Cancel;
use crate::futures::Cancelled;
use crate::local::{LoopLocal, TaskWaker, ROOT_TASK};
use crate::panics::catch;
use crate::selectors::Selector;
use crate::threadsafe::closed_error;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers};

enum Outcome<T> {
    Pending,
    Done(io::Result<T>),
    /// The awaiter moved the result out.
    Taken,
}

/// What a [`Task`] handle shares with the running task.
struct TaskShared<T> {
    outcome: RefCell<Outcome<T>>,
    cancel_requested: Cell<bool>,
    cancelled: Cell<bool>,
    /// Who awaits the task.
    joiners: RefCell<Vec<Waker>>,
    /// The task's own waker: `cancel` queues the task with it.
    waker: Waker,
}

impl<T> TaskShared<T> {
    fn is_done(&self) -> bool {
        !matches!(*self.outcome.borrow(), Outcome::Pending)
    }

    fn complete(&self, result: io::Result<T>, cancelled: bool) {
        *self.outcome.borrow_mut() = Outcome::Done(result);
        self.cancelled.set(cancelled);
        let joiners = std::mem::take(&mut *self.joiners.borrow_mut());
        joiners.into_iter().for_each(Waker::wake);
    }
}

/// A future scheduled on a loop (asyncio's `Task`), made by
/// [`create_task`](BaseSelectorEventLoop::create_task).
///
/// Awaiting the handle gives the future's output, or an error: a
/// [`Cancelled`] error after [`cancel`](Self::cancel), "task panicked …" if
/// its future panicked (the panic is also reported to the loop's exception
/// handler). The handle is cheap to clone (an `Rc` inside); dropping every
/// handle does not stop the task. The output is moved to the (first) awaiter.
pub struct Task<T> {
    shared: Rc<TaskShared<T>>,
}

impl<T> Clone for Task<T> {
    fn clone(&self) -> Self {
        Task { shared: Rc::clone(&self.shared) }
    }
}

impl<T> Task<T> {
    /// Asks the task to stop: its future is dropped instead of being polled
    /// again (at its next poll point, not from inside this call) and
    /// awaiters get a [`Cancelled`] error. A pending
    /// [`Future`](crate::Future) the task was awaiting is cancelled with it,
    /// as in asyncio. Called while the task runs (from inside its own
    /// future), the task ends cancelled even if that poll completes it: its
    /// output is dropped. `false` if the task was done already.
    pub fn cancel(&self) -> bool {
        if self.shared.is_done() {
            return false;
        }
        if !self.shared.cancel_requested.replace(true) {
            self.shared.waker.wake_by_ref();
        }
        true
    }

    /// `true` once the task finished: its future completed, panicked, or was
    /// dropped by cancellation.
    pub fn done(&self) -> bool {
        self.shared.is_done()
    }

    /// `true` if the task finished by cancellation.
    pub fn cancelled(&self) -> bool {
        self.shared.cancelled.get()
    }

    /// Calls `f` with the outcome of a finished task, without taking it
    /// (for `wait` and task groups); `None` while it runs or once taken.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&io::Result<T>) -> R) -> Option<R> {
        match &*self.shared.outcome.borrow() {
            Outcome::Done(result) => Some(f(result)),
            Outcome::Pending | Outcome::Taken => None,
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("done", &self.done()).field("cancelled", &self.cancelled()).finish()
    }
}

impl<T> Future for Task<T> {
    type Output = io::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let mut outcome = self.shared.outcome.borrow_mut();
        match std::mem::replace(&mut *outcome, Outcome::Taken) {
            Outcome::Done(result) => Poll::Ready(result),
            Outcome::Taken => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "task's result was already taken",
            ))),
            Outcome::Pending => {
                *outcome = Outcome::Pending;
                let mut joiners = self.shared.joiners.borrow_mut();
                if !joiners.iter().any(|waker| waker.will_wake(cx.waker())) {
                    joiners.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The loop's side of a task: the future, polled as a ready-queue entry.
struct TaskCell<L, F: Future> {
    id: u64,
    future: RefCell<Option<Pin<Box<F>>>>,
    wake_state: Arc<TaskWaker<L>>,
    /// A [`Waker`] over `wake_state`.
    waker: Waker,
    shared: Rc<TaskShared<F::Output>>,
    local: Weak<LoopLocal<L>>,
    origin: &'static Location<'static>,
}

impl<L, F: Future> TaskCell<L, F> {
    /// Drops the future (outside any borrow: its drop may do anything),
    /// records the outcome, and forgets the task. A panic in the future's
    /// drop goes on to the loop, but only after the awaiters were told:
    /// they must not wait for a task that is gone.
    fn finish(&self, result: io::Result<F::Output>, cancelled: bool) {
        let future = self.future.borrow_mut().take();
        let dropped = if cancelled {
            // What it awaited is cancelled with it, as in asyncio.
            catch(|| crate::futures::drop_abandoned(future))
        } else {
            catch(|| drop(future))
        };
        self.shared.complete(result, cancelled);
        if let Some(local) = self.local.upgrade() {
            local.remove_task(self.id);
        }
        if let Err((message, location)) = dropped {
            let at = location.map_or_else(String::new, |at| format!(" at {at}"));
            panic::resume_unwind(Box::new(format!("task's future panicked while dropped{at}: {message}")));
        }
    }
}

impl<L, F: Future> Cancel for TaskCell<L, F> {
    /// Discards the task as its loop closes: the future is dropped now,
    /// even if a queued poll still holds the task, and the task ends
    /// cancelled. (A user's [`Task::cancel`] goes through the task's next
    /// run instead.)
    fn cancel(&self) {
        let future = self.future.try_borrow_mut().ok().and_then(|mut slot| slot.take());
        drop(future);
        if !self.shared.is_done() {
            self.shared.complete(Err(Cancelled.into()), true);
        }
    }

    fn cancelled(&self) -> bool {
        false
    }
}

impl<L, F: Future> Callback<L> for TaskCell<L, F> {
    fn run(&self, _event_loop: &L) -> Ran {
        self.wake_state.take_scheduled();
        if self.shared.is_done() {
            return Ran::Skipped;
        }
        if self.shared.cancel_requested.get() {
            self.finish(Err(Cancelled.into()), true);
            return Ran::Kept;
        }
        let polled = {
            let Ok(mut slot) = self.future.try_borrow_mut() else { return Ran::Skipped };
            let Some(future) = slot.as_mut() else { return Ran::Skipped };
            let mut cx = Context::from_waker(&self.waker);
            catch(|| future.as_mut().poll(&mut cx))
        };
        match polled {
            Ok(Poll::Pending) => {}
            // Cancelled while it ran (by itself, or by what it called):
            // `cancel` said it would be, so it is, as in asyncio.
            Ok(Poll::Ready(_)) if self.shared.cancel_requested.get() => {
                self.finish(Err(Cancelled.into()), true)
            }
            Ok(Poll::Ready(output)) => self.finish(Ok(output), false),
            Err((message, location)) => {
                let at = location.map_or_else(String::new, |at| format!(" at {at}"));
                let message = format!("task panicked{at}: {message}");
                self.finish(Err(io::Error::other(message.clone())), false);
                // The loop reports it to its exception handler.
                panic::resume_unwind(Box::new(message));
            }
        }
        Ran::Kept
    }

    fn origin(&self) -> &'static Location<'static> {
        self.origin
    }
}

/// `create_task` for any loop with the engine inside.
fn spawn<L, F>(event_loop: &L, future: F, origin: &'static Location<'static>) -> Task<F::Output>
where
    L: PollIo + AbstractEventLoop,
    F: Future + 'static,
{
    let local = event_loop.engine().local();
    let id = local.next_task_id();
    let wake_state = Arc::new(TaskWaker::new(local, id, event_loop.handle()));
    let waker = Waker::from(Arc::clone(&wake_state));
    let shared = Rc::new(TaskShared {
        outcome: RefCell::new(Outcome::Pending),
        cancel_requested: Cell::new(false),
        cancelled: Cell::new(false),
        joiners: RefCell::new(Vec::new()),
        waker: waker.clone(),
    });
    let cell = Rc::new(TaskCell {
        id,
        future: RefCell::new(Some(Box::pin(future))),
        wake_state,
        waker,
        shared: Rc::clone(&shared),
        local: Rc::downgrade(local),
        origin,
    });
    if local.insert_task(id, cell.clone()) {
        local.push(cell);
    } else {
        cell.finish(Err(closed_error()), false);
    }
    Task { shared }
}

/// `run_until_complete` for any loop with the engine inside. The future is
/// polled between iterations, while the loop counts as running, each time
/// its waker fired.
fn block_on<L, F>(event_loop: &L, future: F) -> io::Result<F::Output>
where
    L: PollIo + AbstractEventLoop,
    F: Future,
{
    let engine = event_loop.engine();
    if engine.is_closed() {
        return Err(closed_error());
    }
    if engine.is_running() {
        return Err(io::Error::other("this event loop is already running"));
    }
    let wake_state = Arc::new(TaskWaker::new(engine.local(), ROOT_TASK, event_loop.handle()));
    let waker = Waker::from(Arc::clone(&wake_state));
    let mut future = pin!(future);
    let mut output = None;
    let mut panicked = None;
    // Polls the future; `true` once it is done (or panicked).
    let mut poll = || {
        let mut cx = Context::from_waker(&waker);
        // A panic goes to our caller, with the standard hook's message.
        match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready(value)) => {
                output = Some(value);
                true
            }
            Err(payload) => {
                panicked = Some(payload);
                true
            }
        }
    };
    let finished = Cell::new(false);
    engine.run_until(event_loop, || {
        if wake_state.take_scheduled() && poll() {
            finished.set(true);
        }
        finished.get()
    })?;
    if !finished.get() && wake_state.take_scheduled() {
        // Stopped by `stop()`, maybe in the very iteration that completed
        // the future (a callback that sets a result and stops): as asyncio,
        // which then finds the future done, give the result.
        poll();
    }
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
    output.ok_or_else(|| io::Error::other("event loop stopped before the future completed"))
}

/// Coroutines on the selector loop (asyncio's `create_task`,
/// `run_until_complete`, `create_future`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Runs the loop until `future` is done and returns its output. The
    /// future may borrow the loop (it lives on this call's stack), and
    /// counts as running inside the loop: `is_running()` is `true` in it.
    ///
    /// ```
    /// use tulip::selectors::Backend;
    ///
    /// let event_loop = tulip::new_event_loop(Backend::Poll)?;
    /// let answer = event_loop.run_until_complete(async {
    ///     tulip::sleep(&event_loop, std::time::Duration::from_millis(1)).await;
    ///     42
    /// })?;
    /// assert_eq!(answer, 42);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// If the loop is closed or already running, if it was stopped before
    /// the future completed, or if the selector fails.
    ///
    /// # Panics
    ///
    /// If the future panics (the panic is passed on to the caller).
    pub fn run_until_complete<F: Future>(&self, future: F) -> io::Result<F::Output> {
        block_on(self, future)
    }

    /// Schedules `future` to run on the loop as a [`Task`]; its first poll
    /// is on the next iteration. On a closed loop the future is dropped and
    /// the task is done at once, with the "event loop is closed" error.
    ///
    /// A task cannot borrow the loop (it must be `'static`): a task that
    /// needs the loop captures an `Rc` of it. When the loop is closed (or
    /// dropped), pending tasks' futures are dropped and the tasks end
    /// cancelled; that also breaks such `Rc` cycles.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use tulip::selectors::Backend;
    ///
    /// let event_loop = Rc::new(tulip::new_event_loop(Backend::Poll)?);
    /// let lp = Rc::clone(&event_loop);
    /// let task = event_loop.create_task(async move {
    ///     tulip::sleep(&*lp, Duration::from_millis(1)).await;
    ///     "done"
    /// });
    /// assert_eq!(event_loop.run_until_complete(task)??, "done");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn create_task<F: Future + 'static>(&self, future: F) -> Task<F::Output> {
        spawn(self, future, Location::caller())
    }

    /// A new pending [`Future`](crate::Future) whose done callbacks run on this loop.
    pub fn create_future<T: 'static>(&self) -> crate::Future<T> {
        crate::Future::new(self.engine().local().clone())
    }

    /// Tasks created on this loop and not finished yet.
    pub fn pending_tasks(&self) -> usize {
        self.engine().local().task_count()
    }
}
