//! Every backend this target has, checked against the others and against a
//! model of the contract (`tulip_selectors::conformance::differential`):
//! seeded random sequences of register / modify / unregister / select /
//! write / read / fill / hang up / close / `dup2` over a registered fd,
//! applied to all of them side by side.
//!
//! `cargo test` runs a short sweep (10,000 operations on each backend);
//! the long one is
//!
//! ```text
//! cargo test --release -p tulip-selectors --test differential -- --ignored --nocapture
//! ```
//!
//! (1,000,000 operations: 100 sequences of 10,000, seeds drawn from one).
//! `TULIP_DIFF_SEED` (a number, `0x…` for hex) and `TULIP_DIFF_OPS` change
//! the seed and the length of either; a divergence prints its seed and a
//! shortened sequence that reproduces it.

use std::io;
use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

use tulip_selectors::conformance::differential::{self, Candidate, Summary};
use tulip_selectors::mechanism::{Mechanism, Poll, Readiness};
use tulip_selectors::{Backend, BaseSelector, Events};

/// Operations in one sequence: a divergence is shortened from at most this many.
const SEQUENCE: usize = 10_000;

/// A number from the environment (`0x` for hex), or `default`.
fn from_env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.replace('_', "");
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|err| panic!("{name}={text:?}: {err}"))
        }
        Err(_) => default,
    }
}

/// Runs `total` operations on every backend, in sequences of [`SEQUENCE`]
/// whose seeds come from `seed`; panics at the first divergence.
fn sweep(seed: u64, total: usize) -> Vec<Summary> {
    let candidates = Candidate::every_backend();
    let mut summaries = Vec::new();
    let mut next_seed = seed;
    let mut left = total;
    while left > 0 {
        let operations = left.min(SEQUENCE);
        match differential::run(next_seed, operations, &candidates) {
            Ok(summary) => summaries.push(summary),
            Err(divergence) => panic!("{divergence}"),
        }
        left -= operations;
        // The next sequence's seed: a step of the golden ratio, as SplitMix does.
        next_seed = next_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    summaries
}

fn report(summaries: &[Summary], started: Instant) {
    let operations: usize = summaries.iter().map(|s| s.operations).sum();
    let selects: usize = summaries.iter().map(|s| s.selects).sum();
    let entries: usize = summaries.iter().map(|s| s.entries).sum();
    let errors: usize = summaries.iter().map(|s| s.errors).sum();
    let first = &summaries[0];
    println!(
        "{operations} operations on each of {} in {} sequences (first seed {:#x}, fds {:?}): 0 divergences; \
         {selects} selects, {entries} ready entries and {errors} errors, each as the model said; {:.1?}",
        first.candidates.join(", "),
        summaries.len(),
        first.seed,
        first.fds,
        started.elapsed(),
    );
}

/// The short sweep: 10,000 operations (`TULIP_DIFF_OPS`) on every
/// backend. Each kind of answer must have come up, or the sweep tested
/// less than it claims.
#[test]
fn every_backend_agrees_with_the_model() {
    let started = Instant::now();
    let seed = from_env("TULIP_DIFF_SEED", 0x5eed_2024);
    let total = from_env("TULIP_DIFF_OPS", SEQUENCE as u64) as usize;
    let summaries = sweep(seed, total);
    report(&summaries, started);
    let backends = Backend::available().len();
    assert_eq!(summaries[0].candidates.len(), backends);
    let selects: usize = summaries.iter().map(|s| s.selects).sum();
    let entries: usize = summaries.iter().map(|s| s.entries).sum();
    let errors: usize = summaries.iter().map(|s| s.errors).sum();
    assert!(selects > total / 10, "{selects} selects in {total} operations");
    assert!(entries > selects, "{entries} ready entries in {selects} selects");
    assert!(errors > total / 100, "{errors} errors in {total} operations");
}

/// The long run of the README: 1,000,000 operations on every backend.
#[test]
#[ignore = "the long run, about 15 s in release mode: cargo test --release -p tulip-selectors \
            --test differential -- --ignored --nocapture"]
fn a_million_operations_on_every_backend() {
    let started = Instant::now();
    let seed = from_env("TULIP_DIFF_SEED", 0x0001_0000_0000);
    let total = from_env("TULIP_DIFF_OPS", 1_000_000) as usize;
    let summaries = sweep(seed, total);
    report(&summaries, started);
}

/// The same seed gives the same sequence: two runs report the same counts.
#[test]
fn a_seed_gives_the_same_sequence() {
    let candidates = [Candidate::new("poll", || Backend::Poll.open::<String>())];
    let one = differential::run(7, 2_000, &candidates).expect("poll agrees with the model");
    let two = differential::run(7, 2_000, &candidates).expect("poll agrees with the model");
    assert_eq!((one.selects, one.entries, one.errors), (two.selects, two.entries, two.errors));
    let other = differential::run(8, 2_000, &candidates).expect("poll agrees with the model");
    assert_ne!((one.selects, one.entries, one.errors), (other.selects, other.entries, other.errors));
}

/// A backend with a classic bug: its wait hands on at most two ready fds
/// (an event buffer that does not grow). The run must catch it, and
/// shorten the sequence to the few operations that show it: three
/// registrations of ready fds and a select.
struct TwoAtMost(Poll);

impl Mechanism for TwoAtMost {
    const BACKEND: Backend = Backend::Poll;

    fn open() -> io::Result<Self> {
        Poll::open().map(TwoAtMost)
    }
    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        self.0.add(fd, events)
    }
    fn modify(&mut self, fd: RawFd, old: Events, new: Events) -> io::Result<()> {
        self.0.modify(fd, old, new)
    }
    fn remove(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        self.0.remove(fd, events)
    }
    fn wait<F: FnMut(RawFd, Readiness)>(
        &mut self,
        timeout: Option<Duration>,
        registered: usize,
        mut on_ready: F,
    ) -> io::Result<usize> {
        let mut handed = 0;
        let count = self.0.wait(timeout, registered, |fd, readiness| {
            if handed < 2 {
                handed += 1;
                on_ready(fd, readiness);
            }
        })?;
        Ok(count.min(2))
    }
    fn close(self) -> io::Result<()> {
        self.0.close()
    }
}

#[test]
fn a_broken_backend_is_caught_and_the_sequence_shortened() {
    let candidates = [Candidate::new("two-at-most", BaseSelector::<String, TwoAtMost>::new)];
    let divergence = differential::run(1, SEQUENCE, &candidates).expect_err("the bug must be found");
    println!("{divergence}");
    assert_eq!(divergence.candidate, "two-at-most");
    assert!(divergence.reproduced, "{divergence}");
    let last = divergence.operations.last().expect("at least one operation");
    assert_eq!(last, "select(Some(ZERO))", "{divergence}");
    let registers = divergence.operations.iter().filter(|op| op.starts_with("register(")).count();
    assert!(registers >= 3, "three fds must be ready to show the bug: {divergence}");
    assert!(divergence.operations.len() <= 6, "not shortened enough: {divergence}");
    assert!(divergence.to_string().contains(&format!("{:#x}", divergence.seed)), "{divergence}");
}

/// The model follows the capabilities a candidate declares: epoll checked
/// as if it were poll (a closed registered fd reported ready, no syscall at
/// `register`) diverges, and the report says what the model was told.
#[cfg(tulip_epoll)]
#[test]
fn the_model_follows_the_declared_capabilities() {
    let candidates =
        [Candidate::new("epoll declared as poll", tulip_selectors::EpollSelector::<String>::new)
            .with_capabilities(Backend::Poll.capabilities())];
    let divergence = differential::run(3, SEQUENCE, &candidates).expect_err("epoll is not poll");
    assert!(divergence.capabilities.starts_with("poll:"), "{divergence}");
    assert!(divergence.reproduced && divergence.operations.len() <= 6, "{divergence}");
    let closes = ["close(fd", "dup2("];
    assert!(
        divergence.operations.iter().any(|op| closes.iter().any(|close| op.starts_with(close))),
        "only a closed or replaced fd tells them apart: {divergence}"
    );
}
