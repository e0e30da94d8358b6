//! Timers on the event loop: `call_soon`, `call_later`, `call_at`, cancel
//! and stop, each printing when it runs, in milliseconds since the start.
//!
//! ```text
//! cargo run --example timers
//! ```
//!
//! It finishes on its own after about 300 ms. It takes no options.

mod common;

use std::io;
use std::time::{Duration, Instant};

use tulip::{AbstractEventLoop, SelectorEventLoop};

/// Prints `what` with the time elapsed since `start`.
fn say(start: Instant, now: Instant, what: &str) {
    println!("{:>4} ms  {what}", (now - start).as_millis());
}

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = "usage: timers\n\n\
Schedules callbacks with call_soon, call_later and call_at, cancels one, and\n\
stops the loop after 300 ms, printing when each one runs.\n  \
-h, --help        show this help";

fn main() -> io::Result<()> {
    let mut cli = common::Cli::new("timers", USAGE);
    if let Some(arg) = cli.next() {
        cli.unknown(&arg);
    }
    let event_loop = SelectorEventLoop::new()?;
    let start = event_loop.time();

    // call_soon: run on the next iteration, in the order scheduled.
    event_loop.call_soon(move |lp| say(start, lp.time(), "call_soon: first"));
    event_loop.call_soon(move |lp| say(start, lp.time(), "call_soon: second"));

    // call_later counts from now; call_at takes a point on the loop's clock.
    // Scheduled out of order on purpose: they run in deadline order.
    event_loop.call_later(Duration::from_millis(300), move |lp| {
        say(start, lp.time(), "call_later(300 ms): stopping the loop");
        lp.stop();
    });
    let doomed = event_loop.call_later(Duration::from_millis(250), move |lp| {
        say(start, lp.time(), "call_later(250 ms): cancelled, so never printed");
    });
    event_loop.call_at(start + Duration::from_millis(200), move |lp| {
        say(start, lp.time(), "call_at(start + 200 ms)");
        // What a callback schedules runs on the next iteration.
        lp.call_soon(move |lp| say(start, lp.time(), "call_soon from inside the 200 ms timer"));
    });
    event_loop.call_later(Duration::from_millis(100), move |lp| {
        say(start, lp.time(), "call_later(100 ms): cancelling the 250 ms timer");
        doomed.cancel();
    });

    event_loop.run_forever()?;
    let stats = event_loop.stats();
    say(start, event_loop.time(), "run_forever returned");
    println!(
        "{} iterations, {} callbacks run, {} timers fired, {} cancelled",
        stats.iterations, stats.callbacks_run, stats.timers_fired, stats.timers_cancelled
    );
    event_loop.close()
}
