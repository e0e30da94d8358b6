//! The echo server six ways under one load generator (issues 7 and 13):
//! tulip with callbacks, coroutines, a protocol and streams, raw epoll
//! written inline (the floor), and tokio's current-thread runtime. Each server runs on its own
//! thread; the load is blocking clients on 127.0.0.1 sending 64-byte
//! messages ping-pong on 1, 10 and 100 connections (see `echo_work.rs`).
//!
//! Criterion reports requests per second. At the end the bench prints each
//! server's CPU time per request (its thread's CPU clock, user + system,
//! read before and after every measurement) and its ratio to raw epoll,
//! then streams' CPU per request over the protocol server's (issue 13's
//! target: at most 1.3).
//!
//! Server and load generator are pinned to one CPU (the last this process
//! may use). Then every round goes the same way, whatever else runs on the
//! machine: the clients write a request on every connection and block on
//! the first reply; the server wakes to all of them ready, answers them in
//! one batch and blocks; the clients read the replies. Requests per second
//! measure the CPU time of a round trip (both sides, two context switches),
//! and the server's CPU time per request is its own work for a full batch.
//! Unpinned, how many requests a server finds per wake-up depends on how
//! fast it is and on what else runs, and a faster server then pays for more
//! wake-ups per request. `TULIP_BENCH_NO_PIN=1` runs unpinned all the same.
//!
//! ```text
//! cargo bench -p tulip-benches --bench echo             # about 2 minutes
//! cargo bench -p tulip-benches --bench echo -- --quick
//! cargo bench -p tulip-benches --bench echo -- 'tulip-(protocol|streams)|tokio'   # three of them
//! ```

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "echo_work.rs"]
mod echo_work;

use echo_work::{allowed_cpus, measure, pin_current_thread, Clients, Kind, Sample, Server};

const CONNECTIONS: [usize; 3] = [1, 10, 100];

fn echo(c: &mut Criterion) {
    let cpus = allowed_cpus();
    let pin = std::env::var_os("TULIP_BENCH_NO_PIN").is_none() && cpus.len() > 1;
    let mut report: Vec<(usize, Kind, Sample)> = Vec::new();
    for conns in CONNECTIONS {
        let mut group = c.benchmark_group("echo");
        group.throughput(Throughput::Elements(conns as u64));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        group.sample_size(30);
        let placement = if pin { vec![cpus[cpus.len() - 1]] } else { Vec::new() };
        if !placement.is_empty() {
            pin_current_thread(&placement);
        }
        for kind in Kind::ALL {
            let server = Server::start(kind, conns, &placement);
            let mut clients = Clients::connect(server.addr, conns);
            clients.rounds(100);
            let mut total = Sample::default();
            group.bench_function(BenchmarkId::new(kind.name(), format!("{conns}conn")), |b| {
                b.iter_custom(|rounds| {
                    let sample = measure(&server, &mut clients, rounds);
                    total.add(sample);
                    sample.wall
                })
            });
            drop(clients);
            server.join();
            report.push((conns, kind, total));
        }
        group.finish();
        if !placement.is_empty() {
            pin_current_thread(&cpus);
        }
    }
    print_report(&report);
}

/// Server CPU time per request over everything measured (warm-up included),
/// beside raw epoll's for the same connection count.
fn print_report(report: &[(usize, Kind, Sample)]) {
    eprintln!("\necho: server CPU time per request (thread CPU clock), ratio to raw-epoll");
    eprintln!("{:>5}  {:<17} {:>12} {:>13} {:>10}", "conns", "server", "requests", "cpu ns/req", "vs raw");
    for &(conns, kind, sample) in report {
        if sample.requests == 0 {
            continue; // filtered out
        }
        let raw = report
            .iter()
            .find(|&&(c, k, s)| c == conns && k == Kind::RawEpoll && s.requests > 0)
            .map(|(_, _, s)| s.cpu_nanos_per_request());
        let ratio =
            raw.map_or_else(|| "-".to_owned(), |raw| format!("{:.3}", sample.cpu_nanos_per_request() / raw));
        eprintln!(
            "{conns:>5}  {:<17} {:>12} {:>13.0} {:>10}",
            kind.name(),
            sample.requests,
            sample.cpu_nanos_per_request(),
            ratio
        );
    }
    // Streams ÷ protocol: what the reader/writer pair costs over the
    // protocol underneath it.
    let cpu = |conns: usize, kind: Kind| {
        report
            .iter()
            .find(|&&(c, k, s)| c == conns && k == kind && s.requests > 0)
            .map(|(_, _, s)| s.cpu_nanos_per_request())
    };
    for conns in CONNECTIONS {
        if let (Some(streams), Some(protocol)) =
            (cpu(conns, Kind::TulipStreams), cpu(conns, Kind::TulipProtocol))
        {
            eprintln!(
                "{conns:>5}  tulip-streams ÷ tulip-protocol, CPU per request: {:.3}",
                streams / protocol
            );
        }
    }
}

criterion_group!(benches, echo);
criterion_main!(benches);
