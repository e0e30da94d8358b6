//! Layer 1 benches: tulip's selector backends against the raw syscalls they
//! wrap and against `mio::Poll` and `polling::Poller`, on one machine, in one run.
//!
//! Groups (criterion writes `target/criterion/<group>/<function>/[<N>/]`):
//! - `ready_1_of_n`: write one byte, select, read it back, with one ready fd
//!   among N registered (N - 1 idle eventfds). One element = one loop.
//! - `idle_zero_timeout`: a select with a zero timeout and nothing ready.
//! - `register_unregister`: register then unregister one socket; one element = one pair.
//! - `modify`: READ → WRITE → READ on one registered socket; one element = one modify.
//! - `ping_pong`: both ends of a socketpair in one selector, one byte each way;
//!   one element = one round trip (two selects).
//!
//! Function names: `tulip-<backend>` (static dispatch, no `Box`; io_uring
//! where the kernel allows it), `raw-<syscall>` (the syscall driven
//! directly: the floor), `mio`, `polling`.
//! Every implementation sees the same fds, and each loop returns the sum of
//! the ready fds, checked once before timing.
//!
//! Run: `cargo bench -p tulip-benches --bench selectors` (add `-- --quick`
//! for a faster, rougher pass). Times are the bench thread's CPU time (see
//! `cpu_time.rs`: robust to neighbours on a shared machine, equal to wall time
//! on an idle one for these never-blocking loops); `TULIP_BENCH_CLOCK=wall`
//! measures wall time instead.

use std::num::NonZeroUsize;
use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Duration;

use criterion::measurement::{Measurement, WallTime};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use mio::unix::SourceFd;
use tulip_benches::raw::{RawEpoll, RawPoll, RawSelect};
use tulip_benches::{
    idle_fds, idle_step, modify_step, one_ready_step, ping_pong_step, raise_fd_limit, raw_modify_step,
    raw_register_unregister_step, register_unregister_step, share_fd_table, socketpair, OneReady, Tulip,
    Wait,
};
use tulip_selectors::{Backend, EpollSelector, IoUringSelector, PollSelector, SelectSelector, Selector};

mod cpu_time;
use cpu_time::{Clock, ThreadCpuTime};

/// Registered fds for the O(N) picture.
const SIZES: [usize; 5] = [1, 10, 100, 1_000, 10_000];
/// Registered fds for the idle zero-timeout select.
const IDLE_SIZES: [usize; 2] = [1, 1_000];

/// Short runs: ~70 benchmarks must finish in a few minutes on 2 shared cores.
fn configure<M: Measurement>(group: &mut BenchmarkGroup<'_, M>, elements: u64) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(elements));
}

/// Checks one step of a loop returns `expected`, then times it as
/// `<group>/<name>/<n>` (or `<group>/<name>` without `n`).
fn bench<M: Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    name: &str,
    n: Option<usize>,
    expected: usize,
    mut step: impl FnMut() -> usize,
) {
    let first = step();
    assert_eq!(first, expected, "{name} {n:?}: wrong ready fds before timing");
    let id = match n {
        Some(n) => BenchmarkId::new(name, n),
        None => BenchmarkId::from_parameter(name),
    };
    group.bench_function(id, |b| b.iter(&mut step));
}

/// `true` where the kernel lets this process use io_uring (otherwise its
/// benchmarks are skipped, with a note).
fn io_uring() -> bool {
    let available = Backend::available().contains(&Backend::IoUring);
    if !available {
        eprintln!("io_uring is not available here: its benchmarks are skipped");
    }
    available
}

fn fits_fd_set(fds: &[RawFd]) -> bool {
    fds.iter().all(|&fd| fd < libc::FD_SETSIZE as RawFd)
}

/// `mio::Poll` (edge-triggered, as mio always is) with an events buffer
/// as large as the registration count, like tulip's.
struct Mio {
    poll: mio::Poll,
    events: mio::Events,
}

impl Mio {
    fn readers(fds: &[RawFd]) -> Mio {
        let poll = mio::Poll::new().expect("mio::Poll::new");
        for &fd in fds {
            let token = mio::Token(fd as usize);
            poll.registry()
                .register(&mut SourceFd(&fd), token, mio::Interest::READABLE)
                .expect("mio register");
        }
        Mio { poll, events: mio::Events::with_capacity(fds.len().max(1)) }
    }
}

impl Wait for Mio {
    #[inline]
    fn wait_ready(&mut self, timeout: Option<Duration>) -> usize {
        self.poll.poll(&mut self.events, timeout).expect("mio poll");
        self.events.iter().map(|event| event.token().0).sum()
    }
}

/// `polling::Poller` in level-triggered mode (its default is oneshot).
struct Polling {
    poller: polling::Poller,
    events: polling::Events,
}

impl Polling {
    fn readers(fds: &[RawFd]) -> Polling {
        let poller = polling::Poller::new().expect("Poller::new");
        for &fd in fds {
            let interest = polling::Event::readable(fd as usize);
            // SAFETY: every fd stays open until the poller is dropped (the
            // fixture outlives every bench that uses it).
            unsafe { poller.add_with_mode(fd, interest, polling::PollMode::Level) }.expect("polling add");
        }
        let capacity = NonZeroUsize::new(fds.len().max(1)).expect("non-zero");
        Polling { poller, events: polling::Events::with_capacity(capacity) }
    }
}

impl Wait for Polling {
    #[inline]
    fn wait_ready(&mut self, timeout: Option<Duration>) -> usize {
        self.events.clear();
        self.poller.wait(&mut self.events, timeout).expect("polling wait");
        self.events.iter().map(|event| event.key).sum()
    }
}

/// Write a byte, select, read it: one ready fd among `n` registered.
fn ready_one_of_n<M: Measurement>(c: &mut Criterion<M>) {
    // Takes the waiter by value so it (and its kernel state) is dropped
    // before the next one is built.
    fn run<M: Measurement>(
        group: &mut BenchmarkGroup<'_, M>,
        name: &str,
        fixture: &OneReady,
        mut waiter: impl Wait,
    ) {
        let (w, r) = (fixture.writer.as_raw_fd(), fixture.reader.as_raw_fd());
        let n = fixture.registered().len();
        bench(group, name, Some(n), r as usize, || one_ready_step(&mut waiter, w, r));
    }

    let mut group = c.benchmark_group("ready_1_of_n");
    configure(&mut group, 1);
    for n in SIZES {
        let fixture = OneReady::new(n);
        let fds = fixture.registered();
        let group = &mut group;
        run(group, "raw-epoll", &fixture, RawEpoll::readers(&fds));
        run(group, "tulip-epoll", &fixture, Tulip::readers(EpollSelector::new().expect("epoll"), &fds));
        if io_uring() {
            let selector = IoUringSelector::new().expect("io_uring");
            run(group, "tulip-io_uring", &fixture, Tulip::readers(selector, &fds));
        }
        run(group, "raw-poll", &fixture, RawPoll::readers(&fds));
        run(group, "tulip-poll", &fixture, Tulip::readers(PollSelector::new().expect("poll"), &fds));
        if fits_fd_set(&fds) {
            run(group, "raw-select", &fixture, RawSelect::readers(&fds));
            let select = SelectSelector::new().expect("select");
            run(group, "tulip-select", &fixture, Tulip::readers(select, &fds));
        }
        run(group, "mio", &fixture, Mio::readers(&fds));
        run(group, "polling", &fixture, Polling::readers(&fds));
    }
    group.finish();
}

/// A zero-timeout select with `n` idle fds registered and none ready.
fn idle_zero_timeout<M: Measurement>(c: &mut Criterion<M>) {
    fn run<M: Measurement>(group: &mut BenchmarkGroup<'_, M>, name: &str, n: usize, mut waiter: impl Wait) {
        bench(group, name, Some(n), 0, || idle_step(&mut waiter));
    }

    let mut group = c.benchmark_group("idle_zero_timeout");
    configure(&mut group, 1);
    for n in IDLE_SIZES {
        let owned = idle_fds(n);
        let fds: Vec<RawFd> = owned.iter().map(AsRawFd::as_raw_fd).collect();
        let group = &mut group;
        run(group, "raw-epoll", n, RawEpoll::readers(&fds));
        run(group, "tulip-epoll", n, Tulip::readers(EpollSelector::new().expect("epoll"), &fds));
        if io_uring() {
            run(group, "tulip-io_uring", n, Tulip::readers(IoUringSelector::new().expect("io_uring"), &fds));
        }
        run(group, "raw-poll", n, RawPoll::readers(&fds));
        run(group, "tulip-poll", n, Tulip::readers(PollSelector::new().expect("poll"), &fds));
        if fits_fd_set(&fds) {
            run(group, "raw-select", n, RawSelect::readers(&fds));
            run(group, "tulip-select", n, Tulip::readers(SelectSelector::new().expect("select"), &fds));
        }
        run(group, "mio", n, Mio::readers(&fds));
        run(group, "polling", n, Polling::readers(&fds));
    }
    group.finish();
}

/// Register one socket and unregister it again: the bookkeeping plus, for
/// epoll and the peers, two `epoll_ctl` calls.
fn register_unregister<M: Measurement>(c: &mut Criterion<M>) {
    fn tulip<M: Measurement, S: Selector<usize>>(
        group: &mut BenchmarkGroup<'_, M>,
        name: &str,
        mut selector: S,
        fd: RawFd,
    ) {
        bench(group, name, None, fd as usize, || register_unregister_step(&mut selector, fd));
    }

    let mut group = c.benchmark_group("register_unregister");
    configure(&mut group, 1);
    let (_other, socket) = socketpair();
    let fd = socket.as_raw_fd();

    let raw = RawEpoll::new(1);
    bench(&mut group, "raw-epoll", None, fd as usize, || raw_register_unregister_step(&raw, fd));
    tulip(&mut group, "tulip-epoll", EpollSelector::new().expect("epoll"), fd);
    if io_uring() {
        tulip(&mut group, "tulip-io_uring", IoUringSelector::new().expect("io_uring"), fd);
    }
    tulip(&mut group, "tulip-poll", PollSelector::new().expect("poll"), fd);
    tulip(&mut group, "tulip-select", SelectSelector::new().expect("select"), fd);

    let poll = mio::Poll::new().expect("mio::Poll::new");
    bench(&mut group, "mio", None, fd as usize, || {
        let registry = poll.registry();
        let token = mio::Token(fd as usize);
        registry.register(&mut SourceFd(&fd), token, mio::Interest::READABLE).expect("register");
        registry.deregister(&mut SourceFd(&fd)).expect("deregister");
        fd as usize
    });

    let poller = polling::Poller::new().expect("Poller::new");
    bench(&mut group, "polling", None, fd as usize, || {
        let interest = polling::Event::readable(fd as usize);
        // SAFETY: `socket` stays open for the whole bench and is deleted below.
        unsafe { poller.add_with_mode(fd, interest, polling::PollMode::Level) }.expect("add");
        poller.delete(&socket).expect("delete");
        fd as usize
    });
    group.finish();
}

/// Switch one registered socket READ → WRITE → READ (two modifies per step).
fn modify<M: Measurement>(c: &mut Criterion<M>) {
    fn tulip<M: Measurement, S: Selector<usize>>(
        group: &mut BenchmarkGroup<'_, M>,
        name: &str,
        selector: S,
        fd: RawFd,
    ) {
        let Tulip(mut selector) = Tulip::readers(selector, &[fd]);
        bench(group, name, None, fd as usize, || modify_step(&mut selector, fd));
    }

    let mut group = c.benchmark_group("modify");
    configure(&mut group, 2);
    let (_other, socket) = socketpair();
    let fd = socket.as_raw_fd();

    let raw = RawEpoll::readers(&[fd]);
    bench(&mut group, "raw-epoll", None, fd as usize, || raw_modify_step(&raw, fd));
    tulip(&mut group, "tulip-epoll", EpollSelector::new().expect("epoll"), fd);
    if io_uring() {
        // Never waited on, so each modify rewrites the queued poll in place.
        tulip(&mut group, "tulip-io_uring", IoUringSelector::new().expect("io_uring"), fd);
    }
    tulip(&mut group, "tulip-poll", PollSelector::new().expect("poll"), fd);
    tulip(&mut group, "tulip-select", SelectSelector::new().expect("select"), fd);

    let mio = Mio::readers(&[fd]);
    bench(&mut group, "mio", None, fd as usize, || {
        let (registry, token) = (mio.poll.registry(), mio::Token(fd as usize));
        registry.reregister(&mut SourceFd(&fd), token, mio::Interest::WRITABLE).expect("reregister");
        registry.reregister(&mut SourceFd(&fd), token, mio::Interest::READABLE).expect("reregister");
        fd as usize
    });

    let polling = Polling::readers(&[fd]);
    bench(&mut group, "polling", None, fd as usize, || {
        let (poller, level) = (&polling.poller, polling::PollMode::Level);
        poller.modify_with_mode(&socket, polling::Event::writable(fd as usize), level).expect("modify");
        poller.modify_with_mode(&socket, polling::Event::readable(fd as usize), level).expect("modify");
        fd as usize
    });
    group.finish();
}

/// One round trip over a socketpair whose both ends are in one selector:
/// write on A, select (B ready), read on B, write on B, select (A ready), read on A.
fn ping_pong<M: Measurement>(c: &mut Criterion<M>) {
    fn run<M: Measurement>(
        group: &mut BenchmarkGroup<'_, M>,
        name: &str,
        (a, b): (RawFd, RawFd),
        mut waiter: impl Wait,
    ) {
        bench(group, name, None, (a + b) as usize, || ping_pong_step(&mut waiter, a, b));
    }

    let mut group = c.benchmark_group("ping_pong");
    configure(&mut group, 1);
    let (a, b) = socketpair();
    let ends = (a.as_raw_fd(), b.as_raw_fd());
    let fds = [ends.0, ends.1];
    let group = &mut group;
    run(group, "raw-epoll", ends, RawEpoll::readers(&fds));
    run(group, "tulip-epoll", ends, Tulip::readers(EpollSelector::new().expect("epoll"), &fds));
    if io_uring() {
        run(group, "tulip-io_uring", ends, Tulip::readers(IoUringSelector::new().expect("io_uring"), &fds));
    }
    run(group, "raw-poll", ends, RawPoll::readers(&fds));
    run(group, "tulip-poll", ends, Tulip::readers(PollSelector::new().expect("poll"), &fds));
    run(group, "raw-select", ends, RawSelect::readers(&fds));
    run(group, "tulip-select", ends, Tulip::readers(SelectSelector::new().expect("select"), &fds));
    run(group, "mio", ends, Mio::readers(&fds));
    run(group, "polling", ends, Polling::readers(&fds));
}

fn setup<M: Measurement>(c: &mut Criterion<M>) {
    share_fd_table();
    let limit = raise_fd_limit();
    let needed = (SIZES[SIZES.len() - 1] + 64) as libc::rlim_t;
    assert!(limit >= needed, "RLIMIT_NOFILE hard limit {limit} is below the {needed} fds this bench needs");
    ready_one_of_n(c);
    idle_zero_timeout(c);
    register_unregister(c);
    modify(c);
    ping_pong(c);
}

fn main() {
    // What criterion_group!/criterion_main! would expand to, once per clock.
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
