//! Layer 2, the event loop.
pub(crate) mod base_events;
pub(crate) mod events;
pub(crate) mod executor;
pub(crate) mod panics;
pub(crate) mod ready;
pub(crate) mod selector_events;
pub(crate) mod signals;
pub(crate) mod threadsafe;
pub(crate) mod timers;
pub mod trace;
pub(crate) mod unix_events;
