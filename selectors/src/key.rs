use std::os::unix::io::RawFd;

use crate::Events;

/// One registration: the fd, the events it is watched for, and the caller's
/// data (Python's `SelectorKey`, with `data` typed instead of `object`).
///
/// ```
/// use tulip_selectors::{Events, SelectorKey};
/// let key = SelectorKey { fd: 3, events: Events::READ, data: "listener" };
/// assert_eq!(key.data, "listener");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorKey<T> {
    /// The registered file descriptor.
    pub fd: RawFd,
    /// The events the fd is watched for; never empty.
    pub events: Events,
    /// Whatever the caller attached at `register` or `modify`.
    pub data: T,
}
