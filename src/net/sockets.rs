//! Async socket operations (asyncio's `sock_accept`, `sock_connect`,
//! `sock_recv`, `sock_sendall`), built on `add_reader`/`add_writer`.
//!
//! Each operation tries its syscall first and registers with the loop only
//! when the syscall would block; the reader or writer it adds just wakes the
//! awaiting task, which tries again. The operation's future removes its
//! reader or writer when it completes or is dropped, so nothing stays
//! registered behind a cancelled operation. One operation per direction and
//! socket may wait at a time: a second one that would have to wait fails
//! with [`ResourceBusy`](std::io::ErrorKind::ResourceBusy) rather than
//! silently replace the first one's reader.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::net::sys::{self as net, Connect, RawAddr};
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers, Sleep};

/// How long a Unix connect waits before retrying when the listener's
/// backlog is full (the kernel offers no readiness to wait for).
const UNIX_CONNECT_RETRY: Duration = Duration::from_millis(1);

/// A reader or writer registered while an operation waits, and removed when
/// it completes or is dropped.
pub(crate) struct Waiter<'a, S: Selector<IoHandlers> + 'static> {
    event_loop: &'a BaseSelectorEventLoop<S>,
    fd: RawFd,
    write: bool,
    /// `Some` while registered: where the callback finds the waker to wake.
    waker: Option<Rc<RefCell<Option<Waker>>>>,
}

impl<'a, S: Selector<IoHandlers> + 'static> Waiter<'a, S> {
    pub(crate) fn new(event_loop: &'a BaseSelectorEventLoop<S>, fd: RawFd, write: bool) -> Self {
        Waiter { event_loop, fd, write, waker: None }
    }

    /// Makes sure the task of `cx` is woken when the fd is ready.
    pub(crate) fn wait(&mut self, cx: &Context<'_>) -> io::Result<()> {
        if let Some(slot) = &self.waker {
            let mut slot = slot.borrow_mut();
            if !slot.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
            return Ok(());
        }
        if !self.event_loop.claim_io(self.fd, self.write) {
            let side = if self.write { "writing" } else { "reading" };
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!("another operation is waiting for fd {} to be ready for {side}", self.fd),
            ));
        }
        let slot = Rc::new(RefCell::new(Some(cx.waker().clone())));
        let shared = Rc::clone(&slot);
        let wake = move |_: &BaseSelectorEventLoop<S>| {
            let waker = shared.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        };
        let added = if self.write {
            self.event_loop.add_writer(self.fd, wake)
        } else {
            self.event_loop.add_reader(self.fd, wake)
        };
        if let Err(err) = added {
            self.event_loop.release_io_claim(self.fd, self.write);
            return Err(err);
        }
        self.waker = Some(slot);
        Ok(())
    }

    /// Removes the reader or writer, if one was added.
    fn done(&mut self) {
        if self.waker.take().is_some() {
            let _ = if self.write {
                self.event_loop.remove_writer(self.fd)
            } else {
                self.event_loop.remove_reader(self.fd)
            };
            self.event_loop.release_io_claim(self.fd, self.write);
        }
    }
}

impl<S: Selector<IoHandlers> + 'static> Drop for Waiter<'_, S> {
    fn drop(&mut self) {
        self.done();
    }
}

/// Polls an operation's `attempt` (`Ok(None)`: it waits), removing the
/// reader or writer once it is done either way.
pub(crate) fn finish<T, S: Selector<IoHandlers> + 'static>(
    waiter: &mut Waiter<'_, S>,
    attempt: io::Result<Option<T>>,
) -> Poll<io::Result<T>> {
    match attempt {
        Ok(None) => Poll::Pending,
        Ok(Some(value)) => {
            waiter.done();
            Poll::Ready(Ok(value))
        }
        Err(err) => {
            waiter.done();
            Poll::Ready(Err(err))
        }
    }
}

/// A listening socket [`sock_accept`](BaseSelectorEventLoop::sock_accept)
/// accepts from: TCP and Unix-domain listeners.
pub trait Listener: AsRawFd {
    /// The accepted connection.
    type Stream;
    /// The peer's address.
    type Addr;

    /// Accepts one connection, its socket non-blocking and close-on-exec.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) when no connection is
    /// waiting (the listener is non-blocking); otherwise `accept`'s error.
    fn accept_nonblocking(&self) -> io::Result<(Self::Stream, Self::Addr)>;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Addr = SocketAddr;

    fn accept_nonblocking(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.accept()?;
        stream.set_nonblocking(true)?;
        Ok((stream, addr))
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Addr = std::os::unix::net::SocketAddr;

    fn accept_nonblocking(&self) -> io::Result<(UnixStream, Self::Addr)> {
        let (stream, addr) = self.accept()?;
        stream.set_nonblocking(true)?;
        Ok((stream, addr))
    }
}

/// A shared listener (a task and its spawner both holding it) accepts as
/// the listener inside: `sock_accept(&listener)` with `listener: Rc<TcpListener>`.
macro_rules! shared_listener {
    ($($pointer:ident),*) => {$(
        impl<A: Listener> Listener for $pointer<A> {
            type Stream = A::Stream;
            type Addr = A::Addr;

            fn accept_nonblocking(&self) -> io::Result<(A::Stream, A::Addr)> {
                (**self).accept_nonblocking()
            }
        }
    )*};
}

shared_listener!(Rc, Arc, Box);

/// The future of [`sock_accept`](BaseSelectorEventLoop::sock_accept).
#[must_use = "futures do nothing unless awaited"]
pub struct SockAccept<'a, S: Selector<IoHandlers> + 'static, A> {
    listener: &'a A,
    waiter: Waiter<'a, S>,
    nonblocking: bool,
}

impl<S: Selector<IoHandlers> + 'static, A: Listener> SockAccept<'_, S, A> {
    fn attempt(&mut self, cx: &Context<'_>) -> io::Result<Option<(A::Stream, A::Addr)>> {
        if !self.nonblocking {
            crate::selectors::mechanism::set_nonblocking(self.listener.as_raw_fd())?;
            self.nonblocking = true;
        }
        let accepted = accept_one(self.listener)?;
        if accepted.is_none() {
            self.waiter.wait(cx)?;
        }
        Ok(accepted)
    }
}

/// Makes room to bind a Unix-domain socket at `path`, as asyncio does: a
/// socket file there (left by a server or endpoint that is gone: binding
/// would fail with `AddrInUse`) is removed; anything else is kept, and an
/// [`AddrInUse`](io::ErrorKind::AddrInUse) error returned.
pub(crate) fn remove_stale_socket_file(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(_) => Ok(()),
    }
}

/// Accepts one connection from a non-blocking listener; `Ok(None)` when
/// none is waiting. A connection the peer gave up on before it was
/// accepted, and an interrupted call, are skipped: the next one is taken.
pub(crate) fn accept_one<A: Listener + ?Sized>(listener: &A) -> io::Result<Option<(A::Stream, A::Addr)>> {
    loop {
        match listener.accept_nonblocking() {
            Ok(accepted) => return Ok(Some(accepted)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err)
                if matches!(err.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => {}
            Err(err) => return Err(err),
        }
    }
}

impl<S: Selector<IoHandlers> + 'static, A: Listener> Future for SockAccept<'_, S, A> {
    type Output = io::Result<(A::Stream, A::Addr)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let attempt = self.attempt(cx);
        finish(&mut self.waiter, attempt)
    }
}

/// The future of [`sock_recv`](BaseSelectorEventLoop::sock_recv).
#[must_use = "futures do nothing unless awaited"]
pub struct SockRecv<'a, S: Selector<IoHandlers> + 'static> {
    buf: &'a mut [u8],
    waiter: Waiter<'a, S>,
}

impl<S: Selector<IoHandlers> + 'static> Future for SockRecv<'_, S> {
    type Output = io::Result<usize>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let attempt = match net::recv(this.waiter.fd, this.buf) {
            Ok(None) => this.waiter.wait(cx).map(|()| None),
            other => other,
        };
        finish(&mut this.waiter, attempt)
    }
}

/// The future of [`sock_sendall`](BaseSelectorEventLoop::sock_sendall).
#[must_use = "futures do nothing unless awaited"]
pub struct SockSendall<'a, S: Selector<IoHandlers> + 'static> {
    data: &'a [u8],
    sent: usize,
    waiter: Waiter<'a, S>,
}

impl<S: Selector<IoHandlers> + 'static> SockSendall<'_, S> {
    fn attempt(&mut self, cx: &Context<'_>) -> io::Result<Option<()>> {
        while self.sent < self.data.len() {
            match net::send(self.waiter.fd, &self.data[self.sent..])? {
                Some(n) => self.sent += n,
                None => {
                    self.waiter.wait(cx)?;
                    return Ok(None);
                }
            }
        }
        Ok(Some(()))
    }

    /// Bytes sent so far (all of them once the future is done).
    pub fn sent(&self) -> usize {
        self.sent
    }
}

impl<S: Selector<IoHandlers> + 'static> Future for SockSendall<'_, S> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let attempt = self.attempt(cx);
        finish(&mut self.waiter, attempt)
    }
}

/// A non-blocking connect of a socket the library creates.
struct Connecting<'a, S: Selector<IoHandlers> + 'static> {
    event_loop: &'a BaseSelectorEventLoop<S>,
    /// The address, or why it cannot be used (reported at the first poll).
    addr: io::Result<RawAddr>,
    /// Declared before `sock`: the writer is removed before the fd closes.
    waiter: Option<Waiter<'a, S>>,
    /// A Unix listener's backlog was full: wait, then call connect again.
    retry: Option<Sleep>,
    sock: Option<OwnedFd>,
    /// The connect syscall was accepted: wait for writability.
    in_progress: bool,
    /// The result was handed out.
    finished: bool,
}

impl<'a, S: Selector<IoHandlers> + 'static> Connecting<'a, S> {
    fn new(event_loop: &'a BaseSelectorEventLoop<S>, addr: io::Result<RawAddr>) -> Self {
        Connecting {
            event_loop,
            addr,
            waiter: None,
            retry: None,
            sock: None,
            in_progress: false,
            finished: false,
        }
    }

    fn attempt(&mut self, cx: &mut Context<'_>) -> io::Result<Option<OwnedFd>> {
        let addr = match &self.addr {
            Ok(addr) => addr,
            Err(err) => return Err(io::Error::new(err.kind(), err.to_string())),
        };
        let fd = match &self.sock {
            Some(sock) => sock.as_raw_fd(),
            None => self.sock.insert(net::stream_socket(addr.family())?).as_raw_fd(),
        };
        let waiter = self.waiter.get_or_insert_with(|| Waiter::new(self.event_loop, fd, true));
        if self.in_progress {
            if let Some(err) = net::take_error(fd)? {
                return Err(err);
            }
            if !net::is_connected(fd)? {
                waiter.wait(cx)?;
                return Ok(None);
            }
            return Ok(self.sock.take());
        }
        if let Some(retry) = &mut self.retry {
            if Pin::new(retry).poll(cx).is_pending() {
                return Ok(None);
            }
            self.retry = None;
        }
        match net::start_connect(fd, addr)? {
            Connect::Done => Ok(self.sock.take()),
            Connect::InProgress => {
                self.in_progress = true;
                waiter.wait(cx)?;
                Ok(None)
            }
            Connect::Again => {
                let mut retry = crate::sleep(self.event_loop, UNIX_CONNECT_RETRY);
                // Polled once so that the timer wakes this task.
                let _ = Pin::new(&mut retry).poll(cx);
                self.retry = Some(retry);
                Ok(None)
            }
        }
    }

    fn poll_connect(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<OwnedFd>> {
        if self.finished {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connect polled after completion",
            )));
        }
        let attempt = self.attempt(cx);
        let done = !matches!(attempt, Ok(None));
        if done {
            self.finished = true;
            self.retry = None;
            if let Some(waiter) = &mut self.waiter {
                waiter.done();
            }
        }
        match attempt {
            Ok(None) => Poll::Pending,
            Ok(Some(sock)) => Poll::Ready(Ok(sock)),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

/// The future of [`sock_connect`](BaseSelectorEventLoop::sock_connect)
/// (`T` = [`TcpStream`]) and
/// [`sock_connect_unix`](BaseSelectorEventLoop::sock_connect_unix) (`T` =
/// [`UnixStream`]).
#[must_use = "futures do nothing unless awaited"]
pub struct SockConnect<'a, S: Selector<IoHandlers> + 'static, T> {
    connecting: Connecting<'a, S>,
    stream: PhantomData<fn() -> T>,
}

impl<S: Selector<IoHandlers> + 'static, T: From<OwnedFd>> Future for SockConnect<'_, S, T> {
    type Output = io::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        self.connecting.poll_connect(cx).map_ok(T::from)
    }
}

impl<S: Selector<IoHandlers> + 'static> fmt::Debug for SockRecv<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockRecv").field("fd", &self.waiter.fd).finish_non_exhaustive()
    }
}

impl<S: Selector<IoHandlers> + 'static> fmt::Debug for SockSendall<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockSendall")
            .field("fd", &self.waiter.fd)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<S: Selector<IoHandlers> + 'static, A> fmt::Debug for SockAccept<'_, S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockAccept").field("fd", &self.waiter.fd).finish_non_exhaustive()
    }
}

impl<S: Selector<IoHandlers> + 'static, T> fmt::Debug for SockConnect<'_, S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockConnect")
            .field("in_progress", &self.connecting.in_progress)
            .finish_non_exhaustive()
    }
}

/// Async socket operations on the selector loop. The sockets need not be
/// in non-blocking mode for `sock_recv`/`sock_sendall` (they pass
/// `MSG_DONTWAIT`); `sock_accept` switches its listener to non-blocking.
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Accepts a connection (asyncio's `sock_accept`): the new socket is
    /// non-blocking and close-on-exec. Puts `listener` in non-blocking mode.
    ///
    /// # Errors
    ///
    /// `accept`'s error (aborted connections are skipped), or the loop's
    /// refusal to watch the listener (closed loop, fd beyond `select`'s limit).
    pub fn sock_accept<'a, A: Listener>(&'a self, listener: &'a A) -> SockAccept<'a, S, A> {
        let waiter = Waiter::new(self, listener.as_raw_fd(), false);
        SockAccept { listener, waiter, nonblocking: false }
    }

    /// Connects a new TCP socket (non-blocking, close-on-exec) to `addr`
    /// (asyncio's `sock_connect`, which also creates the socket here).
    ///
    /// # Errors
    ///
    /// The connect's failure, e.g. [`ConnectionRefused`](io::ErrorKind::ConnectionRefused),
    /// or the failure to create the socket or watch it.
    pub fn sock_connect(&self, addr: SocketAddr) -> SockConnect<'_, S, TcpStream> {
        let connecting = Connecting::new(self, Ok(RawAddr::from(&addr)));
        SockConnect { connecting, stream: PhantomData }
    }

    /// Connects a new Unix-domain stream socket to the listener at `path`.
    /// While the listener's backlog is full, retries every millisecond.
    ///
    /// # Errors
    ///
    /// As [`sock_connect`](Self::sock_connect) (e.g. [`NotFound`](io::ErrorKind::NotFound)
    /// for a missing path); [`InvalidInput`](io::ErrorKind::InvalidInput) for a
    /// path too long for `sockaddr_un`.
    pub fn sock_connect_unix(&self, path: impl AsRef<Path>) -> SockConnect<'_, S, UnixStream> {
        let connecting = Connecting::new(self, net::unix_addr(path.as_ref()));
        SockConnect { connecting, stream: PhantomData }
    }

    /// Receives up to `buf.len()` bytes (asyncio's `sock_recv`); `Ok(0)` at
    /// end of stream.
    ///
    /// # Errors
    ///
    /// `recv`'s error, e.g. [`ConnectionReset`](io::ErrorKind::ConnectionReset),
    /// or the loop's refusal to watch the socket.
    pub fn sock_recv<'a, T: AsRawFd + ?Sized>(&'a self, sock: &'a T, buf: &'a mut [u8]) -> SockRecv<'a, S> {
        SockRecv { buf, waiter: Waiter::new(self, sock.as_raw_fd(), false) }
    }

    /// Sends all of `data` (asyncio's `sock_sendall`), waiting for
    /// writability whenever the socket's buffer is full.
    ///
    /// # Errors
    ///
    /// `send`'s error, e.g. [`BrokenPipe`](io::ErrorKind::BrokenPipe) or
    /// [`ConnectionReset`](io::ErrorKind::ConnectionReset); what was sent
    /// before it is gone, see [`SockSendall::sent`].
    pub fn sock_sendall<'a, T: AsRawFd + ?Sized>(
        &'a self,
        sock: &'a T,
        data: &'a [u8],
    ) -> SockSendall<'a, S> {
        SockSendall { data, sent: 0, waiter: Waiter::new(self, sock.as_raw_fd(), true) }
    }
}
