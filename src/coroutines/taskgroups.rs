//! Task groups (asyncio 3.11's `taskgroups.py`): structured concurrency.
//! A [`TaskGroup`] runs a body that starts child tasks, and finishes only
//! when all of them have; when one fails, the others and the body are
//! cancelled, and every failure comes back together in an [`ErrorGroup`].
//!
//! asyncio's `async with asyncio.TaskGroup() as tg: body` is, in Rust,
//! `tg.run(body).await` on a `TaskGroup::new()`, the body calling
//! [`tg.create_task(&lp, fut)`](TaskGroup::create_task).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::coroutines::errors::is_cancelled;
use crate::coroutines::errors::ErrorGroup;
use crate::coroutines::waiting::{Fallible, Waitable};
use crate::selectors::Selector;
use crate::{AsEventLoop, BaseSelectorEventLoop, IoHandlers, Task};

/// A child task, whatever its output type.
trait Child {
    fn done(&self) -> bool;
    fn cancel(&self);
    /// Its error, if it failed (`None` if cancelled).
    fn failure(&self) -> Option<io::Error>;
    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()>;
}

impl<T: Fallible> Child for Task<T> {
    fn done(&self) -> bool {
        Waitable::done(self)
    }

    fn cancel(&self) {
        Waitable::cancel(self);
    }

    fn failure(&self) -> Option<io::Error> {
        Waitable::failure(self)
    }

    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        Waitable::poll_done(self, cx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Created,
    Running,
    Finished,
}

struct Shared {
    phase: Cell<Phase>,
    /// A failure (or the awaiter's cancellation) is cancelling everything.
    aborting: Cell<bool>,
    children: RefCell<Vec<Box<dyn Child>>>,
    errors: RefCell<Vec<io::Error>>,
    /// The task running the group, woken when a child is added.
    waker: RefCell<Option<Waker>>,
}

impl Shared {
    /// Cancels every child still running; no new child is accepted.
    fn abort(&self) {
        self.aborting.set(true);
        let children = std::mem::take(&mut *self.children.borrow_mut());
        for child in &children {
            child.cancel();
        }
        self.restore(children);
    }

    /// Puts `children` back, before any added meanwhile.
    fn restore(&self, mut children: Vec<Box<dyn Child>>) {
        let mut slot = self.children.borrow_mut();
        children.append(&mut slot);
        *slot = children;
    }
}

/// A group of child tasks that finishes when all of them have (asyncio's
/// `TaskGroup`).
///
/// [`run`](Self::run) runs the body; children are started with
/// [`create_task`](Self::create_task), from the body or from other
/// children (a clone of the group is a handle to the same group). The
/// future of `run` is ready once the body and every child are done.
///
/// When a child fails (see [`Fallible`]: an `Err` output, or a panic), the
/// group cancels the other children and the body (dropping the body cancels
/// a [`Future`](crate::Future) it awaited, as cancelling asyncio's parent
/// task does), waits for the children to end, and gives an [`ErrorGroup`]
/// of every failure. A body that returns a failure does the same. A child
/// that was cancelled is not a failure. Dropping the future of `run`
/// (cancelling the task that awaits it) cancels every child.
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use tulip::{selectors::Backend, TaskGroup};
///
/// let event_loop = Rc::new(tulip::new_event_loop(Backend::Poll)?);
/// let group = TaskGroup::new();
/// let (one, two) = event_loop.run_until_complete(group.run(async {
///     let lp = Rc::clone(&event_loop);
///     let one = group.create_task(&event_loop, async move {
///         tulip::sleep(&lp, Duration::from_millis(2)).await;
///         Ok::<_, std::io::Error>(1)
///     })?;
///     let two = group.create_task(&event_loop, async { 2 })?;
///     Ok::<_, std::io::Error>((one, two))
/// }))???;
/// // The group waited for both.
/// assert!(one.done() && two.done());
/// assert_eq!(event_loop.run_until_complete(one)???, 1);
///
/// // One child fails: the other is cancelled, the failure reported.
/// let group = TaskGroup::new();
/// let lp = Rc::clone(&event_loop);
/// let failed = event_loop.run_until_complete(group.run(async {
///     let sleeper = group.create_task(&event_loop, async move {
///         tulip::sleep(&lp, Duration::from_secs(60)).await;
///     })?;
///     group.create_task(&event_loop, async {
///         Err::<(), _>(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
///     })?;
///     Ok::<_, std::io::Error>(sleeper)
/// }))?;
/// let err = failed.unwrap_err();
/// let errors = tulip::error_group(&err).expect("an ErrorGroup").errors();
/// assert_eq!(errors.len(), 1);
/// assert_eq!(errors[0].kind(), std::io::ErrorKind::BrokenPipe);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TaskGroup {
    shared: Rc<Shared>,
}

impl TaskGroup {
    /// A new group, not entered yet.
    pub fn new() -> TaskGroup {
        TaskGroup {
            shared: Rc::new(Shared {
                phase: Cell::new(Phase::Created),
                aborting: Cell::new(false),
                children: RefCell::default(),
                errors: RefCell::default(),
                waker: RefCell::default(),
            }),
        }
    }

    /// Starts `future` as a child task on `event_loop` (the loop or an
    /// `Rc` of it) and returns the task, which the group waits for. Its
    /// output tells whether it failed ([`Fallible`]).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if the group was not
    /// entered ([`run`](Self::run)) yet, has finished, or is shutting down
    /// after a failure (asyncio's `RuntimeError`s); `future` is dropped
    /// unpolled.
    #[track_caller]
    pub fn create_task<E, S, F>(&self, event_loop: &E, future: F) -> io::Result<Task<F::Output>>
    where
        E: AsEventLoop<Loop = BaseSelectorEventLoop<S>> + ?Sized,
        S: Selector<IoHandlers> + 'static,
        F: Future + 'static,
        F::Output: Fallible + 'static,
    {
        let refused = match self.shared.phase.get() {
            Phase::Created => Some("TaskGroup has not been entered"),
            Phase::Finished => Some("TaskGroup is finished"),
            Phase::Running if self.shared.aborting.get() => Some("TaskGroup is shutting down"),
            Phase::Running => None,
        };
        if let Some(why) = refused {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        let task = event_loop.as_event_loop().create_task(future);
        self.shared.children.borrow_mut().push(Box::new(task.clone()));
        // The group's task must watch the new child too.
        let waker = self.shared.waker.borrow().clone();
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(task)
    }

    /// Enters the group and runs `body` in it; the future gives the body's
    /// output once the body and all children are done.
    ///
    /// # Errors
    ///
    /// An [`ErrorGroup`] (kind [`Other`](io::ErrorKind::Other)) of every
    /// failure, if a child or the body failed;
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) "TaskGroup has already
    /// been entered" if the group was run before (and `body` is dropped).
    pub fn run<F>(&self, body: F) -> TaskGroupRun<F>
    where
        F: Future,
        F::Output: Fallible,
    {
        let mut run =
            TaskGroupRun { group: self.clone(), body: None, output: None, refused: None, entered: false };
        if self.shared.phase.get() != Phase::Created {
            run.refused =
                Some(io::Error::new(io::ErrorKind::InvalidInput, "TaskGroup has already been entered"));
        } else {
            self.shared.phase.set(Phase::Running);
            run.body = Some(Box::pin(body));
            run.entered = true;
        }
        run
    }

    /// How many children have not finished yet (as far as the group has
    /// seen: it looks when its task runs).
    pub fn len(&self) -> usize {
        self.shared.children.borrow().len()
    }

    /// `true` if no child is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for TaskGroup {
    fn default() -> Self {
        TaskGroup::new()
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.shared.phase.get() {
            Phase::Created => "created",
            Phase::Running if self.shared.aborting.get() => "cancelling",
            Phase::Running => "entered",
            Phase::Finished => "finished",
        };
        f.debug_struct("TaskGroup")
            .field("state", &phase)
            .field("tasks", &self.len())
            .field("errors", &self.shared.errors.borrow().len())
            .finish()
    }
}

/// The future of [`TaskGroup::run`].
#[must_use = "a TaskGroupRun does nothing unless awaited"]
pub struct TaskGroupRun<F: Future> {
    group: TaskGroup,
    body: Option<Pin<Box<F>>>,
    /// The body's output, kept until the children are done.
    output: Option<F::Output>,
    refused: Option<io::Error>,
    /// This run entered the group (a refused one did not).
    entered: bool,
}

impl<F: Future> TaskGroupRun<F>
where
    F::Output: Fallible,
{
    /// Takes in the children that finished: records the failures (the
    /// first starts the abort) and forgets them. `true` if any finished.
    fn collect_finished(&self) -> bool {
        let shared = &self.group.shared;
        let children = std::mem::take(&mut *shared.children.borrow_mut());
        let (finished, running): (Vec<_>, Vec<_>) = children.into_iter().partition(|child| child.done());
        shared.restore(running);
        for child in &finished {
            if let Some(err) = child.failure() {
                shared.errors.borrow_mut().push(err);
                if !shared.aborting.get() {
                    shared.abort();
                }
            }
        }
        !finished.is_empty()
    }

    fn finish(&mut self) -> io::Result<F::Output> {
        let shared = &self.group.shared;
        shared.phase.set(Phase::Finished);
        shared.waker.borrow_mut().take();
        let errors = std::mem::take(&mut *shared.errors.borrow_mut());
        if !errors.is_empty() {
            return Err(ErrorGroup::new(errors).into());
        }
        // Without a failure the body ran to its end.
        self.output.take().ok_or_else(|| io::Error::other("the task group's body did not finish"))
    }
}

impl<F: Future> Future for TaskGroupRun<F>
where
    F::Output: Fallible,
{
    type Output = io::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(err) = this.refused.take() {
            return Poll::Ready(Err(err));
        }
        let shared = Rc::clone(&this.group.shared);
        if !this.entered || shared.phase.get() == Phase::Finished {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "task group polled after completion",
            )));
        }
        {
            let mut waker = shared.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        // A child that failed since the last poll cancels the body before
        // it runs again (asyncio cancels the parent task in the child's
        // done callback).
        this.collect_finished();
        // The body, unless a failure is cancelling it.
        if !shared.aborting.get() {
            if let Some(Poll::Ready(output)) = this.body.as_mut().map(|body| body.as_mut().poll(cx)) {
                this.body = None;
                match output.failure() {
                    // Ended by a cancellation: cancel the children too,
                    // then give it (asyncio propagates CancelledError).
                    Some(err) if is_cancelled(&err) => {
                        shared.abort();
                        this.output = Some(output);
                    }
                    Some(err) => {
                        shared.errors.borrow_mut().push(err);
                        shared.abort();
                    }
                    None => this.output = Some(output),
                }
            }
        }
        loop {
            this.collect_finished();
            if shared.aborting.get() && this.body.is_some() {
                // As asyncio cancels the parent task: what the body awaited
                // is cancelled with it.
                crate::coroutines::futures::drop_abandoned(this.body.take());
            }
            if this.body.is_none() && shared.children.borrow().is_empty() {
                return Poll::Ready(this.finish());
            }
            // Watch every running child; one that finished meanwhile means
            // another look.
            let children = std::mem::take(&mut *shared.children.borrow_mut());
            let mut any_done = false;
            for child in &children {
                any_done |= child.poll_done(cx).is_ready();
            }
            shared.restore(children);
            if !any_done {
                return Poll::Pending;
            }
        }
    }
}

// The body is boxed; the output is never pinned.
impl<F: Future> Unpin for TaskGroupRun<F> {}

impl<F: Future> Drop for TaskGroupRun<F> {
    fn drop(&mut self) {
        let shared = &self.group.shared;
        if !self.entered || shared.phase.get() != Phase::Running {
            return;
        }
        // The awaiter was cancelled before the group finished: the children
        // are cancelled with it, and the group takes no more.
        shared.phase.set(Phase::Finished);
        shared.abort();
        shared.waker.borrow_mut().take();
    }
}

impl<F: Future> fmt::Debug for TaskGroupRun<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroupRun")
            .field("group", &self.group)
            .field("body_running", &self.body.is_some())
            .finish()
    }
}
