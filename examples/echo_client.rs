//! An echo client for `echo_async`, `echo_protocol` and `echo_callbacks`:
//! each of `--conns` connections sends `--messages` messages one at a time,
//! checks that each comes back intact, and the round trips per second are
//! printed. Written with coroutines (Layer 3).
//!
//! ```text
//! cargo run --example echo_client -- --port PORT --conns 4 --messages 1000
//! ok: 4000 round trips over 4 connections in 0.210 s (19047 round trips/s)
//! ```
//!
//! Options: `--port P` (required), `--backend select|poll|epoll|kqueue`,
//! `--conns N` (also spelt `--max-conns`: connections, default 1),
//! `--messages N` per connection (default 1000), `--size BYTES` per message
//! (default 64). Exits with an error if an echo differs.

mod common;

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use common::{Arg, Cli};
use tulip::selectors::Backend;
use tulip::DynSelectorEventLoop;

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: echo_client --port P [--backend NAME] [--conns N] [--messages N] [--size BYTES]\n\n",
    "Checks an echo server: every message must come back intact.\n",
    "  --port P          the server's port on 127.0.0.1 (required)\n",
    "  --backend NAME    select, poll, epoll or kqueue (default: the best one here)\n",
    "  --conns N         connections (also --max-conns; default 1)\n",
    "  --messages N      messages per connection (default 1000)\n",
    "  --size BYTES      bytes per message (default 64)\n",
    "  -h, --help        show this help"
);

fn main() -> io::Result<()> {
    let args = Args::parse();
    let event_loop = Rc::new(tulip::new_event_loop(args.backend)?);
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let start = Instant::now();
    let clients: Vec<_> = (0..args.conns)
        .map(|id| {
            let lp = Rc::clone(&event_loop);
            let (messages, size) = (args.messages, args.size);
            event_loop.create_task(async move { client(&lp, addr, id, messages, size).await })
        })
        .collect();
    let outcomes = event_loop.run_until_complete(tulip::gather(clients))?;
    let took = start.elapsed().as_secs_f64();
    for outcome in outcomes {
        outcome??;
    }
    let total = args.conns * args.messages;
    println!(
        "ok: {total} round trips over {} connections in {took:.3} s ({:.0} round trips/s)",
        args.conns,
        total as f64 / took.max(1e-9)
    );
    tulip::AbstractEventLoop::close(&*event_loop)
}

/// One connection: send each message, read its echo back, compare.
async fn client(
    event_loop: &DynSelectorEventLoop,
    addr: SocketAddr,
    id: u64,
    messages: u64,
    size: usize,
) -> io::Result<()> {
    let conn = event_loop.sock_connect(addr).await?;
    let mut echo = vec![0u8; size];
    for n in 0..messages {
        let message = message(id, n, size);
        event_loop.sock_sendall(&conn, &message).await?;
        let mut got = 0;
        while got < size {
            let read = event_loop.sock_recv(&conn, &mut echo[got..]).await?;
            if read == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            }
            got += read;
        }
        if echo != message {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("connection {id}: echo {n} differs"),
            ));
        }
    }
    Ok(())
}

/// `size` bytes that differ per connection and message.
fn message(id: u64, n: u64, size: usize) -> Vec<u8> {
    let tag = format!("{id}:{n}:");
    tag.bytes().chain((0..).map(|i: u64| b'a' + ((i + n) % 26) as u8)).take(size).collect()
}

struct Args {
    port: u16,
    backend: Backend,
    conns: u64,
    messages: u64,
    size: usize,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args { port: 0, backend: Backend::default(), conns: 1, messages: 1000, size: 64 };
        let mut cli = Cli::new("echo_client", USAGE);
        while let Some(arg) = cli.next() {
            match &arg {
                Arg::Flag(flag) if flag == "--port" => args.port = cli.parse(flag),
                Arg::Flag(flag) if flag == "--backend" => args.backend = cli.backend(),
                Arg::Flag(flag) if flag == "--conns" || flag == "--max-conns" => args.conns = cli.parse(flag),
                Arg::Flag(flag) if flag == "--messages" => args.messages = cli.parse(flag),
                Arg::Flag(flag) if flag == "--size" => args.size = cli.parse::<u64>(flag).max(1) as usize,
                _ => cli.unknown(&arg),
            }
        }
        if args.port == 0 {
            cli.fail("--port is required");
        }
        args
    }
}
