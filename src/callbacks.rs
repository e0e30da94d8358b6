//! What the ready queue holds: callbacks with a cancel flag and the place
//! they were scheduled from. One allocation per scheduled callback holds both
//! the closure and the flag its [`Handle`](crate::Handle) shares.

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::Rc;

use crate::events::Cancel;

/// A queued unit of work for a loop of type `L`.
pub(crate) trait Callback<L>: Cancel {
    /// Runs the callback unless it was cancelled; `true` if it ran.
    fn run(&self, event_loop: &L) -> bool;
    /// Where it was scheduled (or the reader added).
    fn origin(&self) -> &'static Location<'static>;
    /// Told by the timer heap when this timer leaves it (fired, purged or dropped).
    fn left_heap(&self) {}
    /// Drops the closure of a callback that will never run (the loop is
    /// closing) without marking it cancelled, so what it captured is freed
    /// even while a handle to it lives.
    fn discard(&self) {}
}

pub(crate) type ReadyCallback<L> = Rc<dyn Callback<L>>;

/// Bookkeeping shared by a loop's timer heap and its timers' handles, so a
/// cancelled timer can be counted while it still sits in the heap.
#[derive(Debug, Default)]
pub(crate) struct TimerBook {
    /// Cancelled timers still in the heap (asyncio's `_timer_cancelled_count`).
    pub(crate) cancelled_in_heap: Cell<usize>,
    /// Every timer cancelled before it ran.
    pub(crate) cancelled_total: Cell<u64>,
}

/// For timers: the shared book and whether this timer is still in the heap.
pub(crate) struct TimerMark {
    pub(crate) book: Rc<TimerBook>,
    pub(crate) in_heap: Cell<bool>,
}

/// A callback that runs at most once (`call_soon`, `call_later`, threadsafe calls).
pub(crate) struct Once<F> {
    callback: Cell<Option<F>>,
    cancelled: Cell<bool>,
    origin: &'static Location<'static>,
    pub(crate) timer: Option<TimerMark>,
}

impl<F> Once<F> {
    pub(crate) fn new(callback: F, origin: &'static Location<'static>, timer: Option<Rc<TimerBook>>) -> Self {
        Once {
            callback: Cell::new(Some(callback)),
            cancelled: Cell::new(false),
            origin,
            timer: timer.map(|book| TimerMark { book, in_heap: Cell::new(true) }),
        }
    }
}

impl<F> Cancel for Once<F> {
    fn cancel(&self) {
        if self.cancelled.replace(true) {
            return;
        }
        // Free what the closure captured now, as asyncio drops the callback.
        let pending = self.callback.take();
        if let Some(mark) = &self.timer {
            if pending.is_some() {
                mark.book.cancelled_total.set(mark.book.cancelled_total.get() + 1);
            }
            if mark.in_heap.get() {
                mark.book.cancelled_in_heap.set(mark.book.cancelled_in_heap.get() + 1);
            }
        }
        drop(pending);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.get()
    }
}

impl<L, F: FnOnce(&L)> Callback<L> for Once<F> {
    #[inline]
    fn run(&self, event_loop: &L) -> bool {
        match self.callback.take() {
            Some(callback) => {
                callback(event_loop);
                true
            }
            None => false,
        }
    }

    fn origin(&self) -> &'static Location<'static> {
        self.origin
    }

    fn left_heap(&self) {
        if let Some(mark) = &self.timer {
            mark.in_heap.set(false);
        }
    }

    fn discard(&self) {
        drop(self.callback.take());
    }
}

/// A callback that runs each time its event happens (readers, writers,
/// signal handlers). Removing or replacing it cancels it, so a copy already
/// queued for this iteration does not run.
pub(crate) struct Repeating<F> {
    callback: RefCell<F>,
    cancelled: Cell<bool>,
    origin: &'static Location<'static>,
}

impl<F> Repeating<F> {
    pub(crate) fn new(callback: F, origin: &'static Location<'static>) -> Self {
        Repeating { callback: RefCell::new(callback), cancelled: Cell::new(false), origin }
    }
}

impl<F> Cancel for Repeating<F> {
    fn cancel(&self) {
        self.cancelled.set(true);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.get()
    }
}

impl<L, F: FnMut(&L)> Callback<L> for Repeating<F> {
    #[inline]
    fn run(&self, event_loop: &L) -> bool {
        if self.cancelled.get() {
            return false;
        }
        // A callback is never queued inside its own run, so this borrow is free.
        match self.callback.try_borrow_mut() {
            Ok(mut callback) => {
                (*callback)(event_loop);
                true
            }
            Err(_) => false,
        }
    }

    fn origin(&self) -> &'static Location<'static> {
        self.origin
    }
}
