//! The interface users program against (Tulip's `events.py`): the
//! [`AbstractEventLoop`] trait, the handles that scheduling returns, and the
//! context handed to exception handlers.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::raw::c_int;
use std::os::unix::io::{AsFd, AsRawFd, RawFd};
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event_loop::threadsafe::Incoming;

/// An event loop: callbacks run when things happen (Python's
/// `asyncio.AbstractEventLoop`).
///
/// Every method takes `&self`, and every callback receives `&Self`, so a
/// callback can schedule more work, add readers or stop the loop.
///
/// ```
/// use std::time::Duration;
/// use tulip::{AbstractEventLoop, SelectorEventLoop};
///
/// let event_loop = SelectorEventLoop::new()?;
/// event_loop.call_soon(|lp| println!("first, at {:?}", lp.time()));
/// event_loop.call_later(Duration::from_millis(10), |lp| lp.stop());
/// event_loop.run_forever()?;
/// event_loop.close()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait AbstractEventLoop: Sized + 'static {
    /// Runs until [`stop`](Self::stop) is called.
    ///
    /// # Errors
    ///
    /// If the loop is already running or closed, or if the selector fails
    /// with anything but `EINTR` (the loop then stays usable and closable).
    fn run_forever(&self) -> io::Result<()>;

    /// Asks a running loop to return from `run_forever` once the current
    /// iteration is done. Called before `run_forever`, it makes the next run
    /// last exactly one iteration.
    fn stop(&self);

    /// `true` while `run_forever` is running.
    fn is_running(&self) -> bool;

    /// Releases the loop's resources: queued callbacks and timers are dropped,
    /// signal dispositions restored, the selector closed. Idempotent.
    ///
    /// # Errors
    ///
    /// If the loop is running.
    fn close(&self) -> io::Result<()>;

    /// `true` once [`close`](Self::close) has succeeded.
    fn is_closed(&self) -> bool;

    /// The loop's clock: the monotonic clock, read at each call.
    fn time(&self) -> Instant;

    /// Schedules `cb` to run on a coming iteration, after everything scheduled before it.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop is closed.
    #[track_caller]
    fn call_soon(&self, cb: impl FnOnce(&Self) + 'static) -> Handle;

    /// Schedules `cb` to run `delay` from now, never earlier.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop is closed.
    #[track_caller]
    fn call_later(&self, delay: Duration, cb: impl FnOnce(&Self) + 'static) -> TimerHandle;

    /// Schedules `cb` to run at `when` (as given by [`time`](Self::time)), never earlier.
    /// Timers with equal deadlines run in the order they were scheduled.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop is closed.
    #[track_caller]
    fn call_at(&self, when: Instant, cb: impl FnOnce(&Self) + 'static) -> TimerHandle;

    /// [`call_soon`](Self::call_soon) for a callback that may be sent across
    /// threads; on the loop's own thread it is FIFO with `call_soon`. From
    /// another thread, use [`handle`](Self::handle).
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop is closed.
    #[track_caller]
    fn call_soon_threadsafe(&self, cb: impl FnOnce(&Self) + Send + 'static) -> Handle;

    /// A `Send + Sync` handle through which other threads schedule callbacks
    /// and stop the loop, waking it if it is blocked in `select`.
    fn handle(&self) -> LoopHandle<Self>;

    /// Calls `cb` whenever `fd` is readable, replacing any reader `fd` had.
    ///
    /// # Errors
    ///
    /// If the loop is closed, or the selector refuses `fd` (see
    /// [`Selector::register`](crate::selectors::Selector::register)).
    fn add_reader(&self, fd: RawFd, cb: impl FnMut(&Self) + 'static) -> io::Result<()>;

    /// Stops watching `fd` for reading; `Ok(true)` if it had a reader.
    ///
    /// # Errors
    ///
    /// If the selector fails to change the registration.
    fn remove_reader(&self, fd: RawFd) -> io::Result<bool>;

    /// Calls `cb` whenever `fd` is writable, replacing any writer `fd` had.
    ///
    /// # Errors
    ///
    /// As [`add_reader`](Self::add_reader).
    fn add_writer(&self, fd: RawFd, cb: impl FnMut(&Self) + 'static) -> io::Result<()>;

    /// Stops watching `fd` for writing; `Ok(true)` if it had a writer.
    ///
    /// # Errors
    ///
    /// If the selector fails to change the registration.
    fn remove_writer(&self, fd: RawFd) -> io::Result<bool>;

    /// [`add_reader`](Self::add_reader) for an fd borrowed from its owner:
    /// `lp.add_reader_fd(&socket, cb)`. The I/O-safe form: it cannot be
    /// handed a closed or made-up number (see
    /// [`Selector::register_fd`](crate::selectors::Selector::register_fd)
    /// for why that matters). Prefer it whenever you hold the socket; the
    /// reader outlives the borrow, so remove it before the socket closes.
    ///
    /// # Errors
    ///
    /// As [`add_reader`](Self::add_reader).
    #[track_caller]
    fn add_reader_fd(&self, fd: impl AsFd, cb: impl FnMut(&Self) + 'static) -> io::Result<()> {
        self.add_reader(fd.as_fd().as_raw_fd(), cb)
    }

    /// [`remove_reader`](Self::remove_reader) for a borrowed fd.
    ///
    /// # Errors
    ///
    /// As [`remove_reader`](Self::remove_reader).
    fn remove_reader_fd(&self, fd: impl AsFd) -> io::Result<bool> {
        self.remove_reader(fd.as_fd().as_raw_fd())
    }

    /// [`add_writer`](Self::add_writer) for an fd borrowed from its owner
    /// (see [`add_reader_fd`](Self::add_reader_fd)).
    ///
    /// # Errors
    ///
    /// As [`add_writer`](Self::add_writer).
    #[track_caller]
    fn add_writer_fd(&self, fd: impl AsFd, cb: impl FnMut(&Self) + 'static) -> io::Result<()> {
        self.add_writer(fd.as_fd().as_raw_fd(), cb)
    }

    /// [`remove_writer`](Self::remove_writer) for a borrowed fd.
    ///
    /// # Errors
    ///
    /// As [`remove_writer`](Self::remove_writer).
    fn remove_writer_fd(&self, fd: impl AsFd) -> io::Result<bool> {
        self.remove_writer(fd.as_fd().as_raw_fd())
    }

    /// Calls `cb` (as an ordinary callback) each time signal `signum` arrives,
    /// replacing any handler this loop had for it. Only one loop per process
    /// handles signals at a time.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for 0, `SIGKILL`, `SIGSTOP`
    /// or numbers ≥ `NSIG`; [`ResourceBusy`](io::ErrorKind::ResourceBusy) if
    /// another loop handles signals; an error if the loop is closed or
    /// `sigaction` fails.
    fn add_signal_handler(&self, signum: c_int, cb: impl FnMut(&Self) + 'static) -> io::Result<()>;

    /// Removes this loop's handler for `signum` and restores the disposition
    /// that was in place before; `Ok(true)` if there was one. `SIGKILL` and
    /// `SIGSTOP` never have one: `Ok(false)`, as asyncio returns `False`.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for 0 or numbers ≥ `NSIG`,
    /// or the error of `sigaction`.
    fn remove_signal_handler(&self, signum: c_int) -> io::Result<bool>;

    /// Sets what is called when a callback panics (`None`: print one line to stderr).
    #[allow(clippy::type_complexity)] // the contract's signature, spelled out
    fn set_exception_handler(&self, h: Option<Box<dyn Fn(&Self, &ExceptionContext)>>);

    /// Turns debug mode on or off: in debug mode, callbacks slower than the
    /// slow-callback threshold are reported to the exception handler.
    fn set_debug(&self, on: bool);

    /// `true` in debug mode.
    fn get_debug(&self) -> bool;

    /// Counters describing what the loop has done so far.
    fn stats(&self) -> LoopStats;
}

/// What an exception handler is told (asyncio's context dict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionContext {
    /// One line saying what happened.
    pub message: String,
    /// The panic's message, if a callback panicked.
    pub panic: Option<String>,
    /// Where the callback involved was scheduled, if known.
    pub origin: Option<&'static Location<'static>>,
}

impl fmt::Display for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(panic) = &self.panic {
            write!(f, ": {panic}")?;
        }
        Ok(())
    }
}

/// The cancellation state a handle shares with its queued callback.
pub(crate) trait Cancel {
    fn cancel(&self);
    fn cancelled(&self) -> bool;
}

/// Shared state for handles that need nothing but a flag.
impl Cancel for Cell<bool> {
    fn cancel(&self) {
        self.set(true);
    }
    fn cancelled(&self) -> bool {
        self.get()
    }
}

/// A callback scheduled with `call_soon` (asyncio's `Handle`).
#[derive(Clone)]
pub struct Handle {
    pub(crate) state: Rc<dyn Cancel>,
}

impl Handle {
    /// Makes sure the callback never runs (if it has not run already).
    pub fn cancel(&self) {
        self.state.cancel();
    }

    /// `true` once [`cancel`](Self::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.state.cancelled()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("cancelled", &self.cancelled()).finish()
    }
}

/// A callback scheduled for a point in time (asyncio's `TimerHandle`).
#[derive(Clone)]
pub struct TimerHandle {
    pub(crate) handle: Handle,
    pub(crate) when: Instant,
}

impl TimerHandle {
    /// Makes sure the callback never runs (if it has not run already). The
    /// loop purges cancelled timers, so cancelling keeps memory flat.
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// `true` once [`cancel`](Self::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.handle.cancelled()
    }

    /// When the callback is due.
    pub fn when(&self) -> Instant {
        self.when
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle").field("when", &self.when).field("cancelled", &self.cancelled()).finish()
    }
}

/// What the loop has done so far, from [`AbstractEventLoop::stats`]. Plain
/// counters: keeping them costs nothing measurable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Iterations (`run_once` calls).
    pub iterations: u64,
    /// Callbacks run: `call_soon`, timers, readers, writers, threadsafe
    /// calls and signal handlers.
    pub callbacks_run: u64,
    /// Calls of `Selector::select`.
    pub select_calls: u64,
    /// `(key, events)` entries those calls returned: one per ready fd.
    pub events_received: u64,
    /// Timers in the heap, cancelled ones not yet purged included.
    pub timers_in_heap: usize,
    /// Timers whose callback ran.
    pub timers_fired: u64,
    /// Timers cancelled before they ran.
    pub timers_cancelled: u64,
    /// Panics caught in callbacks.
    pub panics: u64,
    /// Time spent blocked in `select` with a non-zero timeout, measured
    /// (on Linux) with the coarse monotonic clock: to a clock tick (1-4 ms)
    /// per wait, exact over many.
    pub time_blocked: Duration,
    /// Time spent in `run_forever` not blocked: running callbacks and the loop itself.
    pub time_running: Duration,
}

/// A handle to a loop that other threads can hold: schedule callbacks and
/// stop the loop, waking it if it is blocked in `select`. `Clone + Send + Sync`.
///
/// ```
/// use std::thread;
/// use tulip::{AbstractEventLoop, SelectorEventLoop};
///
/// let event_loop = SelectorEventLoop::new()?;
/// let handle = event_loop.handle();
/// let worker = thread::spawn(move || {
///     handle.call_soon_threadsafe(|lp| {
///         println!("hello from another thread");
///         lp.stop();
///     })
/// });
/// event_loop.run_forever()?;
/// worker.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LoopHandle<L> {
    pub(crate) incoming: Arc<Incoming<L>>,
}

impl<L> Clone for LoopHandle<L> {
    fn clone(&self) -> Self {
        LoopHandle { incoming: Arc::clone(&self.incoming) }
    }
}

impl<L> fmt::Debug for LoopHandle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle").field("closed", &self.is_closed()).finish()
    }
}

impl<L> LoopHandle<L> {
    /// `true` once the loop was closed (or dropped).
    pub fn is_closed(&self) -> bool {
        self.incoming.is_closed()
    }
}

impl<L: AbstractEventLoop> LoopHandle<L> {
    /// Schedules `cb` on the loop from any thread, waking the loop if it is
    /// blocked. Calls from one thread run in the order they were made.
    ///
    /// # Errors
    ///
    /// If the loop is closed, or waking it fails.
    #[track_caller]
    pub fn call_soon_threadsafe(&self, cb: impl FnOnce(&L) + Send + 'static) -> io::Result<()> {
        self.incoming.push(Box::new(cb), Location::caller())
    }

    /// Stops the loop from any thread (like [`AbstractEventLoop::stop`]),
    /// waking it if it is blocked.
    ///
    /// # Errors
    ///
    /// If the loop is closed.
    #[track_caller]
    pub fn stop(&self) -> io::Result<()> {
        self.call_soon_threadsafe(|event_loop: &L| event_loop.stop())
    }
}
