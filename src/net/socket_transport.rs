//! The socket transport and server of the selector loop (asyncio's
//! `_SelectorSocketTransport` and `Server`), with `create_server`,
//! `create_connection` and their Unix-domain twins.
//!
//! A transport watches its socket with a reader while it reads and a writer
//! while its buffer holds data. It has no `&L` when the protocol calls it,
//! so changes it cannot make on the spot (watching the socket, telling the
//! protocol) are queued as loop callbacks through the loop's `LoopLocal`:
//! they happen on the next iteration, in order. Inside its own callbacks
//! (reading, writing, starting) it brings its registrations up to date
//! before returning, so queueing is only needed for calls from elsewhere.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::rc::{Rc, Weak};

use crate::event_loop::panics::unwinding_panic;
use crate::event_loop::ready::ReadyQueue;
use crate::event_loop::selector_events::Release;
use crate::net::byte_buffer::ByteBuffer;
use crate::net::sys::{recv, send};
use crate::net::transports::TransportImpl;
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers, Protocol, SocketAddress, Transport};

/// The loop a transport belongs to.
type Loop<S> = BaseSelectorEventLoop<S>;

/// The most one read takes (asyncio's `max_size`).
const READ_SIZE: usize = 256 * 1024;
/// The default high-water mark of the write buffer (the low one is a quarter).
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// A connected stream socket.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddress> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(SocketAddress::Inet),
            Stream::Unix(s) => s.peer_addr().map(SocketAddress::Unix),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddress> {
        match self {
            Stream::Tcp(s) => s.local_addr().map(SocketAddress::Inet),
            Stream::Unix(s) => s.local_addr().map(SocketAddress::Unix),
        }
    }
}

pub(crate) fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the transport is closed")
}

/// What one read did.
enum Read {
    Data,
    Eof { keep_open: bool },
    Nothing,
    Failed(io::Error),
}

/// Sets a flag for the duration of a scope, restoring it even on a panic.
struct FlagGuard<'a> {
    flag: &'a Cell<bool>,
    previous: bool,
}

impl<'a> FlagGuard<'a> {
    fn set(flag: &'a Cell<bool>) -> Self {
        FlagGuard { flag, previous: flag.replace(true) }
    }
}

impl Drop for FlagGuard<'_> {
    fn drop(&mut self) {
        self.flag.set(self.previous);
    }
}

pub(crate) type SharedProtocol = Rc<RefCell<dyn Protocol>>;

/// Dropped only while a protocol call unwinds (it is forgotten otherwise):
/// closes the transport, handing `connection_lost` the panic as an error.
struct CloseOnPanic<'a, S: Selector<IoHandlers> + 'static>(&'a SocketTransport<S>);

impl<S: Selector<IoHandlers> + 'static> Drop for CloseOnPanic<'_, S> {
    fn drop(&mut self) {
        let (message, location) = unwinding_panic().unwrap_or_else(|| ("a panic".to_owned(), None));
        let at = location.map_or_else(String::new, |at| format!(" at {at}"));
        self.0.force_close(Some(io::Error::other(format!("protocol panicked{at}: {message}"))));
    }
}

/// A transport over a connected socket.
pub(crate) struct SocketTransport<S: Selector<IoHandlers> + 'static> {
    me: Weak<Self>,
    /// Where callbacks go when the transport has no `&Loop`; weak, so that
    /// a transport kept by the user keeps nothing of a dropped loop alive.
    queue: Weak<ReadyQueue<Loop<S>>>,
    fd: RawFd,
    /// `None` once closed.
    sock: RefCell<Option<Stream>>,
    /// `None` once `connection_lost` was delivered.
    protocol: RefCell<Option<SharedProtocol>>,
    buffer: RefCell<ByteBuffer>,
    high_water: Cell<usize>,
    low_water: Cell<usize>,
    /// The first callback ran: reading may start.
    started: Cell<bool>,
    /// `connection_made` was delivered: `connection_lost` will be.
    made: Cell<bool>,
    /// `close`, `abort` or a fatal error happened.
    closing: Cell<bool>,
    /// `write_eof` was called; `eof_sent` once the socket was shut down.
    eof_requested: Cell<bool>,
    eof_sent: Cell<bool>,
    /// The peer's EOF was read.
    read_eof: Cell<bool>,
    reading_paused: Cell<bool>,
    /// `pause_writing` was decided (its delivery may still be queued).
    protocol_paused: Cell<bool>,
    /// `connection_lost` is queued or delivered.
    conn_lost: Cell<bool>,
    reader_on: Cell<bool>,
    writer_on: Cell<bool>,
    sync_queued: Cell<bool>,
    /// A [`request_sync`](Self::request_sync) came while dispatching: the
    /// callback's closing `sync` must look (see `on_readable`).
    changed: Cell<bool>,
    /// Inside one of our loop callbacks, which syncs before it returns.
    dispatching: Cell<bool>,
}

impl<S: Selector<IoHandlers> + 'static> SocketTransport<S> {
    /// A transport for `stream` and `protocol`. `connection_made` is called,
    /// reading starts and `waiter` (if any) is completed on the next iteration.
    pub(crate) fn start(
        event_loop: &Loop<S>,
        stream: Stream,
        protocol: SharedProtocol,
        waiter: Option<crate::Future<()>>,
    ) -> Rc<Self> {
        if let Stream::Tcp(tcp) = &stream {
            let _ = tcp.set_nodelay(true); // as asyncio: small writes go out at once
        }
        let transport = Rc::new_cyclic(|me| SocketTransport {
            me: me.clone(),
            queue: Rc::downgrade(event_loop.engine().ready()),
            fd: stream.fd(),
            sock: RefCell::new(Some(stream)),
            protocol: RefCell::new(Some(protocol)),
            buffer: RefCell::new(ByteBuffer::default()),
            high_water: Cell::new(DEFAULT_HIGH_WATER),
            low_water: Cell::new(DEFAULT_HIGH_WATER / 4),
            started: Cell::new(false),
            made: Cell::new(false),
            closing: Cell::new(false),
            eof_requested: Cell::new(false),
            eof_sent: Cell::new(false),
            read_eof: Cell::new(false),
            reading_paused: Cell::new(false),
            protocol_paused: Cell::new(false),
            conn_lost: Cell::new(false),
            reader_on: Cell::new(false),
            writer_on: Cell::new(false),
            sync_queued: Cell::new(false),
            changed: Cell::new(false),
            dispatching: Cell::new(false),
        });
        let weak: Weak<dyn Release> = Rc::downgrade(&transport) as Weak<dyn Release>;
        event_loop.keep_resource(weak);
        let me = Rc::clone(&transport);
        transport.call_soon(move |event_loop| me.begin(event_loop, waiter));
        transport
    }

    fn rc(&self) -> Option<Rc<Self>> {
        self.me.upgrade()
    }

    /// Queues `callback` on the loop, if it is still there (and open).
    #[track_caller]
    fn call_soon(&self, callback: impl FnOnce(&Loop<S>) + 'static) {
        if let Some(queue) = self.queue.upgrade() {
            queue.call_soon(callback);
        }
    }

    fn handle(&self) -> Option<Transport> {
        let inner: Rc<dyn TransportImpl> = self.rc()?;
        Some(Transport { inner })
    }

    /// Calls `f` on the protocol; `None` if there is none any more, or it is
    /// busy (borrowed: a call is in progress). A panic closes the transport
    /// and goes on to the loop's exception handler. (A drop guard rather
    /// than a `catch_unwind`: this runs for every read, and the guard costs
    /// nothing until a panic.)
    fn with_protocol<R>(&self, f: impl FnOnce(&mut dyn Protocol) -> R) -> Option<R> {
        let _dispatching = FlagGuard::set(&self.dispatching);
        self.call_protocol(f)
    }

    /// [`with_protocol`](Self::with_protocol) for a caller that has set
    /// `dispatching` already (and syncs before it returns).
    #[inline]
    fn call_protocol<R>(&self, f: impl FnOnce(&mut dyn Protocol) -> R) -> Option<R> {
        debug_assert!(self.dispatching.get());
        let protocol = self.protocol.borrow().clone()?;
        let mut guard = protocol.try_borrow_mut().ok()?;
        let close_on_panic = CloseOnPanic(self);
        let outcome = f(&mut *guard);
        std::mem::forget(close_on_panic);
        Some(outcome)
    }

    /// The first callback: `connection_made`, then reading starts.
    fn begin(&self, event_loop: &Loop<S>, waiter: Option<crate::Future<()>>) {
        let Some(transport) = self.handle() else { return };
        let made = if self.conn_lost.get() {
            Some(false) // aborted before it started: the protocol hears nothing
        } else {
            // A panic in `connection_made` closes the transport (see
            // `with_protocol`); `create_connection` must hear of it, or it
            // would wait for the waiter forever.
            let called = panic::catch_unwind(AssertUnwindSafe(|| {
                self.with_protocol(|protocol| {
                    protocol.connection_made(transport);
                    true
                })
            }));
            match called {
                Ok(made) => made,
                Err(payload) => {
                    if let Some(waiter) = waiter {
                        let message = payload
                            .downcast_ref::<&str>()
                            .copied()
                            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                            .unwrap_or("protocol panicked");
                        let _ = waiter.set_exception(io::Error::other(message.to_owned()));
                    }
                    panic::resume_unwind(payload);
                }
            }
        };
        if made.is_none() && self.protocol.borrow().is_some() {
            // The protocol is borrowed (by its owner): try again next time.
            if let Some(me) = self.rc() {
                self.call_soon(move |event_loop| me.begin(event_loop, waiter));
            }
            return;
        }
        self.made.set(made == Some(true));
        self.started.set(true);
        self.sync(event_loop);
        if let Some(waiter) = waiter {
            let _ = waiter.set_result(());
        }
    }

    /// Makes the loop's reader and writer for our fd match what we need now.
    #[inline]
    fn sync(&self, event_loop: &Loop<S>) {
        // Usually nothing changed: two looks at our flags, no call.
        if self.wants_read() != self.reader_on.get() || self.wants_write() != self.writer_on.get() {
            self.update_registrations(event_loop);
        }
    }

    /// We should be watching for reading.
    #[inline]
    fn wants_read(&self) -> bool {
        !self.conn_lost.get()
            && self.started.get()
            && !self.closing.get()
            && !self.reading_paused.get()
            && !self.read_eof.get()
    }

    /// We should be watching for writing.
    #[inline]
    fn wants_write(&self) -> bool {
        !self.conn_lost.get() && !self.buffer.borrow().is_empty()
    }

    /// The work of [`sync`](Self::sync) when something changed.
    #[inline(never)]
    fn update_registrations(&self, event_loop: &Loop<S>) {
        let want_read = self.wants_read();
        if want_read != self.reader_on.get() {
            if want_read {
                let Some(me) = self.rc() else { return };
                match event_loop.add_reader(self.fd, move |event_loop| me.on_readable(event_loop)) {
                    Ok(()) => self.reader_on.set(true),
                    Err(err) => {
                        self.fail(event_loop, err);
                        return;
                    }
                }
            } else {
                let _ = event_loop.remove_reader(self.fd);
                self.reader_on.set(false);
            }
        }
        let want_write = self.wants_write();
        if want_write != self.writer_on.get() {
            if want_write {
                let Some(me) = self.rc() else { return };
                match event_loop.add_writer(self.fd, move |event_loop| me.on_writable(event_loop)) {
                    Ok(()) => self.writer_on.set(true),
                    Err(err) => self.fail(event_loop, err),
                }
            } else {
                let _ = event_loop.remove_writer(self.fd);
                self.writer_on.set(false);
            }
        }
    }

    /// A fatal error inside `sync`: close, and sync again (which removes).
    fn fail(&self, event_loop: &Loop<S>, err: io::Error) {
        self.force_close(Some(err));
        self.sync(event_loop);
    }

    /// Queues a [`sync`](Self::sync), unless one is queued or we are inside
    /// one of our callbacks (which syncs before it returns).
    fn request_sync(&self) {
        if self.dispatching.get() {
            self.changed.set(true);
            return;
        }
        if self.sync_queued.replace(true) {
            return;
        }
        let Some(me) = self.rc() else { return };
        self.call_soon(move |event_loop| {
            me.sync_queued.set(false);
            me.sync(event_loop);
        });
    }

    /// Reads once and hands the data to the protocol. The closing `sync` is
    /// skipped when data was read and nothing asked for one meanwhile: every
    /// change of what the registrations depend on (closing, pausing,
    /// buffering, the connection lost) goes through `request_sync`, which
    /// inside a callback sets `changed`; the EOF and error paths sync.
    fn on_readable(&self, event_loop: &Loop<S>) {
        let _dispatching = FlagGuard::set(&self.dispatching);
        self.changed.set(false);
        if !self.conn_lost.get() && !self.closing.get() && !self.reading_paused.get() {
            let fd = self.fd;
            let read = self.call_protocol(|protocol| {
                event_loop.with_read_buffer(READ_SIZE, |buf| match recv(fd, buf) {
                    Ok(Some(0)) => Read::Eof { keep_open: protocol.eof_received() },
                    Ok(Some(n)) => {
                        protocol.data_received(&buf[..n]);
                        Read::Data
                    }
                    Ok(None) => Read::Nothing,
                    Err(err) => Read::Failed(err),
                })
            });
            match read {
                Some(Read::Data) if !self.changed.get() => return,
                Some(Read::Eof { keep_open }) => {
                    self.read_eof.set(true);
                    if !keep_open {
                        self.close();
                    }
                }
                Some(Read::Failed(err)) => self.force_close(Some(err)),
                Some(Read::Data | Read::Nothing) | None => {}
            }
        }
        self.sync(event_loop);
    }

    fn on_writable(&self, event_loop: &Loop<S>) {
        let _dispatching = FlagGuard::set(&self.dispatching);
        if !self.conn_lost.get() {
            let sent = {
                let buffer = self.buffer.borrow();
                if buffer.is_empty() {
                    Ok(None)
                } else {
                    send(self.fd, buffer.bytes())
                }
            };
            match sent {
                Ok(Some(n)) => self.buffer.borrow_mut().consume(n),
                Ok(None) => {}
                Err(err) => self.force_close(Some(err)),
            }
            self.maybe_resume_protocol();
            if self.buffer.borrow().is_empty() {
                if self.closing.get() {
                    self.schedule_connection_lost(None);
                } else if self.eof_requested.get() && !self.eof_sent.get() {
                    if let Err(err) = self.shutdown_write() {
                        self.force_close(Some(err));
                    }
                }
            }
        }
        self.sync(event_loop);
    }

    /// `write` may send at once: writing is allowed and nothing is buffered.
    #[inline]
    fn sends_at_once(&self) -> bool {
        !self.eof_requested.get()
            && !self.closing.get()
            && !self.conn_lost.get()
            && self.buffer.borrow().is_empty()
    }

    /// [`Transport::write`] but for its fast path.
    #[cold]
    #[inline(never)]
    fn write_slow(&self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.eof_requested.get() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "write after write_eof"));
        }
        if self.closing.get() || self.conn_lost.get() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the transport is closing"));
        }
        if self.buffer.borrow().is_empty() {
            let sent = send(self.fd, data);
            return self.write_rest(data, sent);
        }
        self.buffer_rest(data);
        Ok(())
    }

    /// After a `send` of `data` with nothing buffered: buffers what the
    /// socket did not take, or closes on an error.
    #[cold]
    #[inline(never)]
    fn write_rest(&self, data: &[u8], sent: io::Result<Option<usize>>) -> io::Result<()> {
        let rest = match sent {
            Ok(Some(n)) => &data[n..],
            Ok(None) => data,
            Err(err) => {
                self.force_close(Some(err));
                return Ok(());
            }
        };
        if !rest.is_empty() {
            self.buffer_rest(rest);
        }
        Ok(())
    }

    /// Buffers `rest` for the writer, which is added if need be.
    fn buffer_rest(&self, rest: &[u8]) {
        self.buffer.borrow_mut().push(rest);
        self.request_sync();
        self.maybe_pause_protocol();
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.eof_sent.set(true);
        match &*self.sock.borrow() {
            Some(sock) => sock.shutdown_write(),
            None => Ok(()),
        }
    }

    fn maybe_pause_protocol(&self) {
        if !self.protocol_paused.get() && self.buffer.borrow().len() > self.high_water.get() {
            self.protocol_paused.set(true);
            self.notify_flow(true);
        }
    }

    fn maybe_resume_protocol(&self) {
        if self.protocol_paused.get() && self.buffer.borrow().len() <= self.low_water.get() {
            self.protocol_paused.set(false);
            self.notify_flow(false);
        }
    }

    /// Queues `pause_writing` or `resume_writing`: in order, after whatever
    /// the protocol is doing now.
    fn notify_flow(&self, pause: bool) {
        let Some(me) = self.rc() else { return };
        self.call_soon(move |event_loop| me.deliver_flow(event_loop, pause));
    }

    fn deliver_flow(&self, event_loop: &Loop<S>, pause: bool) {
        if self.protocol.borrow().is_none() {
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
        self.sync(event_loop);
    }

    /// Closes at once, dropping the buffer (asyncio's `_force_close`).
    fn force_close(&self, err: Option<io::Error>) {
        if self.conn_lost.get() {
            return;
        }
        self.closing.set(true);
        self.buffer.borrow_mut().clear();
        self.schedule_connection_lost(err);
    }

    fn schedule_connection_lost(&self, err: Option<io::Error>) {
        if self.conn_lost.replace(true) {
            return;
        }
        self.request_sync();
        let Some(me) = self.rc() else { return };
        self.call_soon(move |event_loop| me.call_connection_lost(event_loop, err));
    }

    /// The last callback: unwatch, tell the protocol, close the socket.
    fn call_connection_lost(&self, event_loop: &Loop<S>, err: Option<io::Error>) {
        self.sync(event_loop);
        // From here the socket closes and the protocol is let go however
        // `connection_lost` ends, a panic included: otherwise the protocol
        // (which may hold its `Transport`) and the transport keep each other,
        // and the socket, alive for good.
        let mut teardown = Teardown { transport: self, armed: true };
        let mut err = Some(err);
        let delivered = self.protocol.borrow().is_none()
            || !self.made.get()
            || self.with_protocol(|protocol| protocol.connection_lost(err.take().flatten())).is_some();
        if !delivered {
            // The protocol is borrowed: try again next time.
            teardown.armed = false;
            let Some(me) = self.rc() else { return };
            let err = err.flatten();
            self.call_soon(move |event_loop| me.call_connection_lost(event_loop, err));
        }
    }
}

/// Closes a transport's socket and drops its protocol when it goes out of
/// scope, unless disarmed: the end of [`SocketTransport::call_connection_lost`].
struct Teardown<'a, S: Selector<IoHandlers> + 'static> {
    transport: &'a SocketTransport<S>,
    armed: bool,
}

impl<S: Selector<IoHandlers> + 'static> Drop for Teardown<'_, S> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let protocol = self.transport.protocol.borrow_mut().take();
        drop(protocol);
        let sock = self.transport.sock.borrow_mut().take();
        drop(sock);
        self.transport.buffer.borrow_mut().clear();
    }
}

impl<S: Selector<IoHandlers> + 'static> Release for SocketTransport<S> {
    /// The loop closed with the connection open: close the socket and drop
    /// the protocol (which may hold this transport: a cycle) without telling
    /// it, as no callback can run any more.
    fn release(&self) {
        self.closing.set(true);
        self.conn_lost.set(true);
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
        let sock = self.sock.borrow_mut().take();
        drop(sock);
        self.buffer.borrow_mut().clear();
    }
}

impl<S: Selector<IoHandlers> + 'static> TransportImpl for SocketTransport<S> {
    /// The usual case inline: open, nothing buffered, and the socket takes
    /// all of `data` at once. Everything else is out of line, in
    /// [`write_rest`](SocketTransport::write_rest) (a short or failed send)
    /// and [`write_slow`](SocketTransport::write_slow) (the checks that
    /// refuse, an empty write, data behind buffered data).
    #[inline]
    fn write(&self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() || !self.sends_at_once() {
            return self.write_slow(data);
        }
        let sent = send(self.fd, data);
        if matches!(sent, Ok(Some(n)) if n == data.len()) {
            return Ok(());
        }
        self.write_rest(data, sent)
    }

    fn write_eof(&self) -> io::Result<()> {
        if self.closing.get() || self.conn_lost.get() || self.eof_requested.replace(true) {
            return Ok(());
        }
        if self.buffer.borrow().is_empty() {
            self.shutdown_write()?;
        }
        Ok(())
    }

    fn close(&self) {
        if self.closing.replace(true) {
            return;
        }
        self.request_sync();
        if self.buffer.borrow().is_empty() {
            self.schedule_connection_lost(None);
        }
    }

    fn abort(&self) {
        self.force_close(None);
    }

    fn is_closing(&self) -> bool {
        self.closing.get() || self.conn_lost.get()
    }

    fn get_write_buffer_size(&self) -> usize {
        self.buffer.borrow().len()
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        (self.low_water.get(), self.high_water.get())
    }

    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> io::Result<()> {
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
        self.maybe_pause_protocol();
        Ok(())
    }

    fn pause_reading(&self) {
        if self.closing.get() || self.reading_paused.replace(true) {
            return;
        }
        self.request_sync();
    }

    fn resume_reading(&self) {
        if !self.reading_paused.replace(false) {
            return;
        }
        self.request_sync();
    }

    fn is_reading(&self) -> bool {
        !self.reading_paused.get() && !self.is_closing()
    }

    fn peer_addr(&self) -> io::Result<SocketAddress> {
        self.sock.borrow().as_ref().ok_or_else(not_connected)?.peer_addr()
    }

    fn local_addr(&self) -> io::Result<SocketAddress> {
        self.sock.borrow().as_ref().ok_or_else(not_connected)?.local_addr()
    }
}

/// Closes a transport whose `create_connection` was dropped before it returned it.
struct CloseOnDrop(Option<Rc<dyn TransportImpl>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(transport) = self.0.take() {
            transport.abort();
        }
    }
}

/// Connections on the selector loop (asyncio's `create_connection` and
/// `create_unix_connection`); the server side is in `server.rs`.
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Connects to `addr`, makes a protocol with `factory` and a
    /// [`Transport`] for it; resolves once the protocol's `connection_made`
    /// ran. The protocol comes back shared, as the transport holds it too.
    ///
    /// `addr` is a `SocketAddr` or anything else [`ToAddrs`](crate::ToAddrs):
    /// `"localhost:8080"` is looked up with [`getaddrinfo`](Self::getaddrinfo)
    /// (on a worker thread) and each address tried in turn, in the
    /// resolver's order, until one connects (asyncio without Happy Eyeballs).
    ///
    /// # Errors
    ///
    /// Those of [`sock_connect`](Self::sock_connect), e.g.
    /// [`ConnectionRefused`](io::ErrorKind::ConnectionRefused), and of
    /// [`getaddrinfo`](Self::getaddrinfo) ([`NotFound`](io::ErrorKind::NotFound)
    /// naming the host). When several addresses were tried, the error lists
    /// each one's failure, with their kind if they share one.
    pub async fn create_connection<P: Protocol>(
        &self,
        addr: impl crate::ToAddrs,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(Transport, Rc<RefCell<P>>)> {
        let stream = self.connect_any(&addr).await?;
        self.connected_transport(Stream::Tcp(stream), factory).await
    }

    /// [`create_connection`](Self::create_connection) to a Unix-domain listener at `path`.
    ///
    /// # Errors
    ///
    /// Those of [`sock_connect_unix`](Self::sock_connect_unix).
    pub async fn create_unix_connection<P: Protocol>(
        &self,
        path: impl AsRef<Path>,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(Transport, Rc<RefCell<P>>)> {
        let stream = self.sock_connect_unix(path).await?;
        self.connected_transport(Stream::Unix(stream), factory).await
    }

    async fn connected_transport<P: Protocol>(
        &self,
        stream: Stream,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(Transport, Rc<RefCell<P>>)> {
        let protocol = Rc::new(RefCell::new(factory()));
        let waiter = self.create_future::<()>();
        let shared: SharedProtocol = protocol.clone();
        let transport: Rc<dyn TransportImpl> =
            SocketTransport::start(self, stream, shared, Some(waiter.clone()));
        let mut guard = CloseOnDrop(Some(transport));
        waiter.await?;
        let inner = guard.0.take().ok_or_else(not_connected)?;
        Ok((Transport { inner }, protocol))
    }
}

impl<S: Selector<IoHandlers> + 'static> fmt::Debug for SocketTransport<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketTransport").field("fd", &self.fd).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::rc::Rc;
    use std::time::Duration;

    use crate::{AbstractEventLoop, ExceptionContext, Protocol, SelectorEventLoop, Transport};

    /// Panics on data; records what `connection_lost` was told.
    struct Bomb {
        lost: Rc<RefCell<Vec<String>>>,
        done: crate::Future<()>,
    }

    impl Protocol for Bomb {
        fn connection_made(&mut self, _transport: Transport) {}

        fn data_received(&mut self, _data: &[u8]) {
            panic!("boom {}", 7);
        }

        fn connection_lost(&mut self, error: Option<std::io::Error>) {
            self.lost.borrow_mut().push(error.map_or_else(|| "none".to_owned(), |err| err.to_string()));
            let _ = self.done.set_result(());
        }
    }

    #[test]
    fn a_panicking_protocol_closes_its_transport_and_is_reported() {
        let lp = SelectorEventLoop::new().unwrap();
        let contexts: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
        let seen = Rc::clone(&contexts);
        lp.set_exception_handler(Some(Box::new(move |_, ctx| seen.borrow_mut().push(ctx.clone()))));
        let lost: Rc<RefCell<Vec<String>>> = Rc::default();
        let done = lp.create_future::<()>();
        let (l, d) = (Rc::clone(&lost), done.clone());
        let server = lp
            .create_server(([127, 0, 0, 1], 0), move || Bomb { lost: Rc::clone(&l), done: d.clone() })
            .unwrap();
        let addr = server.local_addr().unwrap().as_inet().unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        client.write_all(b"hello").unwrap();
        lp.run_until_complete(done).unwrap().unwrap();
        let contexts = contexts.borrow();
        assert_eq!(contexts.len(), 1, "{contexts:?}");
        assert_eq!(contexts[0].panic.as_deref(), Some("boom 7"));
        assert!(contexts[0].message.contains("socket_transport.rs"), "{}", contexts[0].message);
        let lost = lost.borrow();
        assert_eq!(lost.len(), 1);
        assert!(lost[0].starts_with("protocol panicked at src/net/socket_transport.rs:"), "{}", lost[0]);
        assert!(lost[0].ends_with(": boom 7"), "{}", lost[0]);
        // The transport closed the socket.
        assert_eq!(client.read(&mut [0; 16]).unwrap(), 0);
        server.close();
        lp.close().unwrap();
    }
}
