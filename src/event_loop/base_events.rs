//! The scheduling engine (Tulip's `BaseEventLoop`): the ready queue, the
//! timer heap, the [`run_once`](BaseEventLoop::run_once) iteration, stop
//! and close state, and exception handling. It knows no file descriptors:
//! it asks its loop to wait for I/O, and to queue what became ready,
//! through the two methods of [`PollIo`].

use std::cell::{Cell, RefCell, RefMut};
use std::io;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event_loop::panics::catch;
use crate::event_loop::ready::{new_rc, Incident, Once, ReadyCallback, ReadyQueue};
use crate::event_loop::threadsafe::{closed_error, Incoming, WakeUp};
use crate::event_loop::timers::TimerHeap;
use crate::event_loop::trace::{CallbackRun, Iteration, LoopObserver, TimeoutReason};
use crate::{ExceptionContext, Handle, LoopHandle, LoopStats, TimerHandle};

/// Callbacks slower than this are reported in debug mode (asyncio's default).
const DEFAULT_SLOW_CALLBACK: Duration = Duration::from_millis(100);

/// The hook an I/O layer gives the engine: how [`run_once`](BaseEventLoop::run_once)
/// waits for I/O (asyncio's `self._selector.select` and `_process_events`).
/// [`BaseSelectorEventLoop`](crate::BaseSelectorEventLoop) implements it
/// over a [`Selector`](crate::Selector).
pub trait PollIo: Sized + 'static {
    /// The engine inside this loop.
    fn engine(&self) -> &BaseEventLoop<Self>;

    /// Waits for I/O at most `timeout` (`None`: until something happens,
    /// or until the engine's wake-up is called), and keeps what became
    /// ready for [`process_events`](Self::process_events). Returns how
    /// many fds were ready.
    ///
    /// # Errors
    ///
    /// The selector's error; `run_forever` returns it.
    fn select(&self, timeout: Option<Duration>) -> io::Result<usize>;

    /// Queues the callbacks of what the last [`select`](Self::select) found
    /// ready: the readers and writers of the ready fds.
    fn process_events(&self);
}

/// Plain counters behind [`LoopStats`].
#[derive(Default)]
struct Counters {
    iterations: Cell<u64>,
    callbacks_run: Cell<u64>,
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

/// The clock of [`LoopStats::time_blocked`], in nanoseconds. It is read
/// before and after every wait that may block, so it is the kernel's coarse
/// monotonic clock where there is one (Linux): the time of the last tick,
/// to a tick's resolution (1-4 ms), with nothing to compute. Over many
/// waits the errors cancel out; one long wait is measured to a tick.
/// `Instant::now` and `elapsed` instead cost 95 more instructions per
/// iteration (13 % of an `add_reader` ping-pong round trip, callgrind).
#[inline]
fn coarse_nanos() -> u64 {
    #[cfg(tulip_coarse_clock)]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(tulip_coarse_clock))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec, and the clock exists on
    // every target that chooses it.
    unsafe { libc::clock_gettime(CLOCK, &mut now) };
    (now.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(now.tv_nsec as u64)
}

type ExceptionHandler<L> = Rc<dyn Fn(&L, &ExceptionContext)>;

/// The loop's clock: the monotonic clock, or, for tests, virtual time that
/// moves only when the loop would otherwise wait for a timer (or when the
/// test says so), so that timers fire in order without real sleeping.
enum Clock {
    Monotonic,
    Virtual(Cell<Instant>),
}

impl Clock {
    #[inline]
    fn now(&self) -> Instant {
        match self {
            Clock::Monotonic => Instant::now(),
            Clock::Virtual(now) => now.get(),
        }
    }
}

/// The scheduling engine of a loop of type `L`, kept inside `L`.
pub struct BaseEventLoop<L> {
    /// Shared (`Rc`) with what queues callbacks without a `&L`: wakers,
    /// futures, transports.
    ready: Rc<ReadyQueue<L>>,
    timers: RefCell<TimerHeap<L>>,
    /// Other threads' calls; the ready queue takes them in.
    incoming: Arc<Incoming<L>>,
    running: Cell<bool>,
    stopping: Cell<bool>,
    debug: Cell<bool>,
    slow_callback: Cell<Duration>,
    exception_handler: RefCell<Option<ExceptionHandler<L>>>,
    counters: Counters,
    /// Who watches the iterations (see `trace.rs`); `tracing` says if any.
    observer: RefCell<Option<Box<dyn LoopObserver>>>,
    tracing: Cell<bool>,
    /// The record of the iteration under way, while tracing.
    record: RefCell<Iteration>,
    clock: Clock,
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
        self.ready.is_closed()
    }

    /// What [`close`](Self::close) does, also for a loop that is dropped:
    /// closes the ready queue and the threadsafe one, and frees what every
    /// queued callback and timer captured, even if the user still holds
    /// their handles. Taken out first, dropped after: a closure's
    /// destructor may call back into the loop.
    pub(crate) fn shut_down(&self) {
        let ready = self.ready.close();
        self.incoming.close();
        let timers = self.timers.borrow_mut().take_all();
        for callback in &timers {
            callback.discard();
        }
        drop((ready, timers));
    }
}

impl<L: PollIo> BaseEventLoop<L> {
    /// A new engine with an empty queue and heap. `wake_up` is how another
    /// thread's call wakes the loop while it waits for I/O (the I/O layer's
    /// self-pipe or eventfd).
    pub fn new(wake_up: impl Fn() -> io::Result<()> + Send + Sync + 'static) -> Self {
        let wake_up: WakeUp = Box::new(wake_up);
        let incoming = Arc::new(Incoming::new(wake_up));
        BaseEventLoop {
            ready: Rc::new(ReadyQueue::new(Arc::clone(&incoming))),
            timers: RefCell::new(TimerHeap::new()),
            incoming,
            running: Cell::new(false),
            stopping: Cell::new(false),
            debug: Cell::new(false),
            slow_callback: Cell::new(DEFAULT_SLOW_CALLBACK),
            exception_handler: RefCell::new(None),
            counters: Counters::default(),
            observer: RefCell::new(None),
            tracing: Cell::new(false),
            record: RefCell::new(Iteration::default()),
            clock: Clock::Monotonic,
        }
    }

    /// Makes the loop's clock virtual (see `Clock`), starting now.
    pub(crate) fn use_virtual_clock(&mut self) {
        self.clock = Clock::Virtual(Cell::new(Instant::now()));
    }

    /// The loop's time: the monotonic clock, read at each call (or the
    /// virtual clock of a [`TestLoop`](crate::testing::TestLoop)).
    #[inline]
    pub fn time(&self) -> Instant {
        self.clock.now()
    }

    /// Moves a virtual clock forward by `by`: timers due by then run on
    /// the next iteration.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if the loop's clock
    /// is the real one (time cannot be made to pass).
    pub fn advance(&self, by: Duration) -> io::Result<()> {
        match &self.clock {
            Clock::Virtual(now) => {
                now.set(now.get() + by);
                Ok(())
            }
            Clock::Monotonic => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "advance: this loop runs on the real clock (only a TestLoop's time can be moved)",
            )),
        }
    }

    /// Hands a record of every iteration to `observer` (`None`: stop).
    pub fn set_observer(&self, observer: Option<Box<dyn LoopObserver>>) {
        self.tracing.set(observer.is_some());
        *self.observer.borrow_mut() = observer;
    }

    /// `true` while an observer watches: the I/O layer then notes what its
    /// `select` saw in [`record`](Self::record).
    #[inline]
    pub(crate) fn tracing(&self) -> bool {
        self.tracing.get()
    }

    /// The record of the iteration under way (only meaningful while tracing).
    pub(crate) fn record(&self) -> RefMut<'_, Iteration> {
        self.record.borrow_mut()
    }

    /// The ready queue, for code that schedules without a `&L`.
    pub(crate) fn ready(&self) -> &Rc<ReadyQueue<L>> {
        &self.ready
    }

    fn check_open(&self) {
        if self.ready.is_closed() {
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
        let origin = Location::caller();
        let entry = new_rc(move || Once::new(cb, origin, ()));
        if !self.ready.push(entry.clone()) {
            panic!("event loop is closed");
        }
        Handle { state: entry }
    }

    /// Schedules `cb` to run `delay` from now, never earlier.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop is closed.
    #[inline]
    #[track_caller]
    pub fn call_later<F: FnOnce(&L) + 'static>(&self, delay: Duration, cb: F) -> TimerHandle {
        // Far enough in the future is forever: don't overflow `Instant`.
        let now = self.clock.now();
        let when = now.checked_add(delay).unwrap_or_else(|| far_future(now));
        self.call_at(when, cb)
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
        let entry = self.timers.borrow_mut().schedule(when, cb, Location::caller());
        TimerHandle { handle: Handle { state: entry }, when }
    }

    /// Queues a callback made ready by I/O (a reader, writer or signal
    /// handler), unless it was cancelled.
    #[inline]
    pub(crate) fn push_ready(&self, callback: &ReadyCallback<L>) {
        if !callback.cancelled() {
            self.ready.push(Rc::clone(callback));
        }
    }

    /// A handle for other threads.
    pub fn handle(&self) -> LoopHandle<L> {
        LoopHandle { incoming: Arc::clone(&self.incoming) }
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
        if self.is_closed() {
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

    /// One iteration, in asyncio's order (`_run_once`). What the callbacks
    /// run here schedule runs on the next one.
    ///
    /// # Errors
    ///
    /// The I/O hook's error.
    pub fn run_once(&self, event_loop: &L) -> io::Result<()> {
        if self.tracing.get() {
            return self.run_once_recorded(event_loop);
        }
        self.iterate(event_loop, false)
    }

    /// The iteration itself. While `recording` (an observer watches), each
    /// step notes what it did in the engine's record. Always inlined: in
    /// `run_once` `recording` is `false`, and every test of it folds away.
    #[inline(always)]
    fn iterate(&self, event_loop: &L, recording: bool) -> io::Result<()> {
        bump(&self.counters.iterations, 1);

        // 1. Drop cancelled timers, so they neither delay the wait nor pile up.
        self.timers.borrow_mut().purge_cancelled();

        // 2. Compute the timeout: none if callbacks are ready or a stop is
        //    pending; else until the earliest timer, or for ever.
        let timeout = self.timeout(recording);

        // 3. Select: wait for I/O at most that long.
        self.select(event_loop, timeout, recording)?;

        // 4. Process the events: queue the handlers of the ready fds.
        event_loop.process_events();

        // 5. Move the due timers to the ready queue. `<= now` never runs
        //    one early; the selector rounds its timeout up, so no spinning.
        self.move_due_timers(recording);

        // 6. Run the callbacks ready now, and only those.
        self.run_ready(event_loop, recording);
        Ok(())
    }

    /// Step 2: how long the select of this iteration may wait.
    #[inline(always)]
    fn timeout(&self, recording: bool) -> Option<Duration> {
        let reason = if !self.ready.is_empty() {
            TimeoutReason::CallbacksReady
        } else if self.stopping.get() {
            TimeoutReason::StopPending
        } else {
            self.timers.borrow().earliest().map_or(TimeoutReason::NothingToWaitFor, TimeoutReason::Timer)
        };
        let timeout = match reason {
            TimeoutReason::CallbacksReady | TimeoutReason::StopPending => Some(Duration::ZERO),
            TimeoutReason::Timer(when) => Some(when.saturating_duration_since(self.clock.now())),
            TimeoutReason::NothingToWaitFor => None,
        };
        if recording {
            let mut record = self.record.borrow_mut();
            record.timeout = timeout;
            record.timeout_reason = Some(reason);
        }
        timeout
    }

    /// Step 3. A wait that may block first tells other threads, so that
    /// their calls wake it, and is timed for [`LoopStats::time_blocked`].
    #[inline(always)]
    fn select(&self, event_loop: &L, mut timeout: Option<Duration>, recording: bool) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return event_loop.select(timeout).map(drop);
        }
        if let Clock::Virtual(now) = &self.clock {
            return self.select_in_virtual_time(event_loop, timeout, now);
        }
        if !self.incoming.about_to_sleep() {
            timeout = Some(Duration::ZERO);
        }
        let started = coarse_nanos();
        // Recorded, the wait is timed to the nanosecond.
        let precise = recording.then(Instant::now);
        let selected = event_loop.select(timeout);
        self.incoming.awake();
        bump(&self.counters.time_blocked, coarse_nanos().wrapping_sub(started));
        if let Some(precise) = precise {
            self.record.borrow_mut().blocked = precise.elapsed();
        }
        selected.map(drop)
    }

    /// Step 3 on a virtual clock: what is ready is taken without waiting;
    /// if nothing is, and the loop would sleep until a timer, that time
    /// passes at once. With no timer at all, only I/O or another thread can
    /// wake the loop, and it waits for them as a real loop does.
    #[cold]
    #[inline(never)]
    fn select_in_virtual_time(
        &self,
        event_loop: &L,
        timeout: Option<Duration>,
        now: &Cell<Instant>,
    ) -> io::Result<()> {
        if event_loop.select(Some(Duration::ZERO))? > 0 {
            return Ok(());
        }
        match timeout {
            Some(wait) => {
                now.set(now.get() + wait);
                Ok(())
            }
            None => {
                let timeout = if self.incoming.about_to_sleep() { None } else { Some(Duration::ZERO) };
                let selected = event_loop.select(timeout);
                self.incoming.awake();
                selected.map(drop)
            }
        }
    }

    /// Step 5.
    #[inline(always)]
    fn move_due_timers(&self, recording: bool) {
        let mut timers = self.timers.borrow_mut();
        if timers.earliest().is_some() {
            timers.pop_due(self.clock.now(), |entry| {
                if recording {
                    self.record.borrow_mut().timers_fired.push(entry.origin());
                }
                self.ready.push(entry);
            });
        }
    }

    /// Step 6, and the reports of what went wrong in it. Timed (each
    /// callback's duration reported) in debug mode and while recording.
    #[inline(always)]
    fn run_ready(&self, event_loop: &L, recording: bool) {
        let timed = recording || self.debug.get();
        let ran = self.ready.run(event_loop, timed, &mut |event_loop, incident| {
            self.report(event_loop, incident);
        });
        bump(&self.counters.callbacks_run, ran);
    }

    /// [`run_once`](Self::run_once) while an observer watches: the same
    /// iteration, recorded, then handed to the observer.
    #[cold]
    #[inline(never)]
    fn run_once_recorded(&self, event_loop: &L) -> io::Result<()> {
        let started = Instant::now();
        self.record.borrow_mut().begin(self.counters.iterations.get() + 1);
        let outcome = self.iterate(event_loop, true);
        let record = {
            let mut record = self.record.borrow_mut();
            record.running = started.elapsed().saturating_sub(record.blocked);
            std::mem::take(&mut *record)
        };
        // Taken out while the observer looks: it may use the loop.
        if let Some(observer) = self.observer.borrow_mut().as_mut() {
            observer.iteration(&record);
        }
        *self.record.borrow_mut() = record;
        outcome
    }

    /// Hands what the run phase saw go wrong to the exception handler.
    #[cold]
    fn report(&self, event_loop: &L, incident: Incident) {
        let context = match incident {
            Incident::Panic { origin, panic: (panic, location) } => {
                bump(&self.counters.panics, 1);
                let at = location.map_or_else(String::new, |at| format!(" (panicked at {at})"));
                let message = match origin {
                    Some(origin) => format!("Exception in callback scheduled at {origin}{at}"),
                    None => format!("Exception in a callback{at}"),
                };
                ExceptionContext { message, panic: Some(panic), origin }
            }
            Incident::Ran { origin, took } => {
                if self.tracing.get() {
                    self.record.borrow_mut().callbacks.push(CallbackRun { origin, took });
                }
                if !self.debug.get() || took < self.slow_callback.get() {
                    return;
                }
                ExceptionContext {
                    message: format!(
                        "Executing callback scheduled at {origin} took {:.3} seconds",
                        took.as_secs_f64()
                    ),
                    panic: None,
                    origin: Some(origin),
                }
            }
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
    /// if it was already closed. Pending tasks go first, while the
    /// callbacks their drop may schedule are still accepted (they are
    /// dropped just after).
    ///
    /// # Errors
    ///
    /// If the loop is running.
    pub fn close(&self) -> io::Result<bool> {
        if self.running.get() {
            return Err(io::Error::other("cannot close a running event loop"));
        }
        if self.ready.is_closed() {
            return Ok(false);
        }
        self.shut_down();
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

    /// A snapshot of the engine's counters. The I/O layer fills in its own
    /// ([`select_calls`](LoopStats::select_calls), [`events_received`](LoopStats::events_received)).
    pub fn stats(&self) -> LoopStats {
        let c = &self.counters;
        let timers = self.timers.borrow();
        let blocked = Duration::from_nanos(c.time_blocked.get());
        let in_run_forever =
            c.time_in_run_forever.get() + c.run_started.get().map_or(Duration::ZERO, |t| t.elapsed());
        LoopStats {
            iterations: c.iterations.get(),
            callbacks_run: c.callbacks_run.get(),
            select_calls: 0,
            events_received: 0,
            timers_in_heap: timers.len(),
            timers_fired: timers.book.fired.get(),
            timers_cancelled: timers.book.cancelled_total.get(),
            panics: c.panics.get(),
            time_blocked: blocked,
            time_running: in_run_forever.saturating_sub(blocked),
        }
    }
}

/// A deadline no program will live to see, for delays too large for `Instant`.
fn far_future(now: Instant) -> Instant {
    const DAY: u64 = 24 * 3600;
    [100 * 365 * DAY, 365 * DAY, DAY]
        .into_iter()
        .find_map(|secs| now.checked_add(Duration::from_secs(secs)))
        .unwrap_or(now)
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
        let n = 10_000;
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
