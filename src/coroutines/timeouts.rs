//! Timeout scopes (asyncio 3.11's `timeouts.py`): [`timeout`] and
//! [`timeout_at`] make a [`Timeout`], whose [`run`](Timeout::run) runs a
//! future under its deadline. Unlike [`wait_for`](crate::wait_for), the
//! deadline can be read and moved while the future runs
//! ([`reschedule`](Timeout::reschedule)), from inside it or from another
//! task, through a clone of the `Timeout`.
//!
//! asyncio's `async with asyncio.timeout(10) as cm: body` is, in Rust,
//! `tulip::timeout(d).run(&lp, body).await`, which gives the body's output
//! or a [`TimedOut`](io::ErrorKind::TimedOut) error.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::{AsEventLoop, Sleep};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Made, not run yet.
    Created,
    /// Its future is running.
    Active,
    /// The deadline passed while its future ran.
    Expired,
    /// Its future finished (or was dropped) in time.
    Finished,
}

struct State {
    when: Cell<Option<Instant>>,
    phase: Cell<Phase>,
    /// The deadline moved: the running scope must set a new timer.
    rearm: Cell<bool>,
    /// The task running the scope, woken by a reschedule.
    waker: RefCell<Option<Waker>>,
}

/// A deadline for a block of async work (asyncio's `Timeout`), made by
/// [`timeout`] or [`timeout_at`] and entered by [`run`](Self::run).
///
/// A cheap handle (`Clone`): a clone given to the body, or to another task,
/// reads the deadline ([`when`](Self::when)), moves it
/// ([`reschedule`](Self::reschedule)) and tells whether it expired
/// ([`expired`](Self::expired)).
///
/// ```
/// use std::time::{Duration, Instant};
/// use tulip::selectors::Backend;
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let deadline = tulip::timeout(Duration::from_millis(5));
/// let slow = tulip::sleep(&event_loop, Duration::from_secs(60));
/// let err = event_loop.run_until_complete(deadline.run(&event_loop, slow))?.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// assert!(deadline.expired());
///
/// // Moved while it runs, here from inside: to 1 ms from now.
/// let scope = tulip::timeout(Duration::from_secs(60));
/// let handle = scope.clone();
/// let body = async {
///     handle.reschedule(Instant::now() + Duration::from_millis(1))?;
///     tulip::sleep(&event_loop, Duration::from_secs(60)).await;
///     Ok::<_, std::io::Error>(())
/// };
/// let err = event_loop.run_until_complete(scope.run(&event_loop, body))?.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Timeout {
    state: Rc<State>,
}

/// A [`Timeout`] `delay` from now (asyncio's `timeout(delay)`); `None`, or
/// a delay too large for the clock, never expires. The loop's clock is the
/// monotonic clock (see [`AbstractEventLoop::time`]), so now is
/// [`Instant::now`].
///
/// [`AbstractEventLoop::time`]: crate::AbstractEventLoop::time
pub fn timeout(delay: impl Into<Option<Duration>>) -> Timeout {
    timeout_at(delay.into().and_then(|delay| Instant::now().checked_add(delay)))
}

/// A [`Timeout`] at the loop time `when` (asyncio's `timeout_at`); `None`
/// never expires, and a time already past expires on the first iteration
/// of the loop after the scope is entered.
pub fn timeout_at(when: impl Into<Option<Instant>>) -> Timeout {
    Timeout {
        state: Rc::new(State {
            when: Cell::new(when.into()),
            phase: Cell::new(Phase::Created),
            rearm: Cell::new(false),
            waker: RefCell::new(None),
        }),
    }
}

impl Timeout {
    /// The deadline (`None`: never).
    pub fn when(&self) -> Option<Instant> {
        self.state.when.get()
    }

    /// `true` if the deadline passed while the scope's future ran, which
    /// then ended with [`TimedOut`](io::ErrorKind::TimedOut).
    pub fn expired(&self) -> bool {
        self.state.phase.get() == Phase::Expired
    }

    /// Moves the deadline of a running scope to `when` (`None`: never); a
    /// time already past expires it on the next loop iteration.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if the scope was not
    /// entered yet (asyncio's "Timeout has not been entered"), or has
    /// finished or expired already: the deadline is left as it was.
    pub fn reschedule(&self, when: impl Into<Option<Instant>>) -> io::Result<()> {
        let refused = match self.state.phase.get() {
            Phase::Active => None,
            Phase::Created => Some("timeout has not been entered"),
            Phase::Expired => Some("cannot reschedule an expired timeout"),
            Phase::Finished => Some("cannot reschedule a finished timeout"),
        };
        if let Some(why) = refused {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        self.state.when.set(when.into());
        self.state.rearm.set(true);
        let waker = self.state.waker.borrow().clone();
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Enters the scope and runs `future` under its deadline: the returned
    /// future gives `Ok` with the output if `future` finishes first. If the
    /// deadline comes first (never early), `future` is dropped, a pending
    /// [`Future`](crate::Future) it awaited is cancelled (as a cancelled
    /// task's is), the scope is [`expired`](Self::expired), and the result
    /// is a [`TimedOut`](io::ErrorKind::TimedOut) error. If both are ready
    /// at the same poll, the deadline wins (asyncio's timer cancels the task
    /// before its next step). The timer is set now, with `event_loop`.
    ///
    /// Dropping the returned future (cancelling the task that awaits it)
    /// finishes the scope without expiring it, unless its timer had fired.
    ///
    /// # Errors
    ///
    /// [`TimedOut`](io::ErrorKind::TimedOut) as above;
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) "timeout has already
    /// been entered" if this scope (or a clone of it) was run before, and
    /// `future` is dropped unpolled.
    pub fn run<'a, E, F>(&self, event_loop: &'a E, future: F) -> TimeoutRun<'a, E::Loop, F>
    where
        E: AsEventLoop + ?Sized,
        F: Future,
    {
        let event_loop = event_loop.as_event_loop();
        let mut run =
            TimeoutRun { scope: self.clone(), event_loop, future: None, sleep: None, refused: None };
        if self.state.phase.get() != Phase::Created {
            run.refused =
                Some(io::Error::new(io::ErrorKind::InvalidInput, "timeout has already been entered"));
            return run;
        }
        self.state.phase.set(Phase::Active);
        run.future = Some(Box::pin(future));
        run.arm();
        run
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.state.phase.get() {
            Phase::Created => "created",
            Phase::Active => "active",
            Phase::Expired => "expired",
            Phase::Finished => "finished",
        };
        f.debug_struct("Timeout").field("state", &phase).field("when", &self.when()).finish()
    }
}

/// The future of [`Timeout::run`].
#[must_use = "a TimeoutRun does nothing unless awaited"]
pub struct TimeoutRun<'a, L, F> {
    scope: Timeout,
    event_loop: &'a L,
    future: Option<Pin<Box<F>>>,
    sleep: Option<Sleep>,
    refused: Option<io::Error>,
}

impl<L: crate::AbstractEventLoop, F> TimeoutRun<'_, L, F> {
    /// Sets the timer for the current deadline (none for `None`).
    fn arm(&mut self) {
        self.scope.state.rearm.set(false);
        self.sleep = self.scope.when().map(|when| crate::sleep_until(self.event_loop, when));
    }

    /// `true` if the timer has fired; polling it registers `cx`.
    fn fired(&mut self, cx: &mut Context<'_>) -> bool {
        self.sleep.as_mut().is_some_and(|sleep| Pin::new(sleep).poll(cx).is_ready())
    }
}

impl<L: crate::AbstractEventLoop, F: Future> Future for TimeoutRun<'_, L, F> {
    type Output = io::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(err) = this.refused.take() {
            return Poll::Ready(Err(err));
        }
        if this.future.is_none() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "timeout polled after completion",
            )));
        }
        {
            let mut waker = this.scope.state.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        if this.scope.state.rearm.get() {
            this.arm();
        }
        if !this.fired(cx) {
            let polled = match this.future.as_mut() {
                Some(future) => future.as_mut().poll(cx),
                None => Poll::Pending,
            };
            if let Poll::Ready(output) = polled {
                this.future = None;
                this.sleep = None;
                this.scope.state.phase.set(Phase::Finished);
                return Poll::Ready(Ok(output));
            }
            if !this.scope.state.rearm.get() {
                return Poll::Pending;
            }
            // Rescheduled by the body itself: set the new timer now.
            this.arm();
            if !this.fired(cx) {
                return Poll::Pending;
            }
        }
        // The deadline passed: the body is cancelled, as asyncio cancels
        // the task; a `Future` it awaited is cancelled with it.
        this.scope.state.phase.set(Phase::Expired);
        this.sleep = None;
        crate::coroutines::futures::drop_abandoned(this.future.take());
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
    }
}

/// Wakes nothing: for a last look at a timer being dropped.
struct NoopWaker;

impl Wake for NoopWaker {
    fn wake(self: Arc<Self>) {}
}

impl<L, F> Drop for TimeoutRun<'_, L, F> {
    fn drop(&mut self) {
        if self.future.is_none() || self.scope.state.phase.get() != Phase::Active {
            return;
        }
        // Dropped while running: expired if its timer had fired (an outer
        // scope with the same deadline won the race), finished otherwise.
        let waker = Waker::from(Arc::new(NoopWaker));
        let fired = self
            .sleep
            .as_mut()
            .is_some_and(|sleep| Pin::new(sleep).poll(&mut Context::from_waker(&waker)).is_ready());
        self.scope.state.phase.set(if fired { Phase::Expired } else { Phase::Finished });
    }
}

impl<L, F> fmt::Debug for TimeoutRun<'_, L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutRun")
            .field("scope", &self.scope)
            .field("running", &self.future.is_some())
            .finish()
    }
}
