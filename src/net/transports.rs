//! Transports (Tulip's `transports.py`): the handle a [`Protocol`] writes
//! through, and the [`Server`] that makes them. The socket implementation
//! is in `socket_transport.rs` (what it shares with the datagram and pipe
//! transports in `fd_transport.rs`), the server in `server.rs`.
//!
//! [`Protocol`]: crate::Protocol

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::net;
use std::rc::Rc;

use crate::net::fd_transport::TransportControl;

/// A socket address of a TCP or Unix-domain socket.
#[derive(Debug, Clone)]
pub enum SocketAddress {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix-domain address (a path, or unnamed).
    Unix(net::SocketAddr),
}

impl SocketAddress {
    /// The IP address and port, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            SocketAddress::Inet(addr) => Some(*addr),
            SocketAddress::Unix(_) => None,
        }
    }

    /// The Unix-domain address, if this is one.
    pub fn as_unix(&self) -> Option<&net::SocketAddr> {
        match self {
            SocketAddress::Unix(addr) => Some(addr),
            SocketAddress::Inet(_) => None,
        }
    }
}

impl From<SocketAddr> for SocketAddress {
    fn from(addr: SocketAddr) -> Self {
        SocketAddress::Inet(addr)
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Inet(addr) => write!(f, "{addr}"),
            SocketAddress::Unix(addr) => match addr.as_pathname() {
                Some(path) => write!(f, "{}", path.display()),
                None => f.write_str("(unnamed)"),
            },
        }
    }
}

/// What a [`Transport`] handle does; one implementation per kind of
/// transport. Closing and flow control are done alike by every kind, in
/// [`TransportControl`].
pub(crate) trait TransportImpl: TransportControl {
    fn write(&self, data: &[u8]) -> io::Result<()>;
    fn write_eof(&self) -> io::Result<()>;
    fn pause_reading(&self);
    fn resume_reading(&self);
    fn is_reading(&self) -> bool;
    fn peer_addr(&self) -> io::Result<SocketAddress>;
    fn local_addr(&self) -> io::Result<SocketAddress>;
}

/// The writing end of a connection, handed to [`Protocol::connection_made`]
/// (asyncio's `Transport`). A cheap handle: `Clone`, an `Rc` inside.
///
/// Writes never block: `write` sends what the socket takes at once and
/// buffers the rest, which the loop sends when the socket is writable.
/// Flow control follows asyncio: past the high-water mark (64 KiB by
/// default) the protocol's `pause_writing` is called, and `resume_writing`
/// once the buffer is back to the low-water mark (a quarter of the high one).
/// Changes that need the loop (watching the socket, closing it) take effect
/// on its next iteration; the protocol's `connection_lost` comes once, as a
/// loop callback. When the loop closes, its open transports close their
/// sockets and drop their protocols, without `connection_lost` (no
/// callback runs on a closed loop); its servers close their listeners.
///
/// [`Protocol::connection_made`]: crate::Protocol::connection_made
#[derive(Clone)]
pub struct Transport {
    pub(crate) inner: Rc<dyn TransportImpl>,
}

impl Transport {
    /// Sends `data`, buffering what the socket does not take now. A socket
    /// error does not come back here: the transport closes and the
    /// protocol's `connection_lost` receives it.
    ///
    /// # Errors
    ///
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe) if the transport is closing
    /// or closed, [`InvalidInput`](io::ErrorKind::InvalidInput) after
    /// [`write_eof`](Self::write_eof): the data was not taken.
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        self.inner.write(data)
    }

    /// Closes the writing side once the buffer is sent (a TCP FIN); reading
    /// goes on. Does nothing if the transport is closing.
    ///
    /// # Errors
    ///
    /// The error of `shutdown`, when done at once.
    pub fn write_eof(&self) -> io::Result<()> {
        self.inner.write_eof()
    }

    /// `true`: socket transports can half-close.
    pub fn can_write_eof(&self) -> bool {
        true
    }

    /// Stops reading, sends what is buffered, then closes; the protocol's
    /// `connection_lost(None)` follows. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Closes at once: the buffer is dropped unsent; the protocol's
    /// `connection_lost(None)` follows.
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// `true` once closing or closed.
    pub fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    /// Bytes buffered, not yet sent.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.get_write_buffer_size()
    }

    /// The flow-control marks, `(low, high)` (asyncio's order).
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.inner.get_write_buffer_limits()
    }

    /// Sets the flow-control marks, as asyncio: `high` defaults to 64 KiB
    /// (or `4 * low` if only `low` is given), `low` to `high / 4`.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if `low > high`.
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> io::Result<()> {
        self.inner.set_write_buffer_limits(high, low)
    }

    /// Stops calling `data_received` until [`resume_reading`](Self::resume_reading).
    pub fn pause_reading(&self) {
        self.inner.pause_reading();
    }

    /// Reads again after [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&self) {
        self.inner.resume_reading();
    }

    /// `true` unless reading is paused or the transport is closing.
    pub fn is_reading(&self) -> bool {
        self.inner.is_reading()
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// [`NotConnected`](io::ErrorKind::NotConnected) once closed; the OS error otherwise.
    pub fn peer_addr(&self) -> io::Result<SocketAddress> {
        self.inner.peer_addr()
    }

    /// This end's address.
    ///
    /// # Errors
    ///
    /// As [`peer_addr`](Self::peer_addr).
    pub fn local_addr(&self) -> io::Result<SocketAddress> {
        self.inner.local_addr()
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("peer", &self.peer_addr().ok())
            .field("closing", &self.is_closing())
            .field("buffered", &self.get_write_buffer_size())
            .finish()
    }
}

/// What a [`Server`] handle does.
pub(crate) trait ServerImpl {
    fn close(&self);
    fn is_serving(&self) -> bool;
    fn local_addr(&self) -> io::Result<SocketAddress>;
    fn connections_made(&self) -> u64;
}

/// A listening socket that makes a transport and a protocol per connection,
/// from [`create_server`](crate::BaseSelectorEventLoop::create_server)
/// (asyncio's `Server`). Dropping the handle does not stop it: call
/// [`close`](Self::close).
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Rc<dyn ServerImpl>,
}

impl Server {
    /// Stops accepting: the listening socket is closed on the loop's next
    /// iteration; a Unix socket's file is removed at once. Open connections stay.
    pub fn close(&self) {
        self.inner.close();
    }

    /// `true` until [`close`](Self::close).
    pub fn is_serving(&self) -> bool {
        self.inner.is_serving()
    }

    /// The address it listens on (the port chosen for port 0).
    ///
    /// # Errors
    ///
    /// [`NotConnected`](io::ErrorKind::NotConnected) once closed; the OS error otherwise.
    pub fn local_addr(&self) -> io::Result<SocketAddress> {
        self.inner.local_addr()
    }

    /// Connections accepted so far.
    pub fn connections_made(&self) -> u64 {
        self.inner.connections_made()
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.local_addr().ok())
            .field("serving", &self.is_serving())
            .field("connections_made", &self.connections_made())
            .finish()
    }
}
