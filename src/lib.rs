//! # tulip
//!
//! Python's Tulip (the project that became `asyncio`) rebuilt in Rust from the
//! syscalls up, in layers you can read one at a time:
//!
//! 1. [`selectors`]: the `Selector` trait over `select`, `poll`, `epoll` and
//!    `kqueue` (the `tulip-selectors` crate, re-exported).
//! 2. The event loop: [`AbstractEventLoop`] is the interface;
//!    [`BaseEventLoop`] the scheduling engine (ready queue, timer heap,
//!    [`run_once`](BaseEventLoop::run_once)); [`BaseSelectorEventLoop`] plugs a
//!    selector into it and adds readers, writers and signals;
//!    [`SelectorEventLoop`] is that over the platform's best selector.
//!
//! ```
//! use std::time::Duration;
//! use tulip::{AbstractEventLoop, SelectorEventLoop};
//!
//! let event_loop = SelectorEventLoop::new()?;
//! event_loop.call_soon(|_| println!("hello"));
//! event_loop.call_later(Duration::from_millis(5), |lp| {
//!     println!("world");
//!     lp.stop();
//! });
//! event_loop.run_forever()?;
//! assert!(event_loop.stats().callbacks_run >= 2);
//! # Ok::<(), std::io::Error>(())
//! ```

pub use tulip_selectors as selectors;

mod base_events;
mod callbacks;
mod events;
mod fd;
mod selector_events;
mod signals;
mod threadsafe;
mod timers;
mod wakeup;

pub use base_events::{BaseEventLoop, PollIo};
pub use events::{AbstractEventLoop, ExceptionContext, Handle, LoopStats, TimerHandle};
pub use selector_events::{
    new_event_loop, BaseSelectorEventLoop, DynSelectorEventLoop, IoHandlers, SelectorEventLoop,
};
pub use threadsafe::LoopHandle;

/// The code blocks of `docs/layer2.md` (the README's Layer 2 section),
/// compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../docs/layer2.md")]
pub struct Layer2Docs;
