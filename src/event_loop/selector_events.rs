//! The selector event loop (Tulip's `BaseSelectorEventLoop`): plugs any
//! [`Selector`] into the engine's I/O hook and adds readers, writers and
//! signal handlers. One selector key per fd holds both its reader and its
//! writer; `modify` changes it when one side comes or goes, `unregister`
//! when both are gone.
//!
//! It also owns what the loop's I/O needs beyond the selector: the
//! [`Waker`] other threads write to wake a blocked `select`, the buffer
//! transports read into, which socket operations wait, and the transports
//! and servers to release when the loop closes.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::raw::c_int;
use std::os::unix::io::RawFd;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event_loop::base_events::{BaseEventLoop, PollIo};
use crate::event_loop::executor::Executor;
use crate::event_loop::ready::{ReadyCallback, Repeating};
use crate::event_loop::signals::{check_catchable, check_signal_number, Signals};
use crate::event_loop::threadsafe::closed_error;
use crate::event_loop::unix_events::Children;
use crate::selectors::{Backend, DefaultSelector, Events, Selector, Waker};
use crate::{AbstractEventLoop, ExceptionContext, Handle, LoopHandle, LoopStats, TimerHandle};

/// The loop's data in each selector key. Public so the loop's types can be
/// named; what it holds is private: which of the loop's tables the fd
/// belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoHandlers(Slot);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The cross-thread wake-up fd.
    Waker,
    /// The signal pipe.
    Signals,
    /// A user fd: an index into the loop's handler table.
    User(usize),
}

/// The reader and writer of one user fd.
struct FdHandlers<L> {
    /// The fd they belong to (for the iteration record).
    fd: RawFd,
    reader: Option<ReadyCallback<L>>,
    writer: Option<ReadyCallback<L>>,
}

/// The default event loop: the scheduling engine plus any selector `S`.
///
/// ```
/// use std::io::Write;
/// use std::os::unix::{io::AsRawFd, net::UnixStream};
/// use tulip::{selectors::Backend, AbstractEventLoop};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let (mut a, b) = UnixStream::pair()?;
/// let fd = b.as_raw_fd();
/// event_loop.add_reader(fd, move |lp| {
///     println!("fd {fd} is readable");
///     lp.remove_reader(fd).unwrap();
///     lp.stop();
/// })?;
/// a.write_all(b"x")?;
/// event_loop.run_forever()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct BaseSelectorEventLoop<S> {
    engine: BaseEventLoop<Self>,
    /// `None` once the loop is closed.
    selector: RefCell<Option<S>>,
    /// Written by other threads to wake a blocked `select`; registered.
    waker: Arc<Waker>,
    /// What the last `select` found ready (each key's slot and events), for
    /// `process_events`; kept for its allocation.
    events: RefCell<Vec<(Slot, Events)>>,
    /// Handlers of user fds, indexed by `Slot::User`; freed slots are reused.
    handlers: RefCell<Vec<Option<FdHandlers<Self>>>>,
    free_slots: RefCell<Vec<usize>>,
    /// How many user fds are registered (the selector also has internal ones).
    user_fds: Cell<usize>,
    signals: RefCell<Signals>,
    signal_handlers: RefCell<HashMap<c_int, ReadyCallback<Self>>>,
    /// `S` is one of the crate's own selectors, so a zero-timeout `select`
    /// with only the waker registered can be skipped: nothing else can be
    /// ready. A selector of the user's is always asked: its `select` may
    /// fail, or count, and the loop must not hide that.
    own_selector: bool,
    select_calls: Cell<u64>,
    events_received: Cell<u64>,
    /// `(fd, write)` of the socket operations waiting now: one per fd and direction.
    io_waits: RefCell<HashSet<(RawFd, bool)>>,
    /// Transports and servers, released when the loop closes.
    resources: RefCell<Vec<Weak<dyn Release>>>,
    /// The buffer the loop's transports read into: reads never overlap.
    /// Empty until the first read.
    read_buffer: RefCell<Vec<u8>>,
    /// The worker threads of `run_in_executor`, started when first needed.
    executor: Executor,
    /// The child processes watched (`add_child_handler`).
    children: Children<Self>,
}

/// What holds OS resources on behalf of a loop (a transport's socket, a
/// server's listener) and must let go of them when the loop closes: its own
/// callbacks, which would have done it, will never run.
pub(crate) trait Release {
    fn release(&self);
}

/// [`BaseSelectorEventLoop`] over this platform's best selector.
pub type SelectorEventLoop = BaseSelectorEventLoop<DefaultSelector<IoHandlers>>;

/// [`BaseSelectorEventLoop`] over a selector chosen at run time.
pub type DynSelectorEventLoop = BaseSelectorEventLoop<Box<dyn Selector<IoHandlers>>>;

/// A loop over the selector of `backend`, chosen at run time.
///
/// # Errors
///
/// [`Unsupported`](io::ErrorKind::Unsupported) if this platform lacks
/// `backend`; otherwise the error of creating the selector or the loop.
pub fn new_event_loop(backend: Backend) -> io::Result<DynSelectorEventLoop> {
    let mut event_loop = BaseSelectorEventLoop::with_selector(backend.open()?)?;
    // A box, but one of ours: `Backend::open` makes only the crate's selectors.
    event_loop.own_selector = true;
    Ok(event_loop)
}

/// `true` if `S` is one of the crate's own selectors (not a type of the
/// user's, nor a box that may hold one).
fn is_own_selector<S: 'static>() -> bool {
    use crate::selectors::{PollSelector, SelectSelector};
    use std::any::TypeId;
    let id = TypeId::of::<S>();
    id == TypeId::of::<DefaultSelector<IoHandlers>>()
        || id == TypeId::of::<PollSelector<IoHandlers>>()
        || id == TypeId::of::<SelectSelector<IoHandlers>>()
}

impl BaseSelectorEventLoop<DefaultSelector<IoHandlers>> {
    /// A loop over [`DefaultSelector`].
    ///
    /// # Errors
    ///
    /// If the selector or the wake-up fd cannot be created.
    pub fn new() -> io::Result<Self> {
        Self::with_selector(DefaultSelector::new()?)
    }

    /// A loop over [`DefaultSelector`] on virtual time (what
    /// [`TestLoop`](crate::testing::TestLoop) wraps).
    pub(crate) fn with_virtual_clock() -> io::Result<Self> {
        let mut event_loop = Self::new()?;
        event_loop.engine.use_virtual_clock();
        Ok(event_loop)
    }
}

fn next_loop_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// A loop over `selector`, which should be empty.
    ///
    /// # Errors
    ///
    /// If the wake-up fd cannot be created or registered.
    pub fn with_selector(mut selector: S) -> io::Result<Self> {
        let waker = Arc::new(Waker::new()?);
        selector.register(waker.fd(), Events::READ, IoHandlers(Slot::Waker))?;
        let wake_up = Arc::clone(&waker);
        let event_loop = BaseSelectorEventLoop {
            engine: BaseEventLoop::new(move || wake_up.wake()),
            selector: RefCell::new(Some(selector)),
            waker,
            events: RefCell::new(Vec::new()),
            handlers: RefCell::new(Vec::new()),
            free_slots: RefCell::new(Vec::new()),
            user_fds: Cell::new(0),
            signals: RefCell::new(Signals::new(next_loop_id())),
            signal_handlers: RefCell::new(HashMap::new()),
            own_selector: is_own_selector::<S>(),
            select_calls: Cell::new(0),
            events_received: Cell::new(0),
            io_waits: RefCell::new(HashSet::new()),
            resources: RefCell::new(Vec::new()),
            read_buffer: RefCell::new(Vec::new()),
            executor: Executor::new(),
            children: Children::new(),
        };
        if let Some(observer) = crate::event_loop::trace::from_environment() {
            event_loop.set_observer(Some(observer));
        }
        Ok(event_loop)
    }

    /// The scheduling engine inside this loop.
    pub fn engine(&self) -> &BaseEventLoop<Self> {
        &self.engine
    }

    /// Which selector backend the loop uses.
    ///
    /// # Errors
    ///
    /// If the loop is closed.
    pub fn backend(&self) -> io::Result<Backend> {
        Ok(self.selector.borrow().as_ref().ok_or_else(closed_error)?.backend())
    }

    /// In a child process made by `fork()`, gives the loop kernel state of
    /// its own (libuv's `uv_loop_fork`): a fresh selector object with the
    /// same readers and writers, a fresh waker, and a fresh signal pipe.
    /// The parent and the child share the inherited epoll instance, waker
    /// and signal pipe, so until then the child's loop refuses to run
    /// (`run_forever` returns the selector's error), and closing or
    /// dropping it leaves the parent's state alone: no `EPOLL_CTL_DEL`, and
    /// the child's signals are not written into the parent's pipe. A no-op
    /// in the process that made the loop. Timers, queued callbacks and
    /// tasks carry over as they are. The executor starts afresh (the
    /// futures of the parent's jobs are cancelled: its threads are not
    /// here), and the parent's child processes are forgotten.
    ///
    /// # Errors
    ///
    /// If the loop is closed, or a new kernel object cannot be made (an fd
    /// that cannot be registered again loses its handlers).
    pub fn after_fork(&self) -> io::Result<()> {
        // The parent's worker threads and children are not this process's.
        self.executor.after_fork();
        self.forget_inherited_children();
        let mut selector = self.selector.borrow_mut();
        let selector = selector.as_mut().ok_or_else(closed_error)?;
        // The waker and the signal pipe keep their fd numbers, so their
        // keys fit the new objects the selector then registers.
        self.waker.after_fork()?;
        self.signals.borrow_mut().after_fork()?;
        selector.after_fork()
    }

    /// Moves the loop's clock forward by `by`, if it is virtual (a
    /// [`TestLoop`](crate::testing::TestLoop)'s): the timers due by then run
    /// on the next iteration.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) on the real clock.
    pub fn advance(&self, by: Duration) -> io::Result<()> {
        self.engine.advance(by)
    }

    /// How many fds have a reader, a writer or both (the loop's own
    /// wake-up and signal fds not counted).
    pub fn watched_fds(&self) -> usize {
        self.user_fds.get()
    }

    /// How long a callback may take before debug mode reports it (default 100 ms).
    pub fn set_slow_callback_duration(&self, threshold: Duration) {
        self.engine.set_slow_callback_duration(threshold);
    }

    /// The slow-callback threshold.
    pub fn slow_callback_duration(&self) -> Duration {
        self.engine.slow_callback_duration()
    }

    /// Hands `context` to the exception handler (asyncio's `call_exception_handler`).
    pub fn call_exception_handler(&self, context: &ExceptionContext) {
        self.engine.call_exception_handler(self, context);
    }

    fn store_handlers(&self, handlers: FdHandlers<Self>) -> usize {
        let mut table = self.handlers.borrow_mut();
        match self.free_slots.borrow_mut().pop() {
            Some(slot) => {
                table[slot] = Some(handlers);
                slot
            }
            None => {
                table.push(Some(handlers));
                table.len() - 1
            }
        }
    }

    /// Forgets a user fd's handlers, cancelling them so queued copies don't
    /// run, and moves them to `garbage`.
    fn drop_handlers(&self, slot: usize, garbage: &mut Garbage<Self>) {
        let removed = self.handlers.borrow_mut().get_mut(slot).and_then(Option::take);
        if let Some(handlers) = removed {
            self.free_slots.borrow_mut().push(slot);
            self.user_fds.set(self.user_fds.get() - 1);
            for callback in handlers.reader.into_iter().chain(handlers.writer) {
                callback.cancel();
                garbage.push(callback);
            }
        }
    }

    /// Installs `callback` as `fd`'s reader or writer (`side`), registering
    /// or modifying the selector key; the replaced one is cancelled.
    fn add_handler(&self, fd: RawFd, side: Events, callback: ReadyCallback<Self>) -> io::Result<()> {
        let mut garbage = Garbage::new();
        let outcome = self.install_handler(fd, side, callback, &mut garbage);
        // Every borrow of the tables has ended: the callbacks that left them
        // may now drop what they captured, whose destructors may use the loop.
        drop(garbage);
        outcome
    }

    fn install_handler(
        &self,
        fd: RawFd,
        side: Events,
        callback: ReadyCallback<Self>,
        garbage: &mut Garbage<Self>,
    ) -> io::Result<()> {
        let mut selector = self.selector.borrow_mut();
        let selector = selector.as_mut().ok_or_else(closed_error)?;
        let Some(key) = selector.get_key(fd) else {
            let (reader, writer) =
                if side == Events::READ { (Some(callback), None) } else { (None, Some(callback)) };
            let slot = self.store_handlers(FdHandlers { fd, reader, writer });
            self.user_fds.set(self.user_fds.get() + 1);
            if let Err(err) = selector.register(fd, side, IoHandlers(Slot::User(slot))) {
                forget_refused(selector, fd);
                self.drop_handlers(slot, garbage);
                return Err(err);
            }
            return Ok(());
        };
        let (events, IoHandlers(slot)) = (key.events, key.data);
        let Slot::User(slot) = slot else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is used internally by the event loop"),
            ));
        };
        let replaced = {
            let mut table = self.handlers.borrow_mut();
            let handlers = table.get_mut(slot).and_then(Option::as_mut).ok_or_else(|| internal_error(fd))?;
            let place = if side == Events::READ { &mut handlers.reader } else { &mut handlers.writer };
            place.replace(callback)
        };
        if let Some(old) = replaced {
            old.cancel();
            garbage.push(old);
        }
        let data = IoHandlers(Slot::User(slot));
        let changed = if events.contains(side) {
            // A handler replaced: the fd may have been closed and its number
            // reused since the key was made, and epoll and kqueue forgot the
            // closed file, so the key is registered again to watch whatever
            // the number means now. (Without a syscall, as `modify` with the
            // same events is, a replaced reader of a reused fd would never
            // run.) poll and select make no syscall either way.
            selector.unregister(fd).and_then(|_| selector.register(fd, events, data).map(drop))
        } else {
            selector.modify(fd, events | side, data).map(drop)
        };
        if let Err(err) = changed {
            // The selector dropped the key: drop both handlers with it.
            forget_refused(selector, fd);
            self.drop_handlers(slot, garbage);
            return Err(err);
        }
        Ok(())
    }

    /// Removes `fd`'s reader or writer (`side`); `Ok(true)` if there was one.
    fn remove_handler(&self, fd: RawFd, side: Events) -> io::Result<bool> {
        let mut garbage = Garbage::new();
        let outcome = self.take_handler(fd, side, &mut garbage);
        // As in `add_handler`: dropped once no table is borrowed.
        drop(garbage);
        outcome
    }

    fn take_handler(&self, fd: RawFd, side: Events, garbage: &mut Garbage<Self>) -> io::Result<bool> {
        let mut selector = self.selector.borrow_mut();
        let Some(selector) = selector.as_mut() else { return Ok(false) };
        let Some(key) = selector.get_key(fd) else { return Ok(false) };
        let (events, IoHandlers(slot)) = (key.events, key.data);
        let Slot::User(slot) = slot else { return Ok(false) };
        let removed = {
            let mut table = self.handlers.borrow_mut();
            let Some(handlers) = table.get_mut(slot).and_then(Option::as_mut) else { return Ok(false) };
            let place = if side == Events::READ { &mut handlers.reader } else { &mut handlers.writer };
            place.take()
        };
        let Some(removed) = removed else { return Ok(false) };
        removed.cancel();
        garbage.push(removed);
        let remaining = events - side;
        if remaining.is_empty() {
            selector.unregister(fd)?;
            self.drop_handlers(slot, garbage);
        } else if let Err(err) = selector.modify(fd, remaining, IoHandlers(Slot::User(slot))) {
            forget_refused(selector, fd);
            self.drop_handlers(slot, garbage);
            return Err(err);
        }
        Ok(true)
    }

    /// Reads the signal pipe and queues the handlers of the signals that arrived.
    fn dispatch_signals(&self) {
        let handlers = self.signal_handlers.borrow();
        self.signals.borrow().drain(|signum| {
            if let Some(handler) = handlers.get(&signum) {
                self.engine.push_ready(handler);
            }
        });
    }

    /// Gives up signal handling: restores dispositions, unwatches and closes
    /// the pipe. Returns the handlers, cancelled, for the caller to drop once
    /// it holds no borrow of the loop.
    #[must_use]
    fn release_signals(&self) -> HashMap<c_int, ReadyCallback<Self>> {
        let mut signals = self.signals.borrow_mut();
        if let (Some(fd), Some(selector)) = (signals.read_fd(), self.selector.borrow_mut().as_mut()) {
            let _ = selector.unregister(fd);
        }
        signals.release();
        let handlers = std::mem::take(&mut *self.signal_handlers.borrow_mut());
        handlers.values().for_each(|handler| handler.cancel());
        handlers
    }
}

impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// A `select` of the selector, noting each ready key's slot and events
    /// for `process_events`.
    #[inline(never)]
    fn select_now(&self, timeout: Option<Duration>) -> io::Result<usize> {
        let mut selector = self.selector.borrow_mut();
        let selector = selector.as_mut().ok_or_else(closed_error)?;
        self.select_calls.set(self.select_calls.get() + 1);
        let mut events = self.events.borrow_mut();
        let selected = selector.select_each(timeout, &mut |key, ready| events.push((key.data.0, ready)));
        match selected {
            Ok(count) => {
                self.events_received.set(self.events_received.get() + count as u64);
                Ok(count)
            }
            // Our selectors retry EINTR themselves (PEP 475); one of the
            // user's may not. Nothing was reported: an empty iteration.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(err) => Err(err),
        }
    }

    /// While tracing: notes the ready fds, and why the wait ended.
    #[cold]
    fn record_events(&self, events: &[(Slot, Events)]) {
        let mut record = self.engine.record();
        let table = self.handlers.borrow();
        for &(slot, ready) in events {
            match slot {
                Slot::Waker => record.wait_end.woken = true,
                Slot::Signals => record.wait_end.signal = true,
                Slot::User(slot) => {
                    record.wait_end.fds_ready = true;
                    if let Some(handlers) = table.get(slot).and_then(Option::as_ref) {
                        record.ready.push((handlers.fd, ready));
                    }
                }
            }
        }
    }

    /// Hands a record of every iteration to `observer` (`None`: stop); see
    /// [`tulip::trace`](crate::trace). `TULIP_TRACE=1` in the environment
    /// sets one that prints to stderr, for every loop.
    pub fn set_observer(&self, observer: Option<Box<dyn crate::trace::LoopObserver>>) {
        self.engine.set_observer(observer);
    }

    /// Tells `observer` of every system call the loop's selector makes (see
    /// [`tulip_selectors::transcript`](crate::selectors::transcript)); `None`
    /// stops it. `TULIP_TRACE=1` sets one that prints to stderr.
    pub fn set_syscall_observer(&self, observer: Option<Box<dyn crate::selectors::transcript::Observer>>) {
        if let Some(selector) = self.selector.borrow_mut().as_mut() {
            selector.set_observer(observer);
        }
    }

    /// `true` when the selector is one of ours and watches nothing but the
    /// waker: then nothing can become ready without a blocking wait.
    fn only_the_waker_is_watched(&self) -> bool {
        self.own_selector && self.user_fds.get() == 0 && self.signals.borrow().read_fd().is_none()
    }

    /// The rest of [`close`](AbstractEventLoop::close), once the engine is
    /// closed: unwatches the signal pipe, closes the selector, and frees
    /// what the loop holds for I/O.
    fn close_io(&self) -> io::Result<()> {
        if let (Some(fd), Some(selector)) =
            (self.signals.borrow().read_fd(), self.selector.borrow_mut().as_mut())
        {
            let _ = selector.unregister(fd);
        }
        let selector = self.selector.borrow_mut().take();
        let closed = selector.map_or(Ok(()), Selector::close);
        self.release_io();
        closed
    }
}

impl<S> BaseSelectorEventLoop<S> {
    /// Frees what the loop holds for I/O, whatever its selector: transports
    /// and servers close their sockets, signal dispositions are restored,
    /// and the handlers are dropped, cancelled, last: their captures'
    /// destructors may call back into the loop, which is closed by now.
    fn release_io(&self) {
        let resources = std::mem::take(&mut *self.resources.borrow_mut());
        resources.iter().filter_map(Weak::upgrade).for_each(|resource| resource.release());
        self.signals.borrow_mut().release();
        let signal_handlers = std::mem::take(&mut *self.signal_handlers.borrow_mut());
        let table = std::mem::take(&mut *self.handlers.borrow_mut());
        self.free_slots.borrow_mut().clear();
        self.user_fds.set(0);
        self.io_waits.borrow_mut().clear();
        let handlers = table
            .into_iter()
            .flatten()
            .flat_map(|handlers| handlers.reader.into_iter().chain(handlers.writer));
        for callback in handlers.chain(signal_handlers.into_values()) {
            callback.cancel();
            drop(callback);
        }
        self.executor.shut_down();
        self.children.release();
    }

    /// The loop's worker threads (`run_in_executor`).
    pub(crate) fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The loop's watched child processes (`add_child_handler`).
    pub(crate) fn children(&self) -> &Children<Self> {
        &self.children
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
    pub(crate) fn release_io_claim(&self, fd: RawFd, write: bool) {
        self.io_waits.borrow_mut().remove(&(fd, write));
    }

    /// Runs `f` with the loop's read buffer of `size` bytes (a fresh one if
    /// it is in use, by a read inside a read: a protocol running a loop).
    #[inline]
    pub(crate) fn with_read_buffer<R>(&self, size: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let mut shared = self.read_buffer.try_borrow_mut().ok();
        let mut fresh = Vec::new();
        let buf = shared.as_deref_mut().unwrap_or(&mut fresh);
        if buf.len() != size {
            buf.resize(size, 0);
        }
        f(buf)
    }
}

/// Callbacks taken out of the loop's tables. They are dropped only once no
/// table is borrowed: what a callback captured may, in its destructor, call
/// back into the loop (a transport removing its reader, say).
type Garbage<L> = Vec<ReadyCallback<L>>;

/// After the selector refused to register or modify `fd`, makes sure it
/// keeps no key for it, as the loop keeps no handlers. Our selectors drop
/// the key themselves (Layer 1: bpo-30014); one of the user's may not, and
/// a key left behind would name handlers the loop no longer has.
#[cold]
fn forget_refused<S: Selector<IoHandlers>>(selector: &mut S, fd: RawFd) {
    if matches!(selector.get_key(fd), Some(key) if matches!(key.data.0, Slot::User(_))) {
        let _ = selector.unregister(fd);
    }
}

fn internal_error(fd: RawFd) -> io::Error {
    io::Error::other(format!("the event loop lost track of fd {fd}"))
}

impl<S: Selector<IoHandlers> + 'static> PollIo for BaseSelectorEventLoop<S> {
    fn engine(&self) -> &BaseEventLoop<Self> {
        &self.engine
    }

    /// One `select` of the selector (see `select_now`), unless it can be spared.
    #[inline]
    fn select(&self, timeout: Option<Duration>) -> io::Result<usize> {
        if timeout == Some(Duration::ZERO)
            && !self.engine.ready().is_empty()
            && self.only_the_waker_is_watched()
        {
            // Callbacks are waiting and nothing but the waker can be ready
            // (other threads' calls are taken without it): spare the
            // syscall. Without callbacks (a stop pending) the selector is
            // asked, as asyncio asks it.
            if self.engine.tracing() {
                self.engine.record().wait_end.spared = true;
            }
            return Ok(0);
        }
        self.select_now(timeout)
    }

    /// Queues the reader and/or writer of each ready fd; drains the waker;
    /// runs the signal handlers of the signals that arrived. Always inlined
    /// into `run_once`: called out of line it cost about 30 instructions
    /// an iteration more (callgrind, the ping-pong).
    #[inline(always)]
    fn process_events(&self) {
        let mut events = self.events.borrow_mut();
        if events.is_empty() {
            return;
        }
        if self.engine.tracing() {
            self.record_events(&events);
        }
        let mut signalled = false;
        if let Some(mut queue) = self.engine.ready().open() {
            // The table holds live handlers only: removing or replacing one
            // cancels it and takes it out, so none is checked here.
            let table = self.handlers.borrow();
            for &(slot, ready) in events.iter() {
                match slot {
                    Slot::Waker => self.waker.drain(),
                    Slot::Signals => signalled = true,
                    Slot::User(slot) => {
                        let Some(handlers) = table.get(slot).and_then(Option::as_ref) else { continue };
                        if let (true, Some(reader)) = (ready.contains(Events::READ), &handlers.reader) {
                            queue.push(Rc::clone(reader));
                        }
                        if let (true, Some(writer)) = (ready.contains(Events::WRITE), &handlers.writer) {
                            queue.push(Rc::clone(writer));
                        }
                    }
                }
            }
        }
        events.clear();
        drop(events);
        if signalled {
            self.dispatch_signals();
        }
    }
}

impl<S: Selector<IoHandlers> + 'static> AbstractEventLoop for BaseSelectorEventLoop<S> {
    fn run_forever(&self) -> io::Result<()> {
        self.engine.run_forever(self)
    }

    fn stop(&self) {
        self.engine.stop();
    }

    fn is_running(&self) -> bool {
        self.engine.is_running()
    }

    fn close(&self) -> io::Result<()> {
        if !self.engine.close()? {
            return Ok(());
        }
        self.close_io()
    }

    fn is_closed(&self) -> bool {
        self.engine.is_closed()
    }

    fn time(&self) -> Instant {
        self.engine.time()
    }

    #[inline]
    #[track_caller]
    fn call_soon(&self, cb: impl FnOnce(&Self) + 'static) -> Handle {
        self.engine.call_soon(cb)
    }

    #[inline]
    #[track_caller]
    fn call_later(&self, delay: Duration, cb: impl FnOnce(&Self) + 'static) -> TimerHandle {
        self.engine.call_later(delay, cb)
    }

    #[inline]
    #[track_caller]
    fn call_at(&self, when: Instant, cb: impl FnOnce(&Self) + 'static) -> TimerHandle {
        self.engine.call_at(when, cb)
    }

    #[track_caller]
    fn call_soon_threadsafe(&self, cb: impl FnOnce(&Self) + Send + 'static) -> Handle {
        // We are on the loop's thread (the loop is not `Sync`), and not
        // blocked in `select`: plain `call_soon` is FIFO and needs no wake-up.
        self.engine.call_soon(cb)
    }

    fn handle(&self) -> LoopHandle<Self> {
        self.engine.handle()
    }

    #[track_caller]
    fn add_reader(&self, fd: RawFd, cb: impl FnMut(&Self) + 'static) -> io::Result<()> {
        self.add_handler(fd, Events::READ, Rc::new(Repeating::new(cb, Location::caller())))
    }

    fn remove_reader(&self, fd: RawFd) -> io::Result<bool> {
        self.remove_handler(fd, Events::READ)
    }

    #[track_caller]
    fn add_writer(&self, fd: RawFd, cb: impl FnMut(&Self) + 'static) -> io::Result<()> {
        self.add_handler(fd, Events::WRITE, Rc::new(Repeating::new(cb, Location::caller())))
    }

    fn remove_writer(&self, fd: RawFd) -> io::Result<bool> {
        self.remove_handler(fd, Events::WRITE)
    }

    #[track_caller]
    fn add_signal_handler(&self, signum: c_int, cb: impl FnMut(&Self) + 'static) -> io::Result<()> {
        check_catchable(signum)?;
        if self.is_closed() {
            return Err(closed_error());
        }
        let handler: ReadyCallback<Self> = Rc::new(Repeating::new(cb, Location::caller()));
        let mut signals = self.signals.borrow_mut();
        if let Some(pipe_fd) = signals.claim()? {
            let mut selector = self.selector.borrow_mut();
            let registered = match selector.as_mut() {
                Some(selector) => {
                    selector.register(pipe_fd, Events::READ, IoHandlers(Slot::Signals)).map(drop)
                }
                None => Err(closed_error()),
            };
            if let Err(err) = registered {
                signals.release();
                return Err(err);
            }
        }
        if let Err(err) = signals.install(signum) {
            let nothing_installed = signals.is_empty();
            drop(signals);
            if nothing_installed {
                // This loop had no handler yet: give the claim back.
                drop(self.release_signals());
            }
            return Err(err);
        }
        drop(signals);
        let replaced = self.signal_handlers.borrow_mut().insert(signum, handler);
        if let Some(old) = replaced {
            // Dropped here, outside any borrow: its captures may use the loop.
            old.cancel();
        }
        Ok(())
    }

    fn remove_signal_handler(&self, signum: c_int) -> io::Result<bool> {
        // SIGKILL and SIGSTOP are valid signals that never had a handler here:
        // removing them is `Ok(false)`, as asyncio returns False.
        check_signal_number(signum)?;
        let removed = self.signal_handlers.borrow_mut().remove(&signum);
        let Some(handler) = removed else { return Ok(false) };
        handler.cancel();
        let restored = self.signals.borrow_mut().restore(signum);
        let last_one = self.signal_handlers.borrow().is_empty();
        let released = last_one.then(|| self.release_signals());
        // Dropped once no borrow is held: their captures may use the loop.
        drop((handler, released));
        restored.map(|_| true)
    }

    #[allow(clippy::type_complexity)] // the contract's signature, spelled out
    fn set_exception_handler(&self, h: Option<Box<dyn Fn(&Self, &ExceptionContext)>>) {
        self.engine.set_exception_handler(h);
    }

    fn set_debug(&self, on: bool) {
        self.engine.set_debug(on);
    }

    fn get_debug(&self) -> bool {
        self.engine.get_debug()
    }

    fn stats(&self) -> LoopStats {
        LoopStats {
            select_calls: self.select_calls.get(),
            events_received: self.events_received.get(),
            ..self.engine.stats()
        }
    }
}

/// Dropping a loop does what [`close`](AbstractEventLoop::close) does
/// (it cannot be running: `run_forever` borrows it): tasks, queued
/// callbacks, timers, transports, handlers, the signal dispositions, the
/// selector and the waker all go, so nothing a callback held keeps the
/// loop's memory or fds alive.
impl<S> Drop for BaseSelectorEventLoop<S> {
    fn drop(&mut self) {
        if !self.engine.is_closed() {
            self.engine.shut_down();
            self.release_io();
        }
    }
}

impl<S> fmt::Debug for BaseSelectorEventLoop<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseSelectorEventLoop")
            .field("running", &self.engine.is_running())
            .field("closed", &self.engine.is_closed())
            .field("user_fds", &self.user_fds.get())
            .finish_non_exhaustive()
    }
}
