//! Synchronization primitives (asyncio's `locks.py`): [`Lock`], [`Event`],
//! [`Condition`], [`Semaphore`] and [`BoundedSemaphore`].
//!
//! Like asyncio's, they are for the tasks of one loop thread: cheap handles
//! (`Clone`, an `Rc` inside, not `Send`) that need no loop reference. A task
//! that must wait is parked in the primitive's waiter list with its
//! [`Waker`](std::task::Waker) and woken, in FIFO order, when it may go on.
//!
//! Cancelling a waiting task drops its acquire (or wait) future, and that
//! drop takes the task out of the line. A wake-up already handed to it is
//! passed on to the next waiter, never lost: asyncio's
//! `test_cancel_release_race` and `test_finished_waiter_cancelled`.
//!
//! Where asyncio writes `async with lock:`, Rust holds a guard:
//! `let guard = lock.acquire().await;` and the lock is released when the
//! guard is dropped.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::coroutines::waiters::{WaitList, Waiter};

// ---------------------------------------------------------------------------
// Lock

struct LockInner {
    locked: Cell<bool>,
    waiters: WaitList,
}

impl LockInner {
    /// Unlocks and wakes the first waiter, which takes the lock when it runs.
    fn unlock(&self) {
        self.locked.set(false);
        self.waiters.wake_first();
    }
}

/// A mutual-exclusion lock for tasks (asyncio's `Lock`), fair: waiters get
/// it in the order they asked.
///
/// [`acquire`](Self::acquire) gives a [`LockGuard`]; dropping the guard
/// releases the lock. Like asyncio's, the lock is not owned by a task:
/// [`release`](Self::release) unlocks it from anywhere (for a guard given
/// up with [`LockGuard::forget`]).
///
/// While a released lock's first waiter has been woken but has not run yet,
/// [`locked`](Self::locked) is `false`, and a newcomer still queues behind
/// that waiter (asyncio's fairness rule).
///
/// ```
/// use std::rc::Rc;
/// use std::cell::RefCell;
/// use tulip::{selectors::Backend, Lock};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let lock = Lock::new();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let tasks: Vec<_> = (0..3)
///     .map(|i| {
///         let (lock, log) = (lock.clone(), Rc::clone(&log));
///         event_loop.create_task(async move {
///             let _guard = lock.acquire().await;
///             log.borrow_mut().push(i);
///         })
///     })
///     .collect();
/// event_loop.run_until_complete(tulip::gather(tasks))?;
/// assert_eq!(*log.borrow(), [0, 1, 2]);
/// assert!(!lock.locked());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    inner: Rc<LockInner>,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock { inner: Rc::new(LockInner { locked: Cell::new(false), waiters: WaitList::default() }) }
    }

    /// `true` while it is held.
    pub fn locked(&self) -> bool {
        self.inner.locked.get()
    }

    /// Waits for the lock and takes it: the future gives a [`LockGuard`].
    /// It takes the lock at once (on its first poll) only if the lock is
    /// free and nobody waits; otherwise it queues. Dropping the future
    /// before it is ready (cancelling the task that awaits it) leaves the
    /// line, and a wake-up it had been given goes to the next waiter.
    pub fn acquire(&self) -> LockAcquire {
        LockAcquire { lock: self.clone(), waiter: None, done: false }
    }

    /// Unlocks the lock and lets its first waiter take it (asyncio's
    /// `release()`). Meant for a lock whose guard was
    /// [forgotten](LockGuard::forget); dropping a guard releases the lock
    /// by itself.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) "lock is not acquired"
    /// if it is not locked.
    pub fn release(&self) -> io::Result<()> {
        if !self.locked() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "lock is not acquired"));
        }
        self.inner.unlock();
        Ok(())
    }

    /// How many tasks wait for it.
    pub fn waiters(&self) -> usize {
        self.inner.waiters.len()
    }

    fn same(&self, other: &Lock) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("locked", &self.locked()).field("waiters", &self.waiters()).finish()
    }
}

/// The future of [`Lock::acquire`].
#[must_use = "a LockAcquire does nothing unless awaited"]
pub struct LockAcquire {
    lock: Lock,
    /// Our place in line, once we queued.
    waiter: Option<Rc<Waiter>>,
    done: bool,
}

impl LockAcquire {
    fn take(&mut self) -> Poll<LockGuard> {
        self.done = true;
        self.lock.inner.locked.set(true);
        Poll::Ready(LockGuard { lock: self.lock.clone(), held: true })
    }
}

impl Future for LockAcquire {
    type Output = LockGuard;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard> {
        if self.done {
            // Polled after completion: the guard was handed out already.
            return Poll::Pending;
        }
        let inner = Rc::clone(&self.lock.inner);
        match self.waiter.clone() {
            None if !inner.locked.get() && inner.waiters.is_empty() => self.take(),
            None => {
                self.waiter = Some(inner.waiters.push(cx));
                Poll::Pending
            }
            Some(waiter) if waiter.woken() && !inner.locked.get() => {
                inner.waiters.remove(&waiter);
                self.waiter = None;
                self.take()
            }
            Some(waiter) => {
                if waiter.woken() {
                    // Woken, yet the lock is taken (which no path allows):
                    // wait in place for the next release rather than take it.
                    waiter.unwake();
                }
                waiter.register(cx);
                Poll::Pending
            }
        }
    }
}

impl Drop for LockAcquire {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            let inner = &self.lock.inner;
            inner.waiters.remove(&waiter);
            // If the lock is free, someone at the head must be on the way
            // to take it: perhaps we were.
            if !inner.locked.get() {
                inner.waiters.wake_first();
            }
        }
    }
}

impl fmt::Debug for LockAcquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockAcquire")
            .field("queued", &self.waiter.is_some())
            .field("done", &self.done)
            .finish()
    }
}

/// Holds a [`Lock`]; dropping it releases the lock (asyncio's
/// `async with lock:` block ends).
///
/// ```
/// use tulip::{selectors::Backend, Lock};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let lock = Lock::new();
/// let guard = event_loop.run_until_complete(lock.acquire())?;
/// assert!(guard.lock().locked());
/// drop(guard);
/// assert!(!lock.locked());
///
/// // asyncio's `await lock.acquire()` ... `lock.release()`:
/// event_loop.run_until_complete(lock.acquire())?.forget();
/// assert!(lock.locked());
/// lock.release()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    lock: Lock,
    /// Cleared by `forget`: the drop then leaves the lock alone.
    held: bool,
}

impl LockGuard {
    /// The lock it holds.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// Keeps the lock locked after the guard is gone; someone then calls
    /// [`Lock::release`] (asyncio's `await lock.acquire()` without `with`).
    pub fn forget(mut self) {
        self.held = false;
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Released already through `Lock::release`: nothing to do.
        if self.held && self.lock.locked() {
            self.lock.inner.unlock();
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").field("lock", &self.lock).field("held", &self.held).finish()
    }
}

// ---------------------------------------------------------------------------
// Event

struct EventInner {
    set: Cell<bool>,
    waiters: WaitList,
}

/// A flag tasks can wait for (asyncio's `Event`): [`wait`](Self::wait)
/// returns once [`set`](Self::set) was called; [`clear`](Self::clear)
/// makes later waits wait again. A set wakes every waiter at that moment,
/// even if the flag is cleared before they run.
///
/// ```
/// use std::time::Duration;
/// use tulip::{selectors::Backend, AbstractEventLoop, Event};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let event = Event::new();
/// let setter = event.clone();
/// event_loop.call_later(Duration::from_millis(1), move |_| setter.set());
/// event_loop.run_until_complete(event.wait())?;
/// assert!(event.is_set());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    inner: Rc<EventInner>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event { inner: Rc::new(EventInner { set: Cell::new(false), waiters: WaitList::default() }) }
    }

    /// `true` while the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.set.get()
    }

    /// Sets the flag and wakes every task waiting for it.
    pub fn set(&self) {
        if !self.inner.set.replace(true) {
            self.inner.waiters.wake_all();
        }
    }

    /// Clears the flag: later waits wait for the next [`set`](Self::set).
    pub fn clear(&self) {
        self.inner.set.set(false);
    }

    /// A future that is ready once the flag is set (at once if it is set
    /// now). Dropping it leaves the waiter list.
    pub fn wait(&self) -> EventWait {
        EventWait { event: self.clone(), waiter: None, done: false }
    }

    /// How many tasks wait for it.
    pub fn waiters(&self) -> usize {
        self.inner.waiters.len()
    }
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).field("waiters", &self.waiters()).finish()
    }
}

/// The future of [`Event::wait`].
#[must_use = "an EventWait does nothing unless awaited"]
pub struct EventWait {
    event: Event,
    waiter: Option<Rc<Waiter>>,
    done: bool,
}

impl Future for EventWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        match self.waiter.clone() {
            None if self.event.is_set() => {}
            None => {
                self.waiter = Some(self.event.inner.waiters.push(cx));
                return Poll::Pending;
            }
            Some(waiter) if waiter.woken() => {
                self.event.inner.waiters.remove(&waiter);
                self.waiter = None;
            }
            Some(waiter) => {
                waiter.register(cx);
                return Poll::Pending;
            }
        }
        self.done = true;
        Poll::Ready(())
    }
}

impl Drop for EventWait {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            self.event.inner.waiters.remove(&waiter);
        }
    }
}

impl fmt::Debug for EventWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWait").field("queued", &self.waiter.is_some()).field("done", &self.done).finish()
    }
}

// ---------------------------------------------------------------------------
// Condition

/// A condition variable over a [`Lock`] (asyncio's `Condition`): a task
/// holding the lock [`wait`](Self::wait)s, which releases the lock until
/// another task [`notify`](Self::notify)s, then takes the lock back.
///
/// Rust's shape: `wait` takes the [`LockGuard`] and gives it back once the
/// lock is re-acquired, so holding the lock is checked by the types (as
/// `std::sync::Condvar` does). If the waiting task is cancelled, the guard
/// goes with the dropped future: the task no longer holds the lock (asyncio
/// re-acquires it before raising `CancelledError`; a dropped future cannot
/// wait for that). A notification it had received is passed on to another
/// waiter, as asyncio does (bpo-32841); like asyncio's, a wake-up may be
/// spurious, so re-check the state after `wait`, or use
/// [`wait_for`](Self::wait_for).
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use tulip::{selectors::Backend, Condition};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let cond = Condition::new();
/// let ready = Rc::new(Cell::new(false));
/// let (c, r) = (cond.clone(), Rc::clone(&ready));
/// let waiter = event_loop.create_task(async move {
///     let guard = c.acquire().await;
///     let _guard = c.wait_for(guard, || r.get()).await?;
///     Ok::<_, std::io::Error>("woken with the predicate true")
/// });
/// let said = event_loop.run_until_complete(async {
///     let _guard = cond.acquire().await;
///     ready.set(true);
///     cond.notify_all()?;
///     Ok::<_, std::io::Error>(())
/// })?;
/// said?;
/// assert_eq!(event_loop.run_until_complete(waiter)???, "woken with the predicate true");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: Lock,
    waiters: Rc<WaitList>,
}

impl Condition {
    /// A condition over a new lock of its own.
    pub fn new() -> Condition {
        Condition::with_lock(Lock::new())
    }

    /// A condition over `lock` (asyncio's `Condition(lock)`), which other
    /// code may also take directly.
    pub fn with_lock(lock: Lock) -> Condition {
        Condition { lock, waiters: Rc::default() }
    }

    /// The underlying lock.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// `true` while the underlying lock is held.
    pub fn locked(&self) -> bool {
        self.lock.locked()
    }

    /// [`Lock::acquire`] of the underlying lock.
    pub fn acquire(&self) -> LockAcquire {
        self.lock.acquire()
    }

    /// Releases the lock held by `guard`, waits to be notified, then
    /// re-acquires the lock; the future gives the new guard.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if `guard` holds
    /// another lock than this condition's (that guard is dropped, which
    /// releases its lock).
    pub fn wait(&self, guard: LockGuard) -> ConditionWait {
        let state = if guard.lock().same(&self.lock) {
            WaitState::Start(guard)
        } else {
            WaitState::Refused(Some(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot wait on a condition without holding its lock",
            )))
        };
        ConditionWait { cond: self.clone(), state }
    }

    /// Waits until `predicate` returns `true` (asyncio's `wait_for`):
    /// checks it first, then after each notification, holding the lock
    /// each time; gives the guard back once it holds.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for<P>(
        &self,
        guard: LockGuard,
        mut predicate: P,
    ) -> impl Future<Output = io::Result<LockGuard>>
    where
        P: FnMut() -> bool,
    {
        let cond = self.clone();
        async move {
            let mut guard = guard;
            if !guard.lock().same(&cond.lock) {
                drop(guard);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot wait on a condition without holding its lock",
                ));
            }
            while !predicate() {
                guard = cond.wait(guard).await?;
            }
            Ok(guard)
        }
    }

    /// Wakes up to `n` waiting tasks; each takes the lock back when the
    /// notifier releases it.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) "cannot notify on
    /// un-acquired lock" if the lock is not held.
    pub fn notify(&self, n: usize) -> io::Result<()> {
        if !self.locked() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot notify on un-acquired lock"));
        }
        self.waiters.wake_up_to(n);
        Ok(())
    }

    /// Wakes every waiting task.
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub fn notify_all(&self) -> io::Result<()> {
        self.notify(usize::MAX)
    }

    /// How many tasks wait to be notified.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("locked", &self.locked()).field("waiters", &self.waiters()).finish()
    }
}

enum WaitState {
    /// Not polled yet: still holding the lock.
    Start(LockGuard),
    /// The lock released; in the condition's waiter list.
    Waiting(Rc<Waiter>),
    /// Notified; taking the lock back.
    Reacquiring(LockAcquire),
    Refused(Option<io::Error>),
    Done,
}

/// The future of [`Condition::wait`].
#[must_use = "a ConditionWait does nothing unless awaited"]
pub struct ConditionWait {
    cond: Condition,
    state: WaitState,
}

impl Future for ConditionWait {
    type Output = io::Result<LockGuard>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<LockGuard>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                WaitState::Start(_) => {
                    let waiter = this.cond.waiters.push(cx);
                    if let WaitState::Start(guard) =
                        std::mem::replace(&mut this.state, WaitState::Waiting(waiter))
                    {
                        // Releases the lock, now that we are in line.
                        drop(guard);
                    }
                    return Poll::Pending;
                }
                WaitState::Waiting(waiter) if waiter.woken() => {
                    this.cond.waiters.remove(waiter);
                    this.state = WaitState::Reacquiring(this.cond.lock.acquire());
                }
                WaitState::Waiting(waiter) => {
                    waiter.register(cx);
                    return Poll::Pending;
                }
                WaitState::Reacquiring(acquire) => {
                    let guard = std::task::ready!(Pin::new(acquire).poll(cx));
                    this.state = WaitState::Done;
                    return Poll::Ready(Ok(guard));
                }
                WaitState::Refused(err) => {
                    let err = err.take().unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "condition wait polled after completion")
                    });
                    return Poll::Ready(Err(err));
                }
                WaitState::Done => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "condition wait polled after completion",
                    )))
                }
            }
        }
    }
}

impl Drop for ConditionWait {
    fn drop(&mut self) {
        // Dropped after a notification reached us: hand it to another
        // waiter, as asyncio does, so that no notification is lost.
        let notified = match &self.state {
            WaitState::Waiting(waiter) => {
                self.cond.waiters.remove(waiter);
                waiter.woken()
            }
            WaitState::Reacquiring(_) => true,
            _ => false,
        };
        if notified {
            self.cond.waiters.wake_next();
        }
    }
}

impl fmt::Debug for ConditionWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            WaitState::Start(_) => "start",
            WaitState::Waiting(_) => "waiting",
            WaitState::Reacquiring(_) => "reacquiring",
            WaitState::Refused(_) => "refused",
            WaitState::Done => "done",
        };
        f.debug_struct("ConditionWait").field("state", &state).finish()
    }
}

// ---------------------------------------------------------------------------
// Semaphore and BoundedSemaphore

struct SemaphoreInner {
    /// Permits free to take. A waiter being woken has its permit taken
    /// from here already (asyncio's `_wake_up_next`).
    value: Cell<usize>,
    /// `Some(initial value)` for a bounded semaphore.
    bound: Option<usize>,
    waiters: WaitList,
}

impl SemaphoreInner {
    /// `true` if an acquire would wait: no permit, or others in line first.
    fn locked(&self) -> bool {
        self.value.get() == 0 || !self.waiters.is_empty()
    }

    fn release(&self) -> io::Result<()> {
        if self.bound.is_some_and(|bound| self.value.get() >= bound) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "BoundedSemaphore released too many times",
            ));
        }
        self.value.set(self.value.get().saturating_add(1));
        self.wake_up_next();
        Ok(())
    }

    /// Hands one free permit to the first waiter not woken yet.
    fn wake_up_next(&self) -> bool {
        if self.value.get() == 0 || !self.waiters.wake_next() {
            return false;
        }
        self.value.set(self.value.get() - 1);
        true
    }

    /// Hands out every free permit to waiters.
    fn wake_up_all_possible(&self) {
        while self.wake_up_next() {}
    }
}

/// A counter of permits (asyncio's `Semaphore`): [`acquire`](Self::acquire)
/// takes one, waiting while there is none; [`release`](Self::release) (or
/// dropping the [`SemaphoreGuard`]) gives one back. Fair: waiters get
/// permits in the order they asked, and a newcomer waits while others wait,
/// even if a permit is free for the moment.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use tulip::{selectors::Backend, Semaphore};
///
/// let event_loop = Rc::new(tulip::new_event_loop(Backend::Poll)?);
/// let sem = Semaphore::new(2);
/// let (running, most) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
/// let tasks: Vec<_> = (0..5)
///     .map(|_| {
///         let (sem, lp) = (sem.clone(), Rc::clone(&event_loop));
///         let (running, most) = (Rc::clone(&running), Rc::clone(&most));
///         event_loop.create_task(async move {
///             let _permit = sem.acquire().await;
///             running.set(running.get() + 1);
///             most.set(most.get().max(running.get()));
///             tulip::sleep(&lp, Duration::from_millis(1)).await;
///             running.set(running.get() - 1);
///         })
///     })
///     .collect();
/// event_loop.run_until_complete(tulip::gather(tasks))?;
/// assert_eq!(most.get(), 2, "never more than two at once");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<SemaphoreInner>,
}

impl Semaphore {
    /// A semaphore with `value` permits.
    pub fn new(value: usize) -> Semaphore {
        Semaphore::with_bound(value, None)
    }

    fn with_bound(value: usize, bound: Option<usize>) -> Semaphore {
        Semaphore {
            inner: Rc::new(SemaphoreInner { value: Cell::new(value), bound, waiters: WaitList::default() }),
        }
    }

    /// `true` if [`acquire`](Self::acquire) would wait: no permit is free,
    /// or other tasks are in line.
    pub fn locked(&self) -> bool {
        self.inner.locked()
    }

    /// Permits free to take now (those handed to woken waiters that have
    /// not run yet are taken already).
    pub fn value(&self) -> usize {
        self.inner.value.get()
    }

    /// How many tasks wait for a permit.
    pub fn waiters(&self) -> usize {
        self.inner.waiters.len()
    }

    /// Waits for a permit and takes it: the future gives a
    /// [`SemaphoreGuard`] that gives it back when dropped. Dropping the
    /// future before it is ready leaves the line, and a permit it had been
    /// handed goes to the next waiter.
    pub fn acquire(&self) -> SemaphoreAcquire {
        SemaphoreAcquire { inner: Rc::clone(&self.inner), waiter: None, done: false }
    }

    /// Gives a permit back (one more than before, even above the initial
    /// value) and hands it to the first waiter.
    pub fn release(&self) {
        // Unbounded: cannot fail.
        let _ = self.inner.release();
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("locked", &self.locked())
            .field("waiters", &self.waiters())
            .finish()
    }
}

/// A [`Semaphore`] that refuses to be released above its initial value
/// (asyncio's `BoundedSemaphore`), which catches a release too many.
///
/// ```
/// use tulip::{selectors::Backend, BoundedSemaphore};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let sem = BoundedSemaphore::new(1);
/// event_loop.run_until_complete(sem.acquire())?.forget();
/// sem.release()?;
/// let err = sem.release().unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, never more.
    pub fn new(value: usize) -> BoundedSemaphore {
        BoundedSemaphore { sem: Semaphore::with_bound(value, Some(value)) }
    }

    /// As [`Semaphore::locked`].
    pub fn locked(&self) -> bool {
        self.sem.locked()
    }

    /// As [`Semaphore::value`].
    pub fn value(&self) -> usize {
        self.sem.value()
    }

    /// As [`Semaphore::waiters`].
    pub fn waiters(&self) -> usize {
        self.sem.waiters()
    }

    /// As [`Semaphore::acquire`].
    pub fn acquire(&self) -> SemaphoreAcquire {
        self.sem.acquire()
    }

    /// Gives a permit back and hands it to the first waiter.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) "BoundedSemaphore
    /// released too many times" if that would make more permits than the
    /// initial value (asyncio's `ValueError`); nothing changes.
    pub fn release(&self) -> io::Result<()> {
        self.sem.inner.release()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("bound", &self.sem.inner.bound)
            .field("locked", &self.locked())
            .field("waiters", &self.waiters())
            .finish()
    }
}

/// The future of [`Semaphore::acquire`] and [`BoundedSemaphore::acquire`].
#[must_use = "a SemaphoreAcquire does nothing unless awaited"]
pub struct SemaphoreAcquire {
    inner: Rc<SemaphoreInner>,
    waiter: Option<Rc<Waiter>>,
    done: bool,
}

impl Future for SemaphoreAcquire {
    type Output = SemaphoreGuard;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SemaphoreGuard> {
        if self.done {
            // Polled after completion: the permit was handed out already.
            return Poll::Pending;
        }
        let inner = Rc::clone(&self.inner);
        match self.waiter.clone() {
            None if !inner.locked() => inner.value.set(inner.value.get() - 1),
            None => {
                self.waiter = Some(inner.waiters.push(cx));
                return Poll::Pending;
            }
            Some(waiter) if waiter.woken() => {
                // Our permit was taken for us when we were woken.
                inner.waiters.remove(&waiter);
                self.waiter = None;
                // Others may have queued behind us while permits were free.
                inner.wake_up_all_possible();
            }
            Some(waiter) => {
                waiter.register(cx);
                return Poll::Pending;
            }
        }
        self.done = true;
        Poll::Ready(SemaphoreGuard { inner, held: true })
    }
}

impl Drop for SemaphoreAcquire {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            self.inner.waiters.remove(&waiter);
            if waiter.woken() {
                // Handed a permit we will not use: give it back, pass it on.
                self.inner.value.set(self.inner.value.get().saturating_add(1));
            }
            self.inner.wake_up_all_possible();
        }
    }
}

impl fmt::Debug for SemaphoreAcquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreAcquire")
            .field("queued", &self.waiter.is_some())
            .field("done", &self.done)
            .finish()
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]; dropping it gives
/// the permit back. (For a bounded semaphore already at its bound, because
/// [`BoundedSemaphore::release`] was also called, the drop gives nothing
/// back rather than fail.)
#[must_use = "dropping the guard gives the permit back at once"]
pub struct SemaphoreGuard {
    inner: Rc<SemaphoreInner>,
    /// Cleared by `forget`: the drop then gives nothing back.
    held: bool,
}

impl SemaphoreGuard {
    /// Keeps the permit taken after the guard is gone; someone then calls
    /// `release` (asyncio's `await sem.acquire()` without `with`).
    pub fn forget(mut self) {
        self.held = false;
    }
}

impl Drop for SemaphoreGuard {
    fn drop(&mut self) {
        if self.held {
            // At the bound of a bounded semaphore: nothing to give back.
            let _ = self.inner.release();
        }
    }
}

impl fmt::Debug for SemaphoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").field("held", &self.held).finish()
    }
}
