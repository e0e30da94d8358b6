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
//! [`Mechanism`](mechanism::Mechanism) in its own module, holding only its syscalls and the meaning
//! of its event bits: [`select`](SelectSelector), [`poll`](PollSelector),
//! `epoll` (Linux, Android), `kqueue` (macOS, iOS, the BSDs) and `io_uring`
//! (Linux, where the kernel allows it).
//! [`DefaultSelector`] is the best one for the target; [`Backend::open`]
//! picks one at run time.

// Every unsafe block holds one operation and says why it is sound.
#![warn(missing_docs, clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]
// docs.rs (nightly) marks what exists only on some targets.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(unix))]
compile_error!(
    "tulip-selectors supports Unix only (select, poll, epoll on Linux/Android, kqueue on macOS/iOS/BSD)"
);

mod backend;
mod base;
mod capabilities;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod events;
mod fork;
mod key;
// Compiled everywhere so its tests run on Linux too; only kqueue uses it.
#[cfg_attr(not(tulip_kqueue), allow(dead_code))]
mod kqueue_records;
mod registry;
mod selector;
mod syscall;
mod timeout;
pub mod transcript;
mod waker;

mod poll;
mod select;

#[cfg(tulip_io_uring)]
mod io_uring;
/// A selector over `io_uring(7)` `POLL_ADD` requests (Linux 5.11+, where the
/// kernel allows it: see [`Backend::available`]): `register`, `modify` and
/// `unregister` queue their changes, which go to the kernel with the wait
/// (only an `unregister` of a poll the kernel holds, or a full ring, sends
/// them at once). See [`mechanism::IoUring`].
#[cfg(tulip_io_uring)]
pub type IoUringSelector<T> = BaseSelector<T, io_uring::IoUring>;

cfg_if::cfg_if! {
    if #[cfg(tulip_epoll)] {
        mod epoll;
        /// A selector over `epoll(7)`: O(ready fds) per `select`.
        #[cfg_attr(docsrs, doc(cfg(any(target_os = "linux", target_os = "android"))))]
        pub type EpollSelector<T> = BaseSelector<T, epoll::Epoll>;
        /// The best selector for this target: epoll here.
        pub type DefaultSelector<T> = EpollSelector<T>;
    } else if #[cfg(tulip_kqueue)] {
        mod kqueue;
        /// A selector over `kqueue(2)`: O(ready fds) per `select`.
        #[cfg_attr(docsrs, doc(cfg(any(target_vendor = "apple", target_os = "freebsd", target_os = "netbsd",
                                       target_os = "openbsd", target_os = "dragonfly"))))]
        pub type KqueueSelector<T> = BaseSelector<T, kqueue::Kqueue>;
        /// The best selector for this target: kqueue here.
        pub type DefaultSelector<T> = KqueueSelector<T>;
    } else {
        /// The best selector for this target: poll here.
        pub type DefaultSelector<T> = PollSelector<T>;
    }
}

pub use backend::Backend;
pub use base::{BaseSelector, Selected};
pub use capabilities::{Capabilities, ClosedFd, FdLimit, RegularFile, SelectCost, Watches};
pub use events::{Events, EVENT_READ, EVENT_WRITE};
pub use key::SelectorKey;
pub use registry::Keys;
pub use selector::Selector;
pub use waker::Waker;

/// The syscall helpers' old home, kept so code written against 0.1 still
/// builds: use [`mechanism`] instead.
#[doc(hidden)]
#[deprecated(since = "0.2.0", note = "use tulip_selectors::mechanism::{cvt, is_interrupted}")]
pub mod sys {
    pub use crate::syscall::{cvt, is_interrupted, SyscallReturn};
}

/// A selector over `select(2)`: fds below `FD_SETSIZE`, O(highest fd) per call.
pub type SelectSelector<T> = BaseSelector<T, select::Select>;
/// A selector over `poll(2)`: O(registered fds) per call.
pub type PollSelector<T> = BaseSelector<T, poll::Poll>;

/// Write your own backend: what every backend here is made of.
///
/// A backend is a [`Mechanism`](mechanism::Mechanism): its kernel calls and the translation of
/// its event bits into a [`Readiness`](mechanism::Readiness). [`BaseSelector<T, M>`](crate::BaseSelector)
/// adds everything the backends share (argument checks, the fd → key
/// table, the error rules, rounding, clamping and `EINTR` retries), so
/// `BaseSelector<T, YourMechanism>` is a complete [`Selector`].
/// The helpers below are the ones the crate's own backends use: one
/// syscall wrapper ([`cvt`](mechanism::cvt)) and its retry rules, pipes, and timeout
/// conversions that never wake early. The event loop crate (`tulip`) uses
/// them too, so there is one of each in the project.
///
/// This module is the crate's extension point. Users of the selectors
/// themselves need none of it.
pub mod mechanism {
    pub use crate::base::{Change, Mechanism};
    pub use crate::events::Readiness;
    pub use crate::fork::fork_generation;
    pub use crate::syscall::{
        cvt, drain, is_interrupted, nonblocking, nonblocking_pipe, read_nonblocking, replace_fd, set_cloexec,
        set_nonblocking, write_nonblocking, SyscallReturn,
    };
    pub use crate::timeout::{as_millis_rounded_up, clamped, LONGEST_WAIT};

    #[cfg(tulip_epoll)]
    pub use crate::epoll::Epoll;
    #[cfg(tulip_io_uring)]
    pub use crate::io_uring::IoUring;
    #[cfg(tulip_kqueue)]
    pub use crate::kqueue::Kqueue;
    pub use crate::poll::Poll;
    pub use crate::select::Select;
}

/// Compiles and runs the crate README's example as a doctest, so it cannot
/// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
