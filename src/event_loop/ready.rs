//! What runs next: the ready queue (asyncio's `_ready` deque) and its
//! entries.
//!
//! Everything a loop runs passes through here: `call_soon` callbacks, due
//! timers, readers and writers whose fd became ready, signal handlers, calls
//! from other threads, and tasks to poll. There is one way in,
//! [`ReadyQueue::push`], and one way out, [`ReadyQueue::run`], which runs the
//! callbacks queued when it is called and no others.
//!
//! An entry is an `Rc<dyn Callback<L>>`: one allocation holds the closure, its
//! cancel flag (shared with the [`Handle`](crate::Handle) the user got back)
//! and the place it was scheduled from. The queue also keeps the tasks that
//! wait to be woken ("parked"), so that a `Send` waker can find its task
//! by id, and so that closing the loop drops them.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event_loop::events::Cancel;
use crate::event_loop::panics::{catch_quietly, Panic, Quiet};
use crate::event_loop::threadsafe::Incoming;

/// What [`Callback::run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    /// It ran and used up its closure: dropping it runs no user code.
    UsedUp,
    /// It ran and keeps its closure (a reader, a task): dropping the last
    /// reference drops what the closure captured, which may run user code.
    Kept,
    /// It was cancelled (or busy) and did not run.
    Skipped,
}

/// A queued unit of work for a loop of type `L`.
pub(crate) trait Callback<L>: Cancel {
    /// Runs the callback unless it was cancelled.
    fn run(&self, event_loop: &L) -> Ran;
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
    /// Drops one reference to it: `drop`, but compiled for each concrete
    /// type, so the run phase's drop of an entry is a direct call with a
    /// known size, not `drop_in_place` and a layout read from the vtable
    /// (about 20 instructions per callback, 5 % of a `call_soon` chain link).
    #[inline]
    fn release(self: Rc<Self>) {
        drop(self);
    }
}

pub(crate) type ReadyCallback<L> = Rc<dyn Callback<L>>;

/// What a one-shot callback does besides running: nothing for `call_soon`,
/// bookkeeping for timers (see `timers.rs`). A type parameter, so plain
/// callbacks carry none.
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

/// Something the run phase must tell the exception handler about.
pub(crate) enum Incident {
    /// A callback scheduled at `origin` (if known) panicked, running or
    /// being dropped.
    Panic { origin: Option<&'static Location<'static>>, panic: Panic },
    /// A callback ran for `took` (reported only when the run is timed:
    /// debug mode, or an observer watching).
    Ran { origin: &'static Location<'static>, took: Duration },
}

/// The loop's ready queue, shared (`Rc`) by the engine and by whatever
/// schedules without a `&L`: wakers, futures' done callbacks, transports.
pub(crate) struct ReadyQueue<L> {
    /// Only ever added to at the back, and taken whole by the run phase: a
    /// `Vec` is a FIFO here.
    entries: RefCell<Vec<ReadyCallback<L>>>,
    /// The vector swapped in while a batch runs; kept for its allocation.
    spare: Cell<Vec<ReadyCallback<L>>>,
    closed: Cell<bool>,
    /// Calls from other threads, queued before anything queued here after them.
    incoming: Arc<Incoming<L>>,
    /// Tasks waiting to be woken, by id: kept alive by the loop, dropped when it closes.
    parked: RefCell<HashMap<u64, ReadyCallback<L>>>,
    next_id: Cell<u64>,
}

impl<L: 'static> ReadyQueue<L> {
    /// An empty, open queue fed by `incoming` too.
    pub(crate) fn new(incoming: Arc<Incoming<L>>) -> Self {
        ReadyQueue {
            entries: RefCell::new(Vec::new()),
            spare: Cell::new(Vec::new()),
            closed: Cell::new(false),
            incoming,
            parked: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        }
    }

    /// Queues parked entry `id`, if it is still parked.
    pub(crate) fn wake(&self, id: u64) {
        let entry = self.parked.borrow().get(&id).cloned();
        if let Some(entry) = entry {
            self.push(entry);
        }
    }

    /// Queues `entry` to run on the next run phase; `false` (and `entry`
    /// dropped) if the loop is closed.
    #[inline(always)]
    pub(crate) fn push(&self, entry: ReadyCallback<L>) -> bool {
        match self.open() {
            Some(mut queue) => {
                queue.push(entry);
                true
            }
            None => false,
        }
    }

    /// The one way in: the queue, to push entries onto (one borrow for
    /// many, as when a `select` reported many fds), or `None` if the loop
    /// is closed. Calls other threads made before now are queued first, so
    /// the loop keeps one FIFO, as asyncio's single deque. Nothing may run
    /// a callback while it is held.
    #[inline(always)]
    pub(crate) fn open(&self) -> Option<RefMut<'_, Vec<ReadyCallback<L>>>> {
        if self.closed.get() {
            return None;
        }
        let mut entries = self.entries.borrow_mut();
        if self.incoming.has_pending() {
            self.take_incoming(&mut entries);
        }
        Some(entries)
    }

    /// Queues a one-shot callback (`call_soon` without a handle); dropped
    /// if the loop is closed.
    #[track_caller]
    pub(crate) fn call_soon(&self, callback: impl FnOnce(&L) + 'static) {
        let origin = Location::caller();
        self.push(new_rc(move || Once::new(callback, origin, ())));
    }

    #[cold]
    #[inline(never)]
    fn take_incoming(&self, entries: &mut Vec<ReadyCallback<L>>) {
        for (callback, origin) in self.incoming.take_pending() {
            entries.push(new_rc(move || Once::new(callback, origin, ())));
        }
    }

    /// Runs the callbacks queued now (other threads' calls included), and
    /// only those: what they schedule waits for the next call. The one way
    /// out. Each entry is dropped right after it ran (for a reader that
    /// removed itself, that is the last reference). A panic, in a callback
    /// or in the drop of what it captured, is caught and handed to `report`
    /// with the origin of the callback, and the rest of the batch runs. If
    /// `timed`, each callback that ran is reported with how long it took.
    /// Returns how many callbacks ran (cancelled ones skipped).
    pub(crate) fn run(&self, event_loop: &L, timed: bool, report: &mut dyn FnMut(&L, Incident)) -> u64 {
        let mut batch = {
            let mut entries = self.entries.borrow_mut();
            if self.incoming.has_pending() {
                self.take_incoming(&mut entries);
            }
            std::mem::replace(&mut *entries, self.spare.take())
        };
        let _quiet = Quiet::new();
        let mut ran = 0;
        for entry in batch.drain(..) {
            let outcome = if timed {
                run_timed(&entry, event_loop, report)
            } else {
                catch_quietly(|| entry.run(event_loop))
            };
            let outcome = outcome.unwrap_or_else(|panic| {
                report(event_loop, Incident::Panic { origin: Some(entry.origin()), panic });
                Ran::Kept // what it captured is still there, its drop may panic
            });
            ran += u64::from(outcome != Ran::Skipped);
            if outcome != Ran::UsedUp && Rc::strong_count(&entry) == 1 {
                // The last reference to a closure that was not used up:
                // dropping it runs user code, which may panic too.
                let origin = entry.origin();
                if let Err(panic) = catch_quietly(|| entry.release()) {
                    report(event_loop, Incident::Panic { origin: Some(origin), panic });
                }
            } else {
                entry.release();
            }
        }
        // Keep the emptied vector's allocation for the next batch.
        self.spare.set(batch);
        ran
    }
}

impl<L> ReadyQueue<L> {
    /// `true` once the loop closed: pushing does nothing.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// `true` when nothing is queued on this thread.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// A fresh id for [`park`](Self::park).
    pub(crate) fn next_parked_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Keeps `entry` (a task) under `id` until [`unpark`](Self::unpark), so
    /// [`wake`](Self::wake) can queue it; `false` if the loop is closed.
    pub(crate) fn park(&self, id: u64, entry: ReadyCallback<L>) -> bool {
        if self.closed.get() {
            return false;
        }
        self.parked.borrow_mut().insert(id, entry);
        true
    }

    /// Forgets parked entry `id` (a task that finished).
    pub(crate) fn unpark(&self, id: u64) {
        let removed = self.parked.borrow_mut().remove(&id);
        drop(removed);
    }

    /// Runs parked entry `id` now, if it is still parked (a wake that came
    /// from another thread, delivered by a threadsafe call).
    pub(crate) fn run_parked(&self, event_loop: &L, id: u64) {
        let entry = self.parked.borrow().get(&id).cloned();
        if let Some(entry) = entry {
            entry.run(event_loop);
        }
    }

    /// How many entries are parked (pending tasks).
    pub(crate) fn parked_count(&self) -> usize {
        self.parked.borrow().len()
    }

    /// Closes the queue: the parked entries are cancelled (a task drops its
    /// future; a few rounds catch tasks that those drops create), then
    /// pushing stops and every queued entry's closure is dropped, even if
    /// the user still holds its handle (a closure holding its own handle
    /// would otherwise leak). Returns the entries, for the caller to drop
    /// outside any borrow: a closure's destructor may use the loop.
    pub(crate) fn close(&self) -> Vec<ReadyCallback<L>> {
        for _ in 0..8 {
            let parked = std::mem::take(&mut *self.parked.borrow_mut());
            if parked.is_empty() {
                break;
            }
            parked.values().for_each(|entry| entry.cancel());
        }
        self.closed.set(true);
        let entries = std::mem::take(&mut *self.entries.borrow_mut());
        entries.iter().for_each(|entry| entry.discard());
        entries
    }
}

/// Runs `entry`, reporting how long it took if it ran.
#[cold]
fn run_timed<L>(
    entry: &ReadyCallback<L>,
    event_loop: &L,
    report: &mut dyn FnMut(&L, Incident),
) -> Result<Ran, Panic> {
    let started = Instant::now();
    let outcome = catch_quietly(|| entry.run(event_loop));
    if !matches!(outcome, Ok(Ran::Skipped)) {
        report(event_loop, Incident::Ran { origin: entry.origin(), took: started.elapsed() });
    }
    outcome
}
