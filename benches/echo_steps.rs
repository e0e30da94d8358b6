//! The echo bench without criterion: one server, a fixed number of rounds,
//! then the server's CPU time per request and the requests per second.
//! Under callgrind (`--separate-threads=yes`), the server thread's part is
//! the instructions it spent; see `benches/echo_ir.sh`.
//!
//! ```text
//! cargo build --release -p tulip-benches --example echo_steps
//! target/release/examples/echo_steps tulip-protocol 10 20000
//! ```
//!
//! Servers: raw-epoll tulip-callbacks tulip-coroutines tulip-protocol
//! tulip-streams tokio.
//! `--pin` puts server and clients on one CPU.

use std::process::ExitCode;

#[path = "echo_work.rs"]
mod echo_work;

use echo_work::{allowed_cpus, measure, pin_current_thread, Clients, Kind, Server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pin = args.iter().any(|arg| arg == "--pin");
    let args: Vec<&String> = args.iter().filter(|arg| *arg != "--pin").collect();
    let [kind, conns, rounds] = &args[..] else {
        eprintln!("usage: echo_steps [--pin] SERVER CONNECTIONS ROUNDS");
        return ExitCode::FAILURE;
    };
    let (Some(kind), Ok(conns), Ok(rounds)) =
        (Kind::parse(kind), conns.parse::<usize>(), rounds.parse::<u64>())
    else {
        eprintln!("unknown server, or CONNECTIONS and ROUNDS are not numbers");
        return ExitCode::FAILURE;
    };
    let placement = if pin { vec![*allowed_cpus().last().expect("a CPU")] } else { Vec::new() };
    if pin {
        pin_current_thread(&placement);
    }
    let server = Server::start(kind, conns, &placement);
    let mut clients = Clients::connect(server.addr, conns);
    clients.rounds(10);
    let sample = measure(&server, &mut clients, rounds);
    drop(clients);
    server.join();
    println!(
        "{kind} conns={conns} requests={} requests/s={:.0} server cpu ns/request={:.0}",
        sample.requests,
        sample.requests_per_second(),
        sample.cpu_nanos_per_request()
    );
    ExitCode::SUCCESS
}
