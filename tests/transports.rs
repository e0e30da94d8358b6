//! Layer 3: transports and protocols on every backend, over 127.0.0.1 and
//! Unix-domain sockets.

#[macro_use]
mod common;

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use tulip::{AbstractEventLoop, DynSelectorEventLoop, Protocol, Transport};

backend_tests!(
    run_on_thread:
    echo_10_mb_with_flow_control,
    half_close_with_write_eof,
    abort_drops_the_buffer,
    close_flushes_the_buffer,
    two_hundred_connections,
    connection_refused,
    server_close_stops_accepting,
    peer_reset_reaches_connection_lost,
    connection_lost_never_inside_write,
    write_after_close_or_eof,
    buffer_limits,
    pause_and_resume_reading,
    addresses,
    unix_echo,
    dropped_create_connection_closes,
    panic_in_connection_made_fails_create_connection,
    panic_in_connection_lost_still_closes_the_socket,
    closing_the_loop_closes_open_connections,
);

/// What a [`Recorder`] saw, shared with the test.
#[derive(Default)]
struct Log {
    transport: Option<Transport>,
    data: Vec<u8>,
    events: Vec<String>,
    /// `eof_received`'s answer.
    keep_open_on_eof: bool,
    /// Echo what arrives.
    echo: bool,
    /// Completed by `connection_lost` with its error's kind.
    lost: Option<tulip::Future<Option<io::ErrorKind>>>,
}

type SharedLog = Rc<RefCell<Log>>;

/// A protocol that records everything in a [`Log`].
struct Recorder(SharedLog);

impl Protocol for Recorder {
    fn connection_made(&mut self, transport: Transport) {
        let mut log = self.0.borrow_mut();
        log.events.push("made".into());
        log.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        let mut log = self.0.borrow_mut();
        assert!(!data.is_empty());
        log.data.extend_from_slice(data);
        if log.echo {
            log.transport.as_ref().unwrap().write(data).unwrap();
        }
    }

    fn eof_received(&mut self) -> bool {
        let mut log = self.0.borrow_mut();
        log.events.push("eof".into());
        log.keep_open_on_eof
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        let mut log = self.0.borrow_mut();
        let kind = error.map(|e| e.kind());
        log.events.push(format!("lost:{kind:?}"));
        let made = log.events.iter().filter(|e| *e == "made").count();
        let lost = log.events.iter().filter(|e| e.starts_with("lost")).count();
        assert!(lost <= made, "connection_lost once per connection: {:?}", log.events);
        if let Some(lost) = &log.lost {
            // The first connection of a shared log completes it.
            let _ = lost.set_result(kind);
        }
    }

    fn pause_writing(&mut self) {
        self.0.borrow_mut().events.push("pause".into());
    }

    fn resume_writing(&mut self) {
        self.0.borrow_mut().events.push("resume".into());
    }
}

fn new_log(event_loop: &DynSelectorEventLoop) -> SharedLog {
    Rc::new(RefCell::new(Log { lost: Some(event_loop.create_future()), ..Log::default() }))
}

fn count(log: &SharedLog, event: &str) -> usize {
    log.borrow().events.iter().filter(|e| *e == event).count()
}

fn lost(log: &SharedLog) -> tulip::Future<Option<io::ErrorKind>> {
    log.borrow().lost.clone().unwrap()
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn port_of(server: &tulip::Server) -> SocketAddr {
    server.local_addr().unwrap().as_inet().unwrap()
}

/// Runs `fut` under a generous timeout; a hang fails the test.
fn run<F: std::future::Future>(event_loop: &DynSelectorEventLoop, fut: F) -> F::Output {
    event_loop.run_until_complete(tulip::wait_for(event_loop, fut, Duration::from_secs(30))).unwrap().unwrap()
}

/// Connects to `addr` with a [`Recorder`] writing to `log`.
fn connect_recording(event_loop: &DynSelectorEventLoop, addr: SocketAddr, log: &SharedLog) -> Transport {
    let log = log.clone();
    let (transport, _) = run(event_loop, event_loop.create_connection(addr, move || Recorder(log))).unwrap();
    transport
}

/// A server whose protocols share one log (the last connection's).
fn recording_server(event_loop: &DynSelectorEventLoop, log: &SharedLog) -> tulip::Server {
    let log = log.clone();
    event_loop.create_server(localhost(), move || Recorder(log.clone())).unwrap()
}

const TOTAL: usize = 10 << 20;
const CHUNK: usize = 16 << 10;
const HIGH: usize = 4096;

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Sends `TOTAL` patterned bytes under flow control and checks the echo.
struct Pump {
    transport: Option<Transport>,
    sent: usize,
    received: usize,
    paused: bool,
    pauses: usize,
    resumes: usize,
    done: tulip::Future<()>,
}

impl Pump {
    fn pump(&mut self) {
        let transport = self.transport.as_ref().unwrap();
        while self.sent < TOTAL && !self.paused && transport.get_write_buffer_size() <= HIGH {
            let n = CHUNK.min(TOTAL - self.sent);
            let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern).collect();
            transport.write(&chunk).unwrap();
            self.sent += n;
        }
    }
}

impl Protocol for Pump {
    fn connection_made(&mut self, transport: Transport) {
        transport.set_write_buffer_limits(Some(HIGH), Some(HIGH / 4)).unwrap();
        self.transport = Some(transport);
        self.pump();
    }

    fn data_received(&mut self, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            assert_eq!(*byte, pattern(self.received + i), "byte {} of the echo", self.received + i);
        }
        self.received += data.len();
        assert!(self.received <= TOTAL);
        if self.received == TOTAL {
            self.done.set_result(()).unwrap();
        }
    }

    fn pause_writing(&mut self) {
        assert!(!self.paused, "pause_writing twice in a row");
        self.paused = true;
        self.pauses += 1;
    }

    fn resume_writing(&mut self) {
        assert!(self.paused, "resume_writing without a pause");
        self.paused = false;
        self.resumes += 1;
        self.pump();
    }
}

/// Echoes with a tiny buffer, pausing its reading while its writing is paused.
struct FlowEcho {
    transport: Option<Transport>,
    stats: Rc<RefCell<(usize, usize)>>,
}

impl Protocol for FlowEcho {
    fn connection_made(&mut self, transport: Transport) {
        transport.set_write_buffer_limits(Some(HIGH), None).unwrap();
        self.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        self.transport.as_ref().unwrap().write(data).unwrap();
    }

    fn pause_writing(&mut self) {
        self.stats.borrow_mut().0 += 1;
        self.transport.as_ref().unwrap().pause_reading();
    }

    fn resume_writing(&mut self) {
        self.stats.borrow_mut().1 += 1;
        self.transport.as_ref().unwrap().resume_reading();
    }
}

fn echo_10_mb_with_flow_control(event_loop: DynSelectorEventLoop) {
    let server_stats = Rc::new(RefCell::new((0, 0)));
    let stats = server_stats.clone();
    let server = event_loop
        .create_server(localhost(), move || FlowEcho { transport: None, stats: stats.clone() })
        .unwrap();
    let done = event_loop.create_future::<()>();
    let pump = Pump {
        transport: None,
        sent: 0,
        received: 0,
        paused: false,
        pauses: 0,
        resumes: 0,
        done: done.clone(),
    };
    let (transport, client) =
        run(&event_loop, event_loop.create_connection(port_of(&server), || pump)).unwrap();
    run(&event_loop, done).unwrap();
    let client = client.borrow();
    assert_eq!((client.sent, client.received), (TOTAL, TOTAL));
    assert!(client.pauses > 0, "the client's writing was paused");
    assert_eq!(client.pauses, client.resumes);
    let (pauses, resumes) = *server_stats.borrow();
    assert_eq!(pauses, resumes, "the server's writing resumed as often as it paused");
    assert_eq!(transport.get_write_buffer_size(), 0);
    transport.close();
    server.close();
}

fn half_close_with_write_eof(event_loop: DynSelectorEventLoop) {
    // The server keeps its side open after the client's EOF, answers, then closes.
    struct Answer(Option<Transport>, SharedLog);
    impl Protocol for Answer {
        fn connection_made(&mut self, transport: Transport) {
            self.0 = Some(transport);
        }
        fn data_received(&mut self, data: &[u8]) {
            self.1.borrow_mut().data.extend_from_slice(data);
        }
        fn eof_received(&mut self) -> bool {
            let transport = self.0.as_ref().unwrap();
            assert!(!transport.is_closing());
            let reply = format!("got {} bytes", self.1.borrow().data.len());
            transport.write(reply.as_bytes()).unwrap();
            transport.close();
            true
        }
    }
    let server_log = new_log(&event_loop);
    let log = server_log.clone();
    let server = event_loop.create_server(localhost(), move || Answer(None, log.clone())).unwrap();
    let client_log = new_log(&event_loop);
    let transport = connect_recording(&event_loop, port_of(&server), &client_log);
    transport.write(b"hello, ").unwrap();
    transport.write(b"world").unwrap();
    transport.write_eof().unwrap();
    assert!(!transport.is_closing(), "half-closed, still open");
    assert_eq!(run(&event_loop, lost(&client_log)).unwrap(), None);
    assert_eq!(server_log.borrow().data, b"hello, world");
    let client = client_log.borrow();
    assert_eq!(client.data, b"got 12 bytes");
    assert_eq!(client.events, ["made", "eof", "lost:None"]);
    server.close();
}

fn abort_drops_the_buffer(event_loop: DynSelectorEventLoop) {
    let server_log = new_log(&event_loop);
    let server = recording_server(&event_loop, &server_log);
    let client_log = new_log(&event_loop);
    let transport = connect_recording(&event_loop, port_of(&server), &client_log);
    // Let the server's connection_made run, then stop it reading.
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(5)));
    server_log.borrow().transport.as_ref().unwrap().pause_reading();
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(5)));
    let big = vec![9u8; 32 << 20];
    transport.write(&big).unwrap();
    assert!(transport.get_write_buffer_size() > 0, "the socket cannot take 32 MiB");
    transport.abort();
    assert_eq!(transport.get_write_buffer_size(), 0, "abort dropped the buffer");
    assert!(transport.is_closing());
    assert_eq!(run(&event_loop, lost(&client_log)).unwrap(), None);
    assert_eq!(client_log.borrow().events, ["made", "pause", "lost:None"]);
    // The server reads what reached it, and sees the end.
    server_log.borrow().transport.as_ref().unwrap().resume_reading();
    run(&event_loop, lost(&server_log)).unwrap();
    assert!(server_log.borrow().data.len() < big.len());
    server.close();
}

fn close_flushes_the_buffer(event_loop: DynSelectorEventLoop) {
    let server_log = new_log(&event_loop);
    let server = recording_server(&event_loop, &server_log);
    let client_log = new_log(&event_loop);
    let transport = connect_recording(&event_loop, port_of(&server), &client_log);
    let big: Vec<u8> = (0..8 << 20).map(pattern).collect();
    transport.write(&big).unwrap();
    transport.close();
    transport.close();
    assert!(transport.is_closing());
    assert_eq!(run(&event_loop, lost(&client_log)).unwrap(), None);
    assert_eq!(transport.get_write_buffer_size(), 0);
    assert_eq!(run(&event_loop, lost(&server_log)).unwrap(), None);
    assert!(server_log.borrow().data == big, "all 8 MiB arrived, in order");
    assert_eq!(server_log.borrow().events, ["made", "eof", "lost:None"]);
    server.close();
}

/// Raises the soft fd limit toward the hard one, for tests with many sockets.
fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let target = (wanted as libc::rlim_t).min(limit.rlim_max);
    if limit.rlim_cur < target {
        limit.rlim_cur = target;
        // SAFETY: setrlimit reads one `rlimit`.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

fn two_hundred_connections(event_loop: DynSelectorEventLoop) {
    const CONNECTIONS: usize = 200;
    raise_fd_limit(4096);
    let server = event_loop
        .create_server(localhost(), || Recorder(Rc::new(RefCell::new(Log { echo: true, ..Log::default() }))))
        .unwrap();
    let addr = port_of(&server);
    let event_loop = Rc::new(event_loop);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let lp = event_loop.clone();
            event_loop.create_task(async move {
                let log = Rc::new(RefCell::new(Log { lost: Some(lp.create_future()), ..Log::default() }));
                let factory_log = log.clone();
                let (transport, _) = lp.create_connection(addr, || Recorder(factory_log)).await?;
                let message = format!("message {i}");
                transport.write(message.as_bytes())?;
                while log.borrow().data.len() < message.len() {
                    tulip::sleep(&*lp, Duration::from_millis(1)).await;
                }
                assert_eq!(log.borrow().data, message.as_bytes());
                transport.close();
                let lost = log.borrow().lost.clone().unwrap();
                lost.await
            })
        })
        .collect();
    let outcomes = run(&event_loop, tulip::gather(clients));
    for outcome in outcomes {
        assert_eq!(outcome.unwrap().unwrap(), None);
    }
    assert_eq!(server.connections_made(), CONNECTIONS as u64);
    server.close();
    run(&event_loop, tulip::sleep(&*event_loop, Duration::from_millis(20)));
    event_loop.close().unwrap();
}

fn connection_refused(event_loop: DynSelectorEventLoop) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let made = Rc::new(RefCell::new(false));
    struct Never(Rc<RefCell<bool>>);
    impl Protocol for Never {
        fn connection_made(&mut self, _: Transport) {
            *self.0.borrow_mut() = true;
        }
    }
    let flag = made.clone();
    let err = run(&event_loop, event_loop.create_connection(addr, || Never(flag))).map(drop).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert!(!*made.borrow());
    assert_eq!(event_loop.watched_fds(), 0);
}

fn server_close_stops_accepting(event_loop: DynSelectorEventLoop) {
    let log = new_log(&event_loop);
    let server = recording_server(&event_loop, &log);
    let addr = port_of(&server);
    assert!(server.is_serving());
    server.close();
    assert!(!server.is_serving());
    assert_eq!(server.local_addr().unwrap_err().kind(), io::ErrorKind::NotConnected, "at once");
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(1)));
    assert_eq!(event_loop.watched_fds(), 0, "the listener is no longer watched");
    let err = run(&event_loop, event_loop.sock_connect(addr)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(server.connections_made(), 0);
    assert_eq!(server.local_addr().unwrap_err().kind(), io::ErrorKind::NotConnected);
}

/// Accepts one connection on a plain listener and resets it (SO_LINGER 0).
fn reset_next_connection(listener: &TcpListener) {
    common::reset(listener.accept().unwrap().0);
}

fn peer_reset_reaches_connection_lost(event_loop: DynSelectorEventLoop) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let log = new_log(&event_loop);
    let transport = connect_recording(&event_loop, addr, &log);
    reset_next_connection(&listener);
    assert_eq!(run(&event_loop, lost(&log)).unwrap(), Some(io::ErrorKind::ConnectionReset));
    assert!(transport.is_closing());
    assert_eq!(event_loop.watched_fds(), 0);
    assert_eq!(count(&log, "lost:Some(ConnectionReset)"), 1);
}

fn connection_lost_never_inside_write(event_loop: DynSelectorEventLoop) {
    struct Guarded {
        writing: Rc<RefCell<bool>>,
        lost: tulip::Future<()>,
    }
    impl Protocol for Guarded {
        fn connection_lost(&mut self, error: Option<io::Error>) {
            assert!(!*self.writing.borrow(), "connection_lost inside write()");
            assert!(error.is_some());
            self.lost.set_result(()).unwrap();
        }
    }
    let listener = TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let writing = Rc::new(RefCell::new(false));
    let lost = event_loop.create_future::<()>();
    let protocol = Guarded { writing: writing.clone(), lost: lost.clone() };
    let (transport, _) = run(&event_loop, event_loop.create_connection(addr, || protocol)).unwrap();
    reset_next_connection(&listener);
    std::thread::sleep(Duration::from_millis(10)); // the reset arrives
    for _ in 0..3 {
        *writing.borrow_mut() = true;
        let wrote = transport.write(&[1u8; 1 << 16]);
        *writing.borrow_mut() = false;
        if wrote.is_err() {
            break;
        }
    }
    run(&event_loop, lost).unwrap();
}

fn write_after_close_or_eof(event_loop: DynSelectorEventLoop) {
    let server_log = new_log(&event_loop);
    let server = recording_server(&event_loop, &server_log);
    let a = connect_recording(&event_loop, port_of(&server), &new_log(&event_loop));
    a.write_eof().unwrap();
    assert_eq!(a.write(b"x").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    a.write_eof().unwrap(); // again: nothing
    a.write(b"").unwrap(); // empty writes are always fine
    let b = connect_recording(&event_loop, port_of(&server), &new_log(&event_loop));
    b.close();
    assert_eq!(b.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    b.abort(); // after close: harmless
    a.close();
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(5)));
    server.close();
}

fn buffer_limits(event_loop: DynSelectorEventLoop) {
    let server_log = new_log(&event_loop);
    let server = recording_server(&event_loop, &server_log);
    let t = connect_recording(&event_loop, port_of(&server), &new_log(&event_loop));
    assert_eq!(t.get_write_buffer_limits(), (16 << 10, 64 << 10));
    t.set_write_buffer_limits(Some(1000), None).unwrap();
    assert_eq!(t.get_write_buffer_limits(), (250, 1000));
    t.set_write_buffer_limits(None, Some(100)).unwrap();
    assert_eq!(t.get_write_buffer_limits(), (100, 400));
    t.set_write_buffer_limits(Some(0), Some(0)).unwrap();
    let err = t.set_write_buffer_limits(Some(10), Some(11)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(t.get_write_buffer_limits(), (0, 0), "unchanged");
    t.set_write_buffer_limits(None, None).unwrap();
    assert_eq!(t.get_write_buffer_limits(), (16 << 10, 64 << 10));
    assert!(t.can_write_eof());
    t.close();
    server.close();
}

fn pause_and_resume_reading(event_loop: DynSelectorEventLoop) {
    let server_log = new_log(&event_loop);
    let server = recording_server(&event_loop, &server_log);
    let client_log = new_log(&event_loop);
    let t = connect_recording(&event_loop, port_of(&server), &client_log);
    assert!(t.is_reading());
    t.pause_reading();
    assert!(!t.is_reading());
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(5)));
    server_log.borrow().transport.as_ref().unwrap().write(b"while paused").unwrap();
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(20)));
    assert!(client_log.borrow().data.is_empty(), "nothing delivered while paused");
    t.resume_reading();
    assert!(t.is_reading());
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(20)));
    assert_eq!(client_log.borrow().data, b"while paused");
    t.close();
    server.close();
}

fn addresses(event_loop: DynSelectorEventLoop) {
    let server_log = new_log(&event_loop);
    let server = recording_server(&event_loop, &server_log);
    let addr = port_of(&server);
    let t = connect_recording(&event_loop, addr, &new_log(&event_loop));
    assert_eq!(t.peer_addr().unwrap().as_inet().unwrap(), addr);
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(5)));
    let server_side = server_log.borrow().transport.clone().unwrap();
    assert_eq!(server_side.peer_addr().unwrap().as_inet(), t.local_addr().unwrap().as_inet());
    assert_eq!(format!("{}", t.peer_addr().unwrap()), addr.to_string());
    t.close();
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(5)));
    assert_eq!(t.peer_addr().unwrap_err().kind(), io::ErrorKind::NotConnected);
    server.close();
}

fn unix_echo(event_loop: DynSelectorEventLoop) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "tulip-transport-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let server_log = new_log(&event_loop);
    server_log.borrow_mut().echo = true;
    let log = server_log.clone();
    let server = event_loop.create_unix_server(&path, move || Recorder(log.clone())).unwrap();
    // A second server on the same path replaces the stale socket file.
    assert!(server.local_addr().unwrap().as_unix().is_some());
    let client_log = new_log(&event_loop);
    let factory_log = client_log.clone();
    let (t, _) =
        run(&event_loop, event_loop.create_unix_connection(&path, || Recorder(factory_log))).unwrap();
    t.write(b"unix echo").unwrap();
    while client_log.borrow().data.len() < 9 {
        run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(1)));
    }
    assert_eq!(client_log.borrow().data, b"unix echo");
    t.close();
    assert_eq!(run(&event_loop, lost(&client_log)).unwrap(), None);
    assert_eq!(run(&event_loop, lost(&server_log)).unwrap(), None);
    server.close();
    assert!(!path.exists(), "the socket file is removed by close, without waiting for the loop");
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(1)));
    assert!(!path.exists(), "the socket file is removed on close");
    // A path that is not a socket is refused.
    std::fs::write(&path, b"not a socket").unwrap();
    let err = event_loop.create_unix_server(&path, || Recorder(SharedLog::default())).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    std::fs::remove_file(&path).unwrap();
}

fn dropped_create_connection_closes(event_loop: DynSelectorEventLoop) {
    let server_log = new_log(&event_loop);
    let server = recording_server(&event_loop, &server_log);
    for polls in 1..4 {
        let client_log = new_log(&event_loop);
        let factory_log = client_log.clone();
        // Dropped after a few polls, before it hands the transport over (or
        // after: then the transport is returned and closed here).
        let mut connect = Box::pin(event_loop.create_connection(port_of(&server), || Recorder(factory_log)));
        for _ in 0..polls {
            let ready = event_loop
                .run_until_complete(poll_fn(|cx| {
                    Poll::Ready(connect.as_mut().poll(cx).map(|r| r.map(|(t, _)| t)))
                }))
                .unwrap();
            if let Poll::Ready(transport) = ready {
                transport.unwrap().close();
                break;
            }
            event_loop.stop();
            event_loop.run_forever().unwrap();
        }
        drop(connect);
        run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(10)));
        assert_eq!(event_loop.watched_fds(), 1, "only the server's listener is left");
        let events = client_log.borrow().events.clone();
        assert!(events.is_empty() || events == ["made", "lost:None"], "{events:?}");
    }
    server.close();
}

/// Collects what reaches the loop's exception handler (these tests expect reports).
fn collect_reports(event_loop: &DynSelectorEventLoop) -> Rc<RefCell<Vec<String>>> {
    let reports = Rc::new(RefCell::new(Vec::new()));
    let sink = reports.clone();
    event_loop
        .set_exception_handler(Some(Box::new(move |_, context| sink.borrow_mut().push(context.to_string()))));
    reports
}

fn panic_in_connection_made_fails_create_connection(event_loop: DynSelectorEventLoop) {
    struct Panics;
    impl Protocol for Panics {
        fn connection_made(&mut self, _transport: Transport) {
            panic!("connection_made fails");
        }
    }
    let reports = collect_reports(&event_loop);
    let listener = TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let Err(err) = run(&event_loop, event_loop.create_connection(addr, || Panics)) else {
        panic!("create_connection succeeded although connection_made panicked");
    };
    assert!(err.to_string().contains("connection_made fails"), "{err}");
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(5)));
    assert_eq!(event_loop.watched_fds(), 0, "the transport closed");
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("connection_made fails"), "{reports:?}");
}

fn panic_in_connection_lost_still_closes_the_socket(event_loop: DynSelectorEventLoop) {
    // The protocol keeps its transport (as most do) and closes it at once.
    struct Panics(Option<Transport>);
    impl Protocol for Panics {
        fn connection_made(&mut self, transport: Transport) {
            transport.close();
            self.0 = Some(transport);
        }
        fn connection_lost(&mut self, _error: Option<io::Error>) {
            panic!("connection_lost fails");
        }
    }
    let reports = collect_reports(&event_loop);
    let server = event_loop.create_server(localhost(), || Panics(None)).unwrap();
    let mut client = std::net::TcpStream::connect(port_of(&server)).unwrap();
    while reports.borrow().is_empty() {
        run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(1)));
    }
    assert!(reports.borrow()[0].contains("connection_lost fails"), "{:?}", reports.borrow());
    assert_eq!(event_loop.watched_fds(), 1, "only the listener is watched");
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let read = io::Read::read(&mut client, &mut [0u8; 16]).map_err(|e| e.kind());
    assert_eq!(read, Ok(0), "the server's socket was closed: the client sees the end");
    server.close();
}

fn closing_the_loop_closes_open_connections(event_loop: DynSelectorEventLoop) {
    // The server's protocol keeps its transport, as most do: a cycle that
    // only the loop can break when it closes.
    let server_log = new_log(&event_loop);
    let server = recording_server(&event_loop, &server_log);
    let addr = port_of(&server);
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    while server_log.borrow().transport.is_none() {
        run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(1)));
    }
    event_loop.close().unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let read = io::Read::read(&mut client, &mut [0u8; 16]).map_err(|e| e.kind());
    assert_eq!(read, Ok(0), "the loop closed: the server's socket is closed");
    let refused = std::net::TcpStream::connect(addr).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(io::ErrorKind::ConnectionRefused), "and its listener");
    assert!(!server.is_serving());
    assert!(server_log.borrow().transport.as_ref().unwrap().is_closing());
}
