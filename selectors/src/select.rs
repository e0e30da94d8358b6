//! `select(2)`: the oldest mechanism. The master `fd_set`s and the highest fd
//! are kept between calls; each `select` copies them (the kernel overwrites
//! its arguments), passes an empty one as null, and scans the result up to
//! the highest fd, 64 fds at a time where nothing is set.

use std::io;
use std::os::unix::io::RawFd;
use std::time::Duration;
use std::{fmt, mem, ptr};

use crate::mechanism::{Mechanism, Readiness};
use crate::syscall::cvt;
use crate::timeout::clamped;
use crate::transcript::fd_set;
use crate::{Backend, Events};

/// The `select` mechanism: master read and write sets and the highest fd in them.
pub struct Select {
    readers: libc::fd_set,
    writers: libc::fd_set,
    /// The highest fd in either set, or -1 when both are empty.
    max_fd: RawFd,
    /// How many fds each set holds: an empty set is passed as null, which
    /// spares the kernel copying it in, scanning it and copying it back.
    reading: usize,
    writing: usize,
}

/// fds per chunk of an `fd_set` tested at once for "any bit set". Every
/// libc stores the set as 32- or 64-bit words in fd order, so the 8 bytes
/// of chunk `k` hold exactly the bits of fds `64k..64k+63`, whatever the
/// word size and byte order.
const CHUNK_FDS: usize = 64;
const CHUNK_BYTES: usize = CHUNK_FDS / 8;
const SET_BYTES: usize = mem::size_of::<libc::fd_set>();
// (`FD_SETSIZE`'s type differs between libcs, hence the cast to u64.)
const _: () = assert!(SET_BYTES % CHUNK_BYTES == 0 && (SET_BYTES * 8) as u64 >= libc::FD_SETSIZE as u64);

/// `true` when no fd in chunk `chunk` of `set` is in the set.
#[inline]
fn chunk_is_empty(set: &libc::fd_set, chunk: usize) -> bool {
    // SAFETY: fd_set is plain integer words (no padding, every bit pattern
    // valid), SET_BYTES long, so viewing it as that many bytes is sound.
    let bytes = unsafe { &*(set as *const libc::fd_set).cast::<[u8; SET_BYTES]>() };
    let start = chunk * CHUNK_BYTES;
    bytes[start..start + CHUNK_BYTES].iter().all(|&b| b == 0)
}

/// How many of `events` are read and write interest: `(read, write)`, 0 or 1 each.
fn counts(events: Events) -> (usize, usize) {
    (usize::from(events.contains(Events::READ)), usize::from(events.contains(Events::WRITE)))
}

fn empty_set() -> libc::fd_set {
    // SAFETY: an all-zero fd_set is a valid, empty set (it is what FD_ZERO writes).
    unsafe { mem::zeroed() }
}

#[inline]
fn contains(set: &libc::fd_set, fd: RawFd) -> bool {
    // SAFETY: `set` is a valid fd_set and callers keep 0 <= fd < FD_SETSIZE.
    unsafe { libc::FD_ISSET(fd, set) }
}

/// `timeout` as a `timeval`, rounded up to the next microsecond.
fn as_timeval(timeout: Duration) -> libc::timeval {
    let timeout = clamped(timeout);
    let mut seconds = timeout.as_secs();
    let mut micros = timeout.subsec_nanos().div_ceil(1_000);
    if micros == 1_000_000 {
        seconds += 1;
        micros = 0;
    }
    libc::timeval { tv_sec: seconds as libc::time_t, tv_usec: micros as libc::suseconds_t }
}

impl Select {
    fn set(&mut self, fd: RawFd, events: Events) {
        if events.contains(Events::READ) {
            // SAFETY: the set is valid and check_fd kept 0 <= fd < FD_SETSIZE.
            unsafe { libc::FD_SET(fd, &mut self.readers) };
        }
        if events.contains(Events::WRITE) {
            // SAFETY: as above.
            unsafe { libc::FD_SET(fd, &mut self.writers) };
        }
    }

    fn clear(&mut self, fd: RawFd) {
        // SAFETY: the set is valid and check_fd kept 0 <= fd < FD_SETSIZE.
        unsafe { libc::FD_CLR(fd, &mut self.readers) };
        // SAFETY: as above.
        unsafe { libc::FD_CLR(fd, &mut self.writers) };
    }
}

impl Mechanism for Select {
    const BACKEND: Backend = Backend::Select;

    fn open() -> io::Result<Self> {
        Ok(Select { readers: empty_set(), writers: empty_set(), max_fd: -1, reading: 0, writing: 0 })
    }

    fn check_fd(fd: RawFd) -> io::Result<()> {
        if fd >= libc::FD_SETSIZE as RawFd {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is too large for select(): FD_SETSIZE is {}", libc::FD_SETSIZE),
            ));
        }
        Ok(())
    }

    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        self.set(fd, events);
        self.max_fd = self.max_fd.max(fd);
        let (read, write) = counts(events);
        self.reading += read;
        self.writing += write;
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, old: Events, new: Events) -> io::Result<()> {
        self.clear(fd);
        self.set(fd, new);
        let ((old_read, old_write), (new_read, new_write)) = (counts(old), counts(new));
        self.reading = self.reading + new_read - old_read;
        self.writing = self.writing + new_write - old_write;
        Ok(())
    }

    fn remove(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        self.clear(fd);
        let (read, write) = counts(events);
        self.reading -= read;
        self.writing -= write;
        while self.max_fd >= 0
            && !contains(&self.readers, self.max_fd)
            && !contains(&self.writers, self.max_fd)
        {
            self.max_fd -= 1;
        }
        Ok(())
    }

    #[inline]
    fn wait<F: FnMut(RawFd, Readiness)>(
        &mut self,
        timeout: Option<Duration>,
        _registered: usize,
        mut on_ready: F,
    ) -> io::Result<usize> {
        // The kernel overwrites the sets it is given: hand it copies. An
        // empty set's copy stays empty, so the scan below can read it either way.
        let (mut readable, mut writable) = (self.readers, self.writers);
        let as_arg = |set: &mut libc::fd_set, used: usize| {
            if used > 0 {
                set as *mut libc::fd_set
            } else {
                ptr::null_mut()
            }
        };
        let (read_ptr, write_ptr) =
            (as_arg(&mut readable, self.reading), as_arg(&mut writable, self.writing));
        let mut timeval = timeout.map(as_timeval);
        let timeval_ptr = timeval.as_mut().map_or(ptr::null_mut(), |t| t as *mut libc::timeval);
        // SAFETY: the set pointers are null or point at valid copies we own,
        // `max_fd + 1` bounds the fds in them, and `timeval_ptr` is null or
        // points at a live timeval.
        let bits =
            cvt(unsafe { libc::select(self.max_fd + 1, read_ptr, write_ptr, ptr::null_mut(), timeval_ptr) })?
                as usize;
        // `bits` counts set bits over both sets: stop scanning once all are
        // found, and skip 64 fds at a time where neither set has any.
        let (mut left, mut fds) = (bits, 0);
        let end = (self.max_fd + 1) as usize;
        let mut chunk = 0;
        while left > 0 && chunk * CHUNK_FDS < end {
            if chunk_is_empty(&readable, chunk) && chunk_is_empty(&writable, chunk) {
                chunk += 1;
                continue;
            }
            for fd in chunk * CHUNK_FDS..end.min((chunk + 1) * CHUNK_FDS) {
                let fd = fd as RawFd;
                let r = self.reading > 0 && contains(&readable, fd);
                let w = self.writing > 0 && contains(&writable, fd);
                if r || w {
                    left = left.saturating_sub(usize::from(r) + usize::from(w));
                    fds += 1;
                    on_ready(fd, Readiness { readable: r, writable: w, error: false });
                    if left == 0 {
                        break;
                    }
                }
            }
            chunk += 1;
        }
        Ok(fds)
    }

    fn describe_wait(&self, timeout: Option<Duration>, reported: &[(RawFd, Readiness)]) -> (String, String) {
        let members = |set: &libc::fd_set, used: usize| {
            if used == 0 {
                return "NULL".to_owned();
            }
            fd_set((0..=self.max_fd).filter(|&fd| contains(set, fd)))
        };
        let timeout = match timeout.map(as_timeval) {
            None => "NULL".to_owned(),
            Some(t) => format!("{}.{:06}s", t.tv_sec, t.tv_usec),
        };
        let call = format!(
            "select(nfds={}, r={}, w={}, timeout={timeout})",
            self.max_fd + 1,
            members(&self.readers, self.reading),
            members(&self.writers, self.writing)
        );
        let readable: Vec<String> =
            reported.iter().filter(|(_, r)| r.readable).map(|(fd, _)| fd.to_string()).collect();
        let writable: Vec<String> =
            reported.iter().filter(|(_, r)| r.writable).map(|(fd, _)| fd.to_string()).collect();
        let mut answer = Vec::new();
        if !readable.is_empty() {
            answer.push(format!("r: {}", readable.join(" ")));
        }
        if !writable.is_empty() {
            answer.push(format!("w: {}", writable.join(" ")));
        }
        (call, format!("[{}]", answer.join(", ")))
    }

    fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select").field("max_fd", &self.max_fd).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeval_rounds_up_to_the_microsecond() {
        let t = as_timeval(Duration::from_nanos(1));
        assert_eq!((t.tv_sec, t.tv_usec), (0, 1));
        let t = as_timeval(Duration::new(1, 999_999_001));
        assert_eq!((t.tv_sec, t.tv_usec), (2, 0));
        let t = as_timeval(Duration::MAX);
        assert_eq!(t.tv_sec as u64, crate::timeout::LONGEST_WAIT.as_secs());
    }

    #[test]
    fn max_fd_follows_removals() {
        let mut select = Select::open().unwrap();
        select.add(3, Events::READ).unwrap();
        select.add(9, Events::WRITE).unwrap();
        assert_eq!(select.max_fd, 9);
        select.remove(9, Events::WRITE).unwrap();
        assert_eq!(select.max_fd, 3);
        select.remove(3, Events::READ).unwrap();
        assert_eq!(select.max_fd, -1);
    }

    #[test]
    fn set_counts_follow_changes() {
        let mut select = Select::open().unwrap();
        select.add(3, Events::READ).unwrap();
        select.add(4, Events::READ | Events::WRITE).unwrap();
        assert_eq!((select.reading, select.writing), (2, 1));
        select.modify(3, Events::READ, Events::WRITE).unwrap();
        assert_eq!((select.reading, select.writing), (1, 2));
        select.remove(4, Events::READ | Events::WRITE).unwrap();
        select.remove(3, Events::WRITE).unwrap();
        assert_eq!((select.reading, select.writing), (0, 0));
    }

    #[test]
    fn chunks_hold_64_fds_each() {
        let mut set = empty_set();
        assert!((0..SET_BYTES / CHUNK_BYTES).all(|chunk| chunk_is_empty(&set, chunk)));
        // SAFETY: the set is valid and 130 < FD_SETSIZE.
        unsafe { libc::FD_SET(130, &mut set) };
        let busy: Vec<usize> = (0..SET_BYTES / CHUNK_BYTES).filter(|&c| !chunk_is_empty(&set, c)).collect();
        assert_eq!(busy, [2]);
    }

    #[test]
    fn fd_setsize_is_the_limit() {
        assert!(Select::check_fd(libc::FD_SETSIZE as RawFd - 1).is_ok());
        let err = Select::check_fd(libc::FD_SETSIZE as RawFd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("FD_SETSIZE"));
    }
}
