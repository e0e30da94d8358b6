//! Event-loop throughput (issue 7): tulip's loop beside a minimal loop
//! written here (the floor), raw epoll, and tokio's current-thread runtime.
//! Every group reports elements per second (callbacks, links, timers, round
//! trips, calls).
//!
//! ```text
//! cargo bench -p tulip-benches --bench event_loop            # a few minutes on 2 cores
//! cargo bench -p tulip-benches --bench event_loop -- --quick # about a minute
//! ```
//!
//! The workloads live in `loop_work.rs`, shared with the `loop_steps`
//! example that counts their instructions under callgrind.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "loop_work.rs"]
mod loop_work;

use loop_work::{
    peers, timer_delays, FloorBatch, FloorChain, RawPingPong, TulipBatch, TulipChain, TulipPingPong,
    TulipScheduleCancel, TulipThreadsafe, TulipTimers,
};

const BATCH: u64 = 1_000;
const LINKS: u64 = 1_000;
const TIMERS: usize = 100_000;
const ROUNDS: u64 = 1_000;
const CANCELS: u64 = 1_000;
const THREADSAFE_CALLS: u64 = 10_000;

/// `call_soon` batches of 1,000: one iteration runs them all.
fn call_soon_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_soon_batch");
    group.throughput(Throughput::Elements(BATCH));
    let tulip = TulipBatch::new();
    group.bench_function(BenchmarkId::new("tulip", BATCH), |b| b.iter(|| black_box(tulip.run(BATCH))));
    let floor = FloorBatch::new();
    group.bench_function(BenchmarkId::new("floor", BATCH), |b| b.iter(|| black_box(floor.run(BATCH))));
    let runtime = peers::bare_runtime();
    group.bench_function(BenchmarkId::new("tokio", BATCH), |b| {
        b.iter(|| black_box(peers::batch(&runtime, BATCH)))
    });
    group.finish();
}

/// `call_soon` chains of 1,000: each callback schedules the next, so each
/// link is one iteration of the loop.
fn call_soon_chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_soon_chain");
    group.throughput(Throughput::Elements(LINKS));
    let tulip = TulipChain::new();
    group.bench_function(BenchmarkId::new("tulip", LINKS), |b| b.iter(|| black_box(tulip.run(LINKS))));
    let floor = FloorChain::new();
    group.bench_function(BenchmarkId::new("floor", LINKS), |b| b.iter(|| black_box(floor.run(LINKS))));
    let runtime = peers::bare_runtime();
    group.bench_function(BenchmarkId::new("tokio", LINKS), |b| {
        b.iter(|| black_box(peers::chain(&runtime, LINKS)))
    });
    group.finish();
}

/// 100,000 `call_later`s with random delays up to 1 ms, all fired.
fn call_later_fire(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_later_100k");
    group.throughput(Throughput::Elements(TIMERS as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    let delays = timer_delays(TIMERS);
    let tulip = TulipTimers::new();
    group.bench_function(BenchmarkId::new("tulip", TIMERS), |b| b.iter(|| black_box(tulip.run(&delays))));
    let runtime = peers::timer_runtime();
    group.bench_function(BenchmarkId::new("tokio", TIMERS), |b| {
        b.iter(|| black_box(peers::timers(&runtime, &delays)))
    });
    group.finish();
}

/// `call_later` + `cancel`, in batches of 1,000 each followed by one loop
/// iteration: the heap purges cancelled timers, so memory stays flat.
fn schedule_cancel(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_later_cancel");
    group.throughput(Throughput::Elements(CANCELS));
    let mut tulip = TulipScheduleCancel::new();
    group.bench_function(BenchmarkId::new("tulip", CANCELS), |b| b.iter(|| black_box(tulip.run(CANCELS))));
    group.finish();
    if tulip.peak() > 0 {
        eprintln!(
            "call_later_cancel: stats().timers_in_heap after the run: {}, at most {} before an iteration",
            tulip.timers_in_heap(),
            tulip.peak()
        );
    }
}

/// Ping-pong through two readers on a socketpair, beside the same on raw epoll.
fn reader_ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("add_reader_ping_pong");
    group.throughput(Throughput::Elements(ROUNDS));
    let tulip = TulipPingPong::new();
    group.bench_function(BenchmarkId::new("tulip", ROUNDS), |b| b.iter(|| black_box(tulip.run(ROUNDS))));
    let mut raw = RawPingPong::new();
    group.bench_function(BenchmarkId::new("raw-epoll", ROUNDS), |b| b.iter(|| black_box(raw.run(ROUNDS))));
    group.finish();
}

/// `LoopHandle::call_soon_threadsafe` from another thread; the loop counts
/// the calls and the last one stops it.
fn threadsafe(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_soon_threadsafe");
    group.throughput(Throughput::Elements(THREADSAFE_CALLS));
    let tulip = TulipThreadsafe::new();
    group.bench_function(BenchmarkId::new("tulip", THREADSAFE_CALLS), |b| {
        b.iter(|| black_box(tulip.run(THREADSAFE_CALLS)))
    });
    group.finish();
}

criterion_group!(
    benches,
    call_soon_batch,
    call_soon_chain,
    call_later_fire,
    schedule_cancel,
    reader_ping_pong,
    threadsafe
);
criterion_main!(benches);
