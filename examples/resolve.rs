//! Host names (`getaddrinfo` on the loop's worker threads): every name on
//! the command line is looked up at once, the answers printed as they come;
//! with `--connect`, a TCP connection to `name:port` is tried, address by
//! address, as `create_connection` does.
//!
//! ```text
//! cargo run --example resolve -- localhost 127.0.0.1 nosuchhost.invalid
//! 127.0.0.1: 127.0.0.1 (a literal: no lookup)
//! localhost: 127.0.0.1
//! nosuchhost.invalid: failed to resolve "nosuchhost.invalid": Name or service not known
//! 3 names, 1 not found
//! ```
//!
//! Options: `--port P` (the port of the addresses, default 80),
//! `--connect` (also connect to each name's port: `connected to ADDR` or
//! the error), `--backend select|poll|epoll|kqueue`. Exits with status 1
//! if a name was not found.

mod common;

use std::io;
use std::rc::Rc;

use common::{Arg, Cli};
use tulip::selectors::Backend;
use tulip::{DynSelectorEventLoop, Protocol};

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: resolve [--port P] [--connect] [--backend NAME] NAME...\n\n",
    "Looks every NAME up with getaddrinfo, at once, on the loop's worker threads.\n",
    "  --port P          the port of the addresses (default 80)\n",
    "  --connect         also connect to each NAME's port, address by address\n",
    "  --backend NAME    select, poll, epoll or kqueue (default: the best one here)\n",
    "  -h, --help        show this help"
);

struct Args {
    names: Vec<String>,
    port: u16,
    connect: bool,
    backend: Backend,
}

/// Reads the command line; a mistake ends the process (status 2).
fn parse_args() -> Args {
    let mut args = Args { names: Vec::new(), port: 80, connect: false, backend: Backend::default() };
    let mut cli = Cli::new("resolve", USAGE);
    while let Some(arg) = cli.next() {
        match &arg {
            Arg::Flag(flag) if flag == "--connect" => args.connect = true,
            Arg::Flag(flag) if flag == "--port" => args.port = cli.parse(flag),
            Arg::Flag(flag) if flag == "--backend" => args.backend = cli.backend(),
            Arg::Word(name) => args.names.push(name.clone()),
            _ => cli.unknown(&arg),
        }
    }
    if args.names.is_empty() {
        cli.fail("no name to look up");
    }
    args
}

/// A protocol that only connects.
struct Quiet;
impl Protocol for Quiet {}

/// Looks `name` up, prints the answer, connects if asked; `false` if not found.
async fn resolve(event_loop: Rc<DynSelectorEventLoop>, name: String, port: u16, connect: bool) -> bool {
    let literal = name.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().is_ok();
    match event_loop.getaddrinfo(&name, port).await {
        Ok(addrs) => {
            let list: Vec<String> = addrs.iter().map(|addr| addr.ip().to_string()).collect();
            let note = if literal { " (a literal: no lookup)" } else { "" };
            println!("{name}: {}{note}", list.join(", "));
        }
        Err(err) => {
            println!("{name}: {err}");
            return false;
        }
    }
    if connect {
        match event_loop.create_connection((name.as_str(), port), || Quiet).await {
            Ok((transport, _)) => {
                let peer = transport.peer_addr().map(|addr| addr.to_string()).unwrap_or_default();
                println!("{name}: connected to {peer}");
                transport.close();
            }
            Err(err) => println!("{name}: cannot connect: {err}"),
        }
    }
    true
}

fn main() -> io::Result<()> {
    let args = parse_args();
    let event_loop = Rc::new(tulip::new_event_loop(args.backend)?);
    let count = args.names.len();
    // One task per name: the lookups run at once, on the worker threads.
    let tasks: Vec<_> = args
        .names
        .into_iter()
        .map(|name| event_loop.create_task(resolve(Rc::clone(&event_loop), name, args.port, args.connect)))
        .collect();
    let found = event_loop.run_until_complete(tulip::gather(tasks))?;
    let missing = found.into_iter().filter(|found| !matches!(found, Ok(true))).count();
    println!("{count} names, {missing} not found");
    tulip::AbstractEventLoop::close(&*event_loop)?;
    if missing > 0 {
        std::process::exit(1);
    }
    Ok(())
}
