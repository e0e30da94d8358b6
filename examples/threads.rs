//! Blocking work on the loop's threads (`run_in_executor`): four jobs
//! that block (a sleep standing for slow I/O, then some computing) run on
//! worker threads while a timer keeps ticking on the loop, which never
//! blocks; a job that panics fails its own future only.
//!
//! ```text
//! cargo run --example threads
//!     0 ms  5 jobs started on the loop's worker threads
//!    50 ms  tick: the loop is free while the jobs run
//!   100 ms  tick: the loop is free while the jobs run
//!   104 ms  job 1: slept 100 ms, then found 5133 primes below 50000 (on tulip-executor-0)
//!   150 ms  tick: the loop is free while the jobs run
//!   203 ms  job 2: slept 200 ms, then found 5133 primes below 50000 (on tulip-executor-1)
//!   303 ms  job 3: slept 300 ms, then found 5133 primes below 50000 (on tulip-executor-2)
//!   404 ms  job 4: slept 400 ms, then found 5133 primes below 50000 (on tulip-executor-3)
//!   404 ms  the panicking job: the function panicked at examples/threads.rs:LINE:COL: no answer for you
//!   404 ms  all done on 5 worker threads
//! ```
//!
//! Options: `--backend select|poll|epoll|kqueue`.

mod common;

use std::io;
use std::time::{Duration, Instant};

use common::{Arg, Cli};
use tulip::selectors::Backend;
use tulip::AbstractEventLoop;

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: threads [--backend NAME]\n\n",
    "Runs blocking jobs on the loop's worker threads while a timer ticks.\n",
    "  --backend NAME    select, poll, epoll or kqueue (default: the best one here)\n",
    "  -h, --help        show this help"
);

/// Slow on purpose: counts the primes below `n` by trial division.
fn count_primes(n: u64) -> usize {
    (2..n).filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0)).count()
}

/// Says "tick" in 50 ms, and again, `left` times in all.
fn tick(event_loop: &tulip::DynSelectorEventLoop, say: impl Fn(&str) + Copy + 'static, left: u32) {
    if left > 0 {
        event_loop.call_later(Duration::from_millis(50), move |lp| {
            say("tick: the loop is free while the jobs run");
            tick(lp, say, left - 1);
        });
    }
}

fn main() -> io::Result<()> {
    let mut backend = Backend::default();
    let mut cli = Cli::new("threads", USAGE);
    while let Some(arg) = cli.next() {
        match &arg {
            Arg::Flag(flag) if flag == "--backend" => backend = cli.backend(),
            _ => cli.unknown(&arg),
        }
    }
    let event_loop = tulip::new_event_loop(backend)?;
    let start = Instant::now();
    let say = move |what: &str| println!("{:>5} ms  {what}", start.elapsed().as_millis());

    // The jobs: closures that block, each on a worker thread of the loop.
    let jobs: Vec<_> = (1..=4u64)
        .map(|i| {
            event_loop.run_in_executor(move || {
                // A blocking call (a slow disk, a slow server) and some computing.
                std::thread::sleep(Duration::from_millis(100 * i));
                let found = count_primes(50_000);
                (i, found, std::thread::current().name().unwrap_or("?").to_owned())
            })
        })
        .collect();
    let panicking = event_loop.run_in_executor(|| -> u32 { panic!("no answer for you") });
    say(&format!("{} jobs started on the loop's worker threads", jobs.len() + 1));

    // Meanwhile the loop runs: a timer ticks every 50 ms, three times.
    tick(&event_loop, say, 3);
    let finished = event_loop.run_until_complete(async {
        for job in jobs {
            let (i, found, thread) = job.await?;
            say(&format!(
                "job {i}: slept {} ms, then found {found} primes below 50000 (on {thread})",
                i * 100
            ));
        }
        match panicking.await {
            Ok(_) => say("the panicking job returned?"),
            Err(err) => say(&format!("the panicking job: {err}")),
        }
        io::Result::Ok(())
    })?;
    finished?;
    say(&format!("all done on {} worker threads", event_loop.executor_workers()));
    // Joins the workers (close would let them go without waiting).
    event_loop.run_until_complete(event_loop.shutdown_default_executor())??;
    event_loop.close()
}
