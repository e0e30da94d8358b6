//! The socket transport of the selector loop (asyncio's
//! `_SelectorSocketTransport`), with `create_connection` and its
//! Unix-domain twin; the server side is in `server.rs`.
//!
//! A transport watches its socket with a reader while it reads and a writer
//! while its buffer holds data. What it shares with the other transports
//! over one fd (watching, flow control, closing, queueing what it cannot do
//! without a `&Loop`) is in `fd_transport.rs`; this file has what a stream
//! socket adds: reading and writing bytes, half-closing with `write_eof`,
//! and the write fast path.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::rc::Rc;

use crate::net::byte_buffer::ByteBuffer;
use crate::net::fd_transport::{
    not_connected, when_made, FdTransport, Loop, TransportControl, TransportState, READ_SIZE,
};
use crate::net::sys::{recv, send};
use crate::net::transports::TransportImpl;
use crate::selectors::Selector;
use crate::{BaseSelectorEventLoop, IoHandlers, Protocol, SocketAddress, Transport};

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

/// What one read did.
enum Read {
    Data,
    Eof { keep_open: bool },
    Nothing,
    Failed(io::Error),
}

pub(crate) type SharedProtocol = Rc<RefCell<dyn Protocol>>;

/// A transport over a connected socket.
pub(crate) struct SocketTransport<S: Selector<IoHandlers> + 'static> {
    state: TransportState<Self, S, dyn Protocol>,
    /// `None` once closed.
    sock: RefCell<Option<Stream>>,
    buffer: RefCell<ByteBuffer>,
    /// `write_eof` was called; `eof_sent` once the socket was shut down.
    eof_requested: Cell<bool>,
    eof_sent: Cell<bool>,
    /// The peer's EOF was read.
    read_eof: Cell<bool>,
    reading_paused: Cell<bool>,
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
            state: TransportState::new(me, event_loop, stream.fd(), protocol),
            sock: RefCell::new(Some(stream)),
            buffer: RefCell::new(ByteBuffer::default()),
            eof_requested: Cell::new(false),
            eof_sent: Cell::new(false),
            read_eof: Cell::new(false),
            reading_paused: Cell::new(false),
        });
        transport.launch(event_loop, move |me, event_loop| me.begin(event_loop, waiter));
        transport
    }

    fn handle(&self) -> Option<Transport> {
        let inner: Rc<dyn TransportImpl> = self.state.link.rc()?;
        Some(Transport { inner })
    }

    /// The first callback: `connection_made`, then reading starts.
    fn begin(&self, event_loop: &Loop<S>, waiter: Option<crate::Future<()>>) {
        let Some(transport) = self.handle() else { return };
        let made = if self.state.conn_lost.get() {
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
        if made.is_none() && self.state.protocol.borrow().is_some() {
            // The protocol is borrowed (by its owner): try again next time.
            self.state.link.call_soon_with(move |me, event_loop| me.begin(event_loop, waiter));
            return;
        }
        self.finish_begin(event_loop, made == Some(true), waiter);
    }

    /// `write` may send at once: writing is allowed and nothing is buffered.
    #[inline]
    fn sends_at_once(&self) -> bool {
        !self.eof_requested.get()
            && !self.state.closing.get()
            && !self.state.conn_lost.get()
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
        if self.state.closing.get() || self.state.conn_lost.get() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the transport is closing"));
        }
        if self.buffer.borrow().is_empty() {
            let sent = send(self.state.fd, data);
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
}

impl<S: Selector<IoHandlers> + 'static> FdTransport for SocketTransport<S> {
    type Selector = S;
    type Protocol = dyn Protocol;

    #[inline]
    fn state(&self) -> &TransportState<Self, S, dyn Protocol> {
        &self.state
    }

    /// We should be watching for reading.
    #[inline]
    fn wants_read(&self) -> bool {
        !self.state.conn_lost.get()
            && self.state.started.get()
            && !self.state.closing.get()
            && !self.reading_paused.get()
            && !self.read_eof.get()
    }

    /// Reads once and hands the data to the protocol. The closing `sync` is
    /// skipped when data was read and nothing asked for one meanwhile: every
    /// change of what the registrations depend on (closing, pausing,
    /// buffering, the connection lost) goes through `request_sync`, which
    /// inside a callback marks the watch `changed`; the EOF and error paths sync.
    fn on_readable(&self, event_loop: &Loop<S>) {
        let state = &self.state;
        let _dispatching = state.watch.dispatch();
        state.watch.clear_changed();
        if !state.conn_lost.get() && !state.closing.get() && !self.reading_paused.get() {
            let fd = state.fd;
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
                Some(Read::Data) if !state.watch.changed() => return,
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

    /// Sends from the buffer; once it is empty, a `write_eof` waiting for
    /// that shuts the socket's writing side.
    fn on_writable(&self, event_loop: &Loop<S>) {
        let _dispatching = self.state.watch.dispatch();
        if !self.state.conn_lost.get()
            && self.write_buffered(&self.buffer, send)
            && !self.state.closing.get()
            && self.eof_requested.get()
            && !self.eof_sent.get()
        {
            if let Err(err) = self.shutdown_write() {
                self.force_close(Some(err));
            }
        }
        self.sync(event_loop);
    }

    #[inline]
    fn buffered(&self) -> usize {
        self.buffer.borrow().len()
    }

    fn clear_buffer(&self) {
        self.buffer.borrow_mut().clear();
    }

    fn close_fd(&self) {
        let sock = self.sock.borrow_mut().take();
        drop(sock);
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
        let sent = send(self.state.fd, data);
        if matches!(sent, Ok(Some(n)) if n == data.len()) {
            return Ok(());
        }
        self.write_rest(data, sent)
    }

    fn write_eof(&self) -> io::Result<()> {
        if self.state.closing.get() || self.state.conn_lost.get() || self.eof_requested.replace(true) {
            return Ok(());
        }
        if self.buffer.borrow().is_empty() {
            self.shutdown_write()?;
        }
        Ok(())
    }

    fn pause_reading(&self) {
        if self.state.closing.get() || self.reading_paused.replace(true) {
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
        let inner = when_made(transport, waiter).await?;
        Ok((Transport { inner }, protocol))
    }
}

impl<S: Selector<IoHandlers> + 'static> fmt::Debug for SocketTransport<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketTransport").field("fd", &self.state.fd).finish_non_exhaustive()
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
