//! Scheduling from other threads (the queue behind [`LoopHandle`](crate::LoopHandle)): a mutex-protected queue that the ready
//! queue takes from before it adds anything, and a wake-up asked of the I/O
//! layer only when the loop may be asleep, so a burst of calls costs at
//! most one syscall.

use std::io;
use std::panic::Location;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Release, SeqCst};
use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) type SendCallback<L> = Box<dyn FnOnce(&L) + Send>;

/// How other threads wake a loop that may be blocked waiting for I/O: the
/// I/O layer's job (asyncio's `_write_to_self`), handed to the engine.
pub(crate) type WakeUp = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

struct Queue<L> {
    callbacks: Vec<(SendCallback<L>, &'static Location<'static>)>,
    closed: bool,
}

/// What a loop shares with its [`LoopHandle`](crate::LoopHandle)s.
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

    pub(crate) fn push(
        &self,
        callback: SendCallback<L>,
        origin: &'static Location<'static>,
    ) -> io::Result<()> {
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

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

pub(crate) fn closed_error() -> io::Error {
    io::Error::other("event loop is closed")
}
