//! Timing helpers and joins (from Tulip's `tasks.py`): [`sleep`] on a loop
//! timer, [`wait_for`] a future with a timeout, and [`gather`] several
//! futures into one.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::{AbstractEventLoop, TimerHandle};

/// What [`sleep`], [`sleep_until`] and [`wait_for`] accept as their loop:
/// a loop, or an `Rc` or `Arc` of one, so that a task holding its loop as
/// `Rc<L>` can write `tulip::sleep(&lp, delay)` as well as `sleep(&*lp, …)`.
pub trait AsEventLoop {
    /// The loop inside.
    type Loop: AbstractEventLoop;

    /// The loop itself.
    fn as_event_loop(&self) -> &Self::Loop;
}

impl<L: AbstractEventLoop> AsEventLoop for L {
    type Loop = L;

    fn as_event_loop(&self) -> &L {
        self
    }
}

impl<L: AbstractEventLoop> AsEventLoop for Rc<L> {
    type Loop = L;

    fn as_event_loop(&self) -> &L {
        self
    }
}

impl<L: AbstractEventLoop> AsEventLoop for Arc<L> {
    type Loop = L;

    fn as_event_loop(&self) -> &L {
        self
    }
}

/// What a [`Sleep`] shares with its timer callback.
#[derive(Default)]
struct Alarm {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// The future of [`sleep`] and [`sleep_until`]: ready once its loop timer
/// has fired. Dropping it cancels the timer.
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    alarm: Rc<Alarm>,
    timer: Option<TimerHandle>,
}

/// A future that is ready `delay` after this call, never earlier (asyncio's
/// `sleep`). The timer is scheduled now, with `call_later`, and cancelled if
/// the future is dropped first. On a closed loop, the future never completes.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tulip::selectors::Backend;
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let start = Instant::now();
/// event_loop.run_until_complete(tulip::sleep(&event_loop, Duration::from_millis(5)))?;
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn sleep<E: AsEventLoop + ?Sized>(event_loop: &E, delay: Duration) -> Sleep {
    schedule(event_loop.as_event_loop(), |lp, cb| lp.call_later(delay, cb))
}

/// Like [`sleep`], until the loop time `deadline` (never earlier).
pub fn sleep_until<E: AsEventLoop + ?Sized>(event_loop: &E, deadline: Instant) -> Sleep {
    schedule(event_loop.as_event_loop(), |lp, cb| lp.call_at(deadline, cb))
}

fn schedule<L: AbstractEventLoop>(
    event_loop: &L,
    call: impl FnOnce(&L, Box<dyn FnOnce(&L)>) -> TimerHandle,
) -> Sleep {
    let alarm = Rc::new(Alarm::default());
    let timer = (!event_loop.is_closed()).then(|| {
        let alarm = Rc::clone(&alarm);
        call(
            event_loop,
            Box::new(move |_: &L| {
                alarm.fired.set(true);
                if let Some(waker) = alarm.waker.borrow_mut().take() {
                    waker.wake();
                }
            }),
        )
    });
    Sleep { alarm, timer }
}

impl Sleep {
    /// When the timer is due (`None` on a closed loop).
    pub fn deadline(&self) -> Option<Instant> {
        self.timer.as_ref().map(TimerHandle::when)
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.alarm.fired.get() {
            return Poll::Ready(());
        }
        let mut waker = self.alarm.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.cancel();
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline())
            .field("fired", &self.alarm.fired.get())
            .finish()
    }
}

/// The future of [`wait_for`].
#[must_use = "a WaitFor does nothing unless awaited"]
pub struct WaitFor<F> {
    inner: Option<Pin<Box<F>>>,
    sleep: Sleep,
}

/// Waits for `future` at most `timeout` (asyncio's `wait_for`). On timeout
/// the future is dropped (that is how Rust cancels it), a pending
/// [`Future`](crate::Future) it was awaiting is cancelled, and the result is
/// an error of kind [`TimedOut`](io::ErrorKind::TimedOut). A future that is
/// ready when the timer fires wins.
///
/// One difference from asyncio: given a [`Task`](crate::Task), the timeout
/// drops the handle, and dropping a handle never stops its task (it runs
/// on, as after any other drop). Call [`Task::cancel`](crate::Task::cancel)
/// on a clone when `TimedOut` comes back if the work should stop too.
///
/// ```
/// use std::time::Duration;
/// use tulip::selectors::Backend;
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let slow = tulip::sleep(&event_loop, Duration::from_secs(60));
/// let waited = event_loop.run_until_complete(tulip::wait_for(&event_loop, slow, Duration::from_millis(1)))?;
/// assert_eq!(waited.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait_for<E: AsEventLoop + ?Sized, F: Future>(
    event_loop: &E,
    future: F,
    timeout: Duration,
) -> WaitFor<F> {
    WaitFor { inner: Some(Box::pin(future)), sleep: sleep(event_loop, timeout) }
}

impl<F: Future> Future for WaitFor<F> {
    type Output = io::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "wait_for polled after completion",
            )));
        };
        if let Poll::Ready(output) = inner.as_mut().poll(cx) {
            this.inner = None;
            return Poll::Ready(Ok(output));
        }
        if Pin::new(&mut this.sleep).poll(cx).is_ready() {
            // A `Future` it awaited is cancelled, as in asyncio.
            crate::coroutines::futures::drop_abandoned(this.inner.take());
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")));
        }
        Poll::Pending
    }
}

impl<F> fmt::Debug for WaitFor<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitFor").field("done", &self.inner.is_none()).field("sleep", &self.sleep).finish()
    }
}

/// The future of [`gather`].
#[must_use = "a Gather does nothing unless awaited"]
pub struct Gather<F: Future> {
    pending: Vec<Option<Pin<Box<F>>>>,
    outputs: Vec<Option<F::Output>>,
}

/// Runs `futures` concurrently and gives their outputs in the order given
/// (asyncio's `gather`). Each is polled when the gathering task wakes; to
/// run them in parallel tasks, gather the [`Task`](crate::Task)s of
/// `create_task`. Futures of different types can be gathered boxed
/// (`Pin<Box<dyn Future<Output = T>>>`).
///
/// ```
/// use std::time::Duration;
/// use tulip::selectors::Backend;
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let lp = &event_loop;
/// let waits = (1..=3).map(|i| async move {
///     tulip::sleep(lp, Duration::from_millis(i)).await;
///     i * 10
/// });
/// assert_eq!(event_loop.run_until_complete(tulip::gather(waits))?, [10, 20, 30]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn gather<F: Future>(futures: impl IntoIterator<Item = F>) -> Gather<F> {
    let pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let outputs = pending.iter().map(|_| None).collect();
    Gather { pending, outputs }
}

// The futures are boxed and outputs are never pinned.
impl<F: Future> Unpin for Gather<F> {}

impl<F: Future> Future for Gather<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<F::Output>> {
        let this = &mut *self;
        let mut all_done = true;
        for (slot, output) in this.pending.iter_mut().zip(&mut this.outputs) {
            let Some(future) = slot else { continue };
            match future.as_mut().poll(cx) {
                Poll::Ready(value) => {
                    *output = Some(value);
                    *slot = None;
                }
                Poll::Pending => all_done = false,
            }
        }
        if !all_done {
            return Poll::Pending;
        }
        Poll::Ready(std::mem::take(&mut this.outputs).into_iter().flatten().collect())
    }
}

impl<F: Future> fmt::Debug for Gather<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = self.pending.iter().filter(|slot| slot.is_some()).count();
        f.debug_struct("Gather").field("futures", &self.pending.len()).field("pending", &pending).finish()
    }
}
