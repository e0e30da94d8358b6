//! The server side of the selector loop's socket transports (asyncio's
//! `Server` and `create_server`): a listening socket, watched with a
//! reader that accepts connections in batches and starts a
//! [`Transport`](crate::Transport) and a protocol for each. Out of fds, it
//! stops accepting for a while instead of spinning.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::TcpListener;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::event_loop::selector_events::Release;
use crate::net::fd_transport::{not_connected, Loop, LoopLink};
use crate::net::names::{all_failed, resolve_blocking};
use crate::net::socket_transport::{SharedProtocol, SocketTransport, Stream};
use crate::net::sockets::{accept_one, remove_stale_socket_file};
use crate::net::transports::ServerImpl;
use crate::selectors::Selector;
use crate::{
    AbstractEventLoop, BaseSelectorEventLoop, ExceptionContext, IoHandlers, Protocol, Server, SocketAddress,
};

/// Connections accepted per readiness event, at most (asyncio's backlog).
const ACCEPT_BATCH: usize = 100;
/// How long a server stops accepting when out of fds (asyncio's `ACCEPT_RETRY_DELAY`).
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// A listening socket and the path to remove when it closes (Unix).
enum Listening {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listening {
    /// One waiting connection, if any (see [`accept_one`]).
    fn accept(&self) -> io::Result<Option<Stream>> {
        Ok(match self {
            Listening::Tcp(listener) => accept_one(listener)?.map(|(stream, _)| Stream::Tcp(stream)),
            Listening::Unix(listener, _) => accept_one(listener)?.map(|(stream, _)| Stream::Unix(stream)),
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddress> {
        match self {
            Listening::Tcp(listener) => listener.local_addr().map(SocketAddress::Inet),
            Listening::Unix(listener, _) => listener.local_addr().map(SocketAddress::Unix),
        }
    }
}

type ProtocolFactory = Box<dyn Fn() -> SharedProtocol>;

struct SocketServer<S: Selector<IoHandlers> + 'static> {
    /// Itself, and where callbacks go without a `&Loop`.
    link: LoopLink<Self, S>,
    fd: RawFd,
    listener: RefCell<Option<Listening>>,
    factory: ProtocolFactory,
    serving: Cell<bool>,
    accepted: Cell<u64>,
}

impl<S: Selector<IoHandlers> + 'static> SocketServer<S> {
    fn watch(&self, event_loop: &Loop<S>) -> io::Result<()> {
        let Some(me) = self.link.rc() else { return Ok(()) };
        event_loop.add_reader(self.fd, move |event_loop| me.on_acceptable(event_loop))
    }

    fn on_acceptable(&self, event_loop: &Loop<S>) {
        for _ in 0..ACCEPT_BATCH {
            if !self.serving.get() {
                return;
            }
            let accepted = match &*self.listener.borrow() {
                Some(listener) => listener.accept(),
                None => return,
            };
            match accepted {
                Ok(Some(stream)) => {
                    self.accepted.set(self.accepted.get() + 1);
                    SocketTransport::start(event_loop, stream, (self.factory)(), None);
                }
                Ok(None) => return,
                Err(err) => {
                    let out_of_resources = matches!(
                        err.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    );
                    let context = ExceptionContext {
                        message: format!(
                            "error accepting a connection: {err}{}",
                            if out_of_resources { "; accepting again in 1 second" } else { "" }
                        ),
                        panic: None,
                        origin: None,
                    };
                    event_loop.call_exception_handler(&context);
                    if out_of_resources {
                        // As asyncio: stop watching for a while, or we spin.
                        let _ = event_loop.remove_reader(self.fd);
                        if let Some(me) = self.link.rc() {
                            event_loop.call_later(ACCEPT_RETRY, move |event_loop| {
                                if me.serving.get() {
                                    let _ = me.watch(event_loop);
                                }
                            });
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Unwatches and closes the listening socket (after `close`).
    fn stop_listening(&self, event_loop: &Loop<S>) {
        let _ = event_loop.remove_reader(self.fd);
        let listener = self.listener.borrow_mut().take();
        drop(listener);
    }
}

impl<S: Selector<IoHandlers> + 'static> Release for SocketServer<S> {
    /// The loop closed while serving: close the listener (and remove its file).
    fn release(&self) {
        let serving = self.serving.replace(false);
        let listener = self.listener.borrow_mut().take();
        if let (true, Some(Listening::Unix(_, path))) = (serving, &listener) {
            let _ = std::fs::remove_file(path);
        }
        drop(listener);
    }
}

impl<S: Selector<IoHandlers> + 'static> ServerImpl for SocketServer<S> {
    fn close(&self) {
        if !self.serving.replace(false) {
            return;
        }
        // The socket file goes now, as in asyncio: the loop may never run
        // the queued callback (it may be closed first). Only the fd must
        // wait for the loop, which unwatches it before it is closed.
        if let Some(Listening::Unix(_, path)) = &*self.listener.borrow() {
            let _ = std::fs::remove_file(path);
        }
        self.link.call_soon_with(|me, event_loop| me.stop_listening(event_loop));
    }

    fn is_serving(&self) -> bool {
        self.serving.get()
    }

    fn local_addr(&self) -> io::Result<SocketAddress> {
        // Closed means closed at once, though the fd waits for the loop.
        if !self.serving.get() {
            return Err(not_connected());
        }
        self.listener.borrow().as_ref().ok_or_else(not_connected)?.local_addr()
    }

    fn connections_made(&self) -> u64 {
        self.accepted.get()
    }
}

/// Servers on the selector loop (asyncio's `create_server` and
/// `create_unix_server`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Listens on `addr` (port 0 picks a free port, see [`Server::local_addr`])
    /// and, for each connection, makes a protocol with `factory` and a
    /// [`Transport`](crate::Transport) for it. Serving starts at once.
    ///
    /// ```no_run
    /// use tulip::{Protocol, Transport, SelectorEventLoop};
    ///
    /// struct Echo(Option<Transport>);
    /// impl Protocol for Echo {
    ///     fn connection_made(&mut self, transport: Transport) { self.0 = Some(transport); }
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         if let Some(t) = &self.0 { let _ = t.write(data); }
    ///     }
    /// }
    ///
    /// let event_loop = SelectorEventLoop::new()?;
    /// let server = event_loop.create_server("127.0.0.1:8888", || Echo(None))?;
    /// println!("serving on {}", server.local_addr()?);
    /// tulip::AbstractEventLoop::run_forever(&event_loop)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// `addr` is a `SocketAddr` or anything else [`ToAddrs`](crate::ToAddrs).
    /// A host name (`"localhost:8080"`) is looked up before this returns, on
    /// the calling thread (a server is made once, at start-up; look it up
    /// with [`getaddrinfo`](Self::getaddrinfo) first to keep the loop free),
    /// and its addresses are tried in turn: the server listens on the first
    /// that binds. (asyncio listens on all of them, with a socket each.)
    ///
    /// # Errors
    ///
    /// If binding fails (e.g. [`AddrInUse`](io::ErrorKind::AddrInUse); for
    /// several addresses, an error listing each one's failure), the name is
    /// not found ([`NotFound`](io::ErrorKind::NotFound), naming it), or the
    /// loop cannot watch the socket (closed loop).
    pub fn create_server<P: Protocol>(
        &self,
        addr: impl crate::ToAddrs,
        factory: impl Fn() -> P + 'static,
    ) -> io::Result<Server> {
        let mut failures = Vec::new();
        for addr in resolve_blocking(&addr)? {
            match TcpListener::bind(addr) {
                Ok(listener) => {
                    listener.set_nonblocking(true)?;
                    return self.serve(Listening::Tcp(listener), factory);
                }
                Err(err) => failures.push((addr, err)),
            }
        }
        Err(all_failed("cannot listen", failures))
    }

    /// [`create_server`](Self::create_server) on a Unix-domain socket at
    /// `path`. A stale socket file there is replaced; the file is removed
    /// when the server closes.
    ///
    /// # Errors
    ///
    /// If `path` exists and is not a socket ([`AddrInUse`](io::ErrorKind::AddrInUse)),
    /// or binding or watching fails.
    pub fn create_unix_server<P: Protocol>(
        &self,
        path: impl AsRef<Path>,
        factory: impl Fn() -> P + 'static,
    ) -> io::Result<Server> {
        let path = path.as_ref();
        remove_stale_socket_file(path)?;
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        self.serve(Listening::Unix(listener, path.to_path_buf()), factory)
    }

    fn serve<P: Protocol>(
        &self,
        listening: Listening,
        factory: impl Fn() -> P + 'static,
    ) -> io::Result<Server> {
        let fd = match &listening {
            Listening::Tcp(listener) => listener.as_raw_fd(),
            Listening::Unix(listener, _) => listener.as_raw_fd(),
        };
        let server = Rc::new_cyclic(|me| SocketServer {
            link: LoopLink::new(me, self),
            fd,
            listener: RefCell::new(Some(listening)),
            factory: Box::new(move || -> SharedProtocol { Rc::new(RefCell::new(factory())) }),
            serving: Cell::new(true),
            accepted: Cell::new(0),
        });
        server.watch(self)?;
        let weak: Weak<dyn Release> = Rc::downgrade(&server) as Weak<dyn Release>;
        self.keep_resource(weak);
        Ok(Server { inner: server })
    }
}
