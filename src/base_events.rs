//! The scheduling engine (Tulip's `BaseEventLoop`): the FIFO ready queue, the
//! timer heap, the [`run_once`](BaseEventLoop::run_once) iteration, stop and
//! close state, and exception handling. It knows nothing about sockets: it
//! asks its loop to wait for I/O through the one hook of [`PollIo`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::callbacks::{Callback, Once, ReadyCallback, TimerMark};
use crate::local::LoopLocal;
use crate::panics::catch;
use crate::threadsafe::{closed_error, Shared};
use crate::timers::TimerHeap;
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

    /// `false` when no fd but the engine's own wake-up fd is watched: then
    /// nothing can become ready without a blocking wait, and an iteration
    /// with callbacks queued skips the zero-timeout `select`.
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
    time_blocked: Cell<Duration>,
    time_in_run_forever: Cell<Duration>,
    /// When the current `run_forever` began, while one runs.
    run_started: Cell<Option<Instant>>,
}

fn bump(counter: &Cell<u64>, by: u64) {
    counter.set(counter.get() + by);
}

type ExceptionHandler<L> = Rc<dyn Fn(&L, &ExceptionContext)>;

/// The scheduling engine of a loop of type `L`, kept inside `L`.
pub struct BaseEventLoop<L> {
    /// Shared (`Rc`) with [`LoopLocal`], through which wakers, futures and
    /// transports queue callbacks without a `&L`.
    ready: Rc<RefCell<VecDeque<ReadyCallback<L>>>>,
    /// The queue swapped in while a batch runs; kept for its allocation.
    spare: Cell<VecDeque<ReadyCallback<L>>>,
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
        let ready = Rc::new(RefCell::new(VecDeque::new()));
        let closed = Rc::new(Cell::new(false));
        Ok(BaseEventLoop {
            local: LoopLocal::new(Rc::clone(&ready), Rc::clone(&closed)),
            ready,
            spare: Cell::new(VecDeque::new()),
            timers: RefCell::new(TimerHeap::new()),
            shared: Arc::new(Shared::new()?),
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
    #[track_caller]
    pub fn call_soon<F: FnOnce(&L) + 'static>(&self, cb: F) -> Handle {
        self.check_open();
        let entry = Rc::new(Once::new(cb, Location::caller(), ()));
        let mut ready = self.ready.borrow_mut();
        // Calls other threads made before this one go first: one FIFO, as
        // asyncio's single ready deque. (One atomic load when there are none.)
        self.take_threadsafe(&mut ready);
        ready.push_back(entry.clone());
        Handle { state: entry }
    }

    /// Schedules `cb` at `when`.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop is closed.
    #[track_caller]
    pub fn call_at<F: FnOnce(&L) + 'static>(&self, when: Instant, cb: F) -> TimerHandle {
        self.check_open();
        let mut timers = self.timers.borrow_mut();
        let entry = Rc::new(Once::new(cb, Location::caller(), TimerMark::new(Rc::clone(&timers.book))));
        timers.push(when, Rc::clone(&entry));
        TimerHandle { handle: Handle { state: entry }, when }
    }

    /// Queues a callback made ready by I/O (a reader, writer or signal handler).
    pub(crate) fn push_ready(&self, callback: ReadyCallback<L>) {
        if !callback.cancelled() {
            let mut ready = self.ready.borrow_mut();
            // Threadsafe calls that arrived before the I/O was seen go first.
            self.take_threadsafe(&mut ready);
            ready.push_back(callback);
        }
    }

    /// Moves the callbacks other threads queued onto `ready`, in call order.
    fn take_threadsafe(&self, ready: &mut VecDeque<ReadyCallback<L>>) {
        self.shared
            .take_pending(|(callback, origin)| ready.push_back(Rc::new(Once::new(callback, origin, ()))));
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
                timers.pop_due(Instant::now(), |entry| ready.push_back(entry));
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
        let started = Instant::now();
        bump(&self.counters.select_calls, 1);
        let outcome = event_loop.poll_io(timeout);
        self.shared.awake();
        self.counters.time_blocked.set(self.counters.time_blocked.get() + started.elapsed());
        outcome
    }

    /// Runs the batch of callbacks that is ready now. Panics are caught per
    /// batch, not per callback (cheaper); after one, the rest of the batch runs.
    fn run_ready(&self, event_loop: &L) {
        let mut batch = self.spare.take();
        std::mem::swap(&mut batch, &mut *self.ready.borrow_mut());
        let mut progress = BatchProgress { ran: 0, origin: None, dropping: false };
        while !batch.is_empty() {
            let outcome = catch(|| self.run_batch(event_loop, &mut batch, &mut progress));
            let (Err((message, location)), Some(origin)) = (outcome, progress.origin) else { continue };
            // A panic while running counts as a run; one in the drop after it
            // was already counted.
            if !progress.dropping {
                progress.ran += 1;
            }
            bump(&self.counters.panics, 1);
            let at = location.map_or_else(String::new, |at| format!(" (panicked at {at})"));
            let context = ExceptionContext {
                message: format!("Exception in callback scheduled at {origin}{at}"),
                panic: Some(message),
                origin: Some(origin),
            };
            self.call_exception_handler(event_loop, &context);
        }
        bump(&self.counters.callbacks_run, progress.ran);
        // Keep the emptied queue's allocation for the next iteration.
        self.spare.set(batch);
    }

    /// Pops and runs callbacks until `batch` is empty, each dropped right
    /// after it ran: for a reader that removed itself that is the last
    /// reference, and what it captured may panic on drop. `progress` says
    /// which callback a panic belongs to.
    fn run_batch(
        &self,
        event_loop: &L,
        batch: &mut VecDeque<ReadyCallback<L>>,
        progress: &mut BatchProgress,
    ) {
        let debug = self.debug.get();
        while let Some(callback) = batch.pop_front() {
            progress.origin = Some(callback.origin());
            progress.dropping = false;
            let started = debug.then(Instant::now);
            if callback.run(event_loop) {
                progress.ran += 1;
                if let Some(started) = started {
                    self.report_if_slow(event_loop, &*callback, started.elapsed());
                }
            }
            progress.dropping = true;
            drop(callback);
        }
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
        let blocked = c.time_blocked.get();
        let in_run_forever =
            c.time_in_run_forever.get() + c.run_started.get().map_or(Duration::ZERO, |t| t.elapsed());
        LoopStats {
            iterations: c.iterations.get(),
            callbacks_run: c.callbacks_run.get(),
            select_calls: c.select_calls.get(),
            events_received: c.events_received.get(),
            timers_in_heap: timers.len(),
            timers_fired: timers.fired,
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

/// Where `run_batch` is, for reporting a panic that escapes it.
struct BatchProgress {
    /// Callbacks run so far in this batch.
    ran: u64,
    /// Where the callback being run (or dropped) was scheduled.
    origin: Option<&'static Location<'static>>,
    /// The panic came from dropping that callback, after it ran.
    dropping: bool,
}
