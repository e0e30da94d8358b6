//! Layer 3, coroutines.
pub(crate) mod errors;
pub(crate) mod futures;
pub(crate) mod locks;
pub(crate) mod queues;
pub(crate) mod taskgroups;
pub(crate) mod tasks;
pub(crate) mod timeouts;
pub(crate) mod timing;
pub(crate) mod waiters;
pub(crate) mod waiting;
