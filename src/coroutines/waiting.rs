//! Waiting on many (from asyncio's `tasks.py`): [`wait`] for a set of tasks
//! and futures until the first completes, the first fails or all are done;
//! [`as_completed`] to take them in the order they finish; [`shield`] to
//! await one without cancelling it when the awaiting task is cancelled.
//!
//! What they accept is a [`Waitable`]: a [`Task`] or a [`tulip::Future`],
//! the two things that run (or wait) on their own, apart from whoever
//! awaits them. None of the three takes a task's result or cancels a future
//! it was given (except as documented for [`shield`]'s caller, who takes the
//! result by awaiting it).
//!
//! [`tulip::Future`]: crate::Future

use std::collections::VecDeque;
use std::fmt;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::coroutines::errors::{copy_error, is_cancelled};
use crate::{AsEventLoop, Sleep, Task};

// ---------------------------------------------------------------------------
// What counts as a failure

/// How a task's output says that the task failed, which is what asyncio
/// calls "raised an exception": [`wait`]'s
/// [`FirstException`](ReturnWhen::FirstException) and a
/// [`TaskGroup`](crate::TaskGroup) act on it.
///
/// A `Result` fails when it is an `Err`. An `Err` holding a
/// [`Cancelled`](crate::Cancelled) `io::Error` is the task being cancelled
/// rather than failing (as a `CancelledError` raised by a coroutine cancels
/// its task in asyncio): its users check [`is_cancelled`](crate::is_cancelled)
/// on the error. The other types implemented here (unit, numbers, strings,
/// `Option`, `Vec`, tuples, sockets, …) never fail. For a type of your own,
/// `impl tulip::Fallible for MyType {}` says it never fails; return a
/// `Result` of it from a task that may.
///
/// ```
/// use std::io;
/// use tulip::Fallible;
///
/// let failed: io::Result<u8> = Err(io::Error::from(io::ErrorKind::ConnectionReset));
/// assert_eq!(failed.failure().unwrap().kind(), io::ErrorKind::ConnectionReset);
/// let cancelled: io::Result<u8> = Err(tulip::Cancelled.into());
/// assert!(tulip::is_cancelled(&cancelled.failure().unwrap()));
/// assert!(42u32.failure().is_none());
/// ```
pub trait Fallible {
    /// A copy of the error this value reports, `None` for a success. An
    /// `io::Error` keeps its kind, OS code and message, and a cancellation
    /// or an error of this crate stays recognizable; another error type
    /// becomes an [`Other`](io::ErrorKind::Other) error with its message.
    fn failure(&self) -> Option<io::Error> {
        None
    }
}

impl<T, E: fmt::Display + 'static> Fallible for Result<T, E> {
    fn failure(&self) -> Option<io::Error> {
        let err = self.as_ref().err()?;
        Some(match (err as &dyn std::any::Any).downcast_ref::<io::Error>() {
            Some(err) => copy_error(err),
            None => io::Error::other(err.to_string()),
        })
    }
}

impl<T: Fallible + ?Sized> Fallible for Box<T> {
    fn failure(&self) -> Option<io::Error> {
        (**self).failure()
    }
}

/// Types whose every value is a success.
macro_rules! never_fails {
    ($($ty:ty),* $(,)?) => { $(impl Fallible for $ty {})* };
}

never_fails!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &str,
    Duration,
    std::time::Instant,
    std::convert::Infallible,
    std::net::SocketAddr,
    std::net::TcpStream,
    std::net::TcpListener,
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixListener,
);

impl<T> Fallible for Option<T> {}
impl<T> Fallible for Vec<T> {}
impl<A, B> Fallible for (A, B) {}
impl<A, B, C> Fallible for (A, B, C) {}
impl<A, B, C, D> Fallible for (A, B, C, D) {}

// ---------------------------------------------------------------------------
// Waitable

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for crate::Task<T> {}
    impl<T> Sealed for crate::Future<T> {}
}

/// What [`wait`], [`as_completed`], [`shield`] and a
/// [`TaskGroup`](crate::TaskGroup) work with: a [`Task`] or a
/// [`tulip::Future`](crate::Future). Its methods look at it without taking
/// its result (except [`poll_result`](Self::poll_result)) and without
/// making the caller its awaiter, so they never cancel it.
pub trait Waitable: sealed::Sealed {
    /// What awaiting it gives when it succeeds.
    type Output;

    /// `true` once it finished (or was cancelled).
    fn done(&self) -> bool;

    /// `true` if it was cancelled.
    fn cancelled(&self) -> bool;

    /// Cancels it (see [`Task::cancel`] and
    /// [`Future::cancel`](crate::Future::cancel)); `false` if it was done.
    fn cancel(&self) -> bool;

    /// If it is done and failed, a copy of its error: a future completed by
    /// [`set_exception`](crate::Future::set_exception); a task that panicked
    /// or whose output is a failure ([`Fallible`]). `None` while it runs,
    /// after a success or a cancellation, and once its result was taken.
    fn failure(&self) -> Option<io::Error>
    where
        Self::Output: Fallible;

    /// `Ready` once it is done; otherwise arranges for `cx`'s waker to be
    /// woken when it is.
    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()>;

    /// Its result once it is done, taken as awaiting takes it; otherwise
    /// arranges for `cx`'s waker to be woken when it is.
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Output>>;
}

impl<T> Waitable for Task<T> {
    type Output = T;

    fn done(&self) -> bool {
        Task::done(self)
    }

    fn cancelled(&self) -> bool {
        Task::cancelled(self)
    }

    fn cancel(&self) -> bool {
        Task::cancel(self)
    }

    fn failure(&self) -> Option<io::Error>
    where
        T: Fallible,
    {
        self.peek(|outcome| match outcome {
            Ok(output) => output.failure(),
            Err(err) => Some(copy_error(err)),
        })
        .flatten()
        .filter(|err| !is_cancelled(err))
    }

    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done() {
            return Poll::Ready(());
        }
        // A pending task's poll only adds the waker to its awaiters.
        let _ = Pin::new(&mut self.clone()).poll(cx);
        Poll::Pending
    }

    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        Pin::new(&mut self.clone()).poll(cx)
    }
}

impl<T: 'static> Waitable for crate::Future<T> {
    type Output = T;

    fn done(&self) -> bool {
        crate::Future::done(self)
    }

    fn cancelled(&self) -> bool {
        crate::Future::cancelled(self)
    }

    fn cancel(&self) -> bool {
        crate::Future::cancel(self)
    }

    fn failure(&self) -> Option<io::Error>
    where
        T: Fallible,
    {
        self.exception().ok().flatten()
    }

    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done() {
            return Poll::Ready(());
        }
        // Polled through a clone: the clone, not the caller's handle,
        // becomes the awaiter, and it is dropped here, in an ordinary poll,
        // which never cancels the future.
        let _ = Pin::new(&mut self.clone()).poll(cx);
        Poll::Pending
    }

    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        Pin::new(&mut self.clone()).poll(cx)
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

fn polled_after_completion(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what} polled after completion"))
}

/// `true` if the optional timer has fired (polling it registers `cx`).
fn fired(sleep: &mut Option<Sleep>, cx: &mut Context<'_>) -> bool {
    sleep.as_mut().is_some_and(|sleep| Pin::new(sleep).poll(cx).is_ready())
}

// ---------------------------------------------------------------------------
// wait

/// When [`wait`] returns (asyncio's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`); in every case at the timeout at the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReturnWhen {
    /// As soon as one is done (or cancelled).
    FirstCompleted,
    /// As soon as one fails ([`Waitable::failure`]; a cancellation is not a
    /// failure), or when all are done.
    FirstException,
    /// When all are done (the default).
    #[default]
    AllCompleted,
}

/// The future of [`wait`].
#[must_use = "a Wait does nothing unless awaited"]
pub struct Wait<W> {
    items: Vec<W>,
    return_when: ReturnWhen,
    sleep: Option<Sleep>,
    refused: Option<io::Error>,
    finished: bool,
}

/// Waits for the tasks or futures of `items` as `return_when` says, or
/// until `timeout` (never earlier; `None`: no limit) has passed, and gives
/// them back split in two, each in the order given: `(done, pending)`
/// (asyncio's `wait`). Nothing is cancelled at the timeout, and cancelling
/// the waiting task cancels none of them either; results stay in them, for
/// their awaiters. The timer starts at this call.
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use tulip::{selectors::Backend, ReturnWhen};
///
/// let event_loop = Rc::new(tulip::new_event_loop(Backend::Poll)?);
/// let tasks: Vec<_> = [1, 50]
///     .into_iter()
///     .map(|ms| {
///         let lp = Rc::clone(&event_loop);
///         event_loop.create_task(async move {
///             tulip::sleep(&lp, Duration::from_millis(ms)).await;
///             ms
///         })
///     })
///     .collect();
/// let waiting = tulip::wait(&event_loop, tasks, ReturnWhen::FirstCompleted, None);
/// let (done, pending) = event_loop.run_until_complete(waiting)??;
/// assert_eq!((done.len(), pending.len()), (1, 1));
/// assert_eq!(event_loop.run_until_complete(done[0].clone())??, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// [`InvalidInput`](io::ErrorKind::InvalidInput) if `items` is empty
/// (asyncio's `ValueError`).
pub fn wait<E, W>(
    event_loop: &E,
    items: impl IntoIterator<Item = W>,
    return_when: ReturnWhen,
    timeout: impl Into<Option<Duration>>,
) -> Wait<W>
where
    E: AsEventLoop + ?Sized,
    W: Waitable,
    W::Output: Fallible,
{
    let items: Vec<W> = items.into_iter().collect();
    let refused = items
        .is_empty()
        .then(|| io::Error::new(io::ErrorKind::InvalidInput, "wait() needs at least one task or future"));
    let sleep = if refused.is_none() { timeout.into().map(|d| crate::sleep(event_loop, d)) } else { None };
    Wait { items, return_when, sleep, refused, finished: false }
}

impl<W: Waitable> Wait<W>
where
    W::Output: Fallible,
{
    fn condition_met(&self) -> bool {
        let mut all_done = true;
        for item in &self.items {
            let done = item.done();
            all_done &= done;
            match self.return_when {
                ReturnWhen::FirstCompleted if done => return true,
                ReturnWhen::FirstException if done && item.failure().is_some() => return true,
                _ => {}
            }
        }
        all_done
    }
}

// The items are handles (`Task`, `Future`), never pinned.
impl<W> Unpin for Wait<W> {}

impl<W: Waitable> std::future::Future for Wait<W>
where
    W::Output: Fallible,
{
    type Output = io::Result<(Vec<W>, Vec<W>)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(err) = this.refused.take() {
            this.finished = true;
            return Poll::Ready(Err(err));
        }
        if this.finished {
            return Poll::Ready(Err(polled_after_completion("wait")));
        }
        if this.condition_met() || fired(&mut this.sleep, cx) {
            this.finished = true;
            this.sleep = None;
            let (done, pending) = std::mem::take(&mut this.items).into_iter().partition(|item| item.done());
            return Poll::Ready(Ok((done, pending)));
        }
        for item in &this.items {
            let _ = item.poll_done(cx);
        }
        Poll::Pending
    }
}

impl<W> fmt::Debug for Wait<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("items", &self.items.len())
            .field("return_when", &self.return_when)
            .field("finished", &self.finished)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// as_completed

/// What the per-item wakers of [`AsCompleted`] share: the items that
/// finished, in the order they did, and the waker of whoever waits.
#[derive(Default)]
struct Finished {
    order: Mutex<VecDeque<usize>>,
    waiter: Mutex<Option<Waker>>,
}

/// The waker given to item `index`: it records that the item finished.
struct ItemWaker {
    index: usize,
    finished: Arc<Finished>,
}

impl Wake for ItemWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.finished.order.lock().unwrap_or_else(|e| e.into_inner()).push_back(self.index);
        let waiter = self.finished.waiter.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }
}

/// Gives tasks or futures in the order they finish: made by
/// [`as_completed`].
pub struct AsCompleted<W> {
    items: Vec<Option<W>>,
    wakers: Vec<Waker>,
    left: usize,
    finished: Arc<Finished>,
    sleep: Option<Sleep>,
    timed_out: bool,
}

/// Takes the tasks or futures of `items` in the order they finish (asyncio's
/// `as_completed`, as in its `async for` form, which yields the tasks
/// themselves): each call of [`next`](AsCompleted::next) waits for the next
/// one to finish and gives it, done, to be awaited for its result (which
/// is then ready). Those done already come first, in the order given.
///
/// With a `timeout` (`None`: no limit; the timer starts at this call), once
/// it passes with some not done, `next` gives one
/// [`TimedOut`](io::ErrorKind::TimedOut) error, then `None`; the ones not
/// done are left running and [`into_remaining`](AsCompleted::into_remaining)
/// gives them back. Nothing is cancelled.
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use tulip::selectors::Backend;
///
/// let event_loop = Rc::new(tulip::new_event_loop(Backend::Poll)?);
/// let tasks: Vec<_> = [30, 1, 15]
///     .into_iter()
///     .map(|ms| {
///         let lp = Rc::clone(&event_loop);
///         event_loop.create_task(async move {
///             tulip::sleep(&lp, Duration::from_millis(ms)).await;
///             ms
///         })
///     })
///     .collect();
/// let order = event_loop.run_until_complete(async {
///     let mut finishing = tulip::as_completed(&event_loop, tasks, None);
///     let mut order = Vec::new();
///     while let Some(task) = finishing.next().await {
///         order.push(task?.await?);
///     }
///     Ok::<_, std::io::Error>(order)
/// })??;
/// assert_eq!(order, [1, 15, 30]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn as_completed<E, W>(
    event_loop: &E,
    items: impl IntoIterator<Item = W>,
    timeout: impl Into<Option<Duration>>,
) -> AsCompleted<W>
where
    E: AsEventLoop + ?Sized,
    W: Waitable,
{
    let items: Vec<Option<W>> = items.into_iter().map(Some).collect();
    let finished = Arc::new(Finished::default());
    let wakers: Vec<Waker> = (0..items.len())
        .map(|index| Waker::from(Arc::new(ItemWaker { index, finished: Arc::clone(&finished) })))
        .collect();
    for (index, item) in items.iter().enumerate() {
        let Some(item) = item else { continue };
        // Done already: first, in the order given. Otherwise the item's
        // own waker records when it finishes.
        if item.poll_done(&mut Context::from_waker(&wakers[index])).is_ready() {
            finished.order.lock().unwrap_or_else(|e| e.into_inner()).push_back(index);
        }
    }
    let left = items.len();
    let sleep = if left > 0 { timeout.into().map(|d| crate::sleep(event_loop, d)) } else { None };
    AsCompleted { items, wakers, left, finished, sleep, timed_out: false }
}

impl<W: Waitable> AsCompleted<W> {
    /// The next one to finish, done; `None` once all were given (or after
    /// the timeout's error).
    ///
    /// # Errors
    ///
    /// [`TimedOut`](io::ErrorKind::TimedOut), once, if the timeout passed
    /// before all were done.
    pub async fn next(&mut self) -> Option<io::Result<W>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`next`](Self::next) as a poll function (the shape of a stream).
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<W>>> {
        if self.left == 0 || self.timed_out {
            return Poll::Ready(None);
        }
        *self.finished.waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        loop {
            let next = self.finished.order.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            let Some(index) = next else { break };
            let Some(item) = self.items[index].as_ref() else { continue };
            if item.poll_done(&mut Context::from_waker(&self.wakers[index])).is_ready() {
                self.left -= 1;
                if self.left == 0 {
                    self.sleep = None;
                }
                return Poll::Ready(self.items[index].take().map(Ok));
            }
        }
        if fired(&mut self.sleep, cx) {
            self.timed_out = true;
            self.sleep = None;
            return Poll::Ready(Some(Err(timed_out())));
        }
        Poll::Pending
    }

    /// How many were not given yet.
    pub fn len(&self) -> usize {
        self.left
    }

    /// `true` once all were given.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The ones not given yet, in the order given to [`as_completed`].
    pub fn into_remaining(self) -> Vec<W> {
        self.items.into_iter().flatten().collect()
    }
}

impl<W> fmt::Debug for AsCompleted<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted").field("left", &self.left).field("timed_out", &self.timed_out).finish()
    }
}

// ---------------------------------------------------------------------------
// shield

/// The future of [`shield`].
#[must_use = "a Shield does nothing unless awaited"]
pub struct Shield<W> {
    inner: W,
}

/// Awaits `inner` without becoming the awaiter that a cancellation reaches
/// (asyncio's `shield`): if the task awaiting the shield is cancelled (or a
/// [`wait_for`](crate::wait_for) around it times out), `inner` goes on, and
/// a [`tulip::Future`](crate::Future) is not cancelled with it, as it would
/// be if awaited directly. If `inner` itself is cancelled, the shield gives
/// the [`Cancelled`](crate::Cancelled) error.
///
/// Shield work that must not be interrupted by making it a task
/// (`create_task`), as asyncio's `shield(coro)` does, and keep a handle of
/// it: the shield's result is gone with the shield.
///
/// ```
/// use std::time::Duration;
/// use tulip::{selectors::Backend, AbstractEventLoop};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let reply = event_loop.create_future::<&str>();
/// let setter = reply.clone();
/// event_loop.call_later(Duration::from_millis(20), move |_| setter.set_result("late").unwrap());
/// let impatient = tulip::wait_for(&event_loop, tulip::shield(reply.clone()), Duration::from_millis(1));
/// let err = event_loop.run_until_complete(impatient)?.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// assert!(!reply.cancelled(), "the shield kept the timeout from cancelling it");
/// assert_eq!(event_loop.run_until_complete(reply)??, "late");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn shield<W: Waitable>(inner: W) -> Shield<W> {
    Shield { inner }
}

impl<W> Shield<W> {
    /// What it shields.
    pub fn inner(&self) -> &W {
        &self.inner
    }

    /// What it shields, for awaiting directly.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Waitable> std::future::Future for Shield<W> {
    type Output = io::Result<W::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.poll_result(cx)
    }
}

impl<W: fmt::Debug> fmt::Debug for Shield<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shield").field("inner", &self.inner).finish()
    }
}
