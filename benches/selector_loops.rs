//! The selectors bench's steps, run a given number of times without
//! criterion, for instruction counting under callgrind: user-space
//! instructions per step are `(Ir(k2) - Ir(k1)) / (k2 - k1)` for two
//! iteration counts, whatever the setup cost. Kernel work is not counted,
//! which is the point: the difference between `tulip-X` and `raw-X` is
//! exactly what tulip adds on top of the syscall.
//!
//! ```text
//! cargo build --release -p tulip-benches --example selector_loops
//! valgrind --tool=callgrind target/release/examples/selector_loops tulip-epoll ready 1000 100000
//! bash benches/callgrind_ir.sh tulip-epoll ready 1000   # instructions per step
//! ```
//!
//! Implementations: raw-epoll tulip-epoll tulip-io_uring raw-poll tulip-poll
//! raw-select tulip-select. Workloads: ready (1 of N), idle (zero timeout,
//! N idle), pingpong, regunreg and modify (these two: epoll and io_uring
//! only, N ignored).

use std::hint::black_box;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

use tulip_benches::raw::{RawEpoll, RawPoll, RawSelect};
use tulip_benches::{
    idle_fds, idle_step, modify_step, one_ready_step, ping_pong_step, raise_fd_limit, raw_modify_step,
    raw_register_unregister_step, register_unregister_step, socketpair, OneReady, Tulip, Wait,
};
use tulip_selectors::{EpollSelector, Events, IoUringSelector, PollSelector, SelectSelector, Selector};

fn repeat(iterations: u64, mut step: impl FnMut() -> usize) {
    for _ in 0..iterations {
        black_box(step());
    }
}

/// Runs a readiness workload on `fixture` with `waiter`.
fn run_wait(workload: &str, iterations: u64, fixture: &Fixture, mut waiter: impl Wait) -> Result<(), String> {
    match (workload, fixture) {
        ("ready", Fixture::OneReady(f)) => {
            let (w, r) = (f.writer.as_raw_fd(), f.reader.as_raw_fd());
            repeat(iterations, || one_ready_step(&mut waiter, w, r));
        }
        ("idle", Fixture::Idle(_)) => repeat(iterations, || idle_step(&mut waiter)),
        ("pingpong", Fixture::Pair(a, b)) => {
            let (a, b) = (a.as_raw_fd(), b.as_raw_fd());
            repeat(iterations, || ping_pong_step(&mut waiter, a, b));
        }
        _ => return Err(format!("unknown workload {workload}")),
    }
    Ok(())
}

enum Fixture {
    OneReady(OneReady),
    Idle(Vec<OwnedFd>),
    Pair(OwnedFd, OwnedFd),
}

impl Fixture {
    fn fds(&self) -> Vec<RawFd> {
        match self {
            Fixture::OneReady(f) => f.registered(),
            Fixture::Idle(fds) => fds.iter().map(AsRawFd::as_raw_fd).collect(),
            Fixture::Pair(a, b) => vec![a.as_raw_fd(), b.as_raw_fd()],
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [implementation, workload, n, iterations] = &args[..] else {
        eprintln!("usage: selector_loops IMPL WORKLOAD N ITERATIONS");
        return ExitCode::FAILURE;
    };
    let (Ok(n), Ok(iterations)) = (n.parse::<usize>(), iterations.parse::<u64>()) else {
        eprintln!("N and ITERATIONS must be numbers");
        return ExitCode::FAILURE;
    };
    raise_fd_limit();

    let result = match workload.as_str() {
        "regunreg" | "modify" => {
            let (_other, socket) = socketpair();
            let fd = socket.as_raw_fd();
            match (implementation.as_str(), workload.as_str()) {
                ("raw-epoll", "regunreg") => {
                    let raw = RawEpoll::new(1);
                    repeat(iterations, || raw_register_unregister_step(&raw, fd));
                    Ok(())
                }
                ("raw-epoll", "modify") => {
                    let raw = RawEpoll::readers(&[fd]);
                    repeat(iterations, || raw_modify_step(&raw, fd));
                    Ok(())
                }
                ("tulip-epoll", "regunreg") => {
                    let mut selector = EpollSelector::new().expect("epoll");
                    repeat(iterations, || register_unregister_step(&mut selector, fd));
                    Ok(())
                }
                ("tulip-epoll", "modify") => {
                    let mut selector = EpollSelector::new().expect("epoll");
                    selector.register(fd, Events::READ, 0).expect("register");
                    repeat(iterations, || modify_step(&mut selector, fd));
                    Ok(())
                }
                ("tulip-io_uring", "regunreg") => {
                    let mut selector = IoUringSelector::new().expect("io_uring");
                    repeat(iterations, || register_unregister_step(&mut selector, fd));
                    Ok(())
                }
                ("tulip-io_uring", "modify") => {
                    let mut selector = IoUringSelector::new().expect("io_uring");
                    selector.register(fd, Events::READ, 0).expect("register");
                    repeat(iterations, || modify_step(&mut selector, fd));
                    Ok(())
                }
                _ => {
                    Err(format!("{workload} is measured for raw-epoll, tulip-epoll and tulip-io_uring only"))
                }
            }
        }
        _ => {
            let fixture = match workload.as_str() {
                "ready" => Fixture::OneReady(OneReady::new(n)),
                "idle" => Fixture::Idle(idle_fds(n)),
                _ => {
                    let (a, b) = socketpair();
                    Fixture::Pair(a, b)
                }
            };
            let fds = fixture.fds();
            match implementation.as_str() {
                "raw-epoll" => run_wait(workload, iterations, &fixture, RawEpoll::readers(&fds)),
                "raw-poll" => run_wait(workload, iterations, &fixture, RawPoll::readers(&fds)),
                "raw-select" => run_wait(workload, iterations, &fixture, RawSelect::readers(&fds)),
                "tulip-epoll" => {
                    let selector = EpollSelector::new().expect("epoll");
                    run_wait(workload, iterations, &fixture, Tulip::readers(selector, &fds))
                }
                "tulip-io_uring" => {
                    let selector = IoUringSelector::new().expect("io_uring");
                    run_wait(workload, iterations, &fixture, Tulip::readers(selector, &fds))
                }
                "tulip-poll" => {
                    let selector = PollSelector::new().expect("poll");
                    run_wait(workload, iterations, &fixture, Tulip::readers(selector, &fds))
                }
                "tulip-select" => {
                    let selector = SelectSelector::new().expect("select");
                    run_wait(workload, iterations, &fixture, Tulip::readers(selector, &fds))
                }
                other => Err(format!("unknown implementation {other}")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
