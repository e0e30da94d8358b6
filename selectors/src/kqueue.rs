//! `kqueue(2)` + `kevent(2)` (macOS, iOS, FreeBSD, NetBSD, OpenBSD, DragonFly).
//! Not compiled on Linux: the merging of its records lives in
//! `kqueue_records.rs`, which is compiled and tested everywhere.
//!
//! The types of `struct kevent` differ between these systems: `filter` is
//! `i16` (`u32` on NetBSD), `flags` `u16` (`u32` on NetBSD), `udata` a pointer
//! (an `intptr_t` on NetBSD before libc 0.2.178), and `kevent()` counts in
//! `int` (`size_t` on NetBSD). The `EVFILT_*` and `EV_*` constants always have
//! the type of their field, so `change` and `record` use them without
//! casts; `udata` is never touched; `count` is the one cast that differs.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Duration;
use std::{fmt, mem, ptr};

use crate::fork::fork_generation;
use crate::kqueue_records::{merge_records, Filter, KernelRecord};
use crate::mechanism::{Change, Mechanism, Readiness};
use crate::syscall::cvt;
use crate::timeout::clamped;
use crate::{Backend, BaseSelector, Events};

/// The kqueue fd. Unlike other fds, a kqueue is not inherited by `fork()`:
/// in a child its number is closed, and may since name another file, so
/// it is closed only by the process that made it (not an `OwnedFd`).
#[derive(Debug)]
struct KqueueFd {
    fd: RawFd,
    /// The fork generation of the process that made it.
    born: u64,
}

impl KqueueFd {
    /// Closes it, reporting `close`'s error; nothing in a forked child.
    fn close(mut self) -> io::Result<()> {
        let fd = std::mem::replace(&mut self.fd, -1);
        if self.born != fork_generation() {
            return Ok(());
        }
        // SAFETY: `fd` is our kqueue, closed once: `self.fd` is -1 now, so
        // `Drop` does nothing.
        cvt(unsafe { libc::close(fd) })?;
        Ok(())
    }
}

impl Drop for KqueueFd {
    fn drop(&mut self) {
        if self.fd >= 0 && self.born == fork_generation() {
            // SAFETY: our kqueue, made by this process, closed once.
            unsafe { libc::close(self.fd) };
        }
    }
}

/// The `kqueue` mechanism: a close-on-exec kqueue fd and reusable buffers.
pub struct Kqueue {
    kqueue_fd: KqueueFd,
    /// Room for two records per registered fd (read and write filters).
    buffer: Vec<libc::kevent>,
    records: Vec<KernelRecord>,
}

// SAFETY: every field is Send and Sync except `buffer`, and only because a
// kevent record has a `udata` pointer. We never set it (it stays null and the
// kernel hands back what we registered) and never dereference it, so the
// records are plain data: moving the buffer to another thread is sound.
unsafe impl Send for Kqueue {}
// SAFETY: as for Send; a shared `&Kqueue` can only read those null pointers.
unsafe impl Sync for Kqueue {}

/// One of the two filters a registration is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interest {
    Read,
    Write,
}

/// What a change record asks of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Delete,
    /// `EV_ENABLE` of a filter that is never disabled: changes nothing,
    /// but fails with `ENOENT` if the filter is gone (its fd was closed,
    /// or replaced by `dup2`, since it was added).
    Check,
}

/// The change record that applies `op` to `fd`'s `interest` filter.
fn change(fd: RawFd, interest: Interest, op: Op) -> libc::kevent {
    // SAFETY: kevent is plain data; all-zero is valid (null udata, zero ext).
    let mut event: libc::kevent = unsafe { mem::zeroed() };
    event.ident = fd as libc::uintptr_t;
    event.filter = match interest {
        Interest::Read => libc::EVFILT_READ,
        Interest::Write => libc::EVFILT_WRITE,
    };
    event.flags = match op {
        Op::Add => libc::EV_ADD,
        Op::Delete => libc::EV_DELETE,
        Op::Check => libc::EV_ENABLE,
    };
    event
}

/// A returned kevent in portable terms.
fn record(event: &libc::kevent) -> KernelRecord {
    let filter = if event.filter == libc::EVFILT_READ {
        Filter::Read
    } else if event.filter == libc::EVFILT_WRITE {
        Filter::Write
    } else {
        Filter::Other
    };
    KernelRecord {
        fd: event.ident as RawFd,
        filter,
        eof: event.flags & libc::EV_EOF != 0,
        error: event.flags & libc::EV_ERROR != 0,
    }
}

/// The type of `kevent()`'s `nchanges` and `nevents`.
#[cfg(target_os = "netbsd")]
type Count = libc::size_t;
/// The type of `kevent()`'s `nchanges` and `nevents`.
#[cfg(not(target_os = "netbsd"))]
type Count = libc::c_int;

/// A buffer length as `kevent()`'s `nevents`, at most `c_int::MAX`.
#[allow(clippy::unnecessary_cast)] // `usize as usize` on NetBSD, a real cast elsewhere
fn count(len: usize) -> Count {
    len.min(libc::c_int::MAX as usize) as Count
}

fn interests(events: Events) -> impl Iterator<Item = Interest> {
    [(Events::READ, Interest::Read), (Events::WRITE, Interest::Write)]
        .into_iter()
        .filter(move |(event, _)| events.contains(*event))
        .map(|(_, interest)| interest)
}

impl Kqueue {
    /// The transcript's line for one `apply`.
    fn describe_call(&self, fd: RawFd, interest: Interest, op: &str) -> String {
        let filter = if interest == Interest::Read { "EVFILT_READ" } else { "EVFILT_WRITE" };
        format!("kevent({}, [{{ident={fd}, {filter}, {op}}}], 1, NULL, 0, NULL)", self.kqueue_fd.fd)
    }

    /// Applies one change at once, so a failure names exactly which one.
    fn apply(&self, fd: RawFd, interest: Interest, op: Op) -> io::Result<()> {
        let changes = [change(fd, interest, op)];
        // SAFETY: one valid change record in, no event buffer out (so an
        // error comes back as -1 and errno, not as an EV_ERROR record).
        cvt(unsafe {
            libc::kevent(self.kqueue_fd.fd, changes.as_ptr(), 1, ptr::null_mut(), 0, ptr::null())
        })?;
        Ok(())
    }
}

impl Mechanism for Kqueue {
    const BACKEND: Backend = Backend::Kqueue;

    fn open() -> io::Result<Self> {
        // SAFETY: kqueue takes no arguments and returns a new fd or -1.
        let fd = cvt(unsafe { libc::kqueue() })?;
        let kqueue_fd = KqueueFd { fd, born: fork_generation() };
        // Not every BSD has kqueue1(O_CLOEXEC): set the flag right away. (A
        // kqueue is not inherited across fork(2) anyway, so no child can exec
        // with it in the moment between the two calls.)
        crate::syscall::set_cloexec(fd)?;
        Ok(Kqueue { kqueue_fd, buffer: Vec::new(), records: Vec::new() })
    }

    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        let mut added = None;
        for interest in interests(events) {
            if let Err(err) = self.apply(fd, interest, Op::Add) {
                // Leave nothing half-registered.
                if let Some(done) = added {
                    let _ = self.apply(fd, done, Op::Delete);
                }
                return Err(err);
            }
            added = Some(interest);
        }
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, old: Events, new: Events) -> io::Result<()> {
        // The kernel drops an fd's filters when the fd is closed. A delete
        // of one that went fails (ENOENT), and the key goes, as with epoll;
        // a modify that only adds would instead watch half the key's events
        // on whatever file now has the number. So check a kept one first.
        if (old - new).is_empty() {
            if let Some(kept) = interests(old & new).next() {
                self.apply(fd, kept, Op::Check)?;
            }
        }
        for interest in interests(old - new) {
            self.apply(fd, interest, Op::Delete)?;
        }
        for interest in interests(new - old) {
            self.apply(fd, interest, Op::Add)?;
        }
        Ok(())
    }

    fn remove(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        let mut outcome = Ok(());
        for interest in interests(events) {
            if let Err(err) = self.apply(fd, interest, Op::Delete) {
                outcome = Err(err);
            }
        }
        outcome
    }

    fn wait<F: FnMut(RawFd, Readiness)>(
        &mut self,
        timeout: Option<Duration>,
        registered: usize,
        on_ready: F,
    ) -> io::Result<usize> {
        // With room for zero events kevent returns at once instead of sleeping.
        let wanted = registered.saturating_mul(2).clamp(1, libc::c_int::MAX as usize);
        if self.buffer.len() < wanted {
            // SAFETY: kevent is plain data; all-zero is valid.
            self.buffer.resize(wanted, unsafe { mem::zeroed() });
        }
        let timespec = timeout.map(|t| {
            let t = clamped(t);
            libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as _ }
        });
        let timespec_ptr = timespec.as_ref().map_or(ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: no changes in; the buffer holds `buffer.len()` initialised
        // records and the kernel writes at most that many; `timespec_ptr` is
        // null or points at a live timespec.
        let returned = cvt(unsafe {
            libc::kevent(
                self.kqueue_fd.fd,
                ptr::null(),
                0,
                self.buffer.as_mut_ptr(),
                count(self.buffer.len()),
                timespec_ptr,
            )
        })? as usize;
        self.records.clear();
        self.records.extend(self.buffer[..returned].iter().map(record));
        Ok(merge_records(&mut self.records, on_ready))
    }

    fn describe_open(&self) -> Option<(&'static str, RawFd)> {
        Some(("kqueue()", self.kqueue_fd.fd))
    }

    fn describe_change(&self, change: Change) -> Vec<String> {
        let (fd, events, op) = match change {
            Change::Add(fd, events) => (fd, events, "EV_ADD"),
            Change::Remove(fd, events) => (fd, events, "EV_DELETE"),
            // modify checks a kept filter when it deletes none, deletes the
            // filters that go and adds those that come.
            Change::Modify(fd, old, new) => {
                let mut calls = Vec::new();
                if (old - new).is_empty() {
                    if let Some(kept) = interests(old & new).next() {
                        calls.push(self.describe_call(fd, kept, "EV_ENABLE"));
                    }
                }
                calls.extend(self.describe_change(Change::Remove(fd, old - new)));
                calls.extend(self.describe_change(Change::Add(fd, new - old)));
                return calls;
            }
        };
        interests(events).map(|interest| self.describe_call(fd, interest, op)).collect()
    }

    fn describe_wait(&self, timeout: Option<Duration>, _reported: &[(RawFd, Readiness)]) -> (String, String) {
        let timeout = match timeout {
            None => "NULL".to_owned(),
            Some(t) => {
                let t = clamped(t);
                format!("{{{}, {}}}", t.as_secs(), t.subsec_nanos())
            }
        };
        let call = format!("kevent({}, NULL, 0, max={}, {timeout})", self.kqueue_fd.fd, self.buffer.len());
        let records: Vec<String> = self
            .records
            .iter()
            .map(|record| {
                let filter = match record.filter {
                    Filter::Read => "EVFILT_READ",
                    Filter::Write => "EVFILT_WRITE",
                    Filter::Other => "EVFILT_?",
                };
                let eof = if record.eof { "|EV_EOF" } else { "" };
                let error = if record.error { "|EV_ERROR" } else { "" };
                format!("fd {} {filter}{eof}{error}", record.fd)
            })
            .collect();
        (call, format!("[{}]", records.join(", ")))
    }

    fn close(self) -> io::Result<()> {
        self.kqueue_fd.close()
    }
}

// Written by hand: `libc::kevent` implements `Debug` only from libc 0.2.176
// on, and we promise to build with 0.2.155.
impl fmt::Debug for Kqueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kqueue")
            .field("kqueue_fd", &self.kqueue_fd)
            .field("buffer", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl<T> AsRawFd for BaseSelector<T, Kqueue> {
    /// The kqueue fd, for nesting this selector inside another.
    fn as_raw_fd(&self) -> RawFd {
        self.mechanism.kqueue_fd.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_records_read_back_as_what_they_ask_for() {
        let read = change(7, Interest::Read, Op::Add);
        assert_eq!(record(&read), KernelRecord { fd: 7, filter: Filter::Read, eof: false, error: false });
        assert!(read.udata.is_null());
        let mut hung_up = change(9, Interest::Write, Op::Delete);
        hung_up.flags |= libc::EV_EOF;
        assert_eq!(record(&hung_up), KernelRecord { fd: 9, filter: Filter::Write, eof: true, error: false });
    }

    #[test]
    fn counts_saturate_at_c_int_max() {
        assert_eq!(count(3) as i64, 3);
        assert_eq!(count(usize::MAX) as i64, i64::from(libc::c_int::MAX));
    }

    #[test]
    fn interests_follow_events() {
        assert_eq!(interests(Events::all()).collect::<Vec<_>>(), [Interest::Read, Interest::Write]);
        assert_eq!(interests(Events::WRITE).collect::<Vec<_>>(), [Interest::Write]);
    }
}
