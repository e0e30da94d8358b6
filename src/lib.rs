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
//!    [`create_connection`](BaseSelectorEventLoop::create_connection));
//!    and the rest of the OS through the loop: datagrams ([`DatagramProtocol`],
//!    [`create_datagram_endpoint`](BaseSelectorEventLoop::create_datagram_endpoint)),
//!    blocking work on threads ([`run_in_executor`](BaseSelectorEventLoop::run_in_executor)),
//!    host names ([`getaddrinfo`](BaseSelectorEventLoop::getaddrinfo), [`ToAddrs`]),
//!    child processes ([`subprocess_exec`](BaseSelectorEventLoop::subprocess_exec),
//!    [`Process`]) and pipes
//!    ([`connect_read_pipe`](BaseSelectorEventLoop::connect_read_pipe)).
//!    Above them, asyncio's everyday tools: [`Lock`], [`Event`],
//!    [`Condition`], [`Semaphore`] and [`Queue`]s for tasks, and [`wait`],
//!    [`as_completed`], [`shield`], [`timeout`] and [`TaskGroup`] to wait
//!    on many; asyncio's streams ([`StreamReader`], [`StreamWriter`],
//!    [`start_server`](BaseSelectorEventLoop::start_server),
//!    [`open_connection`](BaseSelectorEventLoop::open_connection)); and
//!    the entry point, [`run`].
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
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub use tulip_selectors as selectors;
/// The Layer 1 names a loop user meets most, also at the crate root.
pub use tulip_selectors::{Backend, DefaultSelector, Events, Selector, SelectorKey, EVENT_READ, EVENT_WRITE};

mod coroutines;
mod event_loop;
mod net;
pub mod testing;

pub use coroutines::errors::{
    error_group, is_cancelled, is_queue_empty, is_queue_full, Cancelled, ErrorGroup, QueueEmpty, QueueFull,
};
pub use coroutines::futures::Future;
pub use coroutines::locks::{
    BoundedSemaphore, Condition, ConditionWait, Event, EventWait, Lock, LockAcquire, LockGuard, Semaphore,
    SemaphoreAcquire, SemaphoreGuard,
};
pub use coroutines::queues::{LifoQueue, PriorityQueue, Queue, QueueGet, QueuePut};
pub use coroutines::runners::{get_running_loop, run, run_on};
pub use coroutines::taskgroups::{TaskGroup, TaskGroupRun};
pub use coroutines::tasks::Task;
pub use coroutines::timeouts::{timeout, timeout_at, Timeout, TimeoutRun};
pub use coroutines::timing::{gather, sleep, sleep_until, wait_for, AsEventLoop, Gather, Sleep, WaitFor};
pub use coroutines::waiting::{
    as_completed, shield, wait, AsCompleted, Fallible, ReturnWhen, Shield, Wait, Waitable,
};
pub use event_loop::base_events::{BaseEventLoop, PollIo};
pub use event_loop::events::LoopHandle;
pub use event_loop::events::{AbstractEventLoop, ExceptionContext, Handle, LoopStats, TimerHandle};
pub use event_loop::selector_events::{
    new_event_loop, BaseSelectorEventLoop, DynSelectorEventLoop, IoHandlers, SelectorEventLoop,
};
pub use event_loop::trace;
pub use event_loop::unix_events::ChildWatcher;
pub use net::datagrams::{
    DatagramEndpointSocket, DatagramProtocol, DatagramSocket, DatagramTransport, SockRecvfrom, SockSendto,
};
pub use net::names::{Addrs, GetAddrInfo, ToAddrs};
pub use net::protocols::Protocol;
pub use net::sockets::{Listener, SockAccept, SockConnect, SockRecv, SockSendall};
pub use net::streams::{IncompleteRead, LimitOverrun, StreamReader, StreamWriter, DEFAULT_LIMIT};
pub use net::subprocess::{
    Drain, PipeRead, PipeReader, PipeWriter, Process, ProcessWait, ReadToEnd, WaitClosed,
};
pub use net::transports::{Server, SocketAddress, Transport};

/// Compiles and runs every Rust block of README.md as a doctest, so the
/// tours of all three layers cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
