//! The main job: compare the selector backends on this machine.
//!
//! For each available backend it runs an echo server and its clients on one
//! event loop (64-byte messages over TCP on 127.0.0.1), then measures what one
//! `select` costs with one ready fd among N registered, and prints one table.
//!
//! ```text
//! cargo run --release --example compare_backends -- [--backends epoll,poll,select]
//!     [--duration SECS] [--clients N] [--sizes 10,1000,10000]
//! ```
//!
//! Above the table it prints what each backend is, from
//! `Backend::capabilities()` (the data the README's backend table is made of).

mod common;

use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Arg, Cli};
use tulip::selectors::{Backend, Events, Selector};
use tulip::{AbstractEventLoop, DynSelectorEventLoop};

const MESSAGE: [u8; 64] = [b'x'; 64];

struct Options {
    backends: Vec<Backend>,
    duration: Duration,
    clients: usize,
    sizes: Vec<usize>,
}

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: compare_backends [--backends epoll,poll,select] [--duration SECS] [--clients N] ",
    "[--sizes 10,1000,10000]\n\n",
    "Compares the selector backends here: an echo server on the event loop, then one select\n",
    "with one ready fd among N registered.\n",
    "  --backends LIST   backends to compare (default: every one available here)\n",
    "  --duration SECS   how long each echo run lasts (default 1.5)\n",
    "  --clients N       echo clients (default 10)\n",
    "  --sizes LIST      values of N for the select cost (default 10,1000,10000)\n",
    "  -h, --help        show this help"
);

fn parse_list<T: std::str::FromStr>(text: &str) -> Option<Vec<T>> {
    text.split(',').map(|item| item.trim().parse().ok()).collect()
}

fn parse_options() -> Options {
    let mut options = Options {
        backends: Backend::available(),
        duration: Duration::from_millis(1500),
        clients: 10,
        sizes: vec![10, 1_000, 10_000],
    };
    let mut cli = Cli::new("compare_backends", USAGE);
    while let Some(arg) = cli.next() {
        match &arg {
            Arg::Flag(flag) if flag == "--backends" => {
                let text = cli.value(flag);
                options.backends = text
                    .split(',')
                    .map(|name| name.parse::<Backend>())
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|err| cli.fail(&err.to_string()));
            }
            Arg::Flag(flag) if flag == "--duration" => options.duration = cli.seconds(flag),
            Arg::Flag(flag) if flag == "--clients" => options.clients = cli.parse(flag),
            Arg::Flag(flag) if flag == "--sizes" => {
                let text = cli.value(flag);
                options.sizes =
                    parse_list(&text).unwrap_or_else(|| cli.fail("--sizes takes counts like 10,1000"));
            }
            _ => cli.unknown(&arg),
        }
    }
    if options.clients == 0 {
        cli.fail("--clients must be at least 1");
    }
    for backend in &options.backends {
        if !Backend::available().contains(backend) {
            cli.fail(&format!("the {backend} backend is not available here"));
        }
    }
    options
}

/// Raises the soft fd limit to the hard one; returns the limit in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the hard one is allowed.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    // SAFETY: as above.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every Unix
    let soft = limit.rlim_cur as u64;
    soft
}

/// One echo connection's server side: echo what arrives, buffering what
/// the socket would not take.
fn serve(event_loop: &DynSelectorEventLoop, stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    let fd = stream.as_raw_fd();
    let stream = Rc::new(RefCell::new(stream));
    event_loop.add_reader(fd, move |lp| {
        let mut buf = [0u8; 4096];
        let mut stream = stream.borrow_mut();
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = lp.remove_reader(fd);
            }
            Ok(n) => {
                // One 64-byte message in flight per client: the send buffer always has room.
                let _ = stream.write_all(&buf[..n]);
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {
                let _ = lp.remove_reader(fd);
            }
        }
    })
}

struct EchoResult {
    round_trips: u64,
    elapsed: Duration,
    select_calls: u64,
    events: u64,
}

/// Runs the echo server and `clients` clients on one loop for `duration`.
fn echo_run(backend: Backend, clients: usize, duration: Duration) -> io::Result<EchoResult> {
    let event_loop = tulip::new_event_loop(backend)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let listener_fd = listener.as_raw_fd();
    event_loop.add_reader(listener_fd, move |lp| {
        while let Ok((stream, _)) = listener.accept() {
            if let Err(err) = serve(lp, stream) {
                eprintln!("compare_backends: cannot serve a connection: {err}");
            }
        }
    })?;

    let round_trips = Rc::new(Cell::new(0u64));
    let deadline = Rc::new(Cell::new(None::<Instant>));
    let mut client_streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        client_streams.push(Rc::new(RefCell::new(stream)));
    }
    for stream in &client_streams {
        let fd = stream.borrow().as_raw_fd();
        let (stream, round_trips, deadline) =
            (Rc::clone(stream), Rc::clone(&round_trips), Rc::clone(&deadline));
        let mut received = 0usize;
        event_loop.add_reader(fd, move |lp| {
            let mut buf = [0u8; 4096];
            let mut stream = stream.borrow_mut();
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    let _ = lp.remove_reader(fd);
                    return;
                }
                received += n;
            }
            while received >= MESSAGE.len() {
                received -= MESSAGE.len();
                round_trips.set(round_trips.get() + 1);
                if deadline.get().is_some_and(|d| Instant::now() < d) {
                    let _ = stream.write_all(&MESSAGE);
                }
            }
        })?;
    }
    let started = Instant::now();
    deadline.set(Some(started + duration));
    for stream in &client_streams {
        stream.borrow_mut().write_all(&MESSAGE)?;
    }
    event_loop.call_later(duration, |lp| lp.stop());
    let before = event_loop.stats();
    event_loop.run_forever()?;
    let elapsed = started.elapsed();
    let after = event_loop.stats();
    event_loop.close()?;
    Ok(EchoResult {
        round_trips: round_trips.get(),
        elapsed,
        select_calls: after.select_calls - before.select_calls,
        events: after.events_received - before.events_received,
    })
}

/// `false` when a registration was refused as out of range (select's
/// `FD_SETSIZE`); other errors are real.
fn fits(registered: io::Result<()>) -> io::Result<bool> {
    match registered {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == ErrorKind::InvalidInput => Ok(false),
        Err(err) => Err(err),
    }
}

/// Nanoseconds per "write 1 byte, select, read 1 byte" with one ready fd
/// among `n` registered; `None` if the backend cannot hold that many.
fn select_cost(backend: Backend, n: usize, fd_limit: u64) -> io::Result<Option<f64>> {
    // n - 1 idle fds (both ends of (n-1)/2 socketpairs) plus the ready pair.
    let idle_pairs = n.saturating_sub(1).div_ceil(2);
    if (idle_pairs * 2 + 2 + 64) as u64 > fd_limit {
        return Ok(None);
    }
    let mut selector = backend.open::<()>()?;
    let mut idle = Vec::with_capacity(idle_pairs);
    for _ in 0..idle_pairs {
        let (a, b) = UnixStream::pair()?;
        for fd in [a.as_raw_fd(), b.as_raw_fd()] {
            if selector.len() + 1 < n && !fits(selector.register(fd, Events::READ, ()).map(drop))? {
                return Ok(None);
            }
        }
        idle.push((a, b));
    }
    let (mut writer, mut reader) = UnixStream::pair()?;
    if !fits(selector.register(reader.as_raw_fd(), Events::READ, ()).map(drop))? {
        return Ok(None);
    }
    let mut byte = [0u8; 1];
    let mut round = |selector: &mut Box<dyn Selector<()>>| -> io::Result<()> {
        writer.write_all(&[1])?;
        let ready = selector.select(Some(Duration::ZERO))?.len();
        if ready != 1 {
            return Err(io::Error::other(format!("expected one ready fd, got {ready}")));
        }
        reader.read_exact(&mut byte)
    };
    for _ in 0..200 {
        round(&mut selector)?;
    }
    let budget = Duration::from_millis(150);
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < budget {
        for _ in 0..100 {
            round(&mut selector)?;
        }
        rounds += 100;
    }
    Ok(Some(started.elapsed().as_nanos() as f64 / rounds as f64))
}

fn run(options: &Options) -> io::Result<()> {
    let fd_limit = raise_fd_limit();
    for &backend in &options.backends {
        println!("{}", backend.capabilities());
    }
    println!();
    let mut header =
        format!("{:<8} {:>14} {:>11} {:>11}", "backend", "round trips/s", "selects/rt", "events/rt");
    for n in &options.sizes {
        header += &format!(" {:>13}", format!("ns/sel N={n}"));
    }
    println!(
        "echo: {} clients x 64-byte messages for {:.1} s per backend; select: 1 ready of N (write+select+read)",
        options.clients,
        options.duration.as_secs_f64()
    );
    println!("{header}");
    for &backend in &options.backends {
        let echo = echo_run(backend, options.clients, options.duration)?;
        let rate = echo.round_trips as f64 / echo.elapsed.as_secs_f64();
        let round_trips = echo.round_trips.max(1) as f64;
        let mut line = format!(
            "{:<8} {:>14.0} {:>11.2} {:>11.2}",
            backend.name(),
            rate,
            echo.select_calls as f64 / round_trips,
            echo.events as f64 / round_trips
        );
        for &n in &options.sizes {
            let cost = select_cost(backend, n, fd_limit)?;
            line += &match cost {
                Some(ns) => format!(" {:>13.0}", ns),
                None => format!(" {:>13}", "n/a"),
            };
        }
        println!("{line}");
    }
    println!("n/a: over select's FD_SETSIZE ({}) or this process's fd limit ({fd_limit}).", libc::FD_SETSIZE);
    Ok(())
}

fn main() -> ExitCode {
    let options = parse_options();
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("compare_backends: {err}");
            ExitCode::FAILURE
        }
    }
}
