//! An echo server written with a protocol: the loop calls `data_received`,
//! the protocol writes back through its transport (Layer 3, Tulip's
//! transports and protocols).
//!
//! ```text
//! cargo run --example echo_protocol -- --port 0 --max-conns 1
//! listening on 127.0.0.1:PORT
//! ```
//!
//! Options: `--port P` (0 picks a free port; the first line printed says
//! which), `--backend select|poll|epoll|kqueue|io_uring`, `--max-conns N` (exit once
//! N connections were served). Talk to it with `echo_client` or `nc`.

mod common;

use std::cell::Cell;
use std::io::{self, Write};
use std::rc::Rc;

use common::ServerArgs;
use tulip::{AbstractEventLoop, Protocol, Transport};

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: echo_protocol [--port P] [--backend NAME] [--max-conns N]\n\n",
    "An echo server written with a Protocol and its Transport.\n",
    "  --port P          port on 127.0.0.1 (default 8888; 0 picks a free one)\n",
    "  --backend NAME    select, poll, epoll, kqueue or io_uring (default: the best one here)\n",
    "  --max-conns N     exit once N connections were served (N >= 1)\n",
    "  -h, --help        show this help"
);

/// One connection: echo, and stop reading while the peer is not reading.
struct Echo {
    transport: Option<Transport>,
    /// Completed when the last of `--max-conns` connections is closed.
    finished: Rc<Finish>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: Transport) {
        self.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(transport) = &self.transport {
            let _ = transport.write(data);
        }
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        if let Some(err) = error {
            eprintln!("connection lost: {err}");
        }
        self.finished.one_closed();
    }

    // Flow control: a peer that sends but does not read fills our buffer;
    // stop reading from it until the buffer drains.
    fn pause_writing(&mut self) {
        if let Some(transport) = &self.transport {
            transport.pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(transport) = &self.transport {
            transport.resume_reading();
        }
    }
}

/// Counts closed connections toward `--max-conns`.
struct Finish {
    left: Cell<Option<u64>>,
    done: tulip::Future<()>,
}

impl Finish {
    fn one_closed(&self) {
        if let Some(left) = self.left.get() {
            self.left.set(Some(left.saturating_sub(1)));
            if left <= 1 {
                let _ = self.done.set_result(());
            }
        }
    }
}

fn main() -> io::Result<()> {
    let args = ServerArgs::parse("echo_protocol", USAGE);
    let event_loop = tulip::new_event_loop(args.backend)?;
    let finished = Rc::new(Finish { left: Cell::new(args.max_conns), done: event_loop.create_future() });
    let shared = Rc::clone(&finished);
    let server = event_loop.create_server(([127, 0, 0, 1], args.port), move || Echo {
        transport: None,
        finished: Rc::clone(&shared),
    })?;
    println!("listening on {}", server.local_addr()?);
    io::stdout().flush()?;
    match args.max_conns {
        Some(_) => event_loop.run_until_complete(finished.done.clone())??,
        None => event_loop.run_forever()?,
    }
    server.close();
    event_loop.close()
}
