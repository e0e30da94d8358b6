//! Tasks (Tulip's `tasks.py`): a [`Task`] drives a Rust future on the loop,
//! polling it each time its waker fires; [`run_until_complete`] runs the
//! loop until one future is done.
//!
//! [`run_until_complete`]: crate::BaseSelectorEventLoop::run_until_complete
//!
//! A task is polled as an ordinary callback of the ready queue, and kept
//! ("parked") by the queue between polls.
//!
//! A [`Waker`] must be `Send + Sync`, so it cannot hold the queue's `Rc`.
//! A [`TaskWaker`] holds the loop's id and the task's id instead. On the
//! loop's own thread, a per-thread registry maps the loop's id to its ready
//! queue, and the wake goes straight into it. Another thread has no entry
//! for that loop, so the wake travels through the loop's threadsafe queue
//! (which also wakes a loop blocked in `select`). An atomic `scheduled`
//! flag makes a task woken many times before it runs run once.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::coroutines::errors::Cancelled;
use crate::event_loop::base_events::PollIo;
use crate::event_loop::events::Cancel;
use crate::event_loop::panics::catch;
use crate::event_loop::ready::ReadyQueue;
use crate::event_loop::ready::{Callback, Ran};
use crate::event_loop::threadsafe::closed_error;
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers, LoopHandle};

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
    queue: Weak<ReadyQueue<L>>,
    origin: &'static Location<'static>,
}

impl<L: 'static, F: Future> TaskCell<L, F> {
    /// Drops the future (outside any borrow: its drop may do anything),
    /// records the outcome, and forgets the task. A panic in the future's
    /// drop goes on to the loop, but only after the awaiters were told:
    /// they must not wait for a task that is gone.
    fn finish(&self, result: io::Result<F::Output>, cancelled: bool) {
        let future = self.future.borrow_mut().take();
        let dropped = if cancelled {
            // What it awaited is cancelled with it, as in asyncio.
            catch(|| crate::coroutines::futures::drop_abandoned(future))
        } else {
            catch(|| drop(future))
        };
        self.shared.complete(result, cancelled);
        if let Some(queue) = self.queue.upgrade() {
            queue.unpark(self.id);
        }
        if let Err((message, location)) = dropped {
            let at = location.map_or_else(String::new, |at| format!(" at {at}"));
            panic::resume_unwind(Box::new(format!("task's future panicked while dropped{at}: {message}")));
        }
    }
}

impl<L: 'static, F: Future> Cancel for TaskCell<L, F> {
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

impl<L: 'static, F: Future> Callback<L> for TaskCell<L, F> {
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
    let queue = event_loop.engine().ready();
    let id = queue.next_parked_id();
    let wake_state = Arc::new(TaskWaker::new(queue, id, event_loop.handle()));
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
        queue: Rc::downgrade(queue),
        origin,
    });
    if queue.park(id, cell.clone()) {
        queue.push(cell);
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
    let wake_state = Arc::new(TaskWaker::new(engine.ready(), ROOT_TASK, event_loop.handle()));
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
        let queue: Weak<dyn crate::coroutines::futures::Schedule> = Rc::downgrade(self.engine().ready()) as _;
        crate::Future::new(queue)
    }

    /// Tasks created on this loop and not finished yet.
    pub fn pending_tasks(&self) -> usize {
        self.engine().ready().parked_count()
    }
}

/// The task id of `run_until_complete`'s future, which the loop does not
/// keep: waking it only makes sure the next iteration does not block.
const ROOT_TASK: u64 = 0;

thread_local! {
    /// The ready queues of the loops living on this thread, by loop id.
    static REGISTRY: RefCell<Vec<(u64, Weak<dyn LocalWake>)>> = const { RefCell::new(Vec::new()) };
}

/// A wake on the loop's thread, seen through the registry.
trait LocalWake {
    fn wake_task(&self, task: u64);
}

impl<L: 'static> LocalWake for ReadyQueue<L> {
    fn wake_task(&self, task: u64) {
        if task == ROOT_TASK {
            // `run_until_complete` polls its future between iterations; a
            // no-op entry keeps the next iteration from blocking meanwhile.
            self.call_soon(|_| {});
        } else {
            self.wake(task);
        }
    }
}

/// The id under which `queue` is in this thread's registry, entering it
/// the first time (forgetting loops that are gone meanwhile).
fn registered<L: 'static>(queue: &Rc<ReadyQueue<L>>) -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let weak: Weak<dyn LocalWake> = Rc::downgrade(queue) as Weak<dyn LocalWake>;
    REGISTRY
        .try_with(|registry| {
            let mut registry = registry.borrow_mut();
            if let Some((id, _)) = registry.iter().find(|(_, entry)| Weak::ptr_eq(entry, &weak)) {
                return *id;
            }
            registry.retain(|(_, entry)| entry.strong_count() > 0);
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            registry.push((id, weak));
            id
        })
        .unwrap_or(0)
}

/// Wakes `task` of loop `loop_id` if that loop lives on this thread;
/// `false` if it does not (or is gone).
fn wake_here(loop_id: u64, task: u64) -> bool {
    let queue = REGISTRY
        .try_with(|registry| {
            let registry = registry.borrow();
            registry.iter().find(|(id, _)| *id == loop_id).and_then(|(_, queue)| queue.upgrade())
        })
        .ok()
        .flatten();
    match queue {
        Some(queue) => {
            queue.wake_task(task);
            true
        }
        None => false,
    }
}

/// The data behind a task's [`Waker`]: `Send + Sync`, it names its task by
/// ids and reaches the loop as the module docs describe.
pub(crate) struct TaskWaker<L> {
    loop_id: u64,
    task: u64,
    /// Set when the task is queued; cleared just before it is polled.
    scheduled: AtomicBool,
    remote: LoopHandle<L>,
}

impl<L: 'static> TaskWaker<L> {
    /// The waker of `task` on the loop of `queue`, which counts as already
    /// scheduled (its creator queues its first poll).
    fn new(queue: &Rc<ReadyQueue<L>>, task: u64, remote: LoopHandle<L>) -> Self {
        TaskWaker { loop_id: registered(queue), task, scheduled: AtomicBool::new(true), remote }
    }

    /// Clears the flag before a poll, so wakes during the poll queue it
    /// again; `true` if it was set.
    fn take_scheduled(&self) -> bool {
        self.scheduled.swap(false, Ordering::AcqRel)
    }
}

impl<L: PollIo + AbstractEventLoop> Wake for TaskWaker<L> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return; // already queued: it will be polled once
        }
        if wake_here(self.loop_id, self.task) {
            return;
        }
        // Another thread: the threadsafe queue wakes the loop, and on its
        // thread the task runs. A closed loop refuses, and nothing is lost
        // that could still run.
        let task = self.task;
        let _ = self.remote.call_soon_threadsafe(move |event_loop: &L| {
            if task != ROOT_TASK {
                event_loop.engine().ready().run_parked(event_loop, task);
            }
        });
    }
}
