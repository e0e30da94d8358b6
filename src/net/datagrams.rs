//! Datagrams (asyncio's `DatagramProtocol`, `DatagramTransport`,
//! `create_datagram_endpoint`, `sock_recvfrom` and `sock_sendto`): UDP over
//! IPv4 and IPv6, and Unix-domain datagram sockets.
//!
//! A datagram socket shows readiness from another side than a stream: it
//! is almost always writable (a UDP send hands the datagram to the network
//! or drops it; it waits only when the socket's own send buffer is full,
//! and a Unix datagram send when the receiver's queue is), so the
//! transport watches for writability only while datagrams wait in its
//! buffer. Each read is one whole datagram, with the address it came from;
//! errors are per datagram (a refused destination, a datagram too large)
//! and go to the protocol's `error_received`: the transport stays open.
//!
//! This file holds what users name: the protocol, the transport handle,
//! the socket operations. The transport itself and the endpoints are in
//! `datagram_transport.rs`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{self as unix, UnixDatagram};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::net::fd_transport::TransportControl;
use crate::net::sockets::{finish, Waiter};
use crate::selectors::mechanism::set_nonblocking;
use crate::selectors::Selector;
use crate::{BaseSelectorEventLoop, IoHandlers, SocketAddress};

/// What a datagram endpoint does with what arrives (asyncio's
/// `DatagramProtocol`). As with [`Protocol`](crate::Protocol), the loop
/// calls these from its own callbacks, never from inside a transport
/// method, and every method has a default that does nothing.
///
/// Order of calls: `connection_made`, then any number of
/// `datagram_received` and `error_received`, then `connection_lost`
/// exactly once. `pause_writing` and `resume_writing` alternate, starting
/// with a pause, anywhere in between.
pub trait DatagramProtocol: 'static {
    /// The endpoint is ready; `transport` is the handle to send with.
    fn connection_made(&mut self, transport: DatagramTransport) {
        let _ = transport;
    }

    /// A datagram arrived from `addr` (it may be empty: UDP allows that).
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddress) {
        let _ = (data, addr);
    }

    /// A send or a receive failed: a datagram too large for the socket
    /// (`EMSGSIZE`), a destination that refused (`ConnectionRefused`, on a
    /// connected UDP endpoint), … The transport stays open.
    fn error_received(&mut self, error: io::Error) {
        let _ = error;
    }

    /// The endpoint is closed: `None` after `close` or `abort`, the error
    /// if something ended it (the protocol panicked).
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }

    /// The send buffer rose above its high-water mark.
    fn pause_writing(&mut self) {}

    /// The send buffer drained to its low-water mark or below.
    fn resume_writing(&mut self) {}
}

/// What a [`DatagramTransport`] handle does; closing and flow control as
/// every transport, in [`TransportControl`].
pub(crate) trait DatagramTransportImpl: TransportControl {
    fn sendto(&self, data: &[u8], addr: Option<&SocketAddress>) -> io::Result<()>;
    fn local_addr(&self) -> io::Result<SocketAddress>;
    fn peer_addr(&self) -> io::Result<SocketAddress>;
}

/// The sending end of a datagram endpoint, handed to
/// [`DatagramProtocol::connection_made`] (asyncio's `DatagramTransport`).
/// A cheap handle: `Clone`, an `Rc` inside.
///
/// [`sendto`](Self::sendto) never blocks: a datagram the socket cannot take
/// now waits in a buffer, sent in order when the socket is writable, with
/// asyncio's flow control (`pause_writing` past the high-water mark, 64 KiB
/// by default). When the loop closes, an open endpoint closes its socket
/// and drops its protocol without `connection_lost`.
#[derive(Clone)]
pub struct DatagramTransport {
    pub(crate) inner: Rc<dyn DatagramTransportImpl>,
}

impl DatagramTransport {
    /// Sends `data` as one datagram to `addr`, or to the connected peer
    /// with `None`. An error of the send itself (too large, refused, …)
    /// goes to the protocol's `error_received`, on a coming iteration.
    ///
    /// # Errors
    ///
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe) if the transport is
    /// closing; [`InvalidInput`](io::ErrorKind::InvalidInput) for `None` on
    /// an endpoint with no remote address, an address other than the
    /// remote one on a connected endpoint, or an address of the other kind
    /// (a Unix path for UDP, an IP address for a Unix socket).
    pub fn sendto(&self, data: &[u8], addr: Option<&SocketAddress>) -> io::Result<()> {
        self.inner.sendto(data, addr)
    }

    /// Closes once the buffered datagrams are sent; reading stops now and
    /// the protocol's `connection_lost(None)` follows. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Closes at once, dropping what is buffered; `connection_lost(None)` follows.
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// `true` once closing or closed.
    pub fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    /// Bytes of the datagrams buffered, not yet sent.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.get_write_buffer_size()
    }

    /// The flow-control marks, `(low, high)` (asyncio's order).
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.inner.get_write_buffer_limits()
    }

    /// Sets the flow-control marks, as for a [`Transport`](crate::Transport).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if `low > high`.
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> io::Result<()> {
        self.inner.set_write_buffer_limits(high, low)
    }

    /// This end's address (asyncio's `get_extra_info('sockname')`).
    ///
    /// # Errors
    ///
    /// [`NotConnected`](io::ErrorKind::NotConnected) once closed; the OS error otherwise.
    pub fn local_addr(&self) -> io::Result<SocketAddress> {
        self.inner.local_addr()
    }

    /// The remote address of a connected endpoint (`peername`).
    ///
    /// # Errors
    ///
    /// [`NotConnected`](io::ErrorKind::NotConnected) if it has none or is closed.
    pub fn peer_addr(&self) -> io::Result<SocketAddress> {
        self.inner.peer_addr()
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("local", &self.local_addr().ok())
            .field("closing", &self.is_closing())
            .field("buffered", &self.get_write_buffer_size())
            .finish()
    }
}

/// Calls a std socket operation on a non-blocking socket until a signal does
/// not interrupt it; "would block" is `Ok(None)` (the rule of
/// [`nonblocking`](crate::selectors::mechanism::nonblocking), for std's calls).
pub(crate) fn retrying<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<Option<T>> {
    loop {
        match call() {
            Ok(value) => return Ok(Some(value)),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

/// A datagram socket that [`sock_recvfrom`](BaseSelectorEventLoop::sock_recvfrom)
/// and [`sock_sendto`](BaseSelectorEventLoop::sock_sendto) work with: UDP
/// and Unix-domain datagram sockets (and `Rc`s, `Arc`s and `Box`es of them).
pub trait DatagramSocket: AsRawFd {
    /// The kind of address a datagram comes from and goes to.
    type Addr;

    /// Receives one datagram on a non-blocking socket; `Ok(None)` if none waits.
    ///
    /// # Errors
    ///
    /// `recvfrom`'s error, other than `EINTR` and `EAGAIN`.
    fn recv_from_nonblocking(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Self::Addr)>>;

    /// Sends one datagram on a non-blocking socket; `Ok(None)` if it cannot take it now.
    ///
    /// # Errors
    ///
    /// `sendto`'s error, other than `EINTR` and `EAGAIN` (e.g. `EMSGSIZE`).
    fn send_to_nonblocking(&self, buf: &[u8], addr: &Self::Addr) -> io::Result<Option<usize>>;
}

impl DatagramSocket for UdpSocket {
    type Addr = SocketAddr;

    fn recv_from_nonblocking(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        retrying(|| self.recv_from(buf))
    }

    fn send_to_nonblocking(&self, buf: &[u8], addr: &SocketAddr) -> io::Result<Option<usize>> {
        retrying(|| self.send_to(buf, addr))
    }
}

impl DatagramSocket for UnixDatagram {
    type Addr = unix::SocketAddr;

    fn recv_from_nonblocking(&self, buf: &mut [u8]) -> io::Result<Option<(usize, unix::SocketAddr)>> {
        retrying(|| self.recv_from(buf))
    }

    fn send_to_nonblocking(&self, buf: &[u8], addr: &unix::SocketAddr) -> io::Result<Option<usize>> {
        retrying(|| self.send_to_addr(buf, addr))
    }
}

/// A shared datagram socket works as the socket inside.
macro_rules! shared_datagram_socket {
    ($($pointer:ident),*) => {$(
        impl<D: DatagramSocket> DatagramSocket for $pointer<D> {
            type Addr = D::Addr;

            fn recv_from_nonblocking(&self, buf: &mut [u8]) -> io::Result<Option<(usize, D::Addr)>> {
                (**self).recv_from_nonblocking(buf)
            }

            fn send_to_nonblocking(&self, buf: &[u8], addr: &D::Addr) -> io::Result<Option<usize>> {
                (**self).send_to_nonblocking(buf, addr)
            }
        }
    )*};
}

shared_datagram_socket!(Rc, Arc, Box);

/// The future of [`sock_recvfrom`](BaseSelectorEventLoop::sock_recvfrom).
#[must_use = "futures do nothing unless awaited"]
pub struct SockRecvfrom<'a, S: Selector<IoHandlers> + 'static, D: DatagramSocket> {
    sock: &'a D,
    buf: &'a mut [u8],
    waiter: Waiter<'a, S>,
    nonblocking: bool,
}

impl<S: Selector<IoHandlers> + 'static, D: DatagramSocket> Future for SockRecvfrom<'_, S, D> {
    type Output = io::Result<(usize, D::Addr)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let attempt = (|| {
            if !this.nonblocking {
                set_nonblocking(this.sock.as_raw_fd())?;
                this.nonblocking = true;
            }
            let got = this.sock.recv_from_nonblocking(this.buf)?;
            if got.is_none() {
                this.waiter.wait(cx)?;
            }
            Ok(got)
        })();
        finish(&mut this.waiter, attempt)
    }
}

/// The future of [`sock_sendto`](BaseSelectorEventLoop::sock_sendto).
#[must_use = "futures do nothing unless awaited"]
pub struct SockSendto<'a, S: Selector<IoHandlers> + 'static, D: DatagramSocket> {
    sock: &'a D,
    data: &'a [u8],
    addr: &'a D::Addr,
    waiter: Waiter<'a, S>,
    nonblocking: bool,
}

impl<S: Selector<IoHandlers> + 'static, D: DatagramSocket> Future for SockSendto<'_, S, D> {
    type Output = io::Result<usize>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let attempt = (|| {
            if !this.nonblocking {
                set_nonblocking(this.sock.as_raw_fd())?;
                this.nonblocking = true;
            }
            let sent = this.sock.send_to_nonblocking(this.data, this.addr)?;
            if sent.is_none() {
                this.waiter.wait(cx)?;
            }
            Ok(sent)
        })();
        finish(&mut this.waiter, attempt)
    }
}

impl<S: Selector<IoHandlers> + 'static, D: DatagramSocket> fmt::Debug for SockRecvfrom<'_, S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockRecvfrom").field("fd", &self.sock.as_raw_fd()).finish_non_exhaustive()
    }
}

impl<S: Selector<IoHandlers> + 'static, D: DatagramSocket> fmt::Debug for SockSendto<'_, S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockSendto").field("fd", &self.sock.as_raw_fd()).finish_non_exhaustive()
    }
}

/// A datagram socket of yours to make an endpoint on, with
/// [`create_datagram_endpoint_from_socket`](BaseSelectorEventLoop::create_datagram_endpoint_from_socket)
/// (asyncio's `sock=` argument): set the options `create_datagram_endpoint`
/// does not (a receive buffer size, broadcast, multicast) before handing it
/// over. `From` a `UdpSocket` or a `UnixDatagram`.
#[derive(Debug)]
pub enum DatagramEndpointSocket {
    /// A UDP socket, IPv4 or IPv6.
    Udp(UdpSocket),
    /// A Unix-domain datagram socket.
    Unix(UnixDatagram),
}

impl From<UdpSocket> for DatagramEndpointSocket {
    fn from(sock: UdpSocket) -> Self {
        DatagramEndpointSocket::Udp(sock)
    }
}

impl From<UnixDatagram> for DatagramEndpointSocket {
    fn from(sock: UnixDatagram) -> Self {
        DatagramEndpointSocket::Unix(sock)
    }
}

/// Datagram socket operations on the selector loop (asyncio's `sock_recvfrom`,
/// `sock_sendto`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Receives one datagram (asyncio's `sock_recvfrom`): its length and
    /// the sender's address. A datagram longer than `buf` is cut to fit.
    /// Puts `sock` in non-blocking mode.
    ///
    /// # Errors
    ///
    /// `recvfrom`'s error (e.g. [`ConnectionRefused`](io::ErrorKind::ConnectionRefused)
    /// on a connected UDP socket whose peer is not listening), or the loop's
    /// refusal to watch the socket.
    pub fn sock_recvfrom<'a, D: DatagramSocket>(
        &'a self,
        sock: &'a D,
        buf: &'a mut [u8],
    ) -> SockRecvfrom<'a, S, D> {
        SockRecvfrom { sock, buf, waiter: Waiter::new(self, sock.as_raw_fd(), false), nonblocking: false }
    }

    /// Sends `data` as one datagram to `addr` (asyncio's `sock_sendto`),
    /// waiting while the socket cannot take it; the bytes sent (all of them).
    /// Puts `sock` in non-blocking mode.
    ///
    /// # Errors
    ///
    /// `sendto`'s error, e.g. `EMSGSIZE` for a datagram larger than the
    /// socket allows, or the loop's refusal to watch the socket.
    pub fn sock_sendto<'a, D: DatagramSocket>(
        &'a self,
        sock: &'a D,
        data: &'a [u8],
        addr: &'a D::Addr,
    ) -> SockSendto<'a, S, D> {
        SockSendto { sock, data, addr, waiter: Waiter::new(self, sock.as_raw_fd(), true), nonblocking: false }
    }
}
