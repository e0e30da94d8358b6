//! Threads for blocking work (asyncio's `run_in_executor` over its default
//! `ThreadPoolExecutor`): a small pool of threads owned by the loop, made
//! lazily, that runs closures the loop cannot run without blocking (a file
//! read, a name lookup, a computation) and hands each result back through
//! the loop's threadsafe queue.
//!
//! The loop and its workers share one mutex-protected queue of jobs and a
//! condition variable. A worker takes a job, runs it (a panic is caught),
//! and sends the result home with `LoopHandle::call_soon_threadsafe`, which
//! wakes a loop blocked in `select`. On the loop's thread the result goes
//! into the [`Future`](crate::Future) that `run_in_executor` returned: the
//! loop keeps that future (type-erased) in a table under the job's id until
//! the result arrives, so nothing a worker sends can miss its future.
//!
//! Closing the loop (or dropping it) drops the jobs not started, cancels the
//! futures still waiting, and lets the workers go: idle ones exit at once,
//! busy ones when their job returns (their result then finds the loop
//! closed and is dropped on the worker). Nothing waits for a job that may
//! never end. [`shutdown_default_executor`](crate::BaseSelectorEventLoop::shutdown_default_executor)
//! is the patient way: the queued jobs run, and its future completes once
//! every worker has been joined.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use crate::event_loop::panics::catch;
use crate::event_loop::threadsafe::closed_error;
use crate::selectors::mechanism::fork_generation;
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers};

/// A job for a worker: the user's closure wrapped with its way home.
type Job = Box<dyn FnOnce() + Send>;

/// What the loop does with a job's outcome on its own thread: `Some` holds
/// the job's `Outcome<T>` (boxed, as the table holds every `T`), `None`
/// means the job will never report (the loop is closing).
type Completion = Box<dyn FnOnce(Option<Box<dyn Any + Send>>)>;

/// A job's outcome, sent from the worker to the loop.
enum Outcome<T> {
    /// The closure returned.
    Returned(T),
    /// The closure panicked: the message and where.
    Panicked(String, Option<String>),
    /// The future was cancelled before a worker took the job: not run.
    Skipped,
}

/// asyncio's default: `min(32, cpu_count + 4)` threads at most.
fn default_max_workers() -> usize {
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    (cpus + 4).min(32)
}

/// What the loop and its workers share.
struct Shared {
    state: Mutex<PoolState>,
    /// Signalled when a job is queued or the pool shuts down.
    work: Condvar,
}

struct PoolState {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
    /// No more jobs are taken; workers exit once the queue is empty.
    shut_down: bool,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(PoolState { jobs: VecDeque::new(), idle: 0, shut_down: false }),
            work: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A job runs outside the lock and its panics are caught: never poisoned,
        // but never propagate poison either.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker's life: take jobs until the pool shuts down and the queue is empty.
    fn work(&self) {
        loop {
            let job = {
                let mut state = self.lock();
                loop {
                    if let Some(job) = state.jobs.pop_front() {
                        break Some(job);
                    }
                    if state.shut_down {
                        break None;
                    }
                    state.idle += 1;
                    state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner);
                    state.idle -= 1;
                }
            };
            match job {
                Some(job) => job(),
                None => return,
            }
        }
    }
}

/// The loop's pool of worker threads and the futures waiting for them.
/// Lives on the loop's thread; only [`Shared`] crosses to the workers.
pub(crate) struct Executor {
    /// Replaced (and the old one leaked) in a child process after `fork`.
    shared: RefCell<Arc<Shared>>,
    /// The fork generation the pool belongs to (see `after_fork`).
    generation: Cell<u64>,
    workers: RefCell<Vec<JoinHandle<()>>>,
    /// Set by the user, or asyncio's default once first needed (finding
    /// the CPU count reads files: not at every loop's creation).
    max_workers: Cell<Option<usize>>,
    /// The futures of jobs not reported yet, by job id.
    pending: RefCell<HashMap<u64, Completion>>,
    next_id: Cell<u64>,
}

impl Executor {
    pub(crate) fn new() -> Self {
        Executor {
            shared: RefCell::new(Shared::new()),
            generation: Cell::new(fork_generation()),
            workers: RefCell::new(Vec::new()),
            max_workers: Cell::new(None),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        }
    }

    /// Queues `job`, starting a worker if every one is busy and the pool
    /// may grow.
    fn submit(&self, job: Job) -> io::Result<()> {
        if self.generation.get() != fork_generation() {
            return Err(io::Error::other(
                "this loop's executor was inherited from the parent process by fork(): call after_fork() first",
            ));
        }
        let shared = Arc::clone(&self.shared.borrow());
        let needs_worker = {
            let mut state = shared.lock();
            if state.shut_down {
                return Err(io::Error::other("the loop's executor is shut down"));
            }
            state.jobs.push_back(job);
            state.jobs.len() > state.idle
        };
        let mut workers = self.workers.borrow_mut();
        if needs_worker && workers.len() < self.max_workers() {
            let for_worker = Arc::clone(&shared);
            let name = format!("tulip-executor-{}", workers.len());
            match thread::Builder::new().name(name).spawn(move || for_worker.work()) {
                Ok(worker) => workers.push(worker),
                // The job waits for a worker that exists; with none, it would never run.
                Err(err) if workers.is_empty() => {
                    let job = shared.lock().jobs.pop_back();
                    drop(job);
                    return Err(err);
                }
                Err(_) => {}
            }
        }
        shared.work.notify_one();
        Ok(())
    }

    fn new_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Delivers job `id`'s outcome to its future (on the loop's thread).
    fn complete(&self, id: u64, outcome: Box<dyn Any + Send>) {
        let completion = self.pending.borrow_mut().remove(&id);
        if let Some(completion) = completion {
            completion(Some(outcome));
        }
    }

    /// Stops taking jobs; the queued ones still run.
    fn stop_accepting(&self) {
        self.after_fork(); // an inherited pool is not ours to touch
        let shared = self.shared.borrow();
        shared.lock().shut_down = true;
        shared.work.notify_all();
    }

    /// What closing the loop does: drops the queued jobs, lets the workers
    /// go (detached: an idle one exits now, a busy one after its job), and
    /// cancels the futures still waiting.
    pub(crate) fn shut_down(&self) {
        self.after_fork(); // an inherited pool is not ours to touch
        let shared = Arc::clone(&self.shared.borrow());
        let dropped = {
            let mut state = shared.lock();
            state.shut_down = true;
            std::mem::take(&mut state.jobs)
        };
        shared.work.notify_all();
        drop(dropped);
        self.workers.borrow_mut().clear();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, completion) in pending {
            completion(None);
        }
    }

    /// The most worker threads the pool starts.
    fn max_workers(&self) -> usize {
        match self.max_workers.get() {
            Some(max) => max,
            None => {
                let max = default_max_workers();
                self.max_workers.set(Some(max));
                max
            }
        }
    }

    /// In a child process made by `fork()`: the parent's workers do not
    /// exist here, and one of them may have held the pool's lock at the
    /// fork, so the old pool and its thread handles are let go of without
    /// being touched (leaked: a one-time cost in the child), the futures of
    /// the parent's jobs are cancelled, and a fresh pool starts empty. A
    /// no-op in the process that made the loop.
    pub(crate) fn after_fork(&self) {
        if self.generation.get() == fork_generation() {
            return;
        }
        let inherited = std::mem::replace(&mut *self.shared.borrow_mut(), Shared::new());
        std::mem::forget(inherited);
        // Dropping a handle would detach a thread that is not in this process.
        std::mem::take(&mut *self.workers.borrow_mut()).into_iter().for_each(std::mem::forget);
        self.generation.set(fork_generation());
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, completion) in pending {
            completion(None);
        }
    }

    /// Worker threads started so far and not let go.
    pub(crate) fn workers(&self) -> usize {
        self.workers.borrow().len()
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("workers", &self.workers())
            .field("max_workers", &self.max_workers.get())
            .field("pending", &self.pending.borrow().len())
            .finish()
    }
}

/// Threads for blocking work on the selector loop (asyncio's
/// `run_in_executor`, `to_thread`, `shutdown_default_executor`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Runs `f` on one of the loop's worker threads and returns a future of
    /// its result (asyncio's `run_in_executor` with the default executor).
    /// The pool starts empty and grows, one thread per job that finds every
    /// worker busy, up to [`executor_max_workers`](Self::executor_max_workers);
    /// further jobs wait their turn, in order. Cancelling the future keeps
    /// a job that no worker has taken yet from running (the loop passes the
    /// cancellation on in its next iteration, as a done callback); a job
    /// already running runs to the end, and its result is dropped.
    ///
    /// ```
    /// use tulip::selectors::Backend;
    ///
    /// let event_loop = tulip::new_event_loop(Backend::Poll)?;
    /// let sum = event_loop.run_in_executor(|| (1..=100u64).sum::<u64>());
    /// assert_eq!(event_loop.run_until_complete(sum)??, 5050);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The future's error: "the function panicked at FILE:LINE: MESSAGE" if
    /// `f` panicked (kind [`Other`](io::ErrorKind::Other)); "event loop is
    /// closed" if the loop is closed; the executor is shut down
    /// ([`shutdown_default_executor`](Self::shutdown_default_executor)); or
    /// the error of starting the first worker thread. A [`Cancelled`](crate::Cancelled)
    /// error if the loop closed before the result arrived.
    pub fn run_in_executor<T, F>(&self, f: F) -> crate::Future<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let future = self.create_future::<T>();
        if self.is_closed() {
            let _ = future.set_exception(closed_error());
            return future;
        }
        let executor = self.executor();
        let id = executor.new_id();
        let cancelled = Arc::new(AtomicBool::new(false));
        let home = future.clone();
        let completion: Completion = Box::new(move |outcome| deliver(&home, outcome));
        executor.pending.borrow_mut().insert(id, completion);
        let flag = Arc::clone(&cancelled);
        future.add_done_callback(move |future| {
            if future.cancelled() {
                flag.store(true, Ordering::Release);
            }
        });
        let handle = self.handle();
        let job: Job = Box::new(move || {
            let outcome = if cancelled.load(Ordering::Acquire) {
                Outcome::Skipped
            } else {
                match catch(f) {
                    Ok(value) => Outcome::Returned(value),
                    Err((message, location)) => Outcome::Panicked(message, location),
                }
            };
            // A closed loop refuses: the outcome is dropped here, and the
            // future was cancelled when the loop closed.
            let _ = handle.call_soon_threadsafe(move |event_loop: &Self| {
                event_loop.executor().complete(id, Box::new(outcome));
            });
        });
        if let Err(err) = executor.submit(job) {
            executor.pending.borrow_mut().remove(&id);
            let _ = future.set_exception(err);
        }
        future
    }

    /// [`run_in_executor`](Self::run_in_executor) under the name of
    /// asyncio's `to_thread`: `f` runs on a worker thread, the caller awaits
    /// its result.
    ///
    /// # Errors
    ///
    /// As [`run_in_executor`](Self::run_in_executor).
    pub fn to_thread<T, F>(&self, f: F) -> crate::Future<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.run_in_executor(f)
    }

    /// The most worker threads the loop's executor starts (by default
    /// asyncio's `min(32, CPUs + 4)`).
    pub fn executor_max_workers(&self) -> usize {
        self.executor().max_workers()
    }

    /// Sets the most worker threads the executor starts. Threads already
    /// running stay; a lower bound only stops new ones.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for 0.
    pub fn set_executor_max_workers(&self, max_workers: usize) -> io::Result<()> {
        if max_workers == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "max_workers must be at least 1, not 0"));
        }
        self.executor().max_workers.set(Some(max_workers));
        Ok(())
    }

    /// Worker threads the executor has started (and not let go at close).
    pub fn executor_workers(&self) -> usize {
        self.executor().workers()
    }

    /// Shuts the executor down patiently (asyncio's
    /// `shutdown_default_executor`): no new jobs are accepted, the queued
    /// ones run, and the returned future completes once every worker
    /// thread has ended and been joined. The joining happens on a thread of
    /// its own, so the loop keeps running meanwhile.
    ///
    /// # Errors
    ///
    /// The future's error: the loop is closed, or the joining thread could
    /// not be started; a [`Cancelled`](crate::Cancelled) error if the loop
    /// closed first.
    pub fn shutdown_default_executor(&self) -> crate::Future<()> {
        let future = self.create_future::<()>();
        if self.is_closed() {
            let _ = future.set_exception(closed_error());
            return future;
        }
        let executor = self.executor();
        executor.stop_accepting();
        let workers = std::mem::take(&mut *executor.workers.borrow_mut());
        let id = executor.new_id();
        let home = future.clone();
        executor.pending.borrow_mut().insert(id, Box::new(move |outcome| deliver(&home, outcome)));
        let handle = self.handle();
        let joiner = thread::Builder::new().name("tulip-executor-join".to_owned()).spawn(move || {
            // A worker's panics are all caught inside its jobs: `join` cannot fail.
            workers.into_iter().for_each(|worker| drop(worker.join()));
            let _ = handle.call_soon_threadsafe(move |event_loop: &Self| {
                event_loop.executor().complete(id, Box::new(Outcome::Returned(())));
            });
        });
        if let Err(err) = joiner {
            executor.pending.borrow_mut().remove(&id);
            let _ = future.set_exception(err);
        }
        future
    }
}

/// Completes `future` with a job's outcome (`None`: the loop closed first).
fn deliver<T: Send + 'static>(future: &crate::Future<T>, outcome: Option<Box<dyn Any + Send>>) {
    let Some(outcome) = outcome else {
        future.cancel();
        return;
    };
    match outcome.downcast::<Outcome<T>>().map(|outcome| *outcome) {
        Ok(Outcome::Returned(value)) => drop(future.set_result(value)),
        Ok(Outcome::Panicked(message, location)) => {
            let at = location.map_or_else(String::new, |at| format!(" at {at}"));
            let _ = future.set_exception(io::Error::other(format!("the function panicked{at}: {message}")));
        }
        // Cancelled already: nothing to tell it.
        Ok(Outcome::Skipped) => {}
        Err(_) => {
            let _ = future.set_exception(io::Error::other("the executor mixed up two jobs' results"));
        }
    }
}
