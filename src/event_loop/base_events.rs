//! The scheduling engine (Tulip's `BaseEventLoop`): the FIFO ready queue, the
//! timer heap, the [`run_once`](BaseEventLoop::run_once) iteration, stop and
//! close state, and exception handling. It knows nothing about sockets: it
//! asks its loop to wait for I/O through the one hook of [`PollIo`].

use std::cell::{Cell, RefCell};
use std::io;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event_loop::local::LoopLocal;
use crate::event_loop::panics::catch;
use crate::event_loop::ready::{new_rc, Callback, Once, Ran, ReadyCallback, ReadyQueue, Step, TimerMark};
use crate::event_loop::threadsafe::{closed_error, Shared};
use crate::event_loop::timers::TimerHeap;
use crate::{ExceptionContext, Handle, LoopHandle, LoopStats, TimerHandle};

/// Callbacks slower than this are reported in debug mode (asyncio's default).
const DEFAULT_SLOW_CALLBACK: Duration = Duration::from_millis(100);

/// The hook an I/O layer gives the engine.
pub trait PollIo: Sized + 'static {
    /// The engine inside this loop.
    fn engine(&self) -> &BaseEventLoop<Self>;

    /// Waits for I/O at most `timeout` (`None`: until something happens) and
    /// queues the callbacks of what became ready. Must return when the engine's wake-up fd is written.
    ///
    /// # Errors
    ///
    /// The selector's error; `run_forever` returns it.
    fn poll_io(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// `false` when no fd but the engine's own wake-up fd is watched and
    /// asking the selector can show nothing else: then nothing can become
    /// ready without a blocking wait, and an iteration with callbacks queued
    /// skips the zero-timeout `select`. (A loop over a selector of the
    /// user's says `true`: that selector's `select` may fail or count.)
    fn has_io(&self) -> bool;
}

/// Plain counters behind [`LoopStats`].
#[derive(Default)]
struct Counters {
    iterations: Cell<u64>,
    callbacks_run: Cell<u64>,
    select_calls: Cell<u64>,
    events_received: Cell<u64>,
    panics: Cell<u64>,
    /// Nanoseconds blocked in `select`, from [`coarse_nanos`].
    time_blocked: Cell<u64>,
    time_in_run_forever: Cell<Duration>,
    /// When the current `run_forever` began, while one runs.
    run_started: Cell<Option<Instant>>,
}

fn bump(counter: &Cell<u64>, by: u64) {
    counter.set(counter.get() + by);
}

/// The clock of the time-blocked counter, in nanoseconds. It is read before
/// and after every wait that may block, so it is the kernel's coarse
/// monotonic clock where there is one (Linux): the time of the last tick,
/// a few nanoseconds to read instead of twenty-odd, to a tick's resolution
/// (1-4 ms). Over many waits the errors cancel out; one long wait is
/// measured to a tick. Elsewhere, the monotonic clock `Instant` reads.
#[inline]
fn coarse_nanos() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec, and the clock exists on
    // every target that chooses it.
    unsafe { libc::clock_gettime(CLOCK, &mut now) };
    (now.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(now.tv_nsec as u64)
}

/// Batches of at least this many callbacks are run with prefetching.
const PREFETCH_FROM: usize = 4096;
/// How far ahead in the batch to prefetch.
const PREFETCH_AHEAD: usize = 8;

/// Hints the CPU to bring the memory of `value` into the cache (its first
/// and last byte: an entry may straddle two lines). Only a hint: no effect
/// on what the program does, and none on other architectures.
#[inline(always)]
fn prefetch<T: ?Sized>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let first = (value as *const T).cast::<i8>();
        let last = first.wrapping_add(std::mem::size_of_val(value).saturating_sub(1));
        // SAFETY: prefetching reads no memory and cannot fault, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(first);
            _mm_prefetch::<_MM_HINT_T0>(last);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The batch an iteration runs: the ready queue as it was when the run
/// phase began. Its entries leave it in order, each after it ran: those
/// before `next` are gone (moved out), though still within the vector's
/// length, so the vector must never drop them. After a panic, `next` and
/// `dropping` tell [`BaseEventLoop::run_ready`] which callback it was.
struct Batch<L> {
    entries: Vec<ReadyCallback<L>>,
    /// The first entry still in the batch.
    next: usize,
    /// Entries that were cancelled (or busy) and did not run.
    skipped: u64,
    /// While the batch drops an entry whose drop may run user code (the
    /// last reference to a reader or task), where that entry was scheduled.
    dropping: Option<&'static Location<'static>>,
}

impl<L> Batch<L> {
    fn new(entries: Vec<ReadyCallback<L>>) -> Self {
        Batch { entries, next: 0, skipped: 0, dropping: None }
    }

    /// Takes the entry at `next` out of the batch (after a panic: the one
    /// that panicked while it ran).
    fn take_next(&mut self) -> Option<ReadyCallback<L>> {
        if self.next >= self.entries.len() {
            return None;
        }
        let i = self.next;
        self.next += 1;
        // SAFETY: `i` is within the length and not before `next`, so the
        // entry is still in the batch; `next` moved past it, so it is read
        // out exactly once.
        Some(unsafe { std::ptr::read(self.entries.as_ptr().add(i)) })
    }

    /// Drops the entry at `next` that ran (or was skipped, `skipped`) and
    /// kept its closure, dropping it with a note of its origin if this is
    /// its last reference (the drop may then panic).
    #[inline]
    fn release_kept(&mut self, skipped: bool) {
        self.skipped += u64::from(skipped);
        let Some(entry) = self.take_next() else { return };
        if Rc::strong_count(&entry) == 1 {
            self.dropping = Some(entry.origin());
            entry.release();
            self.dropping = None;
        } else {
            entry.release();
        }
    }

    /// The emptied vector, for its allocation.
    fn finish(self) -> Vec<ReadyCallback<L>> {
        debug_assert_eq!(self.next, self.entries.len());
        // Nothing is left to drop: no need for `Drop`'s work.
        let mut batch = std::mem::ManuallyDrop::new(self);
        // SAFETY: every entry was moved out (`next` is the length).
        unsafe { batch.entries.set_len(0) };
        std::mem::take(&mut batch.entries)
    }
}

impl<L> Drop for Batch<L> {
    /// Only on a panic that escaped the run phase: drops what was not run.
    fn drop(&mut self) {
        let len = self.entries.len();
        let rest = len - self.next.min(len);
        // SAFETY: the entries from `next` on are still in the batch, those
        // before were moved out. The length is set to zero first, so a
        // panic while dropping the rest leaks the others instead of
        // dropping anything twice.
        unsafe {
            self.entries.set_len(0);
            let first = self.entries.as_mut_ptr().add(len - rest);
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(first, rest));
        }
    }
}

type ExceptionHandler<L> = Rc<dyn Fn(&L, &ExceptionContext)>;

/// The scheduling engine of a loop of type `L`, kept inside `L`.
pub struct BaseEventLoop<L> {
    /// Shared (`Rc`) with [`LoopLocal`], through which wakers, futures and
    /// transports queue callbacks without a `&L`.
    ready: Rc<RefCell<ReadyQueue<L>>>,
    /// The queue swapped in while a batch runs; kept for its allocation.
    spare: Cell<ReadyQueue<L>>,
    /// Used-up one-shot callbacks of a large batch, freed at its end.
    used_up: RefCell<Vec<ReadyCallback<L>>>,
    timers: RefCell<TimerHeap<L>>,
    shared: Arc<Shared<L>>,
    running: Cell<bool>,
    stopping: Cell<bool>,
    closed: Rc<Cell<bool>>,
    /// Tasks and the queue handle of Layer 3 (see `local.rs`).
    local: Rc<LoopLocal<L>>,
    debug: Cell<bool>,
    slow_callback: Cell<Duration>,
    exception_handler: RefCell<Option<ExceptionHandler<L>>>,
    counters: Counters,
}

impl<L> BaseEventLoop<L> {
    /// Asks the loop to stop after the current iteration.
    pub fn stop(&self) {
        self.stopping.set(true);
    }

    /// `true` while `run_forever` runs.
    pub fn is_running(&self) -> bool {
        self.running.get()
    }

    /// `true` once closed.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Refuses further threadsafe calls and drops those queued, and drops
    /// the tasks (for `Drop`).
    pub(crate) fn shutdown_shared(&self) {
        self.local.drop_tasks();
        self.closed.set(true);
        self.shared.close();
    }

    /// The loop's [`LoopLocal`]: its tasks, and its ready queue for code without a `&L`.
    pub(crate) fn local(&self) -> &Rc<LoopLocal<L>> {
        &self.local
    }
}

impl<L: PollIo> BaseEventLoop<L> {
    /// A new engine with an empty queue and heap.
    ///
    /// # Errors
    ///
    /// If the cross-thread wake-up fd cannot be created.
    pub fn new() -> io::Result<Self> {
        let ready = Rc::new(RefCell::new(Vec::new()));
        let closed = Rc::new(Cell::new(false));
        let shared = Arc::new(Shared::new()?);
        Ok(BaseEventLoop {
            local: LoopLocal::new(Rc::clone(&ready), Rc::clone(&closed), Arc::clone(&shared)),
            ready,
            spare: Cell::new(Vec::new()),
            used_up: RefCell::new(Vec::new()),
            timers: RefCell::new(TimerHeap::new()),
            shared,
            running: Cell::new(false),
            stopping: Cell::new(false),
            closed,
            debug: Cell::new(false),
            slow_callback: Cell::new(DEFAULT_SLOW_CALLBACK),
            exception_handler: RefCell::new(None),
            counters: Counters::default(),
        })
    }

    /// The fd that other threads write to wake the loop; the I/O layer
    /// watches it for reading and calls [`drain_wakeup`](Self::drain_wakeup).
    pub fn wakeup_fd(&self) -> std::os::unix::io::RawFd {
        self.shared.wakeup.fd()
    }

    /// Consumes a wake-up after the wake-up fd was reported readable.
    pub fn drain_wakeup(&self) {
        self.shared.drain_wakeup();
    }

    fn check_open(&self) {
        if self.closed.get() {
            panic!("event loop is closed");
        }
    }

    /// Queues `cb` to run on a coming iteration.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop is closed.
    #[inline]
    #[track_caller]
    pub fn call_soon<F: FnOnce(&L) + 'static>(&self, cb: F) -> Handle {
        // One load asks both: is the loop closed, do calls other threads
        // made before this one wait (they go first: one FIFO, as asyncio's
        // single ready deque)?
        if self.shared.needs_attention() {
            self.before_queueing();
        }
        let origin = Location::caller();
        let entry = new_rc(move || Once::new(cb, origin, ()));
        self.ready.borrow_mut().push(entry.clone());
        Handle { state: entry }
    }

    /// [`call_soon`](Self::call_soon)'s slow path: panics if the loop is
    /// closed, else queues other threads' calls first.
    #[cold]
    #[inline(never)]
    fn before_queueing(&self) {
        self.check_open();
        self.take_threadsafe(&mut self.ready.borrow_mut());
    }

    /// Schedules `cb` at `when`.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop is closed.
    #[inline]
    #[track_caller]
    pub fn call_at<F: FnOnce(&L) + 'static>(&self, when: Instant, cb: F) -> TimerHandle {
        self.check_open();
        let mut timers = self.timers.borrow_mut();
        let (origin, book) = (Location::caller(), Rc::clone(&timers.book));
        let entry = new_rc(move || Once::new(cb, origin, TimerMark::new(book)));
        timers.push(when, Rc::clone(&entry));
        TimerHandle { handle: Handle { state: entry }, when }
    }

    /// Queues a callback made ready by I/O (a reader, writer or signal handler).
    pub(crate) fn push_ready(&self, callback: ReadyCallback<L>) {
        if !callback.cancelled() {
            let mut ready = self.ready.borrow_mut();
            // Threadsafe calls that arrived before the I/O was seen go first.
            self.take_threadsafe(&mut ready);
            ready.push(callback);
        }
    }

    /// Moves the callbacks other threads queued onto `ready`, in call order.
    fn take_threadsafe(&self, ready: &mut ReadyQueue<L>) {
        self.shared.move_pending_to(ready);
    }

    /// The ready queue, for an I/O layer queueing the handlers of every fd a
    /// `select` reported in one go (threadsafe calls that arrived before go
    /// first). It must queue only live handlers (not cancelled) and run no
    /// callback while it holds the queue.
    #[inline]
    pub(crate) fn ready_queue(&self) -> std::cell::RefMut<'_, ReadyQueue<L>> {
        let mut ready = self.ready.borrow_mut();
        self.take_threadsafe(&mut ready);
        ready
    }

    /// A handle for other threads.
    pub fn handle(&self) -> LoopHandle<L> {
        LoopHandle { shared: Arc::clone(&self.shared) }
    }

    /// Runs iterations until [`stop`](Self::stop).
    ///
    /// # Errors
    ///
    /// If already running or closed, or if the I/O hook fails.
    pub fn run_forever(&self, event_loop: &L) -> io::Result<()> {
        self.run_until(event_loop, || false)
    }

    /// Runs iterations until [`stop`](Self::stop), or until `done` (asked
    /// before each iteration, while the loop counts as running) says so.
    /// `run_until_complete` polls its future in `done`.
    ///
    /// # Errors
    ///
    /// If already running or closed, or if the I/O hook fails.
    pub(crate) fn run_until(&self, event_loop: &L, mut done: impl FnMut() -> bool) -> io::Result<()> {
        if self.closed.get() {
            return Err(closed_error());
        }
        if self.running.replace(true) {
            return Err(io::Error::other("this event loop is already running"));
        }
        let started = Instant::now();
        self.counters.run_started.set(Some(started));
        // Resets the state however the run ends, a panic included (one can
        // only escape from the selector or a destructor).
        let _running = Running { engine: self, started };
        loop {
            if done() {
                return Ok(());
            }
            self.run_once(event_loop)?;
            if self.stopping.get() {
                return Ok(());
            }
        }
    }

    /// One iteration, in asyncio's order: purge cancelled timers, compute
    /// the wait, wait for I/O, move due timers, then run exactly the
    /// callbacks queued at that point. What they schedule runs next time.
    ///
    /// # Errors
    ///
    /// The I/O hook's error.
    pub fn run_once(&self, event_loop: &L) -> io::Result<()> {
        bump(&self.counters.iterations, 1);

        // 1. Drop cancelled timers so they neither delay the wait nor pile up.
        self.timers.borrow_mut().purge_cancelled();

        // 2. Don't wait if there is work or a stop pending; else wait for
        //    the earliest timer, or indefinitely.
        let callbacks_queued = !self.ready.borrow().is_empty();
        let timeout = if callbacks_queued || self.stopping.get() {
            Some(Duration::ZERO)
        } else {
            let earliest = self.timers.borrow().earliest();
            earliest.map(|when| when.saturating_duration_since(Instant::now()))
        };

        // 3. Wait for I/O. With callbacks queued and only the wake-up fd
        //    watched, nothing can be ready: skip the zero-timeout poll
        //    (threadsafe calls are seen just below, without a syscall).
        if timeout != Some(Duration::ZERO) {
            self.wait_for_io(event_loop, timeout)?;
        } else if !callbacks_queued || event_loop.has_io() {
            bump(&self.counters.select_calls, 1);
            event_loop.poll_io(timeout)?;
        }
        self.take_threadsafe(&mut self.ready.borrow_mut());

        // 4. Move due timers to the ready queue. `<= now` never runs one
        //    early; the selector rounds its timeout up, so no spinning either.
        {
            let mut timers = self.timers.borrow_mut();
            if timers.earliest().is_some() {
                let mut ready = self.ready.borrow_mut();
                timers.pop_due(Instant::now(), |entry| ready.push(entry));
            }
        }

        // 5. Run the callbacks queued now, and only those: the queue is
        //    swapped out, so what they schedule waits for the next iteration.
        self.run_ready(event_loop);
        Ok(())
    }

    /// A wait that may block: tell other threads we may sleep, so they wake us.
    fn wait_for_io(&self, event_loop: &L, mut timeout: Option<Duration>) -> io::Result<()> {
        if !self.shared.about_to_sleep() {
            timeout = Some(Duration::ZERO);
        }
        let started = coarse_nanos();
        bump(&self.counters.select_calls, 1);
        let outcome = event_loop.poll_io(timeout);
        self.shared.awake();
        bump(&self.counters.time_blocked, coarse_nanos().wrapping_sub(started));
        outcome
    }

    /// Runs the batch of callbacks that is ready now. Panics are caught per
    /// batch, not per callback (cheaper); after one, the rest of the batch runs.
    fn run_ready(&self, event_loop: &L) {
        let spare = self.spare.take();
        let mut batch = Batch::new(std::mem::replace(&mut *self.ready.borrow_mut(), spare));
        while batch.next < batch.entries.len() {
            let Err(panic) = catch(|| self.run_batch(event_loop, &mut batch)) else {
                continue;
            };
            // Either an entry panicked while being dropped (it is gone, its
            // origin noted), or the one at `next` panicked while it ran.
            if let Some(origin) = batch.dropping.take() {
                self.report_panic(event_loop, Some(origin), panic);
                continue;
            }
            let culprit = batch.take_next();
            let origin = culprit.as_ref().map(|callback| callback.origin());
            self.report_panic(event_loop, origin, panic);
            // Dropped as it would have been after running, and as able to panic.
            if let Err(panic) = catch(move || drop(culprit)) {
                self.report_panic(event_loop, origin, panic);
            }
        }
        let (len, skipped) = (batch.entries.len(), batch.skipped);
        let entries = batch.finish();
        // Only a large batch keeps callbacks to free at its end.
        if len >= PREFETCH_FROM {
            self.free_used_up();
        }
        let ran = len as u64 - skipped;
        bump(&self.counters.callbacks_run, ran);
        // Keep the emptied queue's allocation for the next iteration. What
        // `spare` held meanwhile is the unallocated `Vec::new()` of `take`,
        // so forgetting it leaks nothing and skips a call to its drop.
        std::mem::forget(self.spare.replace(entries));
    }

    /// Runs the callbacks of `batch` from `next` on, each dropped right
    /// after it ran (for a reader that removed itself, that is the last
    /// reference). Each one leaves the batch only after it ran, so after a
    /// panic [`run_ready`](Self::run_ready) knows which one it was.
    #[inline]
    fn run_batch(&self, event_loop: &L, batch: &mut Batch<L>) {
        if self.debug.get() {
            return self.run_batch_debug(event_loop, batch);
        }
        let len = batch.entries.len();
        if len - batch.next >= PREFETCH_FROM {
            return self.run_large_batch(event_loop, batch);
        }
        let entries = batch.entries.as_ptr();
        while batch.next < len {
            // SAFETY: `next < len`, and the entries from `next` on are still
            // in the batch. The copy is lent to `run_release`, which drops
            // it only when it returns `Ran` or `Skipped` (then `next` moves
            // past the slot); if the callback panics, or the result is
            // `RanLast` or `SkippedLast`, the copy was forgotten and the
            // slot still owns it.
            let entry = unsafe { std::ptr::read(entries.add(batch.next)) };
            match entry.run_release(event_loop) {
                Step::Ran => batch.next += 1,
                Step::Skipped => {
                    batch.skipped += 1;
                    batch.next += 1;
                }
                // Takes the entry out (moving `next` past it) and drops it.
                Step::RanLast => batch.release_kept(false),
                Step::SkippedLast => batch.release_kept(true),
            }
        }
    }

    /// [`run_batch`](Self::run_batch) for a batch too large for the cache
    /// (a burst of due timers, typically): the entries were allocated long
    /// ago, in another order, so each one's first touch is a cache miss.
    /// Asking for the memory of the entry `PREFETCH_AHEAD` places ahead lets
    /// those misses overlap instead of coming one after another.
    ///
    /// The one-shot callbacks held nowhere else are not freed as they go,
    /// but at the end, in descending address order (see
    /// [`free_used_up`](Self::free_used_up)). Their closures were used up
    /// when they ran: only memory goes, no user code runs.
    #[cold]
    fn run_large_batch(&self, event_loop: &L, batch: &mut Batch<L>) {
        let mut used_up = self.used_up.borrow_mut();
        while let Some(callback) = batch.entries.get(batch.next) {
            if let Some(ahead) = batch.entries.get(batch.next + PREFETCH_AHEAD) {
                prefetch(&**ahead);
            }
            let ran = callback.run(event_loop);
            if ran != Ran::UsedUp {
                batch.release_kept(ran == Ran::Skipped);
                continue;
            }
            let held_elsewhere = Rc::strong_count(callback) > 1;
            if let Some(callback) = batch.take_next() {
                if held_elsewhere {
                    callback.release();
                } else {
                    used_up.push(callback);
                }
            }
        }
    }

    /// Frees the callbacks [`run_large_batch`](Self::run_large_batch) kept,
    /// highest address first. The allocator hands freed blocks out again
    /// last-freed first, by following a pointer stored in each block: freed
    /// in the order they ran (deadline order for timers, which is no order
    /// in memory), the next burst's allocations would each wait for a cache
    /// miss to learn where the next block is; freed top down, they come back
    /// bottom up, one after another in memory, which the CPU prefetches.
    #[inline]
    fn free_used_up(&self) {
        if !self.used_up.borrow().is_empty() {
            self.free_used_up_now();
        }
    }

    #[cold]
    #[inline(never)]
    fn free_used_up_now(&self) {
        let mut used_up = std::mem::take(&mut *self.used_up.borrow_mut());
        used_up
            .sort_unstable_by_key(|callback| std::cmp::Reverse(Rc::as_ptr(callback).cast::<()>() as usize));
        for callback in used_up.drain(..) {
            callback.release();
        }
        *self.used_up.borrow_mut() = used_up;
    }

    /// [`run_batch`](Self::run_batch) in debug mode: slow callbacks are reported.
    #[cold]
    fn run_batch_debug(&self, event_loop: &L, batch: &mut Batch<L>) {
        while let Some(callback) = batch.entries.get(batch.next) {
            let started = Instant::now();
            let ran = callback.run(event_loop);
            if ran != Ran::Skipped {
                self.report_if_slow(event_loop, &**callback, started.elapsed());
            }
            batch.release_kept(ran == Ran::Skipped);
        }
    }

    /// Hands a panic caught in a callback (scheduled at `origin`, if known)
    /// to the exception handler.
    #[cold]
    fn report_panic(
        &self,
        event_loop: &L,
        origin: Option<&'static Location<'static>>,
        (panic, location): (String, Option<String>),
    ) {
        bump(&self.counters.panics, 1);
        let at = location.map_or_else(String::new, |at| format!(" (panicked at {at})"));
        let message = match origin {
            Some(origin) => format!("Exception in callback scheduled at {origin}{at}"),
            None => format!("Exception in a callback{at}"),
        };
        self.call_exception_handler(event_loop, &ExceptionContext { message, panic: Some(panic), origin });
    }

    /// Debug mode: tell the exception handler about a slow callback.
    fn report_if_slow(&self, event_loop: &L, callback: &dyn Callback<L>, took: Duration) {
        if took < self.slow_callback.get() {
            return;
        }
        let context = ExceptionContext {
            message: format!(
                "Executing callback scheduled at {} took {:.3} seconds",
                callback.origin(),
                took.as_secs_f64()
            ),
            panic: None,
            origin: Some(callback.origin()),
        };
        self.call_exception_handler(event_loop, &context);
    }

    /// Hands `context` to the exception handler, or prints it. A panicking
    /// handler is reported by the default handler, as asyncio does.
    pub fn call_exception_handler(&self, event_loop: &L, context: &ExceptionContext) {
        let handler = self.exception_handler.borrow().clone();
        match handler {
            None => default_exception_handler(context),
            Some(handler) => {
                if let Err((message, _)) = catch(|| handler(event_loop, context)) {
                    default_exception_handler(&ExceptionContext {
                        message: "Unhandled error in exception handler".to_owned(),
                        panic: Some(message),
                        origin: context.origin,
                    });
                    default_exception_handler(context);
                }
            }
        }
    }

    /// Replaces the exception handler (`None`: the default).
    #[allow(clippy::type_complexity)] // the contract's signature, spelled out
    pub fn set_exception_handler(&self, handler: Option<Box<dyn Fn(&L, &ExceptionContext)>>) {
        *self.exception_handler.borrow_mut() = handler.map(Rc::from);
    }

    /// Drops everything queued and refuses further scheduling; `Ok(false)`
    /// if it was already closed.
    ///
    /// # Errors
    ///
    /// If the loop is running.
    pub fn close(&self) -> io::Result<bool> {
        if self.running.get() {
            return Err(io::Error::other("cannot close a running event loop"));
        }
        if self.closed.get() {
            return Ok(false);
        }
        // Pending tasks go first, while the callbacks their drop may
        // schedule are still accepted (they are dropped just below).
        self.local.drop_tasks();
        self.closed.set(true);
        self.shared.close();
        // Free what the callbacks captured even if the user still holds their
        // handles (a closure holding its own handle would otherwise leak).
        // Taken out first: a closure's destructor may call back into the loop.
        let ready = std::mem::take(&mut *self.ready.borrow_mut());
        let timers = self.timers.borrow_mut().take_all();
        for callback in ready.iter().chain(&timers) {
            callback.discard();
        }
        Ok(true)
    }

    /// Debug mode: report slow callbacks.
    pub fn set_debug(&self, on: bool) {
        self.debug.set(on);
    }

    /// `true` in debug mode.
    pub fn get_debug(&self) -> bool {
        self.debug.get()
    }

    /// How long a callback may take before debug mode reports it (default 100 ms).
    pub fn set_slow_callback_duration(&self, threshold: Duration) {
        self.slow_callback.set(threshold);
    }

    /// The slow-callback threshold.
    pub fn slow_callback_duration(&self) -> Duration {
        self.slow_callback.get()
    }

    /// Counts one `select` result of `events` entries.
    pub fn count_events(&self, events: usize) {
        bump(&self.counters.events_received, events as u64);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LoopStats {
        let c = &self.counters;
        let timers = self.timers.borrow();
        let blocked = Duration::from_nanos(c.time_blocked.get());
        let in_run_forever =
            c.time_in_run_forever.get() + c.run_started.get().map_or(Duration::ZERO, |t| t.elapsed());
        LoopStats {
            iterations: c.iterations.get(),
            callbacks_run: c.callbacks_run.get(),
            select_calls: c.select_calls.get(),
            events_received: c.events_received.get(),
            timers_in_heap: timers.len(),
            timers_fired: timers.book.fired.get(),
            timers_cancelled: timers.book.cancelled_total.get(),
            panics: c.panics.get(),
            time_blocked: blocked,
            time_running: in_run_forever.saturating_sub(blocked),
        }
    }
}

fn default_exception_handler(context: &ExceptionContext) {
    eprintln!("tulip: {context}");
}

/// Marks a `run_forever` in progress; dropping it (on return or unwind)
/// records the time spent and resets the running and stopping flags.
struct Running<'a, L> {
    engine: &'a BaseEventLoop<L>,
    started: Instant,
}

impl<L> Drop for Running<'_, L> {
    fn drop(&mut self) {
        let counters = &self.engine.counters;
        counters.time_in_run_forever.set(counters.time_in_run_forever.get() + self.started.elapsed());
        counters.run_started.set(None);
        self.engine.stopping.set(false);
        self.engine.running.set(false);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::os::unix::io::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;

    use crate::{AbstractEventLoop, ExceptionContext, SelectorEventLoop};

    /// Panics when dropped.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("drop boom");
            }
        }
    }

    #[test]
    fn a_reader_that_panics_and_panics_again_when_dropped_is_reported_twice() {
        let lp = SelectorEventLoop::new().unwrap();
        let contexts: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
        let seen = Rc::clone(&contexts);
        lp.set_exception_handler(Some(Box::new(move |_, ctx| seen.borrow_mut().push(ctx.clone()))));
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        let fd = b.as_raw_fd();
        let bomb = Bomb;
        let line = line!() + 1;
        lp.add_reader(fd, move |lp| {
            let _ = &bomb;
            lp.remove_reader(fd).unwrap();
            lp.call_soon(|lp| lp.stop());
            panic!("run boom");
        })
        .unwrap();
        lp.run_forever().unwrap();
        let contexts = contexts.borrow();
        let panics: Vec<_> = contexts.iter().map(|ctx| ctx.panic.as_deref().unwrap()).collect();
        assert_eq!(panics, ["run boom", "drop boom"]);
        assert!(contexts.iter().all(|ctx| ctx.origin.unwrap().line() == line));
        assert_eq!(lp.stats().panics, 2);
        assert_eq!(lp.stats().callbacks_run, 2, "the reader and the stop");
    }

    #[test]
    fn the_rest_of_the_batch_runs_after_a_panic_in_a_drop() {
        let lp = SelectorEventLoop::new().unwrap();
        let contexts: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
        let seen = Rc::clone(&contexts);
        lp.set_exception_handler(Some(Box::new(move |_, ctx| seen.borrow_mut().push(ctx.clone()))));
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        let fd = b.as_raw_fd();
        let ran = Rc::new(RefCell::new(Vec::new()));
        let bomb = Bomb;
        let r = Rc::clone(&ran);
        let line = line!() + 1;
        lp.add_reader(fd, move |lp| {
            let _ = &bomb;
            r.borrow_mut().push("reader");
            lp.remove_reader(fd).unwrap();
        })
        .unwrap();
        // Due timers join the batch after the I/O callbacks.
        let r = Rc::clone(&ran);
        lp.call_later(std::time::Duration::ZERO, move |_| r.borrow_mut().push("timer"));
        lp.stop();
        lp.run_forever().unwrap();
        assert_eq!(*ran.borrow(), ["reader", "timer"]);
        let contexts = contexts.borrow();
        assert_eq!(contexts.len(), 1);
        assert_eq!(contexts[0].panic.as_deref(), Some("drop boom"));
        assert_eq!(contexts[0].origin.unwrap().line(), line);
        let stats = lp.stats();
        assert_eq!((stats.iterations, stats.panics, stats.callbacks_run), (1, 1, 2));
    }

    #[test]
    fn a_batch_skips_what_it_cancels_and_runs_on_after_a_panic() {
        let lp = SelectorEventLoop::new().unwrap();
        let contexts: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
        let seen = Rc::clone(&contexts);
        lp.set_exception_handler(Some(Box::new(move |_, ctx| seen.borrow_mut().push(ctx.clone()))));
        let ran = Rc::new(RefCell::new(Vec::new()));
        let victim: Rc<RefCell<Option<crate::Handle>>> = Rc::default();
        let (r, v) = (Rc::clone(&ran), Rc::clone(&victim));
        lp.call_soon(move |_| {
            r.borrow_mut().push("first");
            v.borrow().as_ref().unwrap().cancel();
        });
        let line = line!() + 1;
        lp.call_soon(|_| panic!("boom in a small batch"));
        let r = Rc::clone(&ran);
        *victim.borrow_mut() = Some(lp.call_soon(move |_| r.borrow_mut().push("victim")));
        let r = Rc::clone(&ran);
        lp.call_soon(move |_| r.borrow_mut().push("last"));
        lp.stop();
        lp.run_forever().unwrap();
        assert_eq!(*ran.borrow(), ["first", "last"]);
        assert!(victim.borrow().as_ref().unwrap().cancelled());
        let contexts = contexts.borrow();
        assert_eq!(contexts.len(), 1);
        assert_eq!(contexts[0].panic.as_deref(), Some("boom in a small batch"));
        assert_eq!(contexts[0].origin.unwrap().line(), line);
        let stats = lp.stats();
        assert_eq!((stats.callbacks_run, stats.panics), (3, 1), "the cancelled one did not run");
        // Only the test's references are left: every entry was freed.
        assert_eq!(Rc::strong_count(&ran), 1);
    }

    #[test]
    fn a_reader_removed_earlier_in_its_batch_is_dropped_there_and_its_drop_panic_reported() {
        let lp = SelectorEventLoop::new().unwrap();
        let contexts: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
        let seen = Rc::clone(&contexts);
        lp.set_exception_handler(Some(Box::new(move |_, ctx| seen.borrow_mut().push(ctx.clone()))));
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        let fd = b.as_raw_fd();
        // Queued before the iteration, so it runs before the reader.
        lp.call_soon(move |lp| assert!(lp.remove_reader(fd).unwrap()));
        let bomb = Bomb;
        let line = line!() + 1;
        lp.add_reader(fd, move |_| {
            let _ = &bomb;
            unreachable!("removed before it could run");
        })
        .unwrap();
        lp.stop();
        lp.run_forever().unwrap();
        let contexts = contexts.borrow();
        assert_eq!(contexts.len(), 1);
        assert_eq!(contexts[0].panic.as_deref(), Some("drop boom"));
        assert_eq!(contexts[0].origin.unwrap().line(), line);
        let stats = lp.stats();
        assert_eq!((stats.iterations, stats.callbacks_run, stats.panics), (1, 1, 1));
    }

    #[test]
    fn a_large_batch_runs_in_order_and_frees_everything_even_after_a_panic() {
        let lp = SelectorEventLoop::new().unwrap();
        lp.set_exception_handler(Some(Box::new(|_, _| {})));
        let order = Rc::new(RefCell::new(Vec::new()));
        let n = 3 * super::PREFETCH_FROM;
        let mut handles = Vec::new();
        for i in 0..n {
            let order = Rc::clone(&order);
            let handle = lp.call_soon(move |_| {
                order.borrow_mut().push(i);
                if i == n / 2 {
                    panic!("boom in a large batch");
                }
            });
            // Some handles kept: those entries are not the batch's alone.
            if i % 7 == 0 {
                handles.push(handle);
            }
        }
        lp.stop();
        lp.run_forever().unwrap();
        assert_eq!(*order.borrow(), (0..n).collect::<Vec<_>>());
        // Every closure was used up and dropped: only our reference is left.
        assert_eq!(Rc::strong_count(&order), 1);
        let stats = lp.stats();
        assert_eq!((stats.callbacks_run, stats.panics), (n as u64, 1));
        assert!(handles.iter().all(|handle| !handle.cancelled()));
    }
}
