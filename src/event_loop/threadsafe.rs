//! Scheduling from other threads: a mutex-protected queue that the ready
//! queue takes from before it adds anything, and a wake-up asked of the I/O
//! layer only when the loop may be asleep, so a burst of calls costs at
//! most one syscall.

use std::fmt;
use std::io;
use std::panic::Location;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Release, SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::AbstractEventLoop;

pub(crate) type SendCallback<L> = Box<dyn FnOnce(&L) + Send>;

/// How other threads wake a loop that may be blocked waiting for I/O: the
/// I/O layer's job (asyncio's `_write_to_self`), handed to the engine.
pub(crate) type WakeUp = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

struct Queue<L> {
    callbacks: Vec<(SendCallback<L>, &'static Location<'static>)>,
    closed: bool,
}

/// What a loop shares with its [`LoopHandle`]s.
pub(crate) struct Incoming<L> {
    queue: Mutex<Queue<L>>,
    /// `queue.callbacks` is not empty: lets the loop skip the lock. Written
    /// only under the lock.
    pending: AtomicBool,
    /// The loop is (about to be) blocked waiting for I/O.
    sleeping: AtomicBool,
    wake_up: WakeUp,
}

impl<L> Incoming<L> {
    pub(crate) fn new(wake_up: WakeUp) -> Self {
        Incoming {
            queue: Mutex::new(Queue { callbacks: Vec::new(), closed: false }),
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            wake_up,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<L>> {
        // Nothing panics while holding the lock, but never propagate poison.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, callback: SendCallback<L>, origin: &'static Location<'static>) -> io::Result<()> {
        {
            let mut queue = self.lock();
            if queue.closed {
                return Err(closed_error());
            }
            queue.callbacks.push((callback, origin));
            self.pending.store(true, SeqCst);
        }
        // Pairs with `about_to_sleep`: either the loop sees `pending`, or we see `sleeping`.
        if self.sleeping.load(SeqCst) {
            (self.wake_up)()?;
        }
        Ok(())
    }

    /// Calls from other threads wait. One atomic load: every push asks.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(SeqCst)
    }

    /// Takes the waiting calls, in the order they were made.
    pub(crate) fn take_pending(&self) -> Vec<(SendCallback<L>, &'static Location<'static>)> {
        let mut queue = self.lock();
        self.pending.store(false, SeqCst);
        std::mem::take(&mut queue.callbacks)
    }

    /// Called before a wait that may block; `false` if calls arrived
    /// meanwhile and the loop must not block.
    pub(crate) fn about_to_sleep(&self) -> bool {
        self.sleeping.store(true, SeqCst);
        !self.pending.load(SeqCst)
    }

    /// Called after the wait. A plain release store: a thread that still
    /// sees `sleeping` afterwards only asks for one spare wake-up, and the
    /// store-then-load pair that must not be reordered is in `about_to_sleep`.
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Release);
    }

    /// Refuses further calls and drops those waiting.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut queue = self.lock();
            queue.closed = true;
            self.pending.store(false, SeqCst);
            std::mem::take(&mut queue.callbacks)
        };
        drop(dropped);
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

pub(crate) fn closed_error() -> io::Error {
    io::Error::other("event loop is closed")
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
