//! The errors Layer 3 raises, and how to copy one for a second reader.
//!
//! Each is a payload inside an [`io::Error`], so every result stays an
//! `io::Result`: [`Cancelled`] (asyncio's `CancelledError`), [`QueueFull`]
//! and [`QueueEmpty`], and the [`ErrorGroup`] of a task group.

use std::error::Error;
use std::fmt;
use std::io;

/// The error of a cancelled [`Future`](crate::Future) or [`Task`](crate::Task) (asyncio's
/// `CancelledError`). It travels inside an [`io::Error`]:
///
/// ```
/// let err: std::io::Error = tulip::Cancelled.into();
/// assert!(tulip::is_cancelled(&err));
/// assert_eq!(err.to_string(), "cancelled");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled")
    }
}

impl Error for Cancelled {}

impl From<Cancelled> for io::Error {
    fn from(cancelled: Cancelled) -> Self {
        io::Error::other(cancelled)
    }
}

/// `true` if `err` says that a future or task was cancelled.
pub fn is_cancelled(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<Cancelled>())
}

/// The error of [`Queue::put_nowait`](crate::Queue::put_nowait) on a full queue (asyncio's
/// `QueueFull`). It travels inside an [`io::Error`] of kind
/// [`WouldBlock`](io::ErrorKind::WouldBlock); test for it with
/// [`is_queue_full`].
///
/// ```
/// let err: std::io::Error = tulip::QueueFull.into();
/// assert!(tulip::is_queue_full(&err));
/// assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueFull;

impl fmt::Display for QueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is full")
    }
}

impl Error for QueueFull {}

impl From<QueueFull> for io::Error {
    fn from(full: QueueFull) -> Self {
        io::Error::new(io::ErrorKind::WouldBlock, full)
    }
}

/// The error of [`Queue::get_nowait`](crate::Queue::get_nowait) on an empty queue (asyncio's
/// `QueueEmpty`). It travels inside an [`io::Error`] of kind
/// [`WouldBlock`](io::ErrorKind::WouldBlock); test for it with
/// [`is_queue_empty`].
///
/// ```
/// let err: std::io::Error = tulip::QueueEmpty.into();
/// assert!(tulip::is_queue_empty(&err));
/// assert_eq!(err.to_string(), "queue is empty");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueEmpty;

impl fmt::Display for QueueEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is empty")
    }
}

impl Error for QueueEmpty {}

impl From<QueueEmpty> for io::Error {
    fn from(empty: QueueEmpty) -> Self {
        io::Error::new(io::ErrorKind::WouldBlock, empty)
    }
}

/// `true` if `err` is a [`QueueFull`] error.
pub fn is_queue_full(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<QueueFull>())
}

/// `true` if `err` is a [`QueueEmpty`] error.
pub fn is_queue_empty(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<QueueEmpty>())
}

/// Every failure of a [`TaskGroup`](crate::TaskGroup) (asyncio's `ExceptionGroup`
/// "unhandled errors in a TaskGroup"): the errors of its failed children,
/// and of its body, in the order they were seen. It travels inside an
/// [`io::Error`] of kind [`Other`](io::ErrorKind::Other); find it with
/// [`error_group`]. A failure that is itself a group (a nested task group's)
/// stays one.
///
/// ```
/// use std::io;
/// use tulip::ErrorGroup;
///
/// let err: io::Error = ErrorGroup::new(vec![io::ErrorKind::BrokenPipe.into()]).into();
/// let group = tulip::error_group(&err).expect("a group");
/// assert_eq!(group.errors()[0].kind(), io::ErrorKind::BrokenPipe);
/// assert!(err.to_string().starts_with("unhandled errors in a TaskGroup (1 sub-error)"));
/// ```
#[derive(Debug)]
pub struct ErrorGroup {
    errors: Vec<io::Error>,
}

impl ErrorGroup {
    /// A group of `errors`.
    pub fn new(errors: Vec<io::Error>) -> ErrorGroup {
        ErrorGroup { errors }
    }

    /// The errors, in the order they were seen.
    pub fn errors(&self) -> &[io::Error] {
        &self.errors
    }

    /// The errors, moved out.
    pub fn into_errors(self) -> Vec<io::Error> {
        self.errors
    }

    /// A copy whose errors are copies (kind, OS code, message; groups and
    /// the crate's own errors stay what they are).
    pub(crate) fn copy(&self) -> ErrorGroup {
        ErrorGroup { errors: self.errors.iter().map(copy_error).collect() }
    }
}

impl fmt::Display for ErrorGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "unhandled errors in a TaskGroup ({n} sub-error{})", if n == 1 { "" } else { "s" })?;
        for (i, err) in self.errors.iter().enumerate() {
            write!(f, "{} {err}", if i == 0 { ":" } else { ";" })?;
        }
        Ok(())
    }
}

impl Error for ErrorGroup {}

impl From<ErrorGroup> for io::Error {
    fn from(group: ErrorGroup) -> Self {
        io::Error::other(group)
    }
}

/// The [`ErrorGroup`] inside `err`, if it holds one.
pub fn error_group(err: &io::Error) -> Option<&ErrorGroup> {
    err.get_ref().and_then(|inner| inner.downcast_ref::<ErrorGroup>())
}

/// A copy of `err` for a second reader (an `io::Error` cannot be cloned):
/// same kind, OS code and message, and the crate's own payloads
/// (cancellation, queue errors, error groups) still recognizable.
pub(crate) fn copy_error(err: &io::Error) -> io::Error {
    if let Some(inner) = err.get_ref() {
        if inner.is::<Cancelled>() {
            return Cancelled.into();
        }
        if let Some(group) = inner.downcast_ref::<ErrorGroup>() {
            return io::Error::new(err.kind(), group.copy());
        }
        if inner.is::<QueueFull>() {
            return QueueFull.into();
        }
        if inner.is::<QueueEmpty>() {
            return QueueEmpty.into();
        }
    }
    match err.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(err.kind(), err.to_string()),
    }
}
