//! Testing with virtual time: [`TestLoop`] is a [`SelectorEventLoop`] whose
//! clock moves only when the loop would otherwise wait for a timer, or when
//! the test says [`advance`](TestLoop::advance). Timers fire in order and
//! never early, as on the real clock, but without sleeping: a test of an
//! hour of timeouts runs in milliseconds. I/O is real (the loop's selector
//! is the platform's), so protocols and sockets work as usual; what is
//! ready is always taken before time moves.
//!
//! Time passes only while the loop would wait: a loop that always has a
//! callback ready (a `call_soon` chain that never ends) never lets a timer
//! come due, as with asyncio's test loop.
//!
//! asyncio keeps its virtual-time loop private (`test_utils.TestLoop`);
//! this one is for your tests too.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tulip::testing::TestLoop;
//! use tulip::AbstractEventLoop;
//!
//! let lp = TestLoop::new()?;
//! let (start, wall) = (lp.time(), Instant::now());
//! lp.call_later(Duration::from_secs(3600), |lp| lp.stop());
//! lp.run_forever()?;
//! assert!(lp.time() - start >= Duration::from_secs(3600)); // an hour passed on the loop's clock
//! assert!(wall.elapsed() < Duration::from_secs(10)); // and none of it on the wall's
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::ops::Deref;
use std::time::Duration;

use crate::coroutines::timing::AsEventLoop;
use crate::SelectorEventLoop;

/// A [`SelectorEventLoop`] on virtual time (see the [module](self) docs).
/// It derefs to the loop, so every method of the real loop is here, and
/// callbacks receive the same `&SelectorEventLoop` they would in
/// production; [`tulip::sleep`](crate::sleep) and
/// [`wait_for`](crate::wait_for) take it as they take the real one.
#[derive(Debug)]
pub struct TestLoop {
    event_loop: SelectorEventLoop,
}

impl TestLoop {
    /// A new loop whose clock starts at the real time of this call.
    ///
    /// # Errors
    ///
    /// If the selector or the waker cannot be created.
    pub fn new() -> io::Result<TestLoop> {
        Ok(TestLoop { event_loop: SelectorEventLoop::with_virtual_clock()? })
    }

    /// Moves the clock forward by `by`: the timers due by then run on the
    /// next iteration. (The loop also moves it by itself whenever it would
    /// wait for a timer.)
    pub fn advance(&self, by: Duration) {
        // A TestLoop's clock is virtual: advancing cannot fail.
        let _ = self.event_loop.advance(by);
    }

    /// The loop itself.
    pub fn into_inner(self) -> SelectorEventLoop {
        self.event_loop
    }
}

impl Deref for TestLoop {
    type Target = SelectorEventLoop;

    fn deref(&self) -> &SelectorEventLoop {
        &self.event_loop
    }
}

impl AsEventLoop for TestLoop {
    type Loop = SelectorEventLoop;

    fn as_event_loop(&self) -> &SelectorEventLoop {
        &self.event_loop
    }
}
