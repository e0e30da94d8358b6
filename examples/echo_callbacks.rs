//! An echo server written with nothing but loop callbacks: `add_reader`,
//! `add_writer` and `call_later`, as in the Tulip talk before coroutines.
//!
//! ```text
//! cargo run --example echo_callbacks                       # 127.0.0.1:8888, default selector
//! cargo run --example echo_callbacks -- --port 0           # any free port, printed first
//! cargo run --example echo_callbacks -- --backend poll --idle-timeout 2 --max-conns 3
//! ```
//!
//! The first line on stdout is `listening on 127.0.0.1:PORT`. Try it with
//! `nc 127.0.0.1 8888`.
//!
//! - The listener is non-blocking; its reader accepts every pending connection.
//! - A connection's reader echoes what it reads. What the socket does not take
//!   at once is buffered and flushed by a writer, which exists only while
//!   there is something to flush; past [`HIGH_WATER`] buffered bytes the
//!   reader is removed until the buffer drains (flow control).
//! - Each connection has one idle timer: when it fires it checks the time of
//!   the last activity and either closes the connection or re-arms itself.
//! - `--max-conns N` makes the server exit after N connections have closed.
//! - Out of fds, the listener's reader is removed for a second instead of
//!   failing to accept at 100 % CPU (as asyncio's servers do).

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Arg, Cli};
use tulip::selectors::Backend;
use tulip::{AbstractEventLoop, SelectorEventLoop};

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: echo_callbacks [--port P] [--backend NAME] [--idle-timeout SECS] [--max-conns N]\n\n",
    "An echo server written with loop callbacks only (add_reader, add_writer, call_later).\n",
    "  --port P              port on 127.0.0.1 (default 8888; 0 picks a free one)\n",
    "  --backend NAME        select, poll, epoll or kqueue (default: SelectorEventLoop's)\n",
    "  --idle-timeout SECS   close connections idle this long (default 10)\n",
    "  --max-conns N         exit after N connections have closed\n",
    "  -h, --help            show this help"
);

/// Stop reading from a client once this much echo is waiting to be sent.
const HIGH_WATER: usize = 256 * 1024;
/// Read again once the waiting echo is below this.
const LOW_WATER: usize = 64 * 1024;

struct Config {
    port: u16,
    backend: Option<Backend>,
    idle_timeout: Duration,
    max_conns: Option<usize>,
}

/// One client.
struct Conn {
    stream: TcpStream,
    /// Echo not yet accepted by the socket.
    pending: Vec<u8>,
    /// The client sent EOF: close once `pending` is flushed.
    eof: bool,
    /// The reader is removed because `pending` is over the high-water mark.
    paused: bool,
    last_activity: Instant,
}

/// Everything the callbacks share. Callbacks borrow it only briefly and
/// never while calling into the loop with a borrow held.
struct Server {
    listener: TcpListener,
    conns: HashMap<RawFd, Conn>,
    closed: usize,
    idle_timeout: Duration,
    max_conns: Option<usize>,
}

type Shared = Rc<RefCell<Server>>;

fn main() -> ExitCode {
    let config = parse_args();
    let outcome = match config.backend {
        None => SelectorEventLoop::new().and_then(|lp| serve(lp, &config)),
        Some(backend) => tulip::new_event_loop(backend).and_then(|lp| serve(lp, &config)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo_callbacks: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the server on `event_loop` until `--max-conns` connections closed
/// (or forever).
fn serve<L: AbstractEventLoop>(event_loop: L, config: &Config) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", config.port))?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    let server: Shared = Rc::new(RefCell::new(Server {
        listener,
        conns: HashMap::new(),
        closed: 0,
        idle_timeout: config.idle_timeout,
        max_conns: config.max_conns,
    }));
    watch_listener(&event_loop, &server)?;
    event_loop.run_forever()?;
    event_loop.close()
}

/// Accepts whenever the listener is readable (the I/O-safe form: the
/// listener is ours to borrow).
fn watch_listener<L: AbstractEventLoop>(lp: &L, server: &Shared) -> io::Result<()> {
    let s = Rc::clone(server);
    let borrowed = server.borrow();
    lp.add_reader_fd(&borrowed.listener, move |lp| accept_all(lp, &s))
}

/// The listener is readable: accept every waiting connection.
fn accept_all<L: AbstractEventLoop>(lp: &L, server: &Shared) {
    loop {
        let accepted = server.borrow().listener.accept();
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) if err.kind() == ErrorKind::WouldBlock => return,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            // Out of fds: accepting again at once would fail again, at 100 %
            // CPU. Stop watching the listener for a while, as asyncio does.
            Err(err) if common::out_of_resources(&err) => {
                eprintln!("accept: {err}; accepting again in {:?}", common::ACCEPT_RETRY);
                let _ = lp.remove_reader_fd(&server.borrow().listener);
                let s = Rc::clone(server);
                lp.call_later(common::ACCEPT_RETRY, move |lp| {
                    if let Err(err) = watch_listener(lp, &s) {
                        eprintln!("add_reader(listener): {err}");
                    }
                });
                return;
            }
            // The peer gave up before we accepted: nothing to do for this one.
            Err(err) => {
                eprintln!("accept: {err}");
                return;
            }
        };
        if let Err(err) = stream.set_nonblocking(true) {
            eprintln!("set_nonblocking: {err}");
            continue;
        }
        let fd = stream.as_raw_fd();
        let conn = Conn { stream, pending: Vec::new(), eof: false, paused: false, last_activity: lp.time() };
        let idle_timeout = {
            let mut s = server.borrow_mut();
            s.conns.insert(fd, conn);
            s.idle_timeout
        };
        watch_reads(lp, server, fd);
        arm_idle_timer(lp, server, fd, idle_timeout);
    }
}

fn watch_reads<L: AbstractEventLoop>(lp: &L, server: &Shared, fd: RawFd) {
    let s = Rc::clone(server);
    if let Err(err) = lp.add_reader(fd, move |lp| on_readable(lp, &s, fd)) {
        eprintln!("add_reader({fd}): {err}");
        close_conn(lp, server, fd);
    }
}

fn watch_writes<L: AbstractEventLoop>(lp: &L, server: &Shared, fd: RawFd) {
    let s = Rc::clone(server);
    if let Err(err) = lp.add_writer(fd, move |lp| on_writable(lp, &s, fd)) {
        eprintln!("add_writer({fd}): {err}");
        close_conn(lp, server, fd);
    }
}

/// What a read or write step decided, acted on once the borrow is released.
enum Next {
    Nothing,
    Close,
    /// Echo is waiting: stop reading if over the high-water mark; start a
    /// writer to flush it unless one already runs.
    Flush {
        pause: bool,
        start_writer: bool,
    },
}

/// A client sent data (or EOF): echo it.
fn on_readable<L: AbstractEventLoop>(lp: &L, server: &Shared, fd: RawFd) {
    let next = {
        let mut s = server.borrow_mut();
        let Some(conn) = s.conns.get_mut(&fd) else { return };
        conn.last_activity = lp.time();
        let had_pending = !conn.pending.is_empty();
        let mut buf = [0u8; 64 * 1024];
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.eof = true;
                if had_pending {
                    // Nothing more to read: flush, then close.
                    Next::Flush { pause: true, start_writer: false }
                } else {
                    Next::Close
                }
            }
            Ok(n) => echo(conn, &buf[..n], had_pending),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Next::Nothing,
            Err(_) => Next::Close,
        }
    };
    match next {
        Next::Nothing => {}
        Next::Close => close_conn(lp, server, fd),
        Next::Flush { pause, start_writer } => {
            if pause {
                let _ = lp.remove_reader(fd);
                if let Some(conn) = server.borrow_mut().conns.get_mut(&fd) {
                    conn.paused = true;
                }
            }
            if start_writer {
                watch_writes(lp, server, fd);
            }
        }
    }
}

/// Sends `data` now if nothing is queued before it; queues what is left.
fn echo(conn: &mut Conn, data: &[u8], had_pending: bool) -> Next {
    let mut sent = 0;
    if !had_pending {
        while sent < data.len() {
            match conn.stream.write(&data[sent..]) {
                Ok(n) => sent += n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
    }
    conn.pending.extend_from_slice(&data[sent..]);
    if conn.pending.is_empty() {
        Next::Nothing
    } else {
        Next::Flush { pause: conn.pending.len() > HIGH_WATER, start_writer: !had_pending }
    }
}

/// A client's socket can take more: flush the queued echo.
fn on_writable<L: AbstractEventLoop>(lp: &L, server: &Shared, fd: RawFd) {
    let (flushed, eof, resume) = {
        let mut s = server.borrow_mut();
        let Some(conn) = s.conns.get_mut(&fd) else { return };
        let mut sent = 0;
        let mut failed = false;
        while sent < conn.pending.len() {
            match conn.stream.write(&conn.pending[sent..]) {
                Ok(n) => sent += n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        conn.pending.drain(..sent);
        if sent > 0 {
            conn.last_activity = lp.time();
        }
        if failed {
            drop(s);
            close_conn(lp, server, fd);
            return;
        }
        let resume = conn.paused && !conn.eof && conn.pending.len() < LOW_WATER;
        if resume {
            conn.paused = false;
        }
        (conn.pending.is_empty(), conn.eof, resume)
    };
    if flushed {
        let _ = lp.remove_writer(fd);
        if eof {
            close_conn(lp, server, fd);
            return;
        }
    }
    if resume {
        watch_reads(lp, server, fd);
    }
}

/// Closes `fd` after `timeout` of inactivity. One timer per connection: it
/// re-arms itself for the remaining time instead of being rescheduled on
/// every read.
fn arm_idle_timer<L: AbstractEventLoop>(lp: &L, server: &Shared, fd: RawFd, delay: Duration) {
    let s = Rc::clone(server);
    lp.call_later(delay, move |lp| {
        let remaining = {
            let server = s.borrow();
            let Some(conn) = server.conns.get(&fd) else { return }; // already closed
            (conn.last_activity + server.idle_timeout).checked_duration_since(lp.time())
        };
        match remaining {
            Some(left) if !left.is_zero() => arm_idle_timer(lp, &s, fd, left),
            _ => {
                eprintln!("closing idle connection (fd {fd})");
                close_conn(lp, &s, fd);
            }
        }
    });
}

/// Forgets a connection (its socket closes when dropped); stops the loop
/// once `--max-conns` connections have closed.
fn close_conn<L: AbstractEventLoop>(lp: &L, server: &Shared, fd: RawFd) {
    // Unwatch before the socket closes, so the fd number is free of us.
    let _ = lp.remove_reader(fd);
    let _ = lp.remove_writer(fd);
    let (conn, done) = {
        let mut s = server.borrow_mut();
        let conn = s.conns.remove(&fd);
        if conn.is_some() {
            s.closed += 1;
        }
        (conn, s.max_conns.is_some_and(|max| s.closed >= max))
    };
    drop(conn);
    if done {
        let listener_fd = server.borrow().listener.as_raw_fd();
        let _ = lp.remove_reader(listener_fd);
        lp.stop();
    }
}

fn parse_args() -> Config {
    let mut config =
        Config { port: 8888, backend: None, idle_timeout: Duration::from_secs(10), max_conns: None };
    let mut cli = Cli::new("echo_callbacks", USAGE);
    while let Some(arg) = cli.next() {
        match &arg {
            Arg::Flag(flag) if flag == "--port" => config.port = cli.parse(flag),
            Arg::Flag(flag) if flag == "--backend" => config.backend = Some(cli.backend()),
            Arg::Flag(flag) if flag == "--idle-timeout" => config.idle_timeout = cli.seconds(flag),
            Arg::Flag(flag) if flag == "--max-conns" => config.max_conns = Some(cli.parse(flag)),
            _ => cli.unknown(&arg),
        }
    }
    config
}
