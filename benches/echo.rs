//! The echo server five ways under one load generator (issue 7): tulip with
//! callbacks, coroutines and a protocol, raw epoll written inline (the
//! floor), and tokio's current-thread runtime. Each server runs on its own
//! thread; the load is blocking clients on 127.0.0.1 sending 64-byte
//! messages ping-pong on 1, 10 and 100 connections (see `echo_work.rs`).
//!
//! Criterion reports requests per second. At the end the bench prints each
//! server's CPU time per request (its thread's CPU clock, user + system,
//! read before and after every measurement) and its ratio to raw epoll.
//!
//! With one connection, server and load generator are pinned to one CPU
//! (the last this process may use), so a round trip is two context
//! switches on one core rather than two cross-core wake-ups, which depend
//! on what else runs. `TULIP_BENCH_NO_PIN=1` turns that off.
//!
//! ```text
//! cargo bench -p tulip-benches --bench echo             # about 2 minutes
//! cargo bench -p tulip-benches --bench echo -- --quick
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
        let placement = if pin && conns == 1 { vec![cpus[cpus.len() - 1]] } else { Vec::new() };
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
}

criterion_group!(benches, echo);
criterion_main!(benches);
