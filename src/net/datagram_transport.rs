//! The selector loop's datagram transport (asyncio's
//! `_SelectorDatagramTransport`) and its endpoints:
//! `create_datagram_endpoint`, `create_unix_datagram_endpoint` and
//! `create_datagram_endpoint_from_socket`.
//!
//! The transport watches its socket with a reader while it is open, and
//! with a writer only while datagrams wait in its buffer. What it shares
//! with the other transports over one fd (watching, flow control, closing,
//! queueing what it cannot do without a `&Loop`) is in `fd_transport.rs`;
//! this file has what datagrams add: reading a batch of them, a buffer of
//! whole datagrams with their destinations, `sendto`'s checks, and errors
//! handed to the protocol's `error_received` (queued, when `sendto` meets one).
//! A Unix datagram longer than the loop's read buffer (`READ_SIZE`) is cut to it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::rc::Rc;

use crate::net::datagrams::{retrying, DatagramSocket, DatagramTransportImpl};
use crate::net::fd_transport::{
    not_connected, when_made, FailOnPanic, FdTransport, Loop, TransportControl, TransportState, READ_SIZE,
};
use crate::net::names::all_failed;
use crate::net::sockets::remove_stale_socket_file;
use crate::selectors::mechanism::set_nonblocking;
use crate::selectors::Selector;
use crate::{
    AbstractEventLoop, BaseSelectorEventLoop, DatagramEndpointSocket, DatagramProtocol, DatagramTransport,
    IoHandlers, SocketAddress, ToAddrs,
};

/// Datagrams read per readiness event, at most: a burst costs one `select`
/// per batch, and other fds still get their turn.
const READ_BATCH: usize = 32;

/// The socket of a datagram transport.
use DatagramEndpointSocket as Dgram;

impl Dgram {
    fn fd(&self) -> RawFd {
        match self {
            Dgram::Udp(sock) => sock.as_raw_fd(),
            Dgram::Unix(sock) => sock.as_raw_fd(),
        }
    }

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddress)>> {
        Ok(match self {
            Dgram::Udp(sock) => {
                sock.recv_from_nonblocking(buf)?.map(|(n, addr)| (n, SocketAddress::Inet(addr)))
            }
            Dgram::Unix(sock) => {
                sock.recv_from_nonblocking(buf)?.map(|(n, addr)| (n, SocketAddress::Unix(addr)))
            }
        })
    }

    /// Sends to `addr`, or to the connected peer with `None`.
    fn send_to(&self, data: &[u8], addr: Option<&SocketAddress>) -> io::Result<Option<usize>> {
        match (self, addr) {
            (Dgram::Udp(sock), None) => retrying(|| sock.send(data)),
            (Dgram::Udp(sock), Some(SocketAddress::Inet(addr))) => sock.send_to_nonblocking(data, addr),
            (Dgram::Unix(sock), None) => retrying(|| sock.send(data)),
            (Dgram::Unix(sock), Some(SocketAddress::Unix(addr))) => sock.send_to_nonblocking(data, addr),
            (_, Some(addr)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send to {addr}: not an address of this socket's kind"),
            )),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddress> {
        match self {
            Dgram::Udp(sock) => sock.local_addr().map(SocketAddress::Inet),
            Dgram::Unix(sock) => sock.local_addr().map(SocketAddress::Unix),
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddress> {
        match self {
            Dgram::Udp(sock) => sock.peer_addr().map(SocketAddress::Inet),
            Dgram::Unix(sock) => sock.peer_addr().map(SocketAddress::Unix),
        }
    }
}

/// `true` if `a` and `b` name the same endpoint (std's Unix addresses have no `==`).
fn same_address(a: &SocketAddress, b: &SocketAddress) -> bool {
    match (a, b) {
        (SocketAddress::Inet(a), SocketAddress::Inet(b)) => a == b,
        (SocketAddress::Unix(a), SocketAddress::Unix(b)) => {
            a.as_pathname().is_some() && a.as_pathname() == b.as_pathname()
        }
        _ => false,
    }
}

type SharedDatagramProtocol = Rc<RefCell<dyn DatagramProtocol>>;

/// A transport over a datagram socket (asyncio's `_SelectorDatagramTransport`).
struct SelectorDatagramTransport<S: Selector<IoHandlers> + 'static> {
    state: TransportState<Self, S, dyn DatagramProtocol>,
    /// `None` once closed.
    sock: RefCell<Option<Dgram>>,
    /// The connected peer, if any: `sendto` accepts only it (or `None`).
    remote: Option<SocketAddress>,
    /// Datagrams waiting for the socket, with their destinations.
    buffer: RefCell<VecDeque<(Vec<u8>, Option<SocketAddress>)>>,
    /// The bytes of the datagrams in `buffer`.
    buffered: Cell<usize>,
}

impl<S: Selector<IoHandlers> + 'static> SelectorDatagramTransport<S> {
    /// A transport for `sock` and `protocol`: `connection_made` is called,
    /// reading starts and `waiter` is completed on the next iteration.
    fn start(
        event_loop: &Loop<S>,
        sock: Dgram,
        protocol: SharedDatagramProtocol,
        waiter: crate::Future<()>,
    ) -> Rc<Self> {
        let remote = sock.peer_addr().ok();
        let transport = Rc::new_cyclic(|me| SelectorDatagramTransport {
            state: TransportState::new(me, event_loop, sock.fd(), protocol),
            sock: RefCell::new(Some(sock)),
            remote,
            buffer: RefCell::new(VecDeque::new()),
            buffered: Cell::new(0),
        });
        transport.launch(event_loop, move |me, event_loop| me.begin(event_loop, waiter));
        transport
    }

    fn handle(&self) -> Option<DatagramTransport> {
        let inner: Rc<dyn DatagramTransportImpl> = self.state.link.rc()?;
        Some(DatagramTransport { inner })
    }

    /// The first callback: `connection_made`, then reading starts. An
    /// endpoint aborted before fails its waiter, and the protocol hears nothing.
    fn begin(&self, event_loop: &Loop<S>, waiter: crate::Future<()>) {
        let Some(transport) = self.handle() else { return };
        if self.state.conn_lost.get() {
            let _ = waiter.set_exception(not_connected());
            return;
        }
        // A panic in `connection_made` must fail the waiter too.
        let fail_waiter = FailOnPanic(Some(waiter.clone()));
        let made = self.with_protocol(|protocol| protocol.connection_made(transport)).is_some();
        drop(fail_waiter);
        if !made {
            if self.state.protocol.borrow().is_some() {
                // Busy (borrowed by its owner): try again next time.
                self.state.link.call_soon_with(move |me, event_loop| me.begin(event_loop, waiter));
            }
            return;
        }
        self.finish_begin(event_loop, true, Some(waiter));
    }

    fn pop_front(&self) -> Option<(Vec<u8>, Option<SocketAddress>)> {
        let popped = self.buffer.borrow_mut().pop_front();
        if let Some((data, _)) = &popped {
            self.buffered.set(self.buffered.get() - data.len());
        }
        popped
    }

    /// Queues `error_received(err)`: never called from inside `sendto`.
    fn report(&self, err: io::Error) {
        self.state.link.call_soon_with(move |me, _| {
            if me.state.protocol.borrow().is_none() {
                return;
            }
            let mut err = Some(err);
            let delivered = me.with_protocol(|protocol| {
                if let Some(err) = err.take() {
                    protocol.error_received(err);
                }
            });
            if let (None, Some(err)) = (delivered, err) {
                me.report(err); // busy: after what is queued now
            }
        });
    }
}

impl<S: Selector<IoHandlers> + 'static> FdTransport for SelectorDatagramTransport<S> {
    type Selector = S;
    type Protocol = dyn DatagramProtocol;

    fn state(&self) -> &TransportState<Self, S, dyn DatagramProtocol> {
        &self.state
    }

    /// Reading while open: datagrams are read whatever the buffer holds.
    fn wants_read(&self) -> bool {
        self.state.started.get() && !self.state.closing.get() && !self.state.conn_lost.get()
    }

    /// Reads up to [`READ_BATCH`] datagrams and hands each to the protocol.
    fn on_readable(&self, event_loop: &Loop<S>) {
        let _dispatching = self.state.watch.dispatch();
        for _ in 0..READ_BATCH {
            if !self.wants_read() {
                break;
            }
            // The protocol first: a busy one (borrowed by its owner) leaves
            // the datagram in the socket for the next event.
            let read = self.with_protocol(|protocol| {
                event_loop.with_read_buffer(READ_SIZE, |buf| {
                    let got = match &*self.sock.borrow() {
                        Some(sock) => sock.recv_from(buf),
                        None => Ok(None),
                    };
                    match got {
                        Ok(Some((n, addr))) => {
                            protocol.datagram_received(&buf[..n], addr);
                            true
                        }
                        Ok(None) => false,
                        Err(err) => {
                            protocol.error_received(err);
                            false
                        }
                    }
                })
            });
            if read != Some(true) {
                break;
            }
        }
        self.sync(event_loop);
    }

    /// Sends buffered datagrams until the socket would block.
    fn on_writable(&self, event_loop: &Loop<S>) {
        let _dispatching = self.state.watch.dispatch();
        loop {
            let sent = {
                let buffer = self.buffer.borrow();
                let Some((data, addr)) = buffer.front() else { break };
                match &*self.sock.borrow() {
                    Some(sock) => sock.send_to(data, addr.as_ref()),
                    None => break,
                }
            };
            match sent {
                Ok(None) => break,
                Ok(Some(_)) => drop(self.pop_front()),
                Err(err) => {
                    // As asyncio: that datagram is dropped, the protocol told.
                    drop(self.pop_front());
                    self.with_protocol(|protocol| protocol.error_received(err));
                    break;
                }
            }
        }
        self.wrote();
        self.sync(event_loop);
    }

    /// Not `buffered() == 0`: an empty datagram may wait.
    fn buffer_is_empty(&self) -> bool {
        self.buffer.borrow().is_empty()
    }

    fn buffered(&self) -> usize {
        self.buffered.get()
    }

    fn clear_buffer(&self) {
        self.buffer.borrow_mut().clear();
        self.buffered.set(0);
    }

    fn close_fd(&self) {
        let sock = self.sock.borrow_mut().take();
        drop(sock);
    }
}

impl<S: Selector<IoHandlers> + 'static> DatagramTransportImpl for SelectorDatagramTransport<S> {
    fn sendto(&self, data: &[u8], addr: Option<&SocketAddress>) -> io::Result<()> {
        if self.is_closing() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the datagram transport is closing"));
        }
        match (&self.remote, addr) {
            (Some(remote), Some(addr)) if !same_address(remote, addr) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "invalid address {addr}: this endpoint is connected to {remote}; pass None or it"
                    ),
                ))
            }
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no destination: this endpoint has no remote address, pass one",
                ))
            }
            _ => {}
        }
        // A connected socket sends with `send`: no address to check again.
        let addr = if self.remote.is_some() { None } else { addr };
        if let (Some(addr), Some(Dgram::Udp(_))) = (addr, &*self.sock.borrow()) {
            if addr.as_inet().is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot send to {addr}: a UDP endpoint sends to IP addresses"),
                ));
            }
        }
        if let (Some(addr), Some(Dgram::Unix(_))) = (addr, &*self.sock.borrow()) {
            if addr.as_unix().is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot send to {addr}: a Unix datagram endpoint sends to Unix addresses"),
                ));
            }
        }
        if self.buffer.borrow().is_empty() {
            let sent = match &*self.sock.borrow() {
                Some(sock) => sock.send_to(data, addr),
                None => return Err(not_connected()),
            };
            match sent {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(err) => {
                    self.report(err);
                    return Ok(());
                }
            }
        }
        self.buffer.borrow_mut().push_back((data.to_vec(), addr.cloned()));
        self.buffered.set(self.buffered.get() + data.len());
        self.request_sync();
        self.maybe_pause_protocol();
        Ok(())
    }

    fn local_addr(&self) -> io::Result<SocketAddress> {
        self.sock.borrow().as_ref().ok_or_else(not_connected)?.local_addr()
    }

    fn peer_addr(&self) -> io::Result<SocketAddress> {
        self.sock.borrow().as_ref().ok_or_else(not_connected)?.peer_addr()
    }
}

impl<S: Selector<IoHandlers> + 'static> fmt::Debug for SelectorDatagramTransport<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectorDatagramTransport").field("fd", &self.state.fd).finish_non_exhaustive()
    }
}

/// The unspecified address of `addr`'s family, port 0: where a socket that
/// only connects is bound.
fn any_of_family(addr: &SocketAddr) -> SocketAddr {
    let ip =
        if addr.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
    SocketAddr::new(ip, 0)
}

/// A UDP socket bound to `bind_to` and connected to `remote`,
/// non-blocking and close-on-exec (std's).
fn udp_socket(bind_to: SocketAddr, remote: Option<SocketAddr>) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(bind_to)?;
    if let Some(remote) = remote {
        sock.connect(remote)?;
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Datagram endpoints on the selector loop (asyncio's `create_datagram_endpoint`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Creates a UDP endpoint (asyncio's `create_datagram_endpoint`): a
    /// socket bound to `local` (port 0 picks one) and/or connected to
    /// `remote`, a protocol made by `factory`, and a [`DatagramTransport`]
    /// for it; resolves once `connection_made` ran. Either address may be
    /// `None`, not both: with only `remote`, the socket is bound to any
    /// address of the remote's family. Names (`"localhost:9999"`) are looked
    /// up with [`getaddrinfo`](Self::getaddrinfo); with several addresses
    /// the pairs of one family are tried in turn, the first that binds (and
    /// connects) wins.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use tulip::{selectors::Backend, DatagramProtocol, DatagramTransport, SocketAddress};
    ///
    /// #[derive(Default)]
    /// struct Keep(Option<DatagramTransport>, Vec<Vec<u8>>);
    /// impl DatagramProtocol for Keep {
    ///     fn connection_made(&mut self, transport: DatagramTransport) { self.0 = Some(transport); }
    ///     fn datagram_received(&mut self, data: &[u8], _from: SocketAddress) { self.1.push(data.to_vec()); }
    /// }
    ///
    /// let event_loop = tulip::new_event_loop(Backend::Poll)?;
    /// let lp = &event_loop;
    /// let got = event_loop.run_until_complete(async {
    ///     let (server, kept) = lp.create_datagram_endpoint(Some(&"127.0.0.1:0"), None, Keep::default).await?;
    ///     let to = server.local_addr()?;
    ///     let (client, _) = lp.create_datagram_endpoint(None, Some(&to.as_inet().unwrap()), Keep::default).await?;
    ///     client.sendto(b"ping", None)?;
    ///     while kept.borrow().1.is_empty() {
    ///         tulip::sleep(lp, std::time::Duration::from_millis(1)).await;
    ///     }
    ///     let got = kept.borrow().1.clone();
    ///     std::io::Result::Ok(got)
    /// })??;
    /// assert_eq!(got, [b"ping".to_vec()]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if both addresses are
    /// `None` or no local address has the remote's family; the errors of
    /// [`getaddrinfo`](Self::getaddrinfo), of `bind` (e.g.
    /// [`AddrInUse`](io::ErrorKind::AddrInUse)) and `connect`; the loop's
    /// refusal to watch the socket (closed loop).
    pub async fn create_datagram_endpoint<P: DatagramProtocol>(
        &self,
        local: Option<&dyn ToAddrs>,
        remote: Option<&dyn ToAddrs>,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(DatagramTransport, Rc<RefCell<P>>)> {
        let locals = match local {
            Some(local) => Some(self.resolve(local.to_addrs()?).await?),
            None => None,
        };
        let remotes = match remote {
            Some(remote) => Some(self.resolve(remote.to_addrs()?).await?),
            None => None,
        };
        // (where to bind, where to connect), in the order to try.
        let pairs: Vec<(SocketAddr, Option<SocketAddr>)> = match (&locals, &remotes) {
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "create_datagram_endpoint needs a local or a remote address",
                ))
            }
            (Some(locals), None) => locals.iter().map(|l| (*l, None)).collect(),
            (None, Some(remotes)) => remotes.iter().map(|r| (any_of_family(r), Some(*r))).collect(),
            (Some(locals), Some(remotes)) => remotes
                .iter()
                .flat_map(|r| {
                    locals.iter().filter(|l| l.is_ipv4() == r.is_ipv4()).map(move |l| (*l, Some(*r)))
                })
                .collect(),
        };
        if pairs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no local address of the remote address's family (IPv4 and IPv6 do not mix)",
            ));
        }
        let mut failures = Vec::new();
        let mut made = None;
        for (bind_to, remote) in pairs {
            match udp_socket(bind_to, remote) {
                Ok(sock) => {
                    made = Some(sock);
                    break;
                }
                Err(err) => failures.push((remote.unwrap_or(bind_to), err)),
            }
        }
        let sock = made.ok_or_else(|| all_failed("cannot create the datagram endpoint", failures))?;
        self.datagram_transport(Dgram::Udp(sock), factory).await
    }

    /// [`create_datagram_endpoint`](Self::create_datagram_endpoint) over a
    /// Unix-domain datagram socket, bound to the path `local` (a stale
    /// socket file there is replaced, as asyncio does; the file stays after
    /// close) and/or connected to `remote`. With neither, the socket is
    /// unbound and unconnected: it can send to paths with `sendto`, but
    /// nothing can answer it.
    ///
    /// # Errors
    ///
    /// [`AddrInUse`](io::ErrorKind::AddrInUse) if `local` exists and is not
    /// a socket; the errors of `bind` and `connect` (e.g.
    /// [`NotFound`](io::ErrorKind::NotFound) for a `remote` nobody bound,
    /// [`ConnectionRefused`](io::ErrorKind::ConnectionRefused) for a stale one).
    pub async fn create_unix_datagram_endpoint<P: DatagramProtocol>(
        &self,
        local: Option<&Path>,
        remote: Option<&Path>,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(DatagramTransport, Rc<RefCell<P>>)> {
        let sock = match local {
            Some(path) => {
                remove_stale_socket_file(path)?;
                UnixDatagram::bind(path)?
            }
            None => UnixDatagram::unbound()?,
        };
        if let Some(remote) = remote {
            sock.connect(remote).map_err(|err| {
                io::Error::new(err.kind(), format!("cannot connect to {}: {err}", remote.display()))
            })?;
        }
        sock.set_nonblocking(true)?;
        self.datagram_transport(Dgram::Unix(sock), factory).await
    }

    /// [`create_datagram_endpoint`](Self::create_datagram_endpoint) on a
    /// socket you made (asyncio's `sock=`): bound, connected or neither, with
    /// whatever options you set. It is put in non-blocking mode, and closed
    /// with the endpoint.
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// use tulip::{selectors::Backend, DatagramProtocol};
    ///
    /// struct Quiet;
    /// impl DatagramProtocol for Quiet {}
    ///
    /// let event_loop = tulip::new_event_loop(Backend::Poll)?;
    /// let sock = UdpSocket::bind("127.0.0.1:0")?;
    /// sock.set_broadcast(true)?;
    /// let addr = sock.local_addr()?;
    /// let (endpoint, _) =
    ///     event_loop.run_until_complete(event_loop.create_datagram_endpoint_from_socket(sock, || Quiet))??;
    /// assert_eq!(endpoint.local_addr()?.as_inet(), Some(addr));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The error of making it non-blocking, or the loop's refusal to watch
    /// it (closed loop).
    pub async fn create_datagram_endpoint_from_socket<P: DatagramProtocol>(
        &self,
        sock: impl Into<DatagramEndpointSocket>,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(DatagramTransport, Rc<RefCell<P>>)> {
        let sock = sock.into();
        set_nonblocking(sock.fd())?;
        self.datagram_transport(sock, factory).await
    }

    async fn datagram_transport<P: DatagramProtocol>(
        &self,
        sock: Dgram,
        factory: impl FnOnce() -> P,
    ) -> io::Result<(DatagramTransport, Rc<RefCell<P>>)> {
        if self.is_closed() {
            return Err(crate::event_loop::threadsafe::closed_error());
        }
        let protocol = Rc::new(RefCell::new(factory()));
        let waiter = self.create_future::<()>();
        let shared: SharedDatagramProtocol = protocol.clone();
        let transport: Rc<dyn DatagramTransportImpl> =
            SelectorDatagramTransport::start(self, sock, shared, waiter.clone());
        let inner = when_made(transport, waiter).await?;
        Ok((DatagramTransport { inner }, protocol))
    }
}
