//! What the ready queue holds: callbacks with a cancel flag and the place
//! they were scheduled from. One allocation per scheduled callback holds both
//! the closure and the flag its [`Handle`](crate::Handle) shares.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::panic::Location;
use std::rc::Rc;

use crate::event_loop::events::Cancel;

/// What [`Callback::run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    /// It ran and used up its closure: dropping it runs no user code.
    UsedUp,
    /// It ran and keeps its closure (a reader, a task): dropping the last
    /// reference drops what the closure captured.
    Kept,
    /// It was cancelled (or busy) and did not run.
    Skipped,
}

/// What [`Callback::run_release`] did. (No fields: the common case is
/// one test of the returned byte.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// It ran, and the reference it was given is dropped.
    Ran,
    /// It was cancelled (or busy) and did not run; the reference is dropped.
    Skipped,
    /// It ran and kept its closure, and the reference it was given is the
    /// last one: dropping it drops what the closure captured, which may
    /// panic. That reference was not dropped but forgotten: whoever lent
    /// it still owns it.
    RanLast,
    /// As [`RanLast`](Self::RanLast), but it was skipped.
    SkippedLast,
}

/// A queued unit of work for a loop of type `L`.
pub(crate) trait Callback<L>: Cancel {
    /// Runs the callback unless it was cancelled.
    fn run(&self, event_loop: &L) -> Ran;
    /// [`run`](Self::run), then drops `self`: the run phase's one indirect
    /// call per callback, compiled for each concrete type.
    ///
    /// `self` may be a bitwise copy of a reference the run phase keeps in
    /// its batch: it is dropped here only when this returns [`Step::Ran`]
    /// or [`Step::Skipped`]. If the callback panics, or this returns
    /// [`Step::RanLast`] or [`Step::SkippedLast`], it is forgotten, and the batch's copy is still the
    /// owner. Implementations keep this default; the run phase's `unsafe`
    /// relies on it.
    #[inline]
    fn run_release(self: Rc<Self>, event_loop: &L) -> Step {
        // Forgotten if `run` unwinds: the batch's copy then still owns it.
        let this = ManuallyDrop::new(self);
        let ran = this.run(event_loop);
        if ran != Ran::UsedUp && Rc::strong_count(&this) == 1 {
            return if ran == Ran::Skipped { Step::SkippedLast } else { Step::RanLast };
        }
        // A used-up one-shot callback's drop, or a drop that leaves other
        // references, runs no user code.
        drop(ManuallyDrop::into_inner(this));
        if ran == Ran::Skipped {
            Step::Skipped
        } else {
            Step::Ran
        }
    }
    /// Drops one reference to it. The same as `drop`, but compiled for each
    /// concrete type, so the run phase's drop needs no layout from the vtable.
    #[inline]
    fn release(self: Rc<Self>) {
        drop(self);
    }
    /// Where it was scheduled (or the reader added).
    fn origin(&self) -> &'static Location<'static>;
    /// Told by the timer heap when this timer leaves it (fired, purged or
    /// dropped); says whether it was cancelled (one call, one look at the entry).
    fn left_heap(&self) -> bool {
        self.cancelled()
    }
    /// Drops the closure of a callback that will never run (the loop is
    /// closing) without marking it cancelled, so what it captured is freed
    /// even while a handle to it lives.
    fn discard(&self) {}
}

pub(crate) type ReadyCallback<L> = Rc<dyn Callback<L>>;

/// The ready queue: callbacks are only ever added at the back, and the run
/// phase takes the whole queue at once, so a `Vec` is a FIFO here.
pub(crate) type ReadyQueue<L> = Vec<ReadyCallback<L>>;

/// Bookkeeping shared by a loop's timer heap and its timers' handles, so a
/// cancelled timer can be counted while it still sits in the heap.
#[derive(Debug, Default)]
pub(crate) struct TimerBook {
    /// Cancelled timers still in the heap (asyncio's `_timer_cancelled_count`).
    pub(crate) cancelled_in_heap: Cell<usize>,
    /// Every timer cancelled before it ran.
    pub(crate) cancelled_total: Cell<u64>,
    /// Timers whose callback ran.
    pub(crate) fired: Cell<u64>,
}

/// What a one-shot callback does besides running: nothing for `call_soon`,
/// bookkeeping for timers. A type parameter, so plain callbacks carry none.
pub(crate) trait OnceKind {
    /// `cancel` was called; `pending` is whether the callback had not run yet.
    fn cancelled(&self, pending: bool);
    /// The timer heap let go of this entry.
    fn left_heap(&self) {}
    /// `run` was called: `ran` says whether the callback ran (or had been cancelled).
    fn run_called(&self, ran: bool) {
        let _ = ran;
    }
}

impl OnceKind for () {
    fn cancelled(&self, _pending: bool) {}
}

/// For timers: the shared book and whether this timer is still in the
/// heap's books. The heap hands a due timer to the ready queue without
/// looking at it (a look is a cache miss per timer when many are due), so
/// a due timer leaves the books when it runs, or is skipped as cancelled,
/// in the same iteration; one the heap drops (purged, or the loop closing)
/// leaves them then.
pub(crate) struct TimerMark {
    book: Rc<TimerBook>,
    in_heap: Cell<bool>,
}

impl TimerMark {
    pub(crate) fn new(book: Rc<TimerBook>) -> Self {
        TimerMark { book, in_heap: Cell::new(true) }
    }
}

impl OnceKind for TimerMark {
    fn cancelled(&self, pending: bool) {
        if pending {
            self.book.cancelled_total.set(self.book.cancelled_total.get() + 1);
        }
        if self.in_heap.get() {
            self.book.cancelled_in_heap.set(self.book.cancelled_in_heap.get() + 1);
        }
    }

    fn left_heap(&self) {
        self.in_heap.set(false);
    }

    #[inline]
    fn run_called(&self, ran: bool) {
        let book = &self.book;
        if ran {
            book.fired.set(book.fired.get() + 1);
        }
        // Cancelled after it became due, it was counted in the heap then.
        if self.in_heap.replace(false) && !ran {
            book.cancelled_in_heap.set(book.cancelled_in_heap.get().saturating_sub(1));
        }
    }
}

/// `Rc::new(make())`, with the value written straight into the new block.
/// `Rc::new` builds its block (counts and value) on the stack and copies
/// it over once allocated; `Rc::new_cyclic` allocates first and writes the
/// value its closure makes in place (nothing here uses the `Weak` it
/// offers). On the `call_soon` path that saved about ten instructions.
#[inline(always)]
pub(crate) fn new_rc<T>(make: impl FnOnce() -> T) -> Rc<T> {
    Rc::new_cyclic(move |_| make())
}

/// A callback that runs at most once (`call_soon`, `call_later`, threadsafe calls).
pub(crate) struct Once<F, K = ()> {
    callback: Cell<Option<F>>,
    cancelled: Cell<bool>,
    origin: &'static Location<'static>,
    kind: K,
}

impl<F, K> Once<F, K> {
    pub(crate) fn new(callback: F, origin: &'static Location<'static>, kind: K) -> Self {
        Once { callback: Cell::new(Some(callback)), cancelled: Cell::new(false), origin, kind }
    }
}

impl<F, K: OnceKind> Cancel for Once<F, K> {
    fn cancel(&self) {
        if self.cancelled.replace(true) {
            return;
        }
        // Free what the closure captured now, as asyncio drops the callback.
        let pending = self.callback.take();
        self.kind.cancelled(pending.is_some());
        drop(pending);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.get()
    }
}

impl<L, F: FnOnce(&L), K: OnceKind> Callback<L> for Once<F, K> {
    #[inline]
    fn run(&self, event_loop: &L) -> Ran {
        match self.callback.take() {
            Some(callback) => {
                self.kind.run_called(true);
                callback(event_loop);
                Ran::UsedUp
            }
            None => {
                self.kind.run_called(false);
                Ran::Skipped
            }
        }
    }

    fn origin(&self) -> &'static Location<'static> {
        self.origin
    }

    #[inline]
    fn left_heap(&self) -> bool {
        self.kind.left_heap();
        self.cancelled.get()
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
    fn run(&self, event_loop: &L) -> Ran {
        if self.cancelled.get() {
            return Ran::Skipped;
        }
        // A callback is never queued inside its own run, so this borrow is free.
        match self.callback.try_borrow_mut() {
            Ok(mut callback) => {
                (*callback)(event_loop);
                Ran::Kept
            }
            Err(_) => Ran::Skipped,
        }
    }

    fn origin(&self) -> &'static Location<'static> {
        self.origin
    }
}
