//! How code on the loop's thread reaches its loop without a `&L`.
//!
//! Task wakers, futures' done callbacks and transports are `'static` objects
//! that outlive any borrow of the loop, yet must queue work on it. They hold
//! the loop's [`LoopLocal`]: an `Rc` sharing the engine's ready queue and
//! closed flag, which also keeps the loop's tasks by id.
//!
//! A [`Waker`](std::task::Waker) must be `Send + Sync`, so it cannot hold an
//! `Rc`. A [`TaskWaker`] holds the loop's id and the task's id instead. On the
//! loop's own thread, a per-thread registry maps the loop's id to its
//! `LoopLocal`, and the wake goes straight into the ready queue. Another
//! thread has no entry for that loop, so the wake travels through the
//! loop's threadsafe queue (which also wakes a loop blocked in `select`).
//! An atomic `scheduled` flag makes a task woken many times before it runs
//! run once.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::os::unix::io::RawFd;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Wake;

use crate::event_loop::base_events::PollIo;
use crate::event_loop::ready::{new_rc, Once, ReadyCallback, ReadyQueue};
use crate::event_loop::threadsafe::Shared;
use crate::{AbstractEventLoop, LoopHandle};

/// The task id of `run_until_complete`'s future, which the loop does not
/// keep: waking it only makes sure the next iteration does not block.
pub(crate) const ROOT_TASK: u64 = 0;

thread_local! {
    /// The loops living on this thread, by id.
    static REGISTRY: RefCell<Vec<(u64, Weak<dyn LocalWake>)>> = const { RefCell::new(Vec::new()) };
}

/// A wake on the loop's thread, seen through the registry.
trait LocalWake {
    fn wake_task(&self, task: u64);
}

/// What holds OS resources on behalf of a loop (a transport's socket, a
/// server's listener) and must let go of them when the loop closes: its own
/// callbacks, which would have done it, will never run.
pub(crate) trait Release {
    fn release(&self);
}

/// A loop's shared, `Rc`-held state for code that has no `&L` (see the module docs).
pub(crate) struct LoopLocal<L> {
    id: u64,
    ready: Rc<RefCell<ReadyQueue<L>>>,
    /// The queue of other threads' calls, taken before anything is queued here.
    threadsafe: Arc<Shared<L>>,
    closed: Rc<Cell<bool>>,
    /// Tasks not yet finished. A task removes itself when it finishes.
    tasks: RefCell<HashMap<u64, ReadyCallback<L>>>,
    next_task: Cell<u64>,
    /// `(fd, write)` of the socket operations waiting now: one per fd and direction.
    io_waits: RefCell<HashSet<(RawFd, bool)>>,
    /// Transports and servers, released when the loop closes.
    resources: RefCell<Vec<Weak<dyn Release>>>,
    /// The buffer the loop's transports read into: reads never overlap.
    /// Empty until the first read.
    read_buffer: RefCell<Vec<u8>>,
}

impl<L> LoopLocal<L> {
    /// Drops every pending task's future, and the tasks. Dropping a future
    /// may create another task; a few rounds catch those. Then releases the
    /// transports and servers still open: the loop is closing.
    pub(crate) fn drop_tasks(&self) {
        for _ in 0..8 {
            let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
            if tasks.is_empty() {
                break;
            }
            tasks.values().for_each(|task| task.cancel());
            drop(tasks);
        }
        let resources = std::mem::take(&mut *self.resources.borrow_mut());
        resources.iter().filter_map(Weak::upgrade).for_each(|resource| resource.release());
    }

    /// Keeps `resource` to [`release`](Release::release) when the loop closes.
    pub(crate) fn keep_resource(&self, resource: Weak<dyn Release>) {
        let mut resources = self.resources.borrow_mut();
        if resources.len() == resources.capacity() {
            // Forget the gone ones before growing: amortized O(1) a push.
            resources.retain(|kept| kept.strong_count() > 0);
        }
        resources.push(resource);
    }

    /// Claims `fd`'s reading (or writing) side for one socket operation;
    /// `false` if another operation waits on it.
    pub(crate) fn claim_io(&self, fd: RawFd, write: bool) -> bool {
        self.io_waits.borrow_mut().insert((fd, write))
    }

    /// Gives back what [`claim_io`](Self::claim_io) took.
    pub(crate) fn release_io(&self, fd: RawFd, write: bool) {
        self.io_waits.borrow_mut().remove(&(fd, write));
    }

    /// Runs `f` with the loop's read buffer of `size` bytes (a fresh one if
    /// it is in use, by a read inside a read: a protocol running a loop).
    #[inline]
    pub(crate) fn with_read_buffer<R>(&self, size: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        match self.read_buffer.try_borrow_mut() {
            Ok(mut buf) => {
                if buf.len() != size {
                    buf.resize(size, 0);
                }
                f(&mut buf)
            }
            Err(_) => f(&mut vec![0; size]),
        }
    }

    /// Forgets a finished task.
    pub(crate) fn remove_task(&self, id: u64) {
        let removed = self.tasks.borrow_mut().remove(&id);
        drop(removed);
    }

    /// Pending tasks.
    pub(crate) fn task_count(&self) -> usize {
        self.tasks.borrow().len()
    }
}

impl<L: 'static> LoopLocal<L> {
    /// The local state of a new loop whose engine owns `ready` and `closed`,
    /// registered for wakes on this thread.
    pub(crate) fn new(
        ready: Rc<RefCell<ReadyQueue<L>>>,
        closed: Rc<Cell<bool>>,
        threadsafe: Arc<Shared<L>>,
    ) -> Rc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let local = Rc::new(LoopLocal {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ready,
            closed,
            threadsafe,
            tasks: RefCell::new(HashMap::new()),
            next_task: Cell::new(ROOT_TASK + 1),
            io_waits: RefCell::new(HashSet::new()),
            resources: RefCell::new(Vec::new()),
            read_buffer: RefCell::new(Vec::new()),
        });
        let weak: Weak<dyn LocalWake> = Rc::downgrade(&local) as Weak<dyn LocalWake>;
        let _ = REGISTRY.try_with(|registry| {
            let mut registry = registry.borrow_mut();
            registry.retain(|(_, entry)| entry.strong_count() > 0);
            registry.push((local.id, weak));
        });
        local
    }

    /// Queues `callback` to run on the loop's next iteration (the engine's
    /// `call_soon`), or drops it if the loop is closed.
    #[track_caller]
    pub(crate) fn call_soon(&self, callback: impl FnOnce(&L) + 'static) {
        let origin = Location::caller();
        self.push(new_rc(move || Once::new(callback, origin, ())));
    }

    /// Queues an entry (a task to poll, usually); dropped if the loop is closed.
    pub(crate) fn push(&self, entry: ReadyCallback<L>) {
        if !self.closed.get() {
            let mut ready = self.ready.borrow_mut();
            // Threadsafe calls made before this go first: one FIFO.
            self.threadsafe.move_pending_to(&mut ready);
            ready.push(entry);
        }
    }

    /// A fresh task id.
    pub(crate) fn next_task_id(&self) -> u64 {
        let id = self.next_task.get();
        self.next_task.set(id + 1);
        id
    }

    /// Keeps `task` under `id` until it finishes; `false` if the loop is closed.
    pub(crate) fn insert_task(&self, id: u64, task: ReadyCallback<L>) -> bool {
        if self.closed.get() {
            return false;
        }
        self.tasks.borrow_mut().insert(id, task);
        true
    }

    /// Runs task `id` now (a wake that came from another thread, delivered
    /// by a threadsafe callback).
    fn run_task(&self, event_loop: &L, id: u64) {
        let task = self.tasks.borrow().get(&id).cloned();
        if let Some(task) = task {
            task.run(event_loop);
        }
    }
}

impl<L: 'static> LocalWake for LoopLocal<L> {
    fn wake_task(&self, task: u64) {
        if task == ROOT_TASK {
            // `run_until_complete` polls its future between iterations; a
            // no-op entry keeps the next iteration from blocking meanwhile.
            self.call_soon(|_| {});
            return;
        }
        let task = self.tasks.borrow().get(&task).cloned();
        if let Some(task) = task {
            self.push(task);
        }
    }
}

impl<L> Drop for LoopLocal<L> {
    fn drop(&mut self) {
        let id = self.id;
        let _ = REGISTRY.try_with(|registry| {
            if let Ok(mut registry) = registry.try_borrow_mut() {
                registry.retain(|(entry, _)| *entry != id);
            }
        });
    }
}

/// Wakes `task` of loop `loop_id` if that loop lives on this thread;
/// `false` if it does not (or is gone).
fn wake_here(loop_id: u64, task: u64) -> bool {
    let local = REGISTRY
        .try_with(|registry| {
            let registry = registry.borrow();
            registry.iter().find(|(id, _)| *id == loop_id).and_then(|(_, local)| local.upgrade())
        })
        .ok()
        .flatten();
    match local {
        Some(local) => {
            local.wake_task(task);
            true
        }
        None => false,
    }
}

/// The data behind a task's [`Waker`](std::task::Waker): `Send + Sync`, it
/// names its task by ids and reaches the loop as the module docs describe.
pub(crate) struct TaskWaker<L> {
    loop_id: u64,
    task: u64,
    /// Set when the task is queued; cleared just before it is polled.
    scheduled: AtomicBool,
    remote: LoopHandle<L>,
}

impl<L> TaskWaker<L> {
    /// The waker of `task` on the loop of `local`, which counts as already
    /// scheduled (its creator queues its first poll).
    pub(crate) fn new(local: &LoopLocal<L>, task: u64, remote: LoopHandle<L>) -> Self {
        TaskWaker { loop_id: local.id, task, scheduled: AtomicBool::new(true), remote }
    }

    /// Clears the flag before a poll, so wakes during the poll queue it
    /// again; `true` if it was set.
    pub(crate) fn take_scheduled(&self) -> bool {
        self.scheduled.swap(false, Ordering::AcqRel)
    }
}

impl<L: PollIo + AbstractEventLoop> Wake for TaskWaker<L> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return; // already queued: it will be polled once
        }
        if wake_here(self.loop_id, self.task) {
            return;
        }
        // Another thread: the threadsafe queue wakes the loop, and on its
        // thread the task runs. A closed loop refuses, and nothing is lost
        // that could still run.
        let task = self.task;
        let _ = self.remote.call_soon_threadsafe(move |event_loop: &L| {
            if task != ROOT_TASK {
                event_loop.engine().local().run_task(event_loop, task);
            }
        });
    }
}
