//! # tulip-selectors
//!
//! Python's [`selectors`](https://docs.python.org/3/library/selectors.html)
//! module in Rust, written directly against `libc`: register file descriptors,
//! then wait until some are ready to read or write.
//!
//! ```
//! use std::io::Write;
//! use std::os::unix::{io::AsRawFd, net::UnixStream};
//! use std::time::Duration;
//! use tulip_selectors::{DefaultSelector, Selector, EVENT_READ};
//!
//! let (mut client, server) = UnixStream::pair()?;
//! let mut selector = DefaultSelector::new()?;
//! selector.register(server.as_raw_fd(), EVENT_READ, "server side")?;
//! client.write_all(b"hello")?;
//! for (key, events) in selector.select(Some(Duration::from_secs(1)))? {
//!     println!("{} is ready for {events:?}", key.data);
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## How it is built
//!
//! [`BaseSelector`] holds everything the backends share: argument checks, the
//! fd → [`SelectorKey`] table, the error rules, and the wait loop that rounds
//! timeouts up, clamps huge ones and retries after `EINTR`. Each backend is a
//! [`Mechanism`] in its own module, holding only its syscalls and the meaning
//! of its event bits: [`select`](SelectSelector), [`poll`](PollSelector),
//! `epoll` (Linux, Android), `kqueue` (macOS, iOS, the BSDs) and `io_uring`
//! (Linux, where the kernel allows it).
//! [`DefaultSelector`] is the best one for the target; [`Backend::open`]
//! picks one at run time.

// Every unsafe block holds one operation and says why it is sound.
#![warn(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

#[cfg(not(unix))]
compile_error!(
    "tulip-selectors supports Unix only (select, poll, epoll on Linux/Android, kqueue on macOS/iOS/BSD)"
);

mod backend;
mod base;
mod events;
mod key;
pub mod kqueue_records;
mod registry;
mod selector;
pub mod sys;
pub mod timeout;

pub mod poll;
pub mod select;

#[cfg(tulip_io_uring)]
pub mod io_uring;
/// A selector over `io_uring(7)` `POLL_ADD` requests (Linux 5.11+, where the
/// kernel allows it: see [`Backend::available`]): `register`, `modify` and
/// `unregister` queue their changes, which go to the kernel with the wait
/// (only an `unregister` of a poll the kernel holds, or a full ring, sends
/// them at once). See the [`io_uring`] module.
#[cfg(tulip_io_uring)]
pub type IoUringSelector<T> = BaseSelector<T, io_uring::IoUring>;

cfg_if::cfg_if! {
    if #[cfg(tulip_epoll)] {
        pub mod epoll;
        /// A selector over `epoll(7)`: O(ready fds) per `select`.
        pub type EpollSelector<T> = BaseSelector<T, epoll::Epoll>;
        /// The best selector for this target: epoll here.
        pub type DefaultSelector<T> = EpollSelector<T>;
    } else if #[cfg(tulip_kqueue)] {
        pub mod kqueue;
        /// A selector over `kqueue(2)`: O(ready fds) per `select`.
        pub type KqueueSelector<T> = BaseSelector<T, kqueue::Kqueue>;
        /// The best selector for this target: kqueue here.
        pub type DefaultSelector<T> = KqueueSelector<T>;
    } else {
        /// The best selector for this target: poll here.
        pub type DefaultSelector<T> = PollSelector<T>;
    }
}

pub use backend::Backend;
pub use base::{BaseSelector, Mechanism, Selected};
pub use events::{Events, Readiness, EVENT_READ, EVENT_WRITE};
pub use key::SelectorKey;
pub use registry::Keys;
pub use selector::Selector;

/// A selector over `select(2)`: fds below `FD_SETSIZE`, O(highest fd) per call.
pub type SelectSelector<T> = BaseSelector<T, select::Select>;
/// A selector over `poll(2)`: O(registered fds) per call.
pub type PollSelector<T> = BaseSelector<T, poll::Poll>;
