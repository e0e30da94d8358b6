//! The seed talk's demo, made real: a TCP echo server written on nothing but
//! a [`Selector`] and a plain loop. No event loop, no callbacks queue: each
//! registration carries the function that handles it (Python's
//! `sel.register(sock, EVENT_READ, accept)`), and the loop calls it when the
//! selector says the fd is ready.
//!
//! ```text
//! cargo run --example seed_server -- [PORT] [--port PORT] [--backend select|poll|epoll|kqueue] [--max-conns N]
//! ```
//!
//! Try it with `nc 127.0.0.1 8888`. Every readiness event it handles is
//! printed, so you can watch `select` drive the server; with
//! `TULIP_TRACE=1` the selector's system calls are printed too. Out of
//! fds, it stops watching the listener for a second rather than fail to
//! accept at 100 % CPU.

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::{AsFd, AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Instant;

use common::{Arg, Cli};

use tulip::selectors::{Backend, Events, Selector};

/// What the selector hands back for a ready fd: the function that deals with it.
type Handler = fn(&mut Server, RawFd, Events) -> io::Result<()>;

/// Stop reading from a client while this much of its echo is still unsent.
const HIGH_WATER: usize = 1 << 20;

const USAGE: &str = "\
usage: seed_server [PORT] [--port PORT] [--backend NAME] [--max-conns N]

An echo server on 127.0.0.1 driven by one selector (default port 8888).
  PORT, --port PORT   port to listen on; 0 lets the system choose
  --backend NAME      select, poll, epoll or kqueue (default: the best one here)
  --max-conns N       exit after N connections have been closed (N >= 1)
  -h, --help          show this help";

struct Options {
    port: u16,
    backend: Backend,
    max_conns: Option<usize>,
}

fn parse_args() -> Options {
    let mut options = Options { port: 8888, backend: Backend::default(), max_conns: None };
    let mut port_seen = false;
    let mut cli = Cli::new("seed_server", USAGE);
    while let Some(arg) = cli.next() {
        match &arg {
            Arg::Flag(flag) if flag == "--port" => {
                options.port = cli.parse(flag);
                port_seen = true;
            }
            Arg::Flag(flag) if flag == "--backend" => options.backend = cli.backend(),
            Arg::Flag(flag) if flag == "--max-conns" => match cli.parse::<usize>(flag) {
                0 => cli.fail("--max-conns needs a whole number >= 1"),
                n => options.max_conns = Some(n),
            },
            Arg::Word(word) if !port_seen => {
                options.port = word
                    .parse()
                    .unwrap_or_else(|_| cli.fail(&format!("invalid port {word:?}: expected 0 to 65535")));
                port_seen = true;
            }
            _ => cli.unknown(&arg),
        }
    }
    options
}

/// `READ`, `WRITE` or `READ|WRITE`.
fn names(events: Events) -> String {
    let mut parts = Vec::new();
    if events.contains(Events::READ) {
        parts.push("READ");
    }
    if events.contains(Events::WRITE) {
        parts.push("WRITE");
    }
    parts.join("|")
}

/// One client: its socket and the part of its echo the kernel has not taken yet.
struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    pending: Vec<u8>,
    /// The client has shut down its sending side: close once `pending` is sent.
    eof: bool,
}

struct Server {
    backend: Backend,
    selector: Box<dyn Selector<Handler>>,
    listener: TcpListener,
    /// Out of fds: when to watch the listener again.
    accepting_again_at: Option<Instant>,
    clients: HashMap<RawFd, Client>,
    closed: usize,
    buffer: Vec<u8>,
}

impl Server {
    fn log(&self, fd: RawFd, events: Events, what: &str) {
        println!("[{}] fd {fd} {} -> {what}", self.backend, names(events));
    }

    /// The listener is readable: accept every waiting connection.
    fn accept(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(connection) => connection,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up before we accepted it: not our problem.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                // Out of fds: the listener stays readable, so accepting again
                // at once would fail again, at 100 % CPU. Stop watching it
                // for a while, as asyncio's servers do.
                Err(e) if common::out_of_resources(&e) => {
                    self.selector.unregister_fd(self.listener.as_fd())?;
                    self.accepting_again_at = Some(Instant::now() + common::ACCEPT_RETRY);
                    self.log(
                        fd,
                        events,
                        &format!("accept: {e}; accepting again in {:?}", common::ACCEPT_RETRY),
                    );
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            stream.set_nonblocking(true)?;
            let client_fd = stream.as_raw_fd();
            self.selector.register_fd(stream.as_fd(), Events::READ, Server::echo)?;
            self.log(fd, events, &format!("accept {peer} as fd {client_fd}"));
            self.clients.insert(client_fd, Client { stream, peer, pending: Vec::new(), eof: false });
        }
    }

    /// A client is readable and/or writable: flush, read, echo.
    fn echo(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        let Some(mut client) = self.clients.remove(&fd) else {
            return Ok(());
        };
        match self.serve(&mut client, fd, events) {
            Ok(true) => {
                self.clients.insert(fd, client);
                Ok(())
            }
            Ok(false) => self.close(client, fd, events, "closed"),
            Err(e) => self.close(client, fd, events, &format!("error: {e}")),
        }
    }

    /// Does what `events` allow; `Ok(false)` when the connection is finished.
    fn serve(&mut self, client: &mut Client, fd: RawFd, events: Events) -> io::Result<bool> {
        if events.contains(Events::WRITE) && !client.pending.is_empty() {
            let sent = write_some(&mut client.stream, &client.pending)?;
            client.pending.drain(..sent);
            self.log(fd, events, &format!("{sent} bytes flushed, {} pending", client.pending.len()));
        }
        if events.contains(Events::READ) && !client.eof {
            match client.stream.read(&mut self.buffer) {
                Ok(0) => {
                    client.eof = true;
                    self.log(fd, events, &format!("end of input from {}", client.peer));
                }
                Ok(n) => {
                    let data = &self.buffer[..n];
                    // Echo straight away if nothing is queued before it, else queue it.
                    let sent =
                        if client.pending.is_empty() { write_some(&mut client.stream, data)? } else { 0 };
                    client.pending.extend_from_slice(&data[sent..]);
                    if client.pending.is_empty() {
                        self.log(fd, events, &format!("{n} bytes echoed"));
                    } else {
                        self.log(
                            fd,
                            events,
                            &format!("{n} bytes read, {sent} echoed, {} pending", client.pending.len()),
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                }
                Err(e) => return Err(e),
            }
        }
        if client.eof && client.pending.is_empty() {
            return Ok(false);
        }
        // Read while there is room to queue the echo; ask for WRITE while some is queued.
        let mut wanted = Events::empty();
        if !client.eof && client.pending.len() < HIGH_WATER {
            wanted |= Events::READ;
        }
        if !client.pending.is_empty() {
            wanted |= Events::WRITE;
        }
        if self.selector.get_key(fd).map(|key| key.events) != Some(wanted) {
            self.selector.modify(fd, wanted, Server::echo)?;
        }
        Ok(true)
    }

    fn close(&mut self, client: Client, fd: RawFd, events: Events, why: &str) -> io::Result<()> {
        self.selector.unregister(fd)?;
        drop(client.stream);
        self.closed += 1;
        self.log(fd, events, &format!("{why}; {} disconnected ({} closed so far)", client.peer, self.closed));
        Ok(())
    }
}

/// Writes what the socket takes now; 0 if it takes nothing.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    loop {
        match stream.write(data) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn run(options: Options) -> io::Result<()> {
    let mut selector = options.backend.open::<Handler>()?;
    let listener = TcpListener::bind(("127.0.0.1", options.port))?;
    listener.set_nonblocking(true)?;
    selector.register_fd(listener.as_fd(), Events::READ, Server::accept)?;
    println!("listening on {}", listener.local_addr()?);
    println!("[{}] fd {} registered for READ", options.backend, listener.as_raw_fd());

    let mut server = Server {
        backend: options.backend,
        selector,
        listener,
        accepting_again_at: None,
        clients: HashMap::new(),
        closed: 0,
        buffer: vec![0; 64 * 1024],
    };
    let mut ready: Vec<(RawFd, Events, Handler)> = Vec::new();
    while options.max_conns.is_none_or(|max| server.closed < max) {
        // The results borrow the selector, so copy them out before handling.
        ready.clear();
        let timeout = server.accepting_again_at.map(|at| at.saturating_duration_since(Instant::now()));
        ready.extend(server.selector.select(timeout)?.map(|(key, events)| (key.fd, events, key.data)));
        for &(fd, events, handler) in &ready {
            handler(&mut server, fd, events)?;
        }
        if server.accepting_again_at.is_some_and(|at| at <= Instant::now()) {
            server.accepting_again_at = None;
            server.selector.register_fd(server.listener.as_fd(), Events::READ, Server::accept)?;
        }
    }
    println!("[{}] --max-conns reached ({} closed), exiting", server.backend, server.closed);
    Ok(())
}

fn main() -> ExitCode {
    let options = parse_args();
    let backend = options.backend;
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            eprintln!("seed_server: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("seed_server ({backend}): {e}");
            ExitCode::FAILURE
        }
    }
}
