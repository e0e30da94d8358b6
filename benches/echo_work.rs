//! The echo servers and their load generator, written once and used twice:
//! by the criterion bench `echo.rs` (requests per second, server CPU time
//! per request) and by the `echo_steps` example (a fixed number of rounds,
//! for callgrind).
//!
//! One load generator drives every server: blocking `std` TCP clients on
//! 127.0.0.1, 64-byte messages, ping-pong. A round writes one message on
//! every connection, then reads every reply, so each connection has one
//! request in flight. Every read has a timeout: a stuck server fails the
//! run instead of hanging it.
//!
//! The servers, each on its own thread, serve a given number of
//! connections and return once all of them are closed:
//! - `tulip-callbacks`: `add_reader` / `add_writer` callbacks;
//! - `tulip-coroutines`: a task per connection on `sock_accept`,
//!   `sock_recv`, `sock_sendall`;
//! - `tulip-protocol`: `create_server` with an echo `Protocol`;
//! - `tulip-streams`: `start_server` with a handler that reads, writes and
//!   drains (`examples/echo_streams.rs`);
//! - `raw-epoll`: `epoll_wait` + `recv` + `send` written inline, the floor;
//! - `tokio`: tokio's current-thread runtime, a task per connection.

#![allow(dead_code)] // each of the two users runs a subset

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tulip::{AbstractEventLoop, Protocol, SelectorEventLoop, Transport};
use tulip_selectors::mechanism::cvt;

/// The size of every request and reply.
pub const MESSAGE: usize = 64;

/// How long a client waits for a reply before the run fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The ways the echo server is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TulipCallbacks,
    TulipCoroutines,
    TulipProtocol,
    TulipStreams,
    RawEpoll,
    Tokio,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::RawEpoll,
        Kind::TulipCallbacks,
        Kind::TulipCoroutines,
        Kind::TulipProtocol,
        Kind::TulipStreams,
        Kind::Tokio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::TulipCallbacks => "tulip-callbacks",
            Kind::TulipCoroutines => "tulip-coroutines",
            Kind::TulipProtocol => "tulip-protocol",
            Kind::TulipStreams => "tulip-streams",
            Kind::RawEpoll => "raw-epoll",
            Kind::Tokio => "tokio",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// CPU placement and CPU time

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size given.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })
        .expect("sched_getaffinity");
    // SAFETY: `set` is a valid cpu_set_t and every index is below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect()
}

/// Restricts the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `set` is a valid cpu_set_t and `cpu` came from sched_getaffinity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size given; 0 is this thread.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })
        .expect("sched_setaffinity");
}

/// Reads a thread's CPU-time clock (user + system time of that thread).
#[derive(Debug, Clone, Copy)]
pub struct CpuClock(libc::clockid_t);

impl CpuClock {
    /// The CPU-time clock of the thread behind `handle`, which must be running.
    pub fn of<T>(handle: &JoinHandle<T>) -> CpuClock {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive (its JoinHandle is not joined) and
        // `clock` is a valid, writable clockid_t.
        let err = unsafe { libc::pthread_getcpuclockid(handle.as_pthread_t(), &mut clock) };
        assert_eq!(err, 0, "pthread_getcpuclockid: {}", io::Error::from_raw_os_error(err));
        CpuClock(clock)
    }

    /// The thread's CPU time so far.
    pub fn now(self) -> Duration {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid, writable timespec; the clock id is a thread's CPU clock.
        cvt(unsafe { libc::clock_gettime(self.0, &mut now) }).expect("clock_gettime");
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }
}

// ---------------------------------------------------------------------------
// The load generator

/// `n` blocking client connections and the message they send.
pub struct Clients {
    streams: Vec<TcpStream>,
    request: [u8; MESSAGE],
    reply: [u8; MESSAGE],
}

impl Clients {
    /// Connects `n` clients to `addr`.
    pub fn connect(addr: SocketAddr, n: usize) -> Clients {
        let streams = (0..n)
            .map(|_| {
                let stream = TcpStream::connect(addr).expect("connect to the echo server");
                stream.set_nodelay(true).expect("TCP_NODELAY");
                stream.set_read_timeout(Some(REPLY_TIMEOUT)).expect("read timeout");
                stream.set_write_timeout(Some(REPLY_TIMEOUT)).expect("write timeout");
                stream
            })
            .collect();
        let mut request = [0u8; MESSAGE];
        for (i, byte) in request.iter_mut().enumerate() {
            *byte = b'a' + (i % 26) as u8;
        }
        Clients { streams, request, reply: [0; MESSAGE] }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// One round: a request on every connection, then every reply.
    ///
    /// # Panics
    ///
    /// If a reply is late (10 s), short or wrong.
    #[inline(never)]
    pub fn round(&mut self) {
        for stream in &mut self.streams {
            stream.write_all(&self.request).expect("send a request");
        }
        for stream in &mut self.streams {
            stream.read_exact(&mut self.reply).expect("read a reply");
            assert_eq!(self.reply, self.request, "the echo is exact");
        }
    }

    /// `rounds` rounds; returns the requests made.
    pub fn rounds(&mut self, rounds: u64) -> u64 {
        for _ in 0..rounds {
            self.round();
        }
        rounds * self.streams.len() as u64
    }
}

// ---------------------------------------------------------------------------
// Running a server

/// A server running on its own thread.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
    cpu: CpuClock,
}

impl Server {
    /// Starts a `kind` server for `conns` connections on 127.0.0.1, on a
    /// new thread restricted to `cpus` (all of them if empty).
    pub fn start(kind: Kind, conns: usize, cpus: &[usize]) -> Server {
        let (tx, rx) = mpsc::channel();
        let cpus = cpus.to_vec();
        let thread = thread::Builder::new()
            .name(format!("{kind}-server"))
            .spawn(move || {
                if !cpus.is_empty() {
                    pin_current_thread(&cpus);
                }
                // create_server and start_server make their own listening socket.
                if kind == Kind::TulipProtocol {
                    return serve_protocol(conns, tx);
                }
                if kind == Kind::TulipStreams {
                    return serve_streams(conns, tx);
                }
                let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
                tx.send(listener.local_addr().expect("local_addr")).expect("tell the address");
                match kind {
                    Kind::TulipCallbacks => serve_callbacks(listener, conns),
                    Kind::TulipCoroutines => serve_coroutines(listener, conns),
                    Kind::TulipProtocol | Kind::TulipStreams => unreachable!(),
                    Kind::RawEpoll => serve_raw_epoll(listener, conns),
                    Kind::Tokio => serve_tokio(listener, conns),
                }
            })
            .expect("spawn the server thread");
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("the server started");
        let cpu = CpuClock::of(&thread);
        Server { kind, addr, thread: Some(thread), cpu }
    }

    /// The server thread's CPU time so far.
    pub fn cpu_time(&self) -> Duration {
        self.cpu.now()
    }

    /// Waits for the server to return (its clients must be closed first).
    ///
    /// # Panics
    ///
    /// If the server panicked, or has not returned within 10 seconds.
    pub fn join(mut self) {
        let Some(thread) = self.thread.take() else { return };
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "the {} server did not return", self.kind);
            thread::sleep(Duration::from_millis(1));
        }
        thread.join().expect("the server thread panicked");
    }
}

/// What one measurement saw: requests, wall time, server CPU time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub requests: u64,
    pub wall: Duration,
    pub server_cpu: Duration,
}

impl Sample {
    pub fn add(&mut self, other: Sample) {
        self.requests += other.requests;
        self.wall += other.wall;
        self.server_cpu += other.server_cpu;
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    pub fn cpu_nanos_per_request(&self) -> f64 {
        self.server_cpu.as_nanos() as f64 / self.requests as f64
    }
}

/// `rounds` rounds of `clients` against `server`, measured.
pub fn measure(server: &Server, clients: &mut Clients, rounds: u64) -> Sample {
    let cpu = server.cpu_time();
    let started = Instant::now();
    let requests = clients.rounds(rounds);
    let wall = started.elapsed();
    Sample { requests, wall, server_cpu: server.cpu_time() - cpu }
}

// ---------------------------------------------------------------------------
// The servers

fn accept_nonblocking(listener: &TcpListener) -> io::Result<TcpStream> {
    let (stream, _) = listener.accept()?;
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// tulip, callbacks: a reader on the listener accepts; a reader per
/// connection echoes what it reads, buffering what the socket does not take
/// and sending it from a writer.
fn serve_callbacks(listener: TcpListener, conns: usize) {
    let event_loop = SelectorEventLoop::new().expect("event loop");
    listener.set_nonblocking(true).expect("non-blocking listener");
    let listener_fd = listener.as_raw_fd();
    let open = Rc::new(Cell::new(conns));
    // One read buffer for every connection: reads never overlap.
    let buffer = Rc::new(RefCell::new(vec![0u8; 4096]));
    let mut accepted = 0;
    event_loop
        .add_reader(listener_fd, move |event_loop| {
            while accepted < conns {
                let Ok(stream) = accept_nonblocking(&listener) else { return };
                accepted += 1;
                let buffer = Rc::clone(&buffer);
                let conn = Rc::new(CallbackConn { stream, buffer, unsent: RefCell::new(Vec::new()) });
                let (fd, open) = (conn.stream.as_raw_fd(), Rc::clone(&open));
                event_loop
                    .add_reader(fd, move |event_loop| conn.on_readable(event_loop, &open))
                    .expect("add_reader");
            }
            event_loop.remove_reader(listener_fd).expect("remove_reader");
        })
        .expect("add_reader");
    event_loop.run_forever().expect("run_forever");
    event_loop.close().expect("close");
}

struct CallbackConn {
    stream: TcpStream,
    buffer: Rc<RefCell<Vec<u8>>>,
    unsent: RefCell<Vec<u8>>,
}

impl CallbackConn {
    fn on_readable(self: &Rc<Self>, event_loop: &SelectorEventLoop, open: &Rc<Cell<usize>>) {
        let mut buf = self.buffer.borrow_mut();
        match (&self.stream).read(&mut buf) {
            Ok(0) => self.close(event_loop, open),
            Ok(n) => self.send(event_loop, &buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.close(event_loop, open),
        }
    }

    fn send(self: &Rc<Self>, event_loop: &SelectorEventLoop, data: &[u8]) {
        let mut unsent = self.unsent.borrow_mut();
        if !unsent.is_empty() {
            unsent.extend_from_slice(data);
            return;
        }
        let sent = match (&self.stream).write(data) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => data.len(), // the reader sees the error next
        };
        if sent < data.len() {
            unsent.extend_from_slice(&data[sent..]);
            let conn = Rc::clone(self);
            event_loop
                .add_writer(self.stream.as_raw_fd(), move |event_loop| conn.on_writable(event_loop))
                .expect("add_writer");
        }
    }

    fn on_writable(&self, event_loop: &SelectorEventLoop) {
        let mut unsent = self.unsent.borrow_mut();
        match (&self.stream).write(&unsent) {
            Ok(n) => drop(unsent.drain(..n)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => unsent.clear(),
        }
        if unsent.is_empty() {
            event_loop.remove_writer(self.stream.as_raw_fd()).expect("remove_writer");
        }
    }

    fn close(&self, event_loop: &SelectorEventLoop, open: &Rc<Cell<usize>>) {
        let fd = self.stream.as_raw_fd();
        event_loop.remove_writer(fd).expect("remove_writer");
        event_loop.remove_reader(fd).expect("remove_reader");
        open.set(open.get() - 1);
        if open.get() == 0 {
            event_loop.stop();
        }
    }
}

/// tulip, coroutines: accepts `conns` connections, each echoed by its own
/// task on `sock_recv` / `sock_sendall`.
fn serve_coroutines(listener: TcpListener, conns: usize) {
    let event_loop = Rc::new(SelectorEventLoop::new().expect("event loop"));
    let lp = Rc::clone(&event_loop);
    event_loop
        .run_until_complete(async move {
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let (conn, _) = lp.sock_accept(&listener).await.expect("sock_accept");
                conn.set_nodelay(true).expect("TCP_NODELAY");
                let lp2 = Rc::clone(&lp);
                tasks.push(lp.create_task(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match lp2.sock_recv(&conn, &mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if lp2.sock_sendall(&conn, &buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }));
            }
            tulip::gather(tasks).await;
        })
        .expect("run_until_complete");
    event_loop.close().expect("close");
}

/// tulip, protocol: `create_server` with a protocol that writes back what
/// it receives.
fn serve_protocol(conns: usize, address: mpsc::Sender<SocketAddr>) {
    let event_loop = SelectorEventLoop::new().expect("event loop");
    let done = event_loop.create_future::<()>();
    let open = Rc::new(Cell::new(conns));
    let (d, o) = (done.clone(), Rc::clone(&open));
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = event_loop
        .create_server(any_port, move || EchoProtocol {
            transport: None,
            open: Rc::clone(&o),
            done: d.clone(),
        })
        .expect("create_server");
    let addr = server.local_addr().expect("local_addr").as_inet().expect("a TCP address");
    address.send(addr).expect("tell the address");
    event_loop.run_until_complete(done).expect("run_until_complete").expect("done");
    server.close();
    event_loop.close().expect("close");
}

struct EchoProtocol {
    transport: Option<Transport>,
    open: Rc<Cell<usize>>,
    done: tulip::Future<()>,
}

impl Protocol for EchoProtocol {
    fn connection_made(&mut self, transport: Transport) {
        self.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(transport) = &self.transport {
            let _ = transport.write(data);
        }
    }

    fn connection_lost(&mut self, _error: Option<io::Error>) {
        self.open.set(self.open.get() - 1);
        if self.open.get() == 0 {
            let _ = self.done.set_result(());
        }
    }
}

/// tulip, streams: `start_server` with a handler that echoes with `read`,
/// `write` and `drain` (as `examples/echo_streams.rs`).
fn serve_streams(conns: usize, address: mpsc::Sender<SocketAddr>) {
    let event_loop = SelectorEventLoop::new().expect("event loop");
    let done = event_loop.create_future::<()>();
    let open = Rc::new(Cell::new(conns));
    let (d, o) = (done.clone(), Rc::clone(&open));
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = event_loop
        .start_server(any_port, move |mut reader, writer| {
            let (done, open) = (d.clone(), Rc::clone(&o));
            async move {
                loop {
                    let data = reader.read(4096).await?;
                    if data.is_empty() {
                        break;
                    }
                    writer.write(&data)?;
                    writer.drain().await?;
                }
                open.set(open.get() - 1);
                if open.get() == 0 {
                    let _ = done.set_result(());
                }
                Ok(())
            }
        })
        .expect("start_server");
    let addr = server.local_addr().expect("local_addr").as_inet().expect("a TCP address");
    address.send(addr).expect("tell the address");
    event_loop.run_until_complete(done).expect("run_until_complete").expect("done");
    server.close();
    event_loop.close().expect("close");
}

/// The floor: `epoll_wait`, then `accept4` or `recv` + `send` for each
/// ready fd, level-triggered, one buffer. Replies are 64 bytes, which a
/// socket always takes whole here; a short send would fail the run.
fn serve_raw_epoll(listener: TcpListener, conns: usize) {
    // SAFETY: epoll_create1 takes only flags.
    let epoll = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).expect("epoll_create1");
    // SAFETY: `epoll` was just created and nobody else owns it.
    let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
    let control = |op: libc::c_int, fd: RawFd| {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
        // SAFETY: `event` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) }).expect("epoll_ctl");
    };
    listener.set_nonblocking(true).expect("non-blocking listener");
    let listener_fd = listener.as_raw_fd();
    control(libc::EPOLL_CTL_ADD, listener_fd);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = [0u8; 4096];
    let mut accepted: Vec<OwnedFd> = Vec::new();
    let mut open = conns;
    while open > 0 {
        // SAFETY: `events` holds `events.len()` initialised entries the kernel may overwrite.
        let ready = cvt(unsafe {
            libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as libc::c_int, -1)
        })
        .expect("epoll_wait") as usize;
        for event in &events[..ready] {
            let fd = event.u64 as RawFd;
            if fd == listener_fd {
                while accepted.len() < conns {
                    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
                    // SAFETY: null address pointers ask for no peer address.
                    let conn = unsafe {
                        libc::accept4(listener_fd, std::ptr::null_mut(), std::ptr::null_mut(), flags)
                    };
                    if conn < 0 {
                        break;
                    }
                    let one: libc::c_int = 1;
                    // SAFETY: `one` is a valid c_int for TCP_NODELAY, of the size given.
                    unsafe {
                        libc::setsockopt(
                            conn,
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            (&one as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                    control(libc::EPOLL_CTL_ADD, conn);
                    // SAFETY: `conn` was just accepted and nobody else owns it.
                    accepted.push(unsafe { OwnedFd::from_raw_fd(conn) });
                }
                continue;
            }
            // SAFETY: `buf` is a valid, writable buffer of the length given.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                // SAFETY: the first `n` bytes of `buf` were just received.
                let sent = unsafe { libc::send(fd, buf.as_ptr().cast(), n as usize, libc::MSG_NOSIGNAL) };
                assert_eq!(sent, n, "the raw server sends each reply whole");
            } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                control(libc::EPOLL_CTL_DEL, fd);
                open -= 1;
            }
        }
    }
}

/// tokio, current-thread runtime: a task per connection.
fn serve_tokio(listener: TcpListener, conns: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime");
    runtime.block_on(async move {
        listener.set_nonblocking(true).expect("non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut conn, _) = listener.accept().await.expect("accept");
            conn.set_nodelay(true).expect("TCP_NODELAY");
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("echo task");
        }
    });
}
