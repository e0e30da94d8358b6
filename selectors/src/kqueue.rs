//! `kqueue(2)` + `kevent(2)` (macOS, iOS, FreeBSD, NetBSD, OpenBSD, DragonFly).
//! Not compiled on Linux: the merging of its records lives in
//! `kqueue_records.rs`, which is compiled and tested everywhere. The field
//! types of `struct kevent` differ between these systems (`filter` is `i16`
//! or `u32`, `flags` `u16` or `u32`, `udata` a pointer or an integer); every
//! cast to and from them is in [`change`] and [`record`].

use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;
use std::{fmt, mem, ptr};

use crate::kqueue_records::{merge_records, Filter, KernelRecord};
use crate::sys::cvt;
use crate::timeout::clamped;
use crate::{Backend, BaseSelector, Events, Mechanism, Readiness};

/// The `kqueue` mechanism: a close-on-exec kqueue fd and reusable buffers.
pub struct Kqueue {
    kqueue_fd: OwnedFd,
    /// Room for two records per registered fd (read and write filters).
    buffer: Vec<libc::kevent>,
    records: Vec<KernelRecord>,
}

/// A change record for `fd`'s `filter`, with `flags` (`EV_ADD`, `EV_DELETE`).
fn change(fd: RawFd, filter: Filter, flags: u16) -> libc::kevent {
    // SAFETY: kevent is plain data; all-zero is valid (udata null or 0).
    let mut event: libc::kevent = unsafe { mem::zeroed() };
    event.ident = fd as _;
    event.filter = match filter {
        Filter::Read => libc::EVFILT_READ,
        Filter::Write => libc::EVFILT_WRITE,
        Filter::Other => unreachable!("only read and write filters are registered"),
    } as _;
    event.flags = flags as _;
    event
}

/// A returned kevent in portable terms.
fn record(event: &libc::kevent) -> KernelRecord {
    let filter = if event.filter == libc::EVFILT_READ as _ {
        Filter::Read
    } else if event.filter == libc::EVFILT_WRITE as _ {
        Filter::Write
    } else {
        Filter::Other
    };
    let flags = event.flags as u32;
    KernelRecord {
        fd: event.ident as RawFd,
        filter,
        eof: flags & libc::EV_EOF as u32 != 0,
        error: flags & libc::EV_ERROR as u32 != 0,
    }
}

fn filters(events: Events) -> impl Iterator<Item = Filter> {
    [(Events::READ, Filter::Read), (Events::WRITE, Filter::Write)]
        .into_iter()
        .filter(move |(event, _)| events.contains(*event))
        .map(|(_, filter)| filter)
}

impl Kqueue {
    /// Applies one change at once, so a failure names exactly which one.
    fn apply(&self, fd: RawFd, filter: Filter, flags: u16) -> io::Result<()> {
        let changes = [change(fd, filter, flags)];
        // SAFETY: one valid change record in, no event buffer out.
        cvt(unsafe {
            libc::kevent(self.kqueue_fd.as_raw_fd(), changes.as_ptr(), 1, ptr::null_mut(), 0, ptr::null())
        })?;
        Ok(())
    }
}

impl Mechanism for Kqueue {
    const BACKEND: Backend = Backend::Kqueue;

    fn open() -> io::Result<Self> {
        // SAFETY: kqueue takes no arguments and returns a new fd or -1.
        let fd = cvt(unsafe { libc::kqueue() })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        let kqueue_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Not every BSD has kqueue1(O_CLOEXEC): set the flag right away.
        // SAFETY: fcntl on an fd we own, with an integer argument.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
        Ok(Kqueue { kqueue_fd, buffer: Vec::new(), records: Vec::new() })
    }

    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        let mut added = Vec::with_capacity(2);
        for filter in filters(events) {
            if let Err(err) = self.apply(fd, filter, libc::EV_ADD as u16) {
                // Leave nothing half-registered.
                for done in added {
                    let _ = self.apply(fd, done, libc::EV_DELETE as u16);
                }
                return Err(err);
            }
            added.push(filter);
        }
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, old: Events, new: Events) -> io::Result<()> {
        for filter in filters(old - new) {
            self.apply(fd, filter, libc::EV_DELETE as u16)?;
        }
        for filter in filters(new - old) {
            self.apply(fd, filter, libc::EV_ADD as u16)?;
        }
        Ok(())
    }

    fn remove(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        let mut outcome = Ok(());
        for filter in filters(events) {
            if let Err(err) = self.apply(fd, filter, libc::EV_DELETE as u16) {
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
        let count = cvt(unsafe {
            libc::kevent(
                self.kqueue_fd.as_raw_fd(),
                ptr::null(),
                0,
                self.buffer.as_mut_ptr(),
                self.buffer.len() as _,
                timespec_ptr,
            )
        })? as usize;
        self.records.clear();
        self.records.extend(self.buffer[..count].iter().map(record));
        Ok(merge_records(&mut self.records, on_ready))
    }

    fn close(self) -> io::Result<()> {
        let fd = self.kqueue_fd.into_raw_fd();
        // SAFETY: we owned `fd` and give up ownership here; nobody else closes it.
        cvt(unsafe { libc::close(fd) })?;
        Ok(())
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
        self.mechanism.kqueue_fd.as_raw_fd()
    }
}
