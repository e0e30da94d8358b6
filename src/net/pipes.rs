//! Pipe transports (asyncio's `_UnixReadPipeTransport` and
//! `_UnixWritePipeTransport` from `unix_events.py`, and the loop's
//! `connect_read_pipe` / `connect_write_pipe`): any pipe, socket or
//! character device fd, read from or written to by the loop and handed to
//! a [`Protocol`] through a [`Transport`].
//!
//! A pipe has one direction, so each transport does half of what a socket
//! transport does. The read side watches its fd while reading is not
//! paused; end of file is `eof_received`, then the transport closes. The
//! write side buffers what the pipe does not take, watches for
//! writability while the buffer holds data, and — the trick asyncio uses —
//! also watches a pipe's write end for *reading*: it never has data, but
//! the kernel reports an error condition there when the reader closes, so
//! the transport learns at once that nobody reads any more (select, poll
//! and epoll all report it as readable).
//!
//! Writing to a pipe whose reader is gone raises `SIGPIPE`, which Rust
//! programs ignore (the runtime sets it so before `main`), so the write
//! fails with `EPIPE` instead: the transport closes with that error.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

use crate::event_loop::panics::unwinding_panic;
use crate::event_loop::ready::ReadyQueue;
use crate::event_loop::selector_events::Release;
use crate::net::byte_buffer::ByteBuffer;
use crate::net::fd_transport::TransportControl;
use crate::net::socket_transport::SharedProtocol;
use crate::net::transports::TransportImpl;
use crate::selectors::mechanism::{read_nonblocking, set_nonblocking, write_nonblocking};
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers, Protocol, SocketAddress, Transport};

type Loop<S> = BaseSelectorEventLoop<S>;

/// The most one read takes (asyncio's `max_size`).
const READ_SIZE: usize = 256 * 1024;
/// The default high-water mark of the write buffer (the low one is a quarter).
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// Which way a pipe transport moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

/// Checks that `fd` is something a pipe transport can drive (asyncio's
/// "Pipe transport is for pipes/sockets only"), makes it non-blocking, and
/// says whether its reader's closing can be seen (a FIFO or a socket).
fn prepare(fd: OwnedFd) -> io::Result<(OwnedFd, bool)> {
    let file = File::from(fd);
    let kind = file.metadata()?.file_type();
    let fd = OwnedFd::from(file);
    if !(kind.is_fifo() || kind.is_socket() || kind.is_char_device()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {} is not a pipe, a socket or a character device", fd.as_raw_fd()),
        ));
    }
    set_nonblocking(fd.as_raw_fd())?;
    Ok((fd, kind.is_fifo() || kind.is_socket()))
}

/// A pipe transport, either direction.
pub(crate) struct PipeTransport<S: Selector<IoHandlers> + 'static> {
    me: Weak<Self>,
    queue: Weak<ReadyQueue<Loop<S>>>,
    direction: Direction,
    fd: RawFd,
    /// `None` once closed.
    file: RefCell<Option<OwnedFd>>,
    /// A write end whose reader's closing the selector reports (FIFOs, sockets).
    watch_hangup: bool,
    protocol: RefCell<Option<SharedProtocol>>,
    buffer: RefCell<ByteBuffer>,
    high_water: Cell<usize>,
    low_water: Cell<usize>,
    started: Cell<bool>,
    made: Cell<bool>,
    closing: Cell<bool>,
    conn_lost: Cell<bool>,
    reading_paused: Cell<bool>,
    protocol_paused: Cell<bool>,
    reader_on: Cell<bool>,
    writer_on: Cell<bool>,
    sync_queued: Cell<bool>,
    dispatching: Cell<bool>,
}

/// Sets a flag for a scope, restoring it even on a panic.
struct Dispatching<'a>(&'a Cell<bool>, bool);

impl<'a> Dispatching<'a> {
    fn enter(flag: &'a Cell<bool>) -> Self {
        Dispatching(flag, flag.replace(true))
    }
}

impl Drop for Dispatching<'_> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// Dropped only while a protocol call unwinds (forgotten otherwise).
struct CloseOnPanic<'a, S: Selector<IoHandlers> + 'static>(&'a PipeTransport<S>);

impl<S: Selector<IoHandlers> + 'static> Drop for CloseOnPanic<'_, S> {
    fn drop(&mut self) {
        let (message, location) = unwinding_panic().unwrap_or_else(|| ("a panic".to_owned(), None));
        let at = location.map_or_else(String::new, |at| format!(" at {at}"));
        self.0.force_close(Some(io::Error::other(format!("protocol panicked{at}: {message}"))));
    }
}

impl<S: Selector<IoHandlers> + 'static> PipeTransport<S> {
    /// A transport over `fd` for `protocol`: `connection_made` is called
    /// and watching starts on the next iteration; `waiter` (if any) is
    /// completed then.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if `fd` is not a
    /// pipe, a socket or a character device; the error of `fstat` or `fcntl`.
    fn start(
        event_loop: &Loop<S>,
        direction: Direction,
        fd: OwnedFd,
        protocol: SharedProtocol,
        waiter: Option<crate::Future<()>>,
    ) -> io::Result<Rc<Self>> {
        let (fd, hangup_visible) = prepare(fd)?;
        let transport = Rc::new_cyclic(|me| PipeTransport {
            me: me.clone(),
            queue: Rc::downgrade(event_loop.engine().ready()),
            direction,
            fd: fd.as_raw_fd(),
            file: RefCell::new(Some(fd)),
            watch_hangup: direction == Direction::Write && hangup_visible,
            protocol: RefCell::new(Some(protocol)),
            buffer: RefCell::new(ByteBuffer::default()),
            high_water: Cell::new(DEFAULT_HIGH_WATER),
            low_water: Cell::new(DEFAULT_HIGH_WATER / 4),
            started: Cell::new(false),
            made: Cell::new(false),
            closing: Cell::new(false),
            conn_lost: Cell::new(false),
            reading_paused: Cell::new(false),
            protocol_paused: Cell::new(false),
            reader_on: Cell::new(false),
            writer_on: Cell::new(false),
            sync_queued: Cell::new(false),
            dispatching: Cell::new(false),
        });
        let weak: Weak<dyn Release> = Rc::downgrade(&transport) as Weak<dyn Release>;
        event_loop.keep_resource(weak);
        let me = Rc::clone(&transport);
        transport.call_soon(move |event_loop| me.begin(event_loop, waiter));
        Ok(transport)
    }

    #[track_caller]
    fn call_soon(&self, callback: impl FnOnce(&Loop<S>) + 'static) {
        if let Some(queue) = self.queue.upgrade() {
            queue.call_soon(callback);
        }
    }

    fn with_protocol<R>(&self, f: impl FnOnce(&mut dyn Protocol) -> R) -> Option<R> {
        let _dispatching = Dispatching::enter(&self.dispatching);
        let protocol = self.protocol.borrow().clone()?;
        let mut guard = protocol.try_borrow_mut().ok()?;
        let close_on_panic = CloseOnPanic(self);
        let outcome = f(&mut *guard);
        std::mem::forget(close_on_panic);
        Some(outcome)
    }

    /// The first callback: `connection_made`, even if the transport was
    /// closed meanwhile (its `connection_lost` is queued after this, as in
    /// asyncio, so the protocol hears both), then watching starts.
    fn begin(&self, event_loop: &Loop<S>, waiter: Option<crate::Future<()>>) {
        let Some(inner) = self.me.upgrade() else { return };
        let transport = Transport { inner };
        let fail_waiter = FailOnPanic(waiter.clone());
        let made = self.with_protocol(|protocol| protocol.connection_made(transport)).is_some();
        drop(fail_waiter);
        if !made {
            if self.protocol.borrow().is_some() {
                if let Some(me) = self.me.upgrade() {
                    self.call_soon(move |event_loop| me.begin(event_loop, waiter));
                }
            }
            return;
        }
        self.made.set(true);
        self.started.set(true);
        self.sync(event_loop);
        if let Some(waiter) = waiter {
            let _ = waiter.set_result(());
        }
    }

    fn wants_read(&self) -> bool {
        if !self.started.get() || self.conn_lost.get() {
            return false;
        }
        match self.direction {
            Direction::Read => !self.closing.get() && !self.reading_paused.get(),
            Direction::Write => self.watch_hangup,
        }
    }

    fn wants_write(&self) -> bool {
        self.direction == Direction::Write && !self.conn_lost.get() && !self.buffer.borrow().is_empty()
    }

    fn sync(&self, event_loop: &Loop<S>) {
        let want_read = self.wants_read();
        if want_read != self.reader_on.get() {
            if want_read {
                let Some(me) = self.me.upgrade() else { return };
                match event_loop.add_reader(self.fd, move |event_loop| me.on_readable(event_loop)) {
                    Ok(()) => self.reader_on.set(true),
                    Err(err) => {
                        self.force_close(Some(err));
                        return self.sync(event_loop);
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
                let Some(me) = self.me.upgrade() else { return };
                match event_loop.add_writer(self.fd, move |event_loop| me.on_writable(event_loop)) {
                    Ok(()) => self.writer_on.set(true),
                    Err(err) => {
                        self.force_close(Some(err));
                        self.sync(event_loop);
                    }
                }
            } else {
                let _ = event_loop.remove_writer(self.fd);
                self.writer_on.set(false);
            }
        }
    }

    fn request_sync(&self) {
        if self.dispatching.get() || self.sync_queued.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        self.call_soon(move |event_loop| {
            me.sync_queued.set(false);
            me.sync(event_loop);
        });
    }

    /// The read end has data (or an end); the write end's reader went away.
    fn on_readable(&self, event_loop: &Loop<S>) {
        let _dispatching = Dispatching::enter(&self.dispatching);
        match self.direction {
            Direction::Read => self.read_once(event_loop),
            Direction::Write => {
                // Only an error condition makes a write end "readable": the
                // reader closed. Lose what is buffered, as asyncio.
                let err = (!self.buffer.borrow().is_empty())
                    .then(|| io::Error::new(io::ErrorKind::BrokenPipe, "the pipe's reader closed"));
                self.force_close(err);
            }
        }
        self.sync(event_loop);
    }

    fn read_once(&self, event_loop: &Loop<S>) {
        if !self.wants_read() {
            return;
        }
        let fd = self.fd;
        // The protocol first: a busy one leaves the bytes in the pipe.
        let read = self.with_protocol(|protocol| {
            event_loop.with_read_buffer(READ_SIZE, |buf| match read_nonblocking(fd, buf) {
                Ok(Some(0)) => {
                    // As asyncio: a pipe cannot stay half-open for reading.
                    let _ = protocol.eof_received();
                    Ok(true)
                }
                Ok(Some(n)) => {
                    protocol.data_received(&buf[..n]);
                    Ok(false)
                }
                Ok(None) => Ok(false),
                Err(err) => Err(err),
            })
        });
        match read {
            Some(Ok(true)) => self.close_now(None),
            Some(Err(err)) => self.force_close(Some(err)),
            _ => {}
        }
    }

    fn on_writable(&self, event_loop: &Loop<S>) {
        let _dispatching = Dispatching::enter(&self.dispatching);
        if !self.conn_lost.get() {
            let written = {
                let buffer = self.buffer.borrow();
                if buffer.is_empty() {
                    Ok(None)
                } else {
                    write_nonblocking(self.fd, buffer.bytes())
                }
            };
            match written {
                Ok(Some(n)) => self.buffer.borrow_mut().consume(n),
                Ok(None) => {}
                Err(err) => self.force_close(Some(err)),
            }
            self.maybe_resume_protocol();
            if self.buffer.borrow().is_empty() && self.closing.get() {
                self.schedule_connection_lost(None);
            }
        }
        self.sync(event_loop);
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

    fn notify_flow(&self, pause: bool) {
        let Some(me) = self.me.upgrade() else { return };
        self.call_soon(move |_| {
            if me.protocol.borrow().is_none() {
                return;
            }
            let delivered = me.with_protocol(|protocol| {
                if pause {
                    protocol.pause_writing();
                } else {
                    protocol.resume_writing();
                }
            });
            if delivered.is_none() {
                me.notify_flow(pause);
            }
        });
    }

    /// Closes now, keeping nothing (the end of the read side).
    fn close_now(&self, err: Option<io::Error>) {
        self.closing.set(true);
        self.schedule_connection_lost(err);
    }

    /// Closes at once, dropping the buffer.
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
        let Some(me) = self.me.upgrade() else { return };
        self.call_soon(move |event_loop| me.call_connection_lost(event_loop, err));
    }

    fn call_connection_lost(&self, event_loop: &Loop<S>, err: Option<io::Error>) {
        if !self.started.get() && self.protocol.borrow().is_some() {
            // `connection_made` waits for a busy protocol: stay behind it.
            let Some(me) = self.me.upgrade() else { return };
            self.call_soon(move |event_loop| me.call_connection_lost(event_loop, err));
            return;
        }
        self.sync(event_loop);
        let mut teardown = Teardown { transport: self, armed: true };
        let mut err = Some(err);
        let delivered = self.protocol.borrow().is_none()
            || !self.made.get()
            || self.with_protocol(|protocol| protocol.connection_lost(err.take().flatten())).is_some();
        if !delivered {
            teardown.armed = false;
            let Some(me) = self.me.upgrade() else { return };
            let err = err.flatten();
            self.call_soon(move |event_loop| me.call_connection_lost(event_loop, err));
        }
    }

    fn tear_down(&self) {
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
        let file = self.file.borrow_mut().take();
        drop(file);
        self.buffer.borrow_mut().clear();
    }

    fn read_only(&self) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, format!("the pipe transport of fd {} only reads", self.fd))
    }
}

/// Fails `connect_*_pipe`'s waiter if `connection_made` panics.
struct FailOnPanic(Option<crate::Future<()>>);

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if let (true, Some(waiter)) = (std::thread::panicking(), &self.0) {
            let (message, _) = unwinding_panic().unwrap_or_else(|| ("protocol panicked".to_owned(), None));
            let _ = waiter.set_exception(io::Error::other(message));
        }
    }
}

struct Teardown<'a, S: Selector<IoHandlers> + 'static> {
    transport: &'a PipeTransport<S>,
    armed: bool,
}

impl<S: Selector<IoHandlers> + 'static> Drop for Teardown<'_, S> {
    fn drop(&mut self) {
        if self.armed {
            self.transport.tear_down();
        }
    }
}

impl<S: Selector<IoHandlers> + 'static> Release for PipeTransport<S> {
    fn release(&self) {
        self.closing.set(true);
        self.conn_lost.set(true);
        self.tear_down();
    }
}

impl<S: Selector<IoHandlers> + 'static> TransportControl for PipeTransport<S> {
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
}

impl<S: Selector<IoHandlers> + 'static> TransportImpl for PipeTransport<S> {
    fn write(&self, data: &[u8]) -> io::Result<()> {
        if self.direction == Direction::Read {
            return Err(self.read_only());
        }
        if self.closing.get() || self.conn_lost.get() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the pipe transport is closing"));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut rest = data;
        if self.buffer.borrow().is_empty() {
            match write_nonblocking(self.fd, data) {
                Ok(Some(n)) => rest = &data[n..],
                Ok(None) => {}
                Err(err) => {
                    self.force_close(Some(err));
                    return Ok(());
                }
            }
        }
        if !rest.is_empty() {
            self.buffer.borrow_mut().push(rest);
            self.request_sync();
            self.maybe_pause_protocol();
        }
        Ok(())
    }

    /// A pipe cannot half-close: the end of writing closes the transport
    /// once the buffer is written (asyncio's `write_eof` for pipes).
    fn write_eof(&self) -> io::Result<()> {
        if self.direction == Direction::Read {
            return Err(self.read_only());
        }
        self.close();
        Ok(())
    }

    fn pause_reading(&self) {
        if self.direction == Direction::Read && !self.closing.get() && !self.reading_paused.replace(true) {
            self.request_sync();
        }
    }

    fn resume_reading(&self) {
        if self.direction == Direction::Read && self.reading_paused.replace(false) {
            self.request_sync();
        }
    }

    fn is_reading(&self) -> bool {
        self.direction == Direction::Read && !self.reading_paused.get() && !self.is_closing()
    }

    fn peer_addr(&self) -> io::Result<SocketAddress> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a pipe has no address"))
    }

    fn local_addr(&self) -> io::Result<SocketAddress> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a pipe has no address"))
    }
}

impl<S: Selector<IoHandlers> + 'static> fmt::Debug for PipeTransport<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeTransport")
            .field("fd", &self.fd)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// Aborts a transport whose `connect_*_pipe` was dropped before it returned.
struct AbortOnDrop(Option<Rc<dyn TransportImpl>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(transport) = self.0.take() {
            transport.abort();
        }
    }
}

/// Pipes on the selector loop (asyncio's `connect_read_pipe` and
/// `connect_write_pipe`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Reads `pipe` on the loop (asyncio's `connect_read_pipe`): makes a
    /// protocol with `factory` and a read-only [`Transport`] for it, and
    /// resolves once `connection_made` ran. The transport owns the fd
    /// (a `ChildStdout`, a `File` opened on a FIFO, an `OwnedFd`, …), makes
    /// it non-blocking, and closes it at the end. The protocol gets
    /// `data_received` for each read, `eof_received` at end of file (its
    /// answer is ignored: the transport then closes), and `connection_lost`.
    /// `pause_reading` and `resume_reading` work; `write` and `write_eof`
    /// are [`Unsupported`](io::ErrorKind::Unsupported), and a pipe has no
    /// address.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if `pipe` is not a
    /// pipe, a socket or a character device (a regular file cannot be
    /// watched); the error of `fstat`/`fcntl`; a closed loop.
    pub async fn connect_read_pipe<P: Protocol>(
        &self,
        pipe: impl Into<OwnedFd>,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(Transport, Rc<RefCell<P>>)> {
        self.connect_pipe(Direction::Read, pipe.into(), factory).await
    }

    /// Writes to `pipe` from the loop (asyncio's `connect_write_pipe`):
    /// makes a protocol with `factory` and a write-only [`Transport`] for
    /// it, and resolves once `connection_made` ran. `write` never blocks
    /// (the rest is buffered, with the usual flow control); `write_eof` and
    /// `close` close the pipe once the buffer is written; if the reader
    /// closes its end, the transport closes at once (with a `BrokenPipe`
    /// error for `connection_lost` if data was still buffered).
    ///
    /// # Errors
    ///
    /// As [`connect_read_pipe`](Self::connect_read_pipe).
    pub async fn connect_write_pipe<P: Protocol>(
        &self,
        pipe: impl Into<OwnedFd>,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(Transport, Rc<RefCell<P>>)> {
        self.connect_pipe(Direction::Write, pipe.into(), factory).await
    }

    async fn connect_pipe<P: Protocol>(
        &self,
        direction: Direction,
        pipe: OwnedFd,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(Transport, Rc<RefCell<P>>)> {
        if self.is_closed() {
            return Err(crate::event_loop::threadsafe::closed_error());
        }
        let protocol = Rc::new(RefCell::new(factory()));
        let waiter = self.create_future::<()>();
        let shared: SharedProtocol = protocol.clone();
        let transport: Rc<dyn TransportImpl> =
            PipeTransport::start(self, direction, pipe, shared, Some(waiter.clone()))?;
        let mut guard = AbortOnDrop(Some(transport));
        waiter.await?;
        let inner = guard.0.take().ok_or_else(crate::net::fd_transport::not_connected)?;
        Ok((Transport { inner }, protocol))
    }

    /// A read pipe transport started now, without waiting for
    /// `connection_made` (a child process's stdout and stderr).
    pub(crate) fn read_pipe_transport(
        &self,
        pipe: OwnedFd,
        protocol: SharedProtocol,
    ) -> io::Result<Transport> {
        let inner: Rc<dyn TransportImpl> = PipeTransport::start(self, Direction::Read, pipe, protocol, None)?;
        Ok(Transport { inner })
    }

    /// A write pipe transport started now (a child process's stdin).
    pub(crate) fn write_pipe_transport(
        &self,
        pipe: OwnedFd,
        protocol: SharedProtocol,
    ) -> io::Result<Transport> {
        let inner: Rc<dyn TransportImpl> =
            PipeTransport::start(self, Direction::Write, pipe, protocol, None)?;
        Ok(Transport { inner })
    }
}
