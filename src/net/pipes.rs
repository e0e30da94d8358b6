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
//! and epoll all report it as readable). What it shares with the other
//! transports over one fd (watching, flow control, closing, queueing what
//! it cannot do without a `&Loop`) is in `fd_transport.rs`.
//!
//! Writing to a pipe whose reader is gone raises `SIGPIPE`, which Rust
//! programs ignore (the runtime sets it so before `main`), so the write
//! fails with `EPIPE` instead: the transport closes with that error.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::rc::Rc;

use crate::net::byte_buffer::ByteBuffer;
use crate::net::fd_transport::{
    when_made, FailOnPanic, FdTransport, Loop, TransportControl, TransportState, READ_SIZE,
};
use crate::net::socket_transport::SharedProtocol;
use crate::net::transports::TransportImpl;
use crate::selectors::mechanism::{read_nonblocking, set_nonblocking, write_nonblocking};
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers, Protocol, SocketAddress, Transport};

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
    state: TransportState<Self, S, dyn Protocol>,
    direction: Direction,
    /// `None` once closed.
    file: RefCell<Option<OwnedFd>>,
    /// A write end whose reader's closing the selector reports (FIFOs, sockets).
    watch_hangup: bool,
    buffer: RefCell<ByteBuffer>,
    reading_paused: Cell<bool>,
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
            state: TransportState::new(me, event_loop, fd.as_raw_fd(), protocol),
            direction,
            file: RefCell::new(Some(fd)),
            watch_hangup: direction == Direction::Write && hangup_visible,
            buffer: RefCell::new(ByteBuffer::default()),
            reading_paused: Cell::new(false),
        });
        transport.launch(event_loop, move |me, event_loop| me.begin(event_loop, waiter));
        Ok(transport)
    }

    /// The first callback: `connection_made`, even if the transport was
    /// closed meanwhile (its `connection_lost` is queued after this, as in
    /// asyncio, so the protocol hears both), then watching starts.
    fn begin(&self, event_loop: &Loop<S>, waiter: Option<crate::Future<()>>) {
        let Some(inner) = self.state.link.rc() else { return };
        let transport = Transport { inner };
        let fail_waiter = FailOnPanic(waiter.clone());
        let made = self.with_protocol(|protocol| protocol.connection_made(transport)).is_some();
        drop(fail_waiter);
        if !made {
            if self.state.protocol.borrow().is_some() {
                self.state.link.call_soon_with(move |me, event_loop| me.begin(event_loop, waiter));
            }
            return;
        }
        self.finish_begin(event_loop, true, waiter);
    }

    fn read_once(&self, event_loop: &Loop<S>) {
        if !self.wants_read() {
            return;
        }
        let fd = self.state.fd;
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

    /// Closes now, keeping nothing (the end of the read side).
    fn close_now(&self, err: Option<io::Error>) {
        self.state.closing.set(true);
        self.schedule_connection_lost(err);
    }

    fn read_only(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the pipe transport of fd {} only reads", self.state.fd),
        )
    }
}

impl<S: Selector<IoHandlers> + 'static> FdTransport for PipeTransport<S> {
    type Selector = S;
    type Protocol = dyn Protocol;

    fn state(&self) -> &TransportState<Self, S, dyn Protocol> {
        &self.state
    }

    /// The read end while reading; the write end, if its reader's closing
    /// can be seen, for as long as it is open.
    fn wants_read(&self) -> bool {
        if !self.state.started.get() || self.state.conn_lost.get() {
            return false;
        }
        match self.direction {
            Direction::Read => !self.state.closing.get() && !self.reading_paused.get(),
            Direction::Write => self.watch_hangup,
        }
    }

    /// The read end has data (or an end); the write end's reader went away.
    fn on_readable(&self, event_loop: &Loop<S>) {
        let _dispatching = self.state.watch.dispatch();
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

    fn on_writable(&self, event_loop: &Loop<S>) {
        let _dispatching = self.state.watch.dispatch();
        if !self.state.conn_lost.get() {
            self.write_buffered(&self.buffer, write_nonblocking);
        }
        self.sync(event_loop);
    }

    fn buffered(&self) -> usize {
        self.buffer.borrow().len()
    }

    fn clear_buffer(&self) {
        self.buffer.borrow_mut().clear();
    }

    fn close_fd(&self) {
        let file = self.file.borrow_mut().take();
        drop(file);
    }

    /// `begin` delivers `connection_made` even after a close; while it
    /// waits for a busy protocol, `connection_lost` stays behind it.
    fn lost_waits_for_made(&self) -> bool {
        !self.state.started.get() && self.state.protocol.borrow().is_some()
    }
}

impl<S: Selector<IoHandlers> + 'static> TransportImpl for PipeTransport<S> {
    fn write(&self, data: &[u8]) -> io::Result<()> {
        if self.direction == Direction::Read {
            return Err(self.read_only());
        }
        if self.is_closing() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the pipe transport is closing"));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut rest = data;
        if self.buffer.borrow().is_empty() {
            match write_nonblocking(self.state.fd, data) {
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
        if self.direction == Direction::Read
            && !self.state.closing.get()
            && !self.reading_paused.replace(true)
        {
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
            .field("fd", &self.state.fd)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
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
        let inner = when_made(transport, waiter).await?;
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
