//! Readiness events: what a caller asks for ([`Events`]) and what a kernel
//! reports ([`Readiness`]), and the one rule that turns the second into the first.

use bitflags::bitflags;

bitflags! {
    /// The I/O events a key is registered for, or that [`select`] found ready.
    ///
    /// [`select`]: crate::Selector::select
    ///
    /// ```
    /// use tulip_selectors::{Events, EVENT_READ, EVENT_WRITE};
    /// let both = EVENT_READ | EVENT_WRITE;
    /// assert!(both.contains(Events::READ));
    /// assert_eq!(both - EVENT_WRITE, EVENT_READ);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Events: u8 {
        /// The fd is readable (or at end of file, or in error).
        const READ = 1;
        /// The fd is writable (or in error).
        const WRITE = 2;
    }
}

impl std::fmt::Display for Events {
    /// `READ`, `WRITE`, `READ|WRITE` (or `nothing`).
    ///
    /// ```
    /// use tulip_selectors::Events;
    /// assert_eq!((Events::READ | Events::WRITE).to_string(), "READ|WRITE");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match (self.contains(Events::READ), self.contains(Events::WRITE)) {
            (true, true) => "READ|WRITE",
            (true, false) => "READ",
            (false, true) => "WRITE",
            (false, false) => "nothing",
        })
    }
}

/// Python's `selectors.EVENT_READ`.
pub const EVENT_READ: Events = Events::READ;
/// Python's `selectors.EVENT_WRITE`.
pub const EVENT_WRITE: Events = Events::WRITE;

/// What a kernel said about one fd, in words every backend shares.
///
/// Each backend translates its own bits (`POLLIN`, `EPOLLHUP`, `EVFILT_WRITE`,
/// …) into this struct; [`Readiness::reported`] then applies the single rule
/// all backends follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Data (or end of file) can be read without blocking.
    pub readable: bool,
    /// Data can be written without blocking.
    pub writable: bool,
    /// An error or hang-up condition is pending on the fd.
    pub error: bool,
}

impl Readiness {
    /// The events to report for a key registered for `registered`.
    ///
    /// An error or hang-up counts as readiness for everything registered, so
    /// that whichever side is waiting makes its next call and sees the error.
    /// Everything is masked by `registered`: a key never hears of events it
    /// did not ask for.
    ///
    /// ```
    /// use tulip_selectors::{mechanism::Readiness, Events};
    /// let hangup = Readiness { error: true, ..Readiness::default() };
    /// assert_eq!(hangup.reported(Events::WRITE), Events::WRITE);
    /// let readable = Readiness { readable: true, ..Readiness::default() };
    /// assert_eq!(readable.reported(Events::WRITE), Events::empty());
    /// ```
    #[inline]
    pub fn reported(self, registered: Events) -> Events {
        if self.error {
            return registered;
        }
        let mut events = Events::empty();
        if self.readable {
            events |= Events::READ;
        }
        if self.writable {
            events |= Events::WRITE;
        }
        events & registered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reports_every_registered_event() {
        let error = Readiness { error: true, ..Readiness::default() };
        assert_eq!(error.reported(Events::all()), Events::all());
        assert_eq!(error.reported(Events::READ), Events::READ);
    }

    #[test]
    fn readiness_is_masked_by_registration() {
        let both = Readiness { readable: true, writable: true, error: false };
        assert_eq!(both.reported(Events::READ), Events::READ);
        assert_eq!(both.reported(Events::WRITE), Events::WRITE);
        assert_eq!(Readiness::default().reported(Events::all()), Events::empty());
    }

    #[test]
    fn constants_match_python_values() {
        assert_eq!(EVENT_READ.bits(), 1);
        assert_eq!(EVENT_WRITE.bits(), 2);
    }
}
