//! Scheduling from other threads: a mutex-protected queue that the loop
//! drains once per iteration, and a wake-up written only when the loop may
//! be asleep, so a burst of calls costs one syscall.

use std::fmt;
use std::io;
use std::panic::Location;
use std::sync::atomic::Ordering::{Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::event_loop::ready::{new_rc, Once, ReadyQueue};
use crate::event_loop::wakeup::Wakeup;
use crate::AbstractEventLoop;

/// A [`Shared::flags`] bit: other threads' calls wait in `incoming`.
const PENDING: u8 = 1;
/// A [`Shared::flags`] bit: the loop is closed.
const CLOSED: u8 = 2;

pub(crate) type SendCallback<L> = Box<dyn FnOnce(&L) + Send>;

struct Incoming<L> {
    callbacks: Vec<(SendCallback<L>, &'static Location<'static>)>,
    closed: bool,
}

/// State shared between a loop and its [`LoopHandle`]s.
pub(crate) struct Shared<L> {
    incoming: Mutex<Incoming<L>>,
    /// [`PENDING`] (`incoming.callbacks` is not empty: lets the loop skip
    /// the lock) and [`CLOSED`] (`incoming.closed`), so the loop's
    /// `call_soon` asks both with one load. Written only under the lock.
    flags: AtomicU8,
    /// The loop is (about to be) blocked in `select`.
    sleeping: AtomicBool,
    /// A wake-up was written and not yet drained.
    woken: AtomicBool,
    pub(crate) wakeup: Wakeup,
}

impl<L> Shared<L> {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Shared {
            incoming: Mutex::new(Incoming { callbacks: Vec::new(), closed: false }),
            flags: AtomicU8::new(0),
            sleeping: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            wakeup: Wakeup::new()?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Incoming<L>> {
        // Nothing panics while holding the lock, but never propagate poison.
        self.incoming.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, callback: SendCallback<L>, origin: &'static Location<'static>) -> io::Result<()> {
        {
            let mut incoming = self.lock();
            if incoming.closed {
                return Err(closed_error());
            }
            incoming.callbacks.push((callback, origin));
            self.flags.store(self.flags.load(SeqCst) | PENDING, SeqCst);
        }
        // Pairs with `about_to_sleep`: either the loop sees `pending`, or we see `sleeping`.
        if self.sleeping.load(SeqCst) && !self.woken.swap(true, SeqCst) {
            self.wakeup.wake()?;
        }
        Ok(())
    }

    /// Called before a blocking wait; `false` if work arrived meanwhile and
    /// the loop must not block.
    pub(crate) fn about_to_sleep(&self) -> bool {
        self.sleeping.store(true, SeqCst);
        self.flags.load(SeqCst) & PENDING == 0
    }

    /// Other threads' calls wait, or the loop is closed: one load, for
    /// the loop's `call_soon`, whose slow path then asks which.
    #[inline]
    pub(crate) fn needs_attention(&self) -> bool {
        self.flags.load(SeqCst) != 0
    }

    /// Called after the wait. A plain release store: a thread that still
    /// sees `sleeping` afterwards only writes one spare wake-up, and the
    /// store-then-load pair that must not be reordered is in `about_to_sleep`.
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Release);
    }

    /// The wake-up fd was reported readable: consume it.
    pub(crate) fn drain_wakeup(&self) {
        self.wakeup.drain();
        self.woken.store(false, SeqCst);
    }

    /// Moves queued callbacks out, in arrival order, if there are any. One
    /// atomic load when there are none: every `call_soon` asks.
    #[inline]
    pub(crate) fn take_pending(&self, into: impl FnMut((SendCallback<L>, &'static Location<'static>))) {
        if self.flags.load(SeqCst) & PENDING != 0 {
            self.take_all_pending().into_iter().for_each(into);
        }
    }

    #[inline(never)]
    fn take_all_pending(&self) -> Vec<(SendCallback<L>, &'static Location<'static>)> {
        let mut incoming = self.lock();
        self.flags.store(self.flags.load(SeqCst) & !PENDING, SeqCst);
        std::mem::take(&mut incoming.callbacks)
    }

    /// Refuses further calls and drops what is queued.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut incoming = self.lock();
            incoming.closed = true;
            self.flags.store(CLOSED, SeqCst);
            std::mem::take(&mut incoming.callbacks)
        };
        drop(dropped);
    }
}

pub(crate) fn closed_error() -> io::Error {
    io::Error::other("event loop is closed")
}

impl<L: 'static> Shared<L> {
    /// Moves the callbacks other threads queued onto the loop's `ready`
    /// queue, in call order. Everything that queues on the loop thread calls
    /// this first, so the loop keeps one FIFO, as asyncio's single deque.
    #[inline]
    pub(crate) fn move_pending_to(&self, ready: &mut ReadyQueue<L>) {
        self.take_pending(|(callback, origin)| ready.push(new_rc(move || Once::new(callback, origin, ()))));
    }
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
    pub(crate) shared: Arc<Shared<L>>,
}

impl<L> Clone for LoopHandle<L> {
    fn clone(&self) -> Self {
        LoopHandle { shared: Arc::clone(&self.shared) }
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
        self.shared.lock().closed
    }
}

impl<L: AbstractEventLoop> LoopHandle<L> {
    /// Schedules `cb` on the loop from any thread, waking the loop if it is
    /// blocked. Calls from one thread run in the order they were made.
    ///
    /// # Errors
    ///
    /// If the loop is closed, or writing the wake-up fd fails.
    #[track_caller]
    pub fn call_soon_threadsafe(&self, cb: impl FnOnce(&L) + Send + 'static) -> io::Result<()> {
        self.shared.push(Box::new(cb), Location::caller())
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
