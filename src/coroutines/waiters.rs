//! The waiter list under every synchronization primitive (asyncio keeps a
//! `deque` of futures per lock, event, condition, semaphore and queue; here
//! it is a queue of [`Waiter`]s, each holding the [`Waker`] of the task that
//! waits). No loop is involved: waking a waiter wakes its task, and the task
//! finds out on its next poll that it was woken.
//!
//! A waiter is removed by the future that owns it, when that future
//! completes or is dropped (which is how a task's wait is cancelled), so the
//! list never holds a waiter nobody will look at.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Waker};

/// One task waiting: woken once it may proceed.
#[derive(Debug)]
pub(crate) struct Waiter {
    woken: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Waiter {
    /// `true` once a wake-up was handed to this waiter.
    pub(crate) fn woken(&self) -> bool {
        self.woken.get()
    }

    /// Takes the wake-up back: the waiter waits again, in its place.
    pub(crate) fn unwake(&self) {
        self.woken.set(false);
    }

    /// Remembers the waker of the latest poll.
    pub(crate) fn register(&self, cx: &Context<'_>) {
        let mut waker = self.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
    }

    /// Marks it woken and gives back its waker, to be woken once no borrow
    /// of the list is held.
    fn wake(&self) -> Option<Waker> {
        self.woken.set(true);
        self.waker.borrow().clone()
    }
}

/// A FIFO of waiters.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

impl WaitList {
    /// Adds a waiter at the back, with the waker of `cx`.
    pub(crate) fn push(&self, cx: &Context<'_>) -> Rc<Waiter> {
        let waiter =
            Rc::new(Waiter { woken: Cell::new(false), waker: RefCell::new(Some(cx.waker().clone())) });
        self.waiters.borrow_mut().push_back(Rc::clone(&waiter));
        waiter
    }

    /// Removes `waiter` if it is still in the list.
    pub(crate) fn remove(&self, waiter: &Rc<Waiter>) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(at) = waiters.iter().position(|w| Rc::ptr_eq(w, waiter)) {
            waiters.remove(at);
        }
    }

    /// How many wait (woken ones included, until they run).
    pub(crate) fn len(&self) -> usize {
        self.waiters.borrow().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.borrow().is_empty()
    }

    /// Wakes the waiter at the head, unless it was woken already (asyncio's
    /// `Lock._wake_up_first`). `true` if one was woken now.
    pub(crate) fn wake_first(&self) -> bool {
        let waker = {
            let waiters = self.waiters.borrow();
            match waiters.front() {
                Some(first) if !first.woken() => first.wake(),
                _ => return false,
            }
        };
        wake(waker);
        true
    }

    /// Wakes the first waiter not woken yet (asyncio's `_wake_up_next`).
    /// `true` if one was woken.
    pub(crate) fn wake_next(&self) -> bool {
        self.wake_up_to(1) == 1
    }

    /// Wakes the first `n` waiters not woken yet; gives how many it woke.
    pub(crate) fn wake_up_to(&self, n: usize) -> usize {
        let wakers: Vec<Option<Waker>> = {
            let waiters = self.waiters.borrow();
            waiters.iter().filter(|w| !w.woken()).take(n).map(|w| w.wake()).collect()
        };
        let woken = wakers.len();
        wakers.into_iter().for_each(wake);
        woken
    }

    /// Wakes every waiter not woken yet.
    pub(crate) fn wake_all(&self) -> usize {
        self.wake_up_to(usize::MAX)
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}
