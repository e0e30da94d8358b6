//! Futures (Tulip's `futures.py`): a [`Future`] is a result that will be set
//! later, by a callback or another task, and that a coroutine can await.
//!
//! Cancellation is one error across the crate: an [`io::Error`] whose inner
//! error is [`Cancelled`] (kind [`Other`](io::ErrorKind::Other)); test for it
//! with [`is_cancelled`].

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use crate::coroutines::errors::{copy_error, Cancelled};
use crate::event_loop::ready::ReadyQueue;

fn not_done() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "future is not done")
}

fn already_done() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "future already done")
}

fn taken() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "future's result was already taken")
}

thread_local! {
    /// Set while [`drop_abandoned`] drops a future.
    static ABANDONING: Cell<bool> = const { Cell::new(false) };
}

/// Drops `future`, whose awaiting was given up (a cancelled task's future,
/// a timed-out [`wait_for`](crate::wait_for)'s): each [`Future`] it was
/// awaiting, still pending, is cancelled, as asyncio cancels the future a
/// cancelled task waits on.
pub(crate) fn drop_abandoned<F>(future: F) {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = ABANDONING.try_with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(ABANDONING.try_with(|flag| flag.replace(true)).unwrap_or(false));
    drop(future);
}

/// Where done callbacks go: the loop's ready queue. The future holds it
/// weakly: a future kept after its loop was dropped keeps nothing of the
/// loop alive, and its callbacks never run, as on a closed loop.
pub(crate) trait Schedule {
    fn schedule(&self, callback: Box<dyn FnOnce()>);
}

impl<L: 'static> Schedule for ReadyQueue<L> {
    #[track_caller]
    fn schedule(&self, callback: Box<dyn FnOnce()>) {
        self.call_soon(move |_| callback());
    }
}

enum State<T> {
    Pending,
    Done(io::Result<T>),
    Cancelled,
    /// An awaiter (or [`Future::take_result`]) moved the result out.
    Taken,
}

type DoneCallback<T> = Box<dyn FnOnce(&Future<T>)>;

struct Inner<T> {
    state: RefCell<State<T>>,
    wakers: RefCell<Vec<Waker>>,
    callbacks: RefCell<Vec<DoneCallback<T>>>,
    schedule: Weak<dyn Schedule>,
    /// [`Future::cancel`], for `Drop`, which cannot require `T: 'static`.
    cancel: fn(&Future<T>) -> bool,
}

/// A result that is set later (asyncio's `Future`), made by
/// [`create_future`](crate::BaseSelectorEventLoop::create_future).
///
/// A `Future` is a cheap handle (`Clone`: an `Rc` inside); its clones share
/// one result. Completing it twice is an error, not a panic. Awaiting it
/// gives `Ok(value)`, the error set by [`set_exception`](Self::set_exception),
/// or a [`Cancelled`] error; awaiting *moves* the value out, so a second
/// awaiter of the same result gets an `InvalidInput` error (use
/// [`result`](Self::result) to read a `Clone` value without taking it).
///
/// As in asyncio, a future is cancelled with its awaiter: a handle that was
/// awaited (polled and left pending) and is dropped because its task was
/// [cancelled](crate::Task::cancel), or its [`wait_for`](crate::wait_for)
/// timed out, cancels the future. Any other drop of a handle leaves the
/// future as it is.
///
/// ```
/// use std::time::Duration;
/// use tulip::{selectors::Backend, AbstractEventLoop};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let fut = event_loop.create_future::<u32>();
/// let setter = fut.clone();
/// event_loop.call_later(Duration::from_millis(1), move |_| {
///     setter.set_result(42).unwrap();
/// });
/// assert_eq!(event_loop.run_until_complete(fut)??, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Future<T> {
    inner: Rc<Inner<T>>,
    /// This handle was polled and left pending: it is an awaiter.
    awaited: Cell<bool>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future { inner: Rc::clone(&self.inner), awaited: Cell::new(false) }
    }
}

/// An awaiter dropped with the future of a cancelled task (or a timed-out
/// `wait_for`) cancels the pending future it awaited, as in asyncio; any
/// other drop leaves it pending.
impl<T> Drop for Future<T> {
    fn drop(&mut self) {
        if self.awaited.get()
            && ABANDONING.try_with(Cell::get).unwrap_or(false)
            && matches!(*self.inner.state.borrow(), State::Pending)
        {
            (self.inner.cancel)(self);
        }
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.inner.state.borrow() {
            State::Pending => "pending",
            State::Done(Ok(_)) => "finished",
            State::Done(Err(_)) => "failed",
            State::Cancelled => "cancelled",
            State::Taken => "taken",
        };
        f.debug_struct("Future").field("state", &state).finish()
    }
}

impl<T: 'static> Future<T> {
    /// A pending future whose done callbacks go to `schedule`.
    pub(crate) fn new(schedule: Weak<dyn Schedule>) -> Self {
        Future {
            inner: Rc::new(Inner {
                state: RefCell::new(State::Pending),
                wakers: RefCell::new(Vec::new()),
                callbacks: RefCell::new(Vec::new()),
                schedule,
                cancel: Self::cancel,
            }),
            awaited: Cell::new(false),
        }
    }

    /// Marks the future done with `value`, waking its awaiters and
    /// scheduling its done callbacks.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) "future already done" if
    /// it was done (or cancelled) already; `value` is dropped.
    pub fn set_result(&self, value: T) -> io::Result<()> {
        self.complete(State::Done(Ok(value)))
    }

    /// Marks the future done with an error (asyncio's `set_exception`).
    ///
    /// # Errors
    ///
    /// As [`set_result`](Self::set_result).
    pub fn set_exception(&self, error: io::Error) -> io::Result<()> {
        self.complete(State::Done(Err(error)))
    }

    /// Cancels the future: awaiters get a [`Cancelled`] error. `true` if it
    /// was pending (and is now cancelled), `false` if it was done already.
    pub fn cancel(&self) -> bool {
        self.complete(State::Cancelled).is_ok()
    }

    /// `true` once it has a result, an error, or was cancelled.
    pub fn done(&self) -> bool {
        !matches!(*self.inner.state.borrow(), State::Pending)
    }

    /// `true` if it was cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(*self.inner.state.borrow(), State::Cancelled)
    }

    /// A copy of the result.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if it is not done (or
    /// its result was taken); a [`Cancelled`] error if it was cancelled; a
    /// copy (kind, OS code, message) of the error it was completed with.
    pub fn result(&self) -> io::Result<T>
    where
        T: Clone,
    {
        match &*self.inner.state.borrow() {
            State::Pending => Err(not_done()),
            State::Done(Ok(value)) => Ok(value.clone()),
            State::Done(Err(err)) => Err(copy_error(err)),
            State::Cancelled => Err(Cancelled.into()),
            State::Taken => Err(taken()),
        }
    }

    /// The error it was completed with (asyncio's `exception()`): `Ok(None)`
    /// after [`set_result`](Self::set_result), `Ok(Some(copy))` after
    /// [`set_exception`](Self::set_exception).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if it is not done (or
    /// its result was taken); a [`Cancelled`] error if it was cancelled.
    pub fn exception(&self) -> io::Result<Option<io::Error>> {
        match &*self.inner.state.borrow() {
            State::Pending => Err(not_done()),
            State::Done(Ok(_)) => Ok(None),
            State::Done(Err(err)) => Ok(Some(copy_error(err))),
            State::Cancelled => Err(Cancelled.into()),
            State::Taken => Err(taken()),
        }
    }

    /// Moves the result out, as awaiting does: later readers get an
    /// `InvalidInput` error.
    ///
    /// # Errors
    ///
    /// As [`result`](Self::result), with the original error.
    pub fn take_result(&self) -> io::Result<T> {
        let mut state = self.inner.state.borrow_mut();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => result,
            State::Pending => {
                *state = State::Pending;
                Err(not_done())
            }
            State::Cancelled => {
                *state = State::Cancelled;
                Err(Cancelled.into())
            }
            State::Taken => Err(taken()),
        }
    }

    /// Calls `callback` with this future once it is done, as a loop callback
    /// (`call_soon`), never from inside `set_result`. If it is done already,
    /// the callback is scheduled now. On a closed loop it never runs.
    pub fn add_done_callback(&self, callback: impl FnOnce(&Future<T>) + 'static) {
        if self.done() {
            let this = self.clone();
            self.schedule(Box::new(move || callback(&this)));
        } else {
            self.inner.callbacks.borrow_mut().push(Box::new(callback));
        }
    }

    fn complete(&self, outcome: State<T>) -> io::Result<()> {
        {
            let mut state = self.inner.state.borrow_mut();
            if !matches!(*state, State::Pending) {
                return Err(already_done());
            }
            *state = outcome;
        }
        let wakers = std::mem::take(&mut *self.inner.wakers.borrow_mut());
        wakers.into_iter().for_each(Waker::wake);
        let callbacks = std::mem::take(&mut *self.inner.callbacks.borrow_mut());
        for callback in callbacks {
            let this = self.clone();
            self.schedule(Box::new(move || callback(&this)));
        }
        Ok(())
    }

    /// Queues a done callback on the loop, if the loop is still there.
    fn schedule(&self, callback: Box<dyn FnOnce()>) {
        if let Some(queue) = self.inner.schedule.upgrade() {
            queue.schedule(callback);
        }
    }
}

impl<T: 'static> std::future::Future for Future<T> {
    type Output = io::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.done() {
            return Poll::Ready(self.take_result());
        }
        self.awaited.set(true);
        let mut wakers = self.inner.wakers.borrow_mut();
        if !wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
