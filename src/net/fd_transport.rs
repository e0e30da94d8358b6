//! What the selector loop's transports over one fd do alike: the socket
//! transport (`socket_transport.rs`), the datagram transport
//! (`datagram_transport.rs`) and the pipe transports (`pipes.rs`).
//!
//! Each is an `Rc` that the loop's callbacks hold. It watches its fd with
//! a reader and a writer, added and removed as what it needs changes
//! ([`Watch`], [`FdTransport::sync`]); it tells its protocol to pause and
//! resume writing around two marks ([`FlowControl`]); it ends with one
//! `connection_lost`, then closes its fd and lets its protocol go. It has
//! no `&Loop` when its protocol calls it, so what it cannot do on the spot
//! (watching, telling the protocol) is queued as a loop callback through
//! the loop's ready queue ([`LoopLink`]): it happens on the next
//! iteration, in order. Inside its own callbacks it brings its
//! registrations up to date before returning, so queueing is only needed
//! for calls from elsewhere.
//!
//! [`FdTransport`] holds that logic once, as provided methods; each
//! transport implements what differs for its kind of fd (when it wants to
//! read and to write, what reading and writing do, its buffer, its fd).
//! Generic, not `dyn`: the socket transport's read path is the echo
//! benches' hot path, and these helpers must inline into it.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::unix::io::RawFd;
use std::rc::{Rc, Weak};

use crate::event_loop::panics::unwinding_panic;
use crate::event_loop::ready::ReadyQueue;
use crate::event_loop::selector_events::Release;
use crate::net::byte_buffer::ByteBuffer;
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, DatagramProtocol, IoHandlers, Protocol};

/// The loop a transport belongs to.
pub(crate) type Loop<S> = BaseSelectorEventLoop<S>;

/// The most one read takes (asyncio's `max_size`); the loop's transports
/// share one read buffer of this size.
pub(crate) const READ_SIZE: usize = 256 * 1024;

/// The default high-water mark of a write buffer (the low one is a quarter).
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// The error of an operation on a closed transport.
pub(crate) fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the transport is closed")
}

/// An object's weak links: to itself, to hand the callbacks it queues an
/// `Rc` of itself, and to its loop's ready queue, to queue them without a
/// `&Loop`. Weak both: a transport kept by the user keeps nothing of a
/// dropped loop alive, and the loop's callbacks alone keep it alive.
pub(crate) struct LoopLink<T, S: Selector<IoHandlers> + 'static> {
    me: Weak<T>,
    queue: Weak<ReadyQueue<Loop<S>>>,
}

impl<T: 'static, S: Selector<IoHandlers> + 'static> LoopLink<T, S> {
    /// The links of the object `me` (from `Rc::new_cyclic`) on `event_loop`.
    pub(crate) fn new(me: &Weak<T>, event_loop: &Loop<S>) -> Self {
        LoopLink { me: me.clone(), queue: Rc::downgrade(event_loop.engine().ready()) }
    }

    /// The object, unless it is being dropped.
    #[inline]
    pub(crate) fn rc(&self) -> Option<Rc<T>> {
        self.me.upgrade()
    }

    /// Queues `callback` on the loop, if it is still there (and open).
    #[track_caller]
    pub(crate) fn call_soon(&self, callback: impl FnOnce(&Loop<S>) + 'static) {
        if let Some(queue) = self.queue.upgrade() {
            queue.call_soon(callback);
        }
    }

    /// Queues `callback` with the object, which it keeps alive until it
    /// runs; nothing if the object is being dropped or the loop is gone.
    #[track_caller]
    pub(crate) fn call_soon_with(&self, callback: impl FnOnce(&T, &Loop<S>) + 'static) {
        let Some(me) = self.rc() else { return };
        self.call_soon(move |event_loop| callback(&me, event_loop));
    }
}

/// Sets a flag for the duration of a scope, restoring it even on a panic.
pub(crate) struct FlagGuard<'a> {
    flag: &'a Cell<bool>,
    previous: bool,
}

impl<'a> FlagGuard<'a> {
    #[inline]
    pub(crate) fn set(flag: &'a Cell<bool>) -> Self {
        FlagGuard { flag, previous: flag.replace(true) }
    }
}

impl Drop for FlagGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.flag.set(self.previous);
    }
}

/// What a transport knows of its fd's registrations with the loop, and
/// when to bring them up to date (see [`FdTransport::sync`]).
#[derive(Default)]
pub(crate) struct Watch {
    /// A reader for the fd is registered with the loop.
    reader_on: Cell<bool>,
    /// A writer for the fd is registered with the loop.
    writer_on: Cell<bool>,
    /// A [`sync`](FdTransport::sync) is queued.
    sync_queued: Cell<bool>,
    /// Inside one of the transport's loop callbacks, which syncs before it
    /// returns: [`request_sync`](FdTransport::request_sync) need not queue one.
    dispatching: Cell<bool>,
    /// A `request_sync` came while dispatching: the callback's closing
    /// `sync` must look. (The socket transport's read skips it otherwise.)
    changed: Cell<bool>,
}

impl Watch {
    /// Marks the start of one of the transport's loop callbacks, until
    /// the guard drops: changes meanwhile wait for its closing `sync`.
    #[inline]
    pub(crate) fn dispatch(&self) -> FlagGuard<'_> {
        FlagGuard::set(&self.dispatching)
    }

    /// Forgets the changes requested so far in this callback.
    #[inline]
    pub(crate) fn clear_changed(&self) {
        self.changed.set(false);
    }

    /// A change was requested in this callback since `clear_changed`.
    #[inline]
    pub(crate) fn changed(&self) -> bool {
        self.changed.get()
    }
}

/// asyncio's flow control of a write buffer: past the high-water mark the
/// protocol's `pause_writing` is called, and `resume_writing` once the
/// buffer is back to the low-water mark. The transport delivers both (see
/// [`FdTransport::maybe_pause_protocol`]); this keeps the marks, and
/// whether a pause was decided.
pub(crate) struct FlowControl {
    high_water: Cell<usize>,
    low_water: Cell<usize>,
    /// `pause_writing` was decided (its delivery may still be queued).
    paused: Cell<bool>,
}

impl Default for FlowControl {
    fn default() -> Self {
        FlowControl {
            high_water: Cell::new(DEFAULT_HIGH_WATER),
            low_water: Cell::new(DEFAULT_HIGH_WATER / 4),
            paused: Cell::new(false),
        }
    }
}

impl FlowControl {
    /// The marks, `(low, high)` (asyncio's order).
    pub(crate) fn limits(&self) -> (usize, usize) {
        (self.low_water.get(), self.high_water.get())
    }

    /// Sets the marks, as asyncio: `high` defaults to 64 KiB (or `4 * low`
    /// if only `low` is given), `low` to `high / 4`.
    pub(crate) fn set_limits(&self, high: Option<usize>, low: Option<usize>) -> io::Result<()> {
        let (high, low) = match (high, low) {
            (None, None) => (DEFAULT_HIGH_WATER, DEFAULT_HIGH_WATER / 4),
            (Some(high), None) => (high, high / 4),
            (None, Some(low)) => (low.saturating_mul(4), low),
            (Some(high), Some(low)) => (high, low),
        };
        if low > high {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("high-water mark ({high}) must be >= low-water mark ({low})"),
            ));
        }
        self.high_water.set(high);
        self.low_water.set(low);
        Ok(())
    }

    /// `true` if `buffered` bytes call for `pause_writing` now (then it
    /// counts as paused).
    #[inline]
    fn pause_due(&self, buffered: usize) -> bool {
        let due = !self.paused.get() && buffered > self.high_water.get();
        if due {
            self.paused.set(true);
        }
        due
    }

    /// `true` if `buffered` bytes call for `resume_writing` now (then it
    /// counts as resumed).
    #[inline]
    fn resume_due(&self, buffered: usize) -> bool {
        let due = self.paused.get() && buffered <= self.low_water.get();
        if due {
            self.paused.set(false);
        }
        due
    }
}

/// What every transport over one fd keeps alike. `T` is the transport,
/// `P` its protocol's trait object.
pub(crate) struct TransportState<T, S: Selector<IoHandlers> + 'static, P: ?Sized> {
    pub(crate) link: LoopLink<T, S>,
    pub(crate) fd: RawFd,
    /// `None` once `connection_lost` was delivered (or the loop closed).
    pub(crate) protocol: RefCell<Option<Rc<RefCell<P>>>>,
    /// The first callback ran: watching may start.
    pub(crate) started: Cell<bool>,
    /// `connection_made` was delivered: `connection_lost` will be.
    pub(crate) made: Cell<bool>,
    /// `close`, `abort` or a fatal error happened.
    pub(crate) closing: Cell<bool>,
    /// `connection_lost` is queued or delivered.
    pub(crate) conn_lost: Cell<bool>,
    pub(crate) flow: FlowControl,
    pub(crate) watch: Watch,
}

impl<T: 'static, S: Selector<IoHandlers> + 'static, P: ?Sized> TransportState<T, S, P> {
    /// The state of the transport `me` (from `Rc::new_cyclic`), over `fd`,
    /// for `protocol`: nothing started, nothing watched.
    pub(crate) fn new(me: &Weak<T>, event_loop: &Loop<S>, fd: RawFd, protocol: Rc<RefCell<P>>) -> Self {
        TransportState {
            link: LoopLink::new(me, event_loop),
            fd,
            protocol: RefCell::new(Some(protocol)),
            started: Cell::new(false),
            made: Cell::new(false),
            closing: Cell::new(false),
            conn_lost: Cell::new(false),
            flow: FlowControl::default(),
            watch: Watch::default(),
        }
    }
}

/// The calls the shared plumbing makes on a protocol, of either kind.
pub(crate) trait TransportProtocol {
    fn connection_lost(&mut self, error: Option<io::Error>);
    fn pause_writing(&mut self);
    fn resume_writing(&mut self);
}

impl TransportProtocol for dyn Protocol {
    fn connection_lost(&mut self, error: Option<io::Error>) {
        Protocol::connection_lost(self, error);
    }

    fn pause_writing(&mut self) {
        Protocol::pause_writing(self);
    }

    fn resume_writing(&mut self) {
        Protocol::resume_writing(self);
    }
}

impl TransportProtocol for dyn DatagramProtocol {
    fn connection_lost(&mut self, error: Option<io::Error>) {
        DatagramProtocol::connection_lost(self, error);
    }

    fn pause_writing(&mut self) {
        DatagramProtocol::pause_writing(self);
    }

    fn resume_writing(&mut self) {
        DatagramProtocol::resume_writing(self);
    }
}

/// A transport over one fd: what each kind implements, and (provided) what
/// they all do alike. See the module's documentation.
pub(crate) trait FdTransport: Sized + 'static {
    type Selector: Selector<IoHandlers> + 'static;
    /// The protocol's trait object: `dyn Protocol` or `dyn DatagramProtocol`.
    type Protocol: ?Sized + TransportProtocol;

    fn state(&self) -> &TransportState<Self, Self::Selector, Self::Protocol>;

    /// The loop should watch the fd for reading now.
    fn wants_read(&self) -> bool;

    /// The reader's callback: the fd is readable. Syncs before it returns.
    fn on_readable(&self, event_loop: &Loop<Self::Selector>);

    /// The writer's callback: the fd is writable. Syncs before it returns.
    fn on_writable(&self, event_loop: &Loop<Self::Selector>);

    /// The bytes waiting in the write buffer (for flow control and
    /// `get_write_buffer_size`).
    fn buffered(&self) -> usize;

    /// Nothing waits in the write buffer.
    #[inline]
    fn buffer_is_empty(&self) -> bool {
        self.buffered() == 0
    }

    /// The loop should watch the fd for writing now: while something waits
    /// in the buffer (a read-only pipe never buffers), until the end.
    #[inline]
    fn wants_write(&self) -> bool {
        !self.state().conn_lost.get() && !self.buffer_is_empty()
    }

    /// Drops what waits in the write buffer.
    fn clear_buffer(&self);

    /// Closes the fd (it is unwatched already).
    fn close_fd(&self);

    /// `connection_lost` must wait (is queued again) rather than run now:
    /// for a transport that delivers `connection_made` even after an early
    /// close, while `connection_made` itself waits for a busy protocol.
    fn lost_waits_for_made(&self) -> bool {
        false
    }

    /// Registers a transport just made with `event_loop`: released (its fd
    /// closed, its protocol dropped) if the loop closes with it open, and
    /// `begin` queued as its first callback.
    #[track_caller]
    fn launch(
        self: &Rc<Self>,
        event_loop: &Loop<Self::Selector>,
        begin: impl FnOnce(&Self, &Loop<Self::Selector>) + 'static,
    ) {
        let weak: Weak<dyn Release> = Rc::downgrade(self) as Weak<dyn Release>;
        event_loop.keep_resource(weak);
        self.state().link.call_soon_with(begin);
    }

    /// The end of the first callback, once `connection_made` was delivered
    /// (`made`) or skipped: watching starts, and `waiter` (of
    /// `create_connection` and the like) is completed.
    fn finish_begin(&self, event_loop: &Loop<Self::Selector>, made: bool, waiter: Option<crate::Future<()>>) {
        self.state().made.set(made);
        self.state().started.set(true);
        self.sync(event_loop);
        if let Some(waiter) = waiter {
            let _ = waiter.set_result(());
        }
    }

    /// Makes the loop's reader and writer for the fd match what the
    /// transport needs now.
    #[inline]
    fn sync(&self, event_loop: &Loop<Self::Selector>) {
        let watch = &self.state().watch;
        // Usually nothing changed: two looks at our flags, no call.
        if self.wants_read() != watch.reader_on.get() || self.wants_write() != watch.writer_on.get() {
            self.update_registrations(event_loop);
        }
    }

    /// The work of [`sync`](Self::sync) when something changed. Failing to
    /// add a reader or a writer (a closed loop, a refused fd) is fatal: the
    /// transport closes with that error.
    #[inline(never)]
    fn update_registrations(&self, event_loop: &Loop<Self::Selector>) {
        let state = self.state();
        let want_read = self.wants_read();
        if want_read != state.watch.reader_on.get() {
            if want_read {
                let Some(me) = state.link.rc() else { return };
                match event_loop.add_reader(state.fd, move |event_loop| me.on_readable(event_loop)) {
                    Ok(()) => state.watch.reader_on.set(true),
                    Err(err) => {
                        // The second `sync` updates the writer too.
                        self.fail_sync(event_loop, err);
                        return;
                    }
                }
            } else {
                let _ = event_loop.remove_reader(state.fd);
                state.watch.reader_on.set(false);
            }
        }
        let want_write = self.wants_write();
        if want_write != state.watch.writer_on.get() {
            if want_write {
                let Some(me) = state.link.rc() else { return };
                match event_loop.add_writer(state.fd, move |event_loop| me.on_writable(event_loop)) {
                    Ok(()) => state.watch.writer_on.set(true),
                    Err(err) => self.fail_sync(event_loop, err),
                }
            } else {
                let _ = event_loop.remove_writer(state.fd);
                state.watch.writer_on.set(false);
            }
        }
    }

    /// A fatal error inside `sync`: close, and sync again (which removes).
    fn fail_sync(&self, event_loop: &Loop<Self::Selector>, err: io::Error) {
        self.force_close(Some(err));
        self.sync(event_loop);
    }

    /// Queues a [`sync`](Self::sync), unless one is queued or we are inside
    /// one of our callbacks (which syncs before it returns). Every change of
    /// what `wants_read` and `wants_write` depend on, made outside those
    /// callbacks, calls this.
    fn request_sync(&self) {
        let watch = &self.state().watch;
        if watch.dispatching.get() {
            watch.changed.set(true);
            return;
        }
        if watch.sync_queued.replace(true) {
            return;
        }
        self.state().link.call_soon_with(|me, event_loop| {
            me.state().watch.sync_queued.set(false);
            me.sync(event_loop);
        });
    }

    /// Calls `f` on the protocol; `None` if there is none any more, or it is
    /// busy (borrowed: a call is in progress). A panic closes the transport
    /// and goes on to the loop's exception handler.
    fn with_protocol<R>(&self, f: impl FnOnce(&mut Self::Protocol) -> R) -> Option<R> {
        let _dispatching = self.state().watch.dispatch();
        self.call_protocol(f)
    }

    /// [`with_protocol`](Self::with_protocol) for a caller that is
    /// dispatching already (and syncs before it returns). A drop guard
    /// rather than a `catch_unwind` closes on a panic: this runs for every
    /// read, and the guard costs nothing until a panic.
    #[inline]
    fn call_protocol<R>(&self, f: impl FnOnce(&mut Self::Protocol) -> R) -> Option<R> {
        debug_assert!(self.state().watch.dispatching.get());
        let protocol = self.state().protocol.borrow().clone()?;
        let mut guard = protocol.try_borrow_mut().ok()?;
        let close_on_panic = CloseOnPanic(self);
        let outcome = f(&mut *guard);
        std::mem::forget(close_on_panic);
        Some(outcome)
    }

    /// After the write buffer grew: `pause_writing` if it crossed the high mark.
    fn maybe_pause_protocol(&self) {
        if self.state().flow.pause_due(self.buffered()) {
            self.notify_flow(true);
        }
    }

    /// After the write buffer shrank: `resume_writing` if it is down to the low mark.
    fn maybe_resume_protocol(&self) {
        if self.state().flow.resume_due(self.buffered()) {
            self.notify_flow(false);
        }
    }

    /// The writer's callback of a byte-stream transport (socket, pipe):
    /// one `write` of what `buffer` holds, dropping what the fd took (an
    /// error closes the transport), then [`wrote`](Self::wrote). `true` if
    /// the buffer is empty now.
    fn write_buffered(
        &self,
        buffer: &RefCell<ByteBuffer>,
        write: impl FnOnce(RawFd, &[u8]) -> io::Result<Option<usize>>,
    ) -> bool {
        let written = {
            let buffer = buffer.borrow();
            if buffer.is_empty() {
                Ok(None)
            } else {
                write(self.state().fd, buffer.bytes())
            }
        };
        match written {
            Ok(Some(n)) => buffer.borrow_mut().consume(n),
            Ok(None) => {}
            Err(err) => self.force_close(Some(err)),
        }
        self.wrote()
    }

    /// After the writer's callback sent some of the buffer: `resume_writing`
    /// if it is down to the low mark, and the end of a `close` once it is
    /// empty. `true` if it is empty.
    fn wrote(&self) -> bool {
        self.maybe_resume_protocol();
        let drained = self.buffer_is_empty();
        if drained && self.state().closing.get() {
            self.schedule_connection_lost(None);
        }
        drained
    }

    /// Queues `pause_writing` or `resume_writing`: in order, after whatever
    /// the protocol is doing now.
    fn notify_flow(&self, pause: bool) {
        self.state().link.call_soon_with(move |me, event_loop| me.deliver_flow(event_loop, pause));
    }

    fn deliver_flow(&self, event_loop: &Loop<Self::Selector>, pause: bool) {
        if self.state().protocol.borrow().is_none() {
            return;
        }
        let delivered = self.with_protocol(|protocol| {
            if pause {
                protocol.pause_writing();
            } else {
                protocol.resume_writing();
            }
        });
        if delivered.is_none() {
            self.notify_flow(pause); // busy: after what is queued now
            return;
        }
        // What the protocol did meanwhile (e.g. `close`) waited for this.
        self.sync(event_loop);
    }

    /// Closes at once, dropping the buffer (asyncio's `_force_close`).
    fn force_close(&self, err: Option<io::Error>) {
        if self.state().conn_lost.get() {
            return;
        }
        self.state().closing.set(true);
        self.clear_buffer();
        self.schedule_connection_lost(err);
    }

    /// Queues the last callback, once.
    fn schedule_connection_lost(&self, err: Option<io::Error>) {
        if self.state().conn_lost.replace(true) {
            return;
        }
        self.request_sync();
        self.state().link.call_soon_with(move |me, event_loop| me.call_connection_lost(event_loop, err));
    }

    /// The last callback: unwatch, tell the protocol, close the fd.
    fn call_connection_lost(&self, event_loop: &Loop<Self::Selector>, err: Option<io::Error>) {
        let state = self.state();
        if self.lost_waits_for_made() {
            state.link.call_soon_with(move |me, event_loop| me.call_connection_lost(event_loop, err));
            return;
        }
        self.sync(event_loop);
        // From here the fd closes and the protocol is let go however
        // `connection_lost` ends, a panic included: otherwise the protocol
        // (which may hold its transport) and the transport keep each other,
        // and the fd, alive for good.
        let mut teardown = Teardown { transport: self, armed: true };
        let mut err = Some(err);
        let delivered = state.protocol.borrow().is_none()
            || !state.made.get()
            || self.with_protocol(|protocol| protocol.connection_lost(err.take().flatten())).is_some();
        if !delivered {
            // The protocol is borrowed: try again next time.
            teardown.armed = false;
            let err = err.flatten();
            state.link.call_soon_with(move |me, event_loop| me.call_connection_lost(event_loop, err));
        }
    }

    /// Lets go of the protocol, the fd and the buffer.
    fn tear_down(&self) {
        let protocol = self.state().protocol.borrow_mut().take();
        drop(protocol);
        self.close_fd();
        self.clear_buffer();
    }
}

/// Dropped only while a protocol call unwinds (it is forgotten otherwise):
/// closes the transport, handing `connection_lost` the panic as an error.
struct CloseOnPanic<'a, T: FdTransport>(&'a T);

impl<T: FdTransport> Drop for CloseOnPanic<'_, T> {
    fn drop(&mut self) {
        let (message, location) = unwinding_panic().unwrap_or_else(|| ("a panic".to_owned(), None));
        let at = location.map_or_else(String::new, |at| format!(" at {at}"));
        self.0.force_close(Some(io::Error::other(format!("protocol panicked{at}: {message}"))));
    }
}

/// Tears a transport down when it goes out of scope, unless disarmed: the
/// end of [`FdTransport::call_connection_lost`], a panic included.
struct Teardown<'a, T: FdTransport> {
    transport: &'a T,
    armed: bool,
}

impl<T: FdTransport> Drop for Teardown<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            self.transport.tear_down();
        }
    }
}

impl<T: FdTransport> Release for T {
    /// The loop closed with the transport open: close the fd and drop the
    /// protocol (which may hold this transport: a cycle) without telling
    /// it, as no callback can run any more.
    fn release(&self) {
        self.state().closing.set(true);
        self.state().conn_lost.set(true);
        self.tear_down();
    }
}

/// What the handles of every kind of transport do alike:
/// [`Transport`](crate::Transport) and
/// [`DatagramTransport`](crate::DatagramTransport) call these through
/// their own traits, of which this is a part.
pub(crate) trait TransportControl {
    fn close(&self);
    fn abort(&self);
    fn is_closing(&self) -> bool;
    fn get_write_buffer_size(&self) -> usize;
    fn get_write_buffer_limits(&self) -> (usize, usize);
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> io::Result<()>;
}

impl<T: FdTransport> TransportControl for T {
    /// Stops reading now; `connection_lost` once the buffer is written.
    fn close(&self) {
        if self.state().closing.replace(true) {
            return;
        }
        self.request_sync();
        if self.buffer_is_empty() {
            self.schedule_connection_lost(None);
        }
    }

    fn abort(&self) {
        self.force_close(None);
    }

    fn is_closing(&self) -> bool {
        self.state().closing.get() || self.state().conn_lost.get()
    }

    fn get_write_buffer_size(&self) -> usize {
        self.buffered()
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.state().flow.limits()
    }

    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> io::Result<()> {
        self.state().flow.set_limits(high, low)?;
        self.maybe_pause_protocol();
        Ok(())
    }
}

/// Waits for `waiter`, which the transport completes once its protocol's
/// `connection_made` ran, and hands `transport` back. If this future is
/// dropped first (its caller gave up), the transport is aborted: nobody
/// else would ever close it.
pub(crate) async fn when_made<T: ?Sized + TransportControl>(
    transport: Rc<T>,
    waiter: crate::Future<()>,
) -> io::Result<Rc<T>> {
    let mut guard = AbortOnDrop(Some(transport));
    waiter.await?;
    guard.0.take().ok_or_else(not_connected)
}

/// Aborts the transport it holds when dropped (see [`when_made`]).
struct AbortOnDrop<T: ?Sized + TransportControl>(Option<Rc<T>>);

impl<T: ?Sized + TransportControl> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(transport) = self.0.take() {
            transport.abort();
        }
    }
}

/// Fails the waiter of a transport's maker if `connection_made` panics,
/// so that the maker does not wait for ever.
pub(crate) struct FailOnPanic(pub(crate) Option<crate::Future<()>>);

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if let (true, Some(waiter)) = (std::thread::panicking(), &self.0) {
            let (message, _) = unwinding_panic().unwrap_or_else(|| ("protocol panicked".to_owned(), None));
            let _ = waiter.set_exception(io::Error::other(message));
        }
    }
}
