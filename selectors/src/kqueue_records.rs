//! Turning kqueue's records into one readiness per fd, written over a plain
//! struct so it is compiled and tested on every platform, not only where
//! `kevent(2)` exists.
//!
//! kqueue watches (fd, filter) pairs, so an fd registered for reading and
//! writing can come back as two records; and `EV_EOF`/`EV_ERROR` arrive as
//! flags on a record. Callers of a selector want neither detail.

use std::os::unix::io::RawFd;

use crate::mechanism::Readiness;

/// Which kqueue filter a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `EVFILT_READ`.
    Read,
    /// `EVFILT_WRITE`.
    Write,
    /// Any other filter; carries no readiness of its own.
    Other,
}

/// One `struct kevent` returned by the kernel, in portable terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRecord {
    /// The record's `ident`: the fd.
    pub fd: RawFd,
    /// The record's filter.
    pub filter: Filter,
    /// `EV_EOF` was set: the peer hung up (or the write side is closed).
    pub eof: bool,
    /// `EV_ERROR` was set.
    pub error: bool,
}

impl KernelRecord {
    fn readiness(self) -> Readiness {
        Readiness {
            readable: self.filter == Filter::Read,
            writable: self.filter == Filter::Write,
            error: self.eof || self.error,
        }
    }
}

/// Calls `on_ready` once per distinct fd in `records`, with the readiness of
/// all its records merged, and returns how many fds that was. Reorders
/// `records` (sorting by fd makes the merge O(n log n) without allocating).
pub fn merge_records<F: FnMut(RawFd, Readiness)>(records: &mut [KernelRecord], mut on_ready: F) -> usize {
    records.sort_unstable_by_key(|record| record.fd);
    let mut fds = 0;
    for group in records.chunk_by(|a, b| a.fd == b.fd) {
        let merged = group.iter().fold(Readiness::default(), |acc, record| {
            let this = record.readiness();
            Readiness {
                readable: acc.readable || this.readable,
                writable: acc.writable || this.writable,
                error: acc.error || this.error,
            }
        });
        on_ready(group[0].fd, merged);
        fds += 1;
    }
    fds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Events;

    fn record(fd: RawFd, filter: Filter) -> KernelRecord {
        KernelRecord { fd, filter, eof: false, error: false }
    }

    fn merged(records: &mut [KernelRecord]) -> Vec<(RawFd, Readiness)> {
        let mut out = Vec::new();
        let count = merge_records(records, |fd, readiness| out.push((fd, readiness)));
        assert_eq!(count, out.len());
        out
    }

    #[test]
    fn read_and_write_records_of_one_fd_merge_into_one_entry() {
        let mut records = [record(5, Filter::Write), record(4, Filter::Read), record(5, Filter::Read)];
        let out = merged(&mut records);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], (4, Readiness { readable: true, ..Readiness::default() }));
        assert_eq!(out[1].0, 5);
        assert_eq!(out[1].1.reported(Events::all()), Events::all());
    }

    #[test]
    fn eof_and_error_become_readiness_for_registered_events() {
        let mut records = [KernelRecord { eof: true, ..record(7, Filter::Read) }];
        let (_, readiness) = merged(&mut records)[0];
        assert_eq!(readiness.reported(Events::READ | Events::WRITE), Events::all());

        let mut records = [KernelRecord { error: true, ..record(8, Filter::Other) }];
        let (_, readiness) = merged(&mut records)[0];
        assert_eq!(readiness.reported(Events::WRITE), Events::WRITE);
    }

    #[test]
    fn masking_hides_unregistered_filters() {
        let mut records = [record(3, Filter::Write)];
        let (_, readiness) = merged(&mut records)[0];
        assert_eq!(readiness.reported(Events::READ), Events::empty());
    }

    #[test]
    fn no_records_no_calls() {
        assert!(merged(&mut []).is_empty());
    }
}
