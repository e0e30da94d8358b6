//! Accept-serve-close churn (issue 16): short TCP connections on the event
//! loop, each accepted, registered with `add_reader`, served once (a 1-byte
//! request, a 1-byte response), unregistered and closed. The same static
//! loop (`BaseSelectorEventLoop<S>`) over epoll, io_uring and poll; clients
//! and server share the bench thread, so the whole exchange is on one clock.
//!
//! On epoll each connection costs two `epoll_ctl` calls (register,
//! unregister); on io_uring both ride in the `io_uring_enter` that waits.
//!
//! ```text
//! cargo bench -p tulip-benches --bench churn      # about a minute
//! ```
//!
//! Times are the bench thread's CPU time, as in the selectors bench (see
//! `cpu_time.rs`); `TULIP_BENCH_CLOCK=wall` measures wall time instead. One
//! element is one connection, 64 per iteration.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use tulip::selectors::{Backend, EpollSelector, IoUringSelector, PollSelector, Selector};
use tulip::IoHandlers;
use tulip_benches::share_fd_table;

mod cpu_time;
#[path = "loop_work.rs"]
mod loop_work;

use cpu_time::{Clock, ThreadCpuTime};
use loop_work::{Churn, CHURN_BATCH};

fn churn<M: Measurement, S: Selector<IoHandlers> + 'static>(c: &mut Criterion<M>, name: &str, selector: S) {
    let mut group = c.benchmark_group("accept_serve_close");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(CHURN_BATCH));
    let mut workload = Churn::new(selector);
    assert_eq!(workload.run(CHURN_BATCH), CHURN_BATCH, "{name}: every connection served before timing");
    group.bench_function(BenchmarkId::new(name, CHURN_BATCH), |b| {
        b.iter(|| black_box(workload.run(CHURN_BATCH)))
    });
    group.finish();
}

fn setup<M: Measurement>(c: &mut Criterion<M>) {
    // Every benchmark in the multi-threaded state criterion's statistics put
    // the process in after the first one (see `share_fd_table`): each
    // connection makes a dozen fd syscalls, and the first backend measured
    // would otherwise look ~0.5 µs per connection faster.
    share_fd_table();
    churn(c, "tulip-epoll", EpollSelector::new().expect("epoll"));
    if Backend::available().contains(&Backend::IoUring) {
        churn(c, "tulip-io_uring", IoUringSelector::new().expect("io_uring"));
    } else {
        eprintln!("accept_serve_close: io_uring is not available here, skipped");
    }
    churn(c, "tulip-poll", PollSelector::new().expect("poll"));
}

fn main() {
    match Clock::from_env() {
        Clock::ThreadCpu => {
            let mut criterion = Criterion::default().with_measurement(ThreadCpuTime).configure_from_args();
            setup(&mut criterion);
            criterion.final_summary();
        }
        Clock::Wall => {
            let mut criterion = Criterion::<WallTime>::default().configure_from_args();
            setup(&mut criterion);
            criterion.final_summary();
        }
    }
}
