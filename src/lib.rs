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
//! 3. Coroutines: [`run_until_complete`](BaseSelectorEventLoop::run_until_complete),
//!    [`Task`]s and [`Future`]s driven by the loop; [`sleep`], [`wait_for`],
//!    [`gather`]; async socket operations
//!    ([`sock_recv`](BaseSelectorEventLoop::sock_recv), …); and Tulip's
//!    [`Transport`]s and [`Protocol`]s
//!    ([`create_server`](BaseSelectorEventLoop::create_server),
//!    [`create_connection`](BaseSelectorEventLoop::create_connection)).
//!    Above them, asyncio's everyday tools: [`Lock`], [`Event`],
//!    [`Condition`], [`Semaphore`] and [`Queue`]s for tasks, and [`wait`],
//!    [`as_completed`], [`shield`], [`timeout`] and [`TaskGroup`] to wait
//!    on many.
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

// Every unsafe block says why it is sound.
#![warn(clippy::undocumented_unsafe_blocks)]

pub use tulip_selectors as selectors;
/// The Layer 1 names a loop user meets most, also at the crate root.
pub use tulip_selectors::{Backend, DefaultSelector, Events, Selector, SelectorKey, EVENT_READ, EVENT_WRITE};

mod base_events;
mod callbacks;
mod events;
mod fd;
mod futures;
mod local;
mod locks;
mod net;
mod panics;
mod protocols;
mod queues;
mod selector_events;
mod selector_transport;
mod signals;
mod sockets;
mod taskgroups;
mod tasks;
mod threadsafe;
mod timeouts;
mod timers;
mod timing;
mod transports;
mod waiters;
mod waiting;
mod wakeup;

pub use base_events::{BaseEventLoop, PollIo};
pub use events::{AbstractEventLoop, ExceptionContext, Handle, LoopStats, TimerHandle};
pub use futures::{is_cancelled, Cancelled, Future};
pub use locks::{
    BoundedSemaphore, Condition, ConditionWait, Event, EventWait, Lock, LockAcquire, LockGuard, Semaphore,
    SemaphoreAcquire, SemaphoreGuard,
};
pub use protocols::Protocol;
pub use queues::{
    is_queue_empty, is_queue_full, LifoQueue, PriorityQueue, Queue, QueueEmpty, QueueFull, QueueGet, QueuePut,
};
pub use selector_events::{
    new_event_loop, BaseSelectorEventLoop, DynSelectorEventLoop, IoHandlers, SelectorEventLoop,
};
pub use sockets::{Listener, SockAccept, SockConnect, SockRecv, SockSendall};
pub use taskgroups::{error_group, ErrorGroup, TaskGroup, TaskGroupRun};
pub use tasks::Task;
pub use threadsafe::LoopHandle;
pub use timeouts::{timeout, timeout_at, Timeout, TimeoutRun};
pub use timing::{gather, sleep, sleep_until, wait_for, AsEventLoop, Gather, Sleep, WaitFor};
pub use transports::{Server, SocketAddress, Transport};
pub use waiting::{as_completed, shield, wait, AsCompleted, Fallible, ReturnWhen, Shield, Wait, Waitable};

/// Compiles and runs every Rust block of README.md as a doctest, so the
/// tours of all three layers cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
