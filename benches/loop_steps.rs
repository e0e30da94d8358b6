//! The event_loop bench's workloads, run a given number of times without
//! criterion, for instruction counting under callgrind: instructions per
//! element are `(Ir(k2 runs) - Ir(k1 runs)) / ((k2 - k1) * elements)`,
//! whatever the setup cost. Kernel work is not counted.
//!
//! ```text
//! cargo build --release -p tulip-benches --example loop_steps
//! valgrind --tool=callgrind target/release/examples/loop_steps tulip-batch 1000 100
//! bash benches/loop_ir.sh tulip-batch 1000      # instructions per element
//! ```
//!
//! Workloads (ELEMENTS is the batch size, links, rounds, timers or calls):
//! tulip-batch floor-batch tokio-batch, tulip-chain floor-chain tokio-chain,
//! tulip-timers tokio-timers, tulip-cancel, tulip-pingpong raw-pingpong,
//! tulip-threadsafe, churn-epoll churn-io_uring churn-poll (ELEMENTS: at
//! most 64 connections per run).

use std::hint::black_box;
use std::process::ExitCode;

#[path = "loop_work.rs"]
mod loop_work;

use loop_work::{
    peers, timer_delays, Churn, FloorBatch, FloorChain, RawPingPong, TulipBatch, TulipChain, TulipPingPong,
    TulipScheduleCancel, TulipThreadsafe, TulipTimers,
};
use tulip::selectors::{EpollSelector, IoUringSelector, PollSelector};

fn repeat(runs: u64, mut run: impl FnMut() -> u64) {
    for _ in 0..runs {
        black_box(run());
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [workload, elements, runs] = &args[..] else {
        eprintln!("usage: loop_steps WORKLOAD ELEMENTS RUNS");
        return ExitCode::FAILURE;
    };
    let (Ok(n), Ok(runs)) = (elements.parse::<u64>(), runs.parse::<u64>()) else {
        eprintln!("ELEMENTS and RUNS must be numbers");
        return ExitCode::FAILURE;
    };
    match workload.as_str() {
        "tulip-batch" => {
            let w = TulipBatch::new();
            repeat(runs, || w.run(n));
        }
        "floor-batch" => {
            let w = FloorBatch::new();
            repeat(runs, || w.run(n));
        }
        "tokio-batch" => {
            let runtime = peers::bare_runtime();
            repeat(runs, || peers::batch(&runtime, n));
        }
        "tulip-chain" => {
            let w = TulipChain::new();
            repeat(runs, || w.run(n));
        }
        "floor-chain" => {
            let w = FloorChain::new();
            repeat(runs, || w.run(n));
        }
        "tokio-chain" => {
            let runtime = peers::bare_runtime();
            repeat(runs, || peers::chain(&runtime, n));
        }
        "tulip-timers" => {
            let delays = timer_delays(n as usize);
            let w = TulipTimers::new();
            repeat(runs, || w.run(&delays));
        }
        "tokio-timers" => {
            let delays = timer_delays(n as usize);
            let runtime = peers::timer_runtime();
            repeat(runs, || peers::timers(&runtime, &delays));
        }
        "tulip-cancel" => {
            let mut w = TulipScheduleCancel::new();
            repeat(runs, || w.run(n) as u64);
        }
        "tulip-pingpong" => {
            let w = TulipPingPong::new();
            repeat(runs, || w.run(n));
        }
        "raw-pingpong" => {
            let mut w = RawPingPong::new();
            repeat(runs, || w.run(n));
        }
        "tulip-threadsafe" => {
            let w = TulipThreadsafe::new();
            repeat(runs, || w.run(n));
        }
        "churn-epoll" => {
            let mut w = Churn::new(EpollSelector::new().expect("epoll"));
            repeat(runs, || w.run(n));
        }
        "churn-io_uring" => {
            let mut w = Churn::new(IoUringSelector::new().expect("io_uring"));
            repeat(runs, || w.run(n));
        }
        "churn-poll" => {
            let mut w = Churn::new(PollSelector::new().expect("poll"));
            repeat(runs, || w.run(n));
        }
        other => {
            eprintln!("unknown workload {other}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
