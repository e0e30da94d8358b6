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
//! Function names: `tulip-<backend>` (static dispatch, no `Box`),
//! `raw-<syscall>` (the syscall driven directly: the floor), `mio`, `polling`.
//! Every implementation sees the same fds, and each loop returns the sum of
//! the ready fds, checked once before timing.
//!
//! Run: `cargo bench -p tulip-benches --bench selectors` (add `-- --quick`
//! for a faster, rougher pass).

use std::num::NonZeroUsize;
use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use mio::unix::SourceFd;
use tulip_benches::raw::{RawEpoll, RawPoll, RawSelect};
use tulip_benches::{idle_fds, raise_fd_limit, read_byte, socketpair, write_byte, OneReady};
use tulip_selectors::{EpollSelector, Events, PollSelector, SelectSelector, Selector};

/// Registered fds for the O(N) picture.
const SIZES: [usize; 5] = [1, 10, 100, 1_000, 10_000];
/// Registered fds for the idle zero-timeout select.
const IDLE_SIZES: [usize; 2] = [1, 1_000];

/// Short runs: ~40 benchmarks must finish in a few minutes on 2 shared cores.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, elements: u64) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(elements));
}

/// Checks one step of a loop returns `expected`, then times it as
/// `<group>/<name>/<n>` (or `<group>/<name>` without `n`).
fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
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

fn fits_fd_set(max_fd: RawFd) -> bool {
    max_fd < libc::FD_SETSIZE as RawFd
}

fn tulip_with<S: Selector<usize>>(mut selector: S, fds: &[RawFd]) -> S {
    for &fd in fds {
        selector.register(fd, Events::READ, fd as usize).expect("register");
    }
    selector
}

/// One `select` through tulip, summing the ready fds (carried in `data`).
#[inline]
fn tulip_select<S: Selector<usize>>(selector: &mut S, timeout: Option<Duration>) -> usize {
    selector.select(timeout).expect("select").map(|(key, _events)| key.data).sum()
}

fn mio_with(fds: &[RawFd]) -> (mio::Poll, mio::Events) {
    let poll = mio::Poll::new().expect("mio::Poll::new");
    for &fd in fds {
        let token = mio::Token(fd as usize);
        poll.registry().register(&mut SourceFd(&fd), token, mio::Interest::READABLE).expect("mio register");
    }
    (poll, mio::Events::with_capacity(fds.len().max(1)))
}

#[inline]
fn mio_select(poll: &mut mio::Poll, events: &mut mio::Events, timeout: Option<Duration>) -> usize {
    poll.poll(events, timeout).expect("mio poll");
    events.iter().map(|event| event.token().0).sum()
}

fn polling_with(fds: &[RawFd]) -> (polling::Poller, polling::Events) {
    let poller = polling::Poller::new().expect("Poller::new");
    for &fd in fds {
        let interest = polling::Event::readable(fd as usize);
        // SAFETY: `fd` stays open until the poller is dropped (the fixture
        // outlives every bench that uses it).
        unsafe { poller.add_with_mode(fd, interest, polling::PollMode::Level) }.expect("polling add");
    }
    let capacity = NonZeroUsize::new(fds.len().max(1)).expect("non-zero");
    (poller, polling::Events::with_capacity(capacity))
}

#[inline]
fn polling_select(
    poller: &polling::Poller,
    events: &mut polling::Events,
    timeout: Option<Duration>,
) -> usize {
    events.clear();
    poller.wait(events, timeout).expect("polling wait");
    events.iter().map(|event| event.key).sum()
}

/// Write a byte, select, read it: one ready fd among `n` registered.
fn ready_one_of_n(c: &mut Criterion) {
    let mut group = c.benchmark_group("ready_1_of_n");
    configure(&mut group, 1);
    for n in SIZES {
        let fixture = OneReady::new(n);
        let fds = fixture.registered();
        let (w, r) = (fixture.writer.as_raw_fd(), fixture.reader.as_raw_fd());
        let expected = r as usize;

        let mut raw = RawEpoll::new(n);
        fds.iter().for_each(|&fd| raw.add(fd, libc::EPOLLIN));
        bench(&mut group, "raw-epoll", Some(n), expected, || {
            write_byte(w);
            let mut sum = 0;
            raw.wait(-1, |fd| sum += fd as usize);
            read_byte(r);
            sum
        });
        drop(raw);

        let mut selector = tulip_with(EpollSelector::new().expect("epoll"), &fds);
        bench(&mut group, "tulip-epoll", Some(n), expected, || {
            write_byte(w);
            let sum = tulip_select(&mut selector, None);
            read_byte(r);
            sum
        });
        drop(selector);

        let mut raw = RawPoll::readers(&fds);
        bench(&mut group, "raw-poll", Some(n), expected, || {
            write_byte(w);
            let mut sum = 0;
            raw.wait(-1, |fd| sum += fd as usize);
            read_byte(r);
            sum
        });

        let mut selector = tulip_with(PollSelector::new().expect("poll"), &fds);
        bench(&mut group, "tulip-poll", Some(n), expected, || {
            write_byte(w);
            let sum = tulip_select(&mut selector, None);
            read_byte(r);
            sum
        });
        drop(selector);

        if fits_fd_set(fixture.max_fd()) {
            let mut raw = RawSelect::readers(&fds);
            bench(&mut group, "raw-select", Some(n), expected, || {
                write_byte(w);
                let mut sum = 0;
                raw.wait(false, |fd| sum += fd as usize);
                read_byte(r);
                sum
            });

            let mut selector = tulip_with(SelectSelector::new().expect("select"), &fds);
            bench(&mut group, "tulip-select", Some(n), expected, || {
                write_byte(w);
                let sum = tulip_select(&mut selector, None);
                read_byte(r);
                sum
            });
        }

        let (mut poll, mut events) = mio_with(&fds);
        bench(&mut group, "mio", Some(n), expected, || {
            write_byte(w);
            let sum = mio_select(&mut poll, &mut events, None);
            read_byte(r);
            sum
        });
        drop(poll);

        let (poller, mut events) = polling_with(&fds);
        bench(&mut group, "polling", Some(n), expected, || {
            write_byte(w);
            let sum = polling_select(&poller, &mut events, None);
            read_byte(r);
            sum
        });
    }
    group.finish();
}

/// A zero-timeout select with `n` idle fds registered and none ready.
fn idle_zero_timeout(c: &mut Criterion) {
    let mut group = c.benchmark_group("idle_zero_timeout");
    configure(&mut group, 1);
    for n in IDLE_SIZES {
        let owned = idle_fds(n);
        let fds: Vec<RawFd> = owned.iter().map(AsRawFd::as_raw_fd).collect();
        let zero = Some(Duration::ZERO);

        let mut raw = RawEpoll::new(n);
        fds.iter().for_each(|&fd| raw.add(fd, libc::EPOLLIN));
        bench(&mut group, "raw-epoll", Some(n), 0, || raw.wait(0, |_| {}));
        let mut selector = tulip_with(EpollSelector::new().expect("epoll"), &fds);
        bench(&mut group, "tulip-epoll", Some(n), 0, || tulip_select(&mut selector, zero));

        let mut raw = RawPoll::readers(&fds);
        bench(&mut group, "raw-poll", Some(n), 0, || raw.wait(0, |_| {}));
        let mut selector = tulip_with(PollSelector::new().expect("poll"), &fds);
        bench(&mut group, "tulip-poll", Some(n), 0, || tulip_select(&mut selector, zero));

        if fits_fd_set(fds.iter().copied().max().unwrap_or(0)) {
            let mut raw = RawSelect::readers(&fds);
            bench(&mut group, "raw-select", Some(n), 0, || raw.wait(true, |_| {}));
            let mut selector = tulip_with(SelectSelector::new().expect("select"), &fds);
            bench(&mut group, "tulip-select", Some(n), 0, || tulip_select(&mut selector, zero));
        }

        let (mut poll, mut events) = mio_with(&fds);
        bench(&mut group, "mio", Some(n), 0, || mio_select(&mut poll, &mut events, zero));
        let (poller, mut events) = polling_with(&fds);
        bench(&mut group, "polling", Some(n), 0, || polling_select(&poller, &mut events, zero));
    }
    group.finish();
}

/// Register one socket and unregister it again: the bookkeeping plus, for
/// epoll and the peers, two `epoll_ctl` calls.
fn register_unregister(c: &mut Criterion) {
    let mut group = c.benchmark_group("register_unregister");
    configure(&mut group, 1);
    let (_other, socket) = socketpair();
    let fd = socket.as_raw_fd();
    let expected = fd as usize;

    let raw = RawEpoll::new(1);
    bench(&mut group, "raw-epoll", None, expected, || {
        raw.add(fd, libc::EPOLLIN);
        raw.delete(fd);
        fd as usize
    });

    fn tulip<S: Selector<usize>>(
        group: &mut BenchmarkGroup<'_, WallTime>,
        name: &str,
        mut selector: S,
        fd: RawFd,
    ) {
        bench(group, name, None, fd as usize, || {
            selector.register(fd, Events::READ, fd as usize).expect("register");
            selector.unregister(fd).expect("unregister").data
        });
    }
    tulip(&mut group, "tulip-epoll", EpollSelector::new().expect("epoll"), fd);
    tulip(&mut group, "tulip-poll", PollSelector::new().expect("poll"), fd);
    tulip(&mut group, "tulip-select", SelectSelector::new().expect("select"), fd);

    let poll = mio::Poll::new().expect("mio::Poll::new");
    bench(&mut group, "mio", None, expected, || {
        let registry = poll.registry();
        registry
            .register(&mut SourceFd(&fd), mio::Token(fd as usize), mio::Interest::READABLE)
            .expect("register");
        registry.deregister(&mut SourceFd(&fd)).expect("deregister");
        fd as usize
    });

    let poller = polling::Poller::new().expect("Poller::new");
    bench(&mut group, "polling", None, expected, || {
        let interest = polling::Event::readable(fd as usize);
        // SAFETY: `socket` stays open for the whole bench and is deleted below.
        unsafe { poller.add_with_mode(fd, interest, polling::PollMode::Level) }.expect("add");
        poller.delete(&socket).expect("delete");
        fd as usize
    });
    group.finish();
}

/// Switch one registered socket READ → WRITE → READ (two modifies per step).
fn modify(c: &mut Criterion) {
    let mut group = c.benchmark_group("modify");
    configure(&mut group, 2);
    let (_other, socket) = socketpair();
    let fd = socket.as_raw_fd();
    let expected = fd as usize;

    let raw = RawEpoll::new(1);
    raw.add(fd, libc::EPOLLIN);
    bench(&mut group, "raw-epoll", None, expected, || {
        raw.modify(fd, libc::EPOLLOUT);
        raw.modify(fd, libc::EPOLLIN);
        fd as usize
    });

    fn tulip<S: Selector<usize>>(
        group: &mut BenchmarkGroup<'_, WallTime>,
        name: &str,
        selector: S,
        fd: RawFd,
    ) {
        let mut selector = tulip_with(selector, &[fd]);
        bench(group, name, None, fd as usize, || {
            selector.modify(fd, Events::WRITE, fd as usize).expect("modify");
            selector.modify(fd, Events::READ, fd as usize).expect("modify").data
        });
    }
    tulip(&mut group, "tulip-epoll", EpollSelector::new().expect("epoll"), fd);
    tulip(&mut group, "tulip-poll", PollSelector::new().expect("poll"), fd);
    tulip(&mut group, "tulip-select", SelectSelector::new().expect("select"), fd);

    let (poll, _events) = mio_with(&[fd]);
    bench(&mut group, "mio", None, expected, || {
        let (registry, token) = (poll.registry(), mio::Token(fd as usize));
        registry.reregister(&mut SourceFd(&fd), token, mio::Interest::WRITABLE).expect("reregister");
        registry.reregister(&mut SourceFd(&fd), token, mio::Interest::READABLE).expect("reregister");
        fd as usize
    });

    let (poller, _events) = polling_with(&[fd]);
    bench(&mut group, "polling", None, expected, || {
        let level = polling::PollMode::Level;
        poller.modify_with_mode(&socket, polling::Event::writable(fd as usize), level).expect("modify");
        poller.modify_with_mode(&socket, polling::Event::readable(fd as usize), level).expect("modify");
        fd as usize
    });
    group.finish();
}

/// One round trip over a socketpair whose both ends are in one selector:
/// write on A, select (B ready), read on B, write on B, select (A ready), read on A.
fn ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("ping_pong");
    configure(&mut group, 1);
    let (a, b) = socketpair();
    let (a, b) = (a.as_raw_fd(), b.as_raw_fd());
    let fds = [a, b];
    let expected = (a + b) as usize;

    // `wait` is one select returning the sum of the ready fds.
    fn round_trip(a: RawFd, b: RawFd, mut wait: impl FnMut() -> usize) -> usize {
        write_byte(a);
        let first = wait();
        read_byte(b);
        write_byte(b);
        let second = wait();
        read_byte(a);
        first + second
    }

    let mut raw = RawEpoll::new(2);
    fds.iter().for_each(|&fd| raw.add(fd, libc::EPOLLIN));
    bench(&mut group, "raw-epoll", None, expected, || {
        round_trip(a, b, || {
            let mut sum = 0;
            raw.wait(-1, |fd| sum += fd as usize);
            sum
        })
    });
    let mut selector = tulip_with(EpollSelector::new().expect("epoll"), &fds);
    bench(&mut group, "tulip-epoll", None, expected, || {
        round_trip(a, b, || tulip_select(&mut selector, None))
    });

    let mut raw = RawPoll::readers(&fds);
    bench(&mut group, "raw-poll", None, expected, || {
        round_trip(a, b, || {
            let mut sum = 0;
            raw.wait(-1, |fd| sum += fd as usize);
            sum
        })
    });
    let mut selector = tulip_with(PollSelector::new().expect("poll"), &fds);
    bench(&mut group, "tulip-poll", None, expected, || {
        round_trip(a, b, || tulip_select(&mut selector, None))
    });

    let mut raw = RawSelect::readers(&fds);
    bench(&mut group, "raw-select", None, expected, || {
        round_trip(a, b, || {
            let mut sum = 0;
            raw.wait(false, |fd| sum += fd as usize);
            sum
        })
    });
    let mut selector = tulip_with(SelectSelector::new().expect("select"), &fds);
    bench(&mut group, "tulip-select", None, expected, || {
        round_trip(a, b, || tulip_select(&mut selector, None))
    });

    let (mut poll, mut events) = mio_with(&fds);
    bench(&mut group, "mio", None, expected, || {
        round_trip(a, b, || mio_select(&mut poll, &mut events, None))
    });
    let (poller, mut events) = polling_with(&fds);
    bench(&mut group, "polling", None, expected, || {
        round_trip(a, b, || polling_select(&poller, &mut events, None))
    });
    group.finish();
}

fn setup(c: &mut Criterion) {
    let limit = raise_fd_limit();
    let needed = (SIZES[SIZES.len() - 1] + 64) as libc::rlim_t;
    assert!(limit >= needed, "RLIMIT_NOFILE hard limit {limit} is below the {needed} fds this bench needs");
    ready_one_of_n(c);
    idle_zero_timeout(c);
    register_unregister(c);
    modify(c);
    ping_pong(c);
}

criterion_group!(benches, setup);
criterion_main!(benches);
