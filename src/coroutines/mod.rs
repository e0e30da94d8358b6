//! Layer 3, coroutines.
pub(crate) mod futures;
pub(crate) mod runners;
pub(crate) mod tasks;
pub(crate) mod timing;
