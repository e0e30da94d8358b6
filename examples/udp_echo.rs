//! A UDP echo server: each datagram goes back to where it came from
//! (Layer 3, a `DatagramProtocol` on `create_datagram_endpoint`).
//!
//! ```text
//! cargo run --example udp_echo -- --port 0 --max-datagrams 3
//! listening on 127.0.0.1:PORT
//! ```
//!
//! Options: `--port P` (default 9999; 0 picks a free port, and the first
//! line printed says which), `--host H` (default 127.0.0.1; a name such as
//! `localhost` is looked up), `--backend select|poll|epoll|kqueue`,
//! `--max-datagrams N` (exit once N datagrams were echoed). Any UDP client
//! can drive it; Python's asyncio, for one:
//!
//! ```text
//! python3 -c '
//! import asyncio, sys
//! class Client(asyncio.DatagramProtocol):
//!     def __init__(self, done): self.done = done
//!     def connection_made(self, transport): transport.sendto(b"hello")
//!     def datagram_received(self, data, addr): self.done.set_result(data)
//! async def main():
//!     loop = asyncio.get_running_loop(); done = loop.create_future()
//!     transport, _ = await loop.create_datagram_endpoint(lambda: Client(done), remote_addr=("127.0.0.1", int(sys.argv[1])))
//!     print(await asyncio.wait_for(done, 5)); transport.close()
//! asyncio.run(main())' PORT
//! ```

mod common;

use std::cell::Cell;
use std::io::{self, Write};
use std::rc::Rc;

use common::{Arg, Cli};
use tulip::selectors::Backend;
use tulip::{AbstractEventLoop, DatagramProtocol, DatagramTransport, SocketAddress};

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: udp_echo [--port P] [--host H] [--backend NAME] [--max-datagrams N]\n\n",
    "A UDP echo server: each datagram goes back to where it came from.\n",
    "  --port P            port (default 9999; 0 picks a free one)\n",
    "  --host H            address or name to listen on (default 127.0.0.1)\n",
    "  --backend NAME      select, poll, epoll or kqueue (default: the best one here)\n",
    "  --max-datagrams N   exit once N datagrams were echoed (N >= 1)\n",
    "  -h, --help          show this help"
);

/// Echoes every datagram; counts them toward `--max-datagrams`.
struct Echo {
    transport: Option<DatagramTransport>,
    left: Rc<Cell<Option<u64>>>,
    /// Completed when `--max-datagrams` were echoed.
    done: tulip::Future<()>,
    /// Completed by `connection_lost`, once `close` has sent what was buffered.
    closed: tulip::Future<()>,
}

impl DatagramProtocol for Echo {
    fn connection_made(&mut self, transport: DatagramTransport) {
        self.transport = Some(transport);
    }

    fn datagram_received(&mut self, data: &[u8], addr: SocketAddress) {
        let Some(transport) = &self.transport else { return };
        // Never blocks: a datagram the socket cannot take now is buffered.
        if let Err(err) = transport.sendto(data, Some(&addr)) {
            eprintln!("cannot echo to {addr}: {err}");
        }
        if let Some(left) = self.left.get() {
            self.left.set(Some(left.saturating_sub(1)));
            if left <= 1 {
                let _ = self.done.set_result(());
            }
        }
    }

    fn error_received(&mut self, error: io::Error) {
        // A datagram too large, an ICMP error for an earlier echo: the
        // endpoint goes on.
        eprintln!("error: {error}");
    }

    fn connection_lost(&mut self, _error: Option<io::Error>) {
        let _ = self.closed.set_result(());
    }
}

struct Args {
    host: String,
    port: u16,
    backend: Backend,
    max_datagrams: Option<u64>,
}

impl Args {
    /// Reads the command line; a mistake ends the process (status 2).
    fn parse() -> Args {
        let mut args =
            Args { host: "127.0.0.1".into(), port: 9999, backend: Backend::default(), max_datagrams: None };
        let mut cli = Cli::new("udp_echo", USAGE);
        while let Some(arg) = cli.next() {
            match &arg {
                Arg::Flag(flag) if flag == "--port" => args.port = cli.parse(flag),
                Arg::Flag(flag) if flag == "--host" => args.host = cli.value(flag),
                Arg::Flag(flag) if flag == "--backend" => args.backend = cli.backend(),
                Arg::Flag(flag) if flag == "--max-datagrams" => args.max_datagrams = Some(cli.parse(flag)),
                _ => cli.unknown(&arg),
            }
        }
        if args.max_datagrams == Some(0) {
            cli.fail("--max-datagrams must be at least 1");
        }
        args
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let event_loop = tulip::new_event_loop(args.backend)?;
    let (done, closed) = (event_loop.create_future::<()>(), event_loop.create_future::<()>());
    let left = Rc::new(Cell::new(args.max_datagrams));
    let echo = Echo { transport: None, left, done: done.clone(), closed: closed.clone() };
    let local = (args.host.as_str(), args.port);
    let (transport, _) = event_loop.run_until_complete(event_loop.create_datagram_endpoint(
        Some(&local),
        None,
        move || echo,
    ))??;
    println!("listening on {}", transport.local_addr()?);
    io::stdout().flush()?;
    match args.max_datagrams {
        Some(_) => event_loop.run_until_complete(done)??,
        None => event_loop.run_forever()?,
    }
    // The last echoes leave before the socket closes.
    transport.close();
    event_loop.run_until_complete(closed)??;
    event_loop.close()
}
