//! `poll(2)`: the `pollfd` array lives here between calls and is patched in
//! O(1) per change, so `select` passes it straight to the kernel.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::io::RawFd;
use std::time::Duration;

use crate::mechanism::{Mechanism, Readiness};
use crate::syscall::cvt;
use crate::timeout::as_millis_rounded_up;
use crate::transcript::flags;
use crate::{Backend, Events};

/// The `poll` mechanism: the array handed to the kernel and where each fd sits in it.
#[derive(Default)]
pub struct Poll {
    fds: Vec<libc::pollfd>,
    position: HashMap<RawFd, usize>,
}

fn interest(events: Events) -> libc::c_short {
    let mut bits = 0;
    if events.contains(Events::READ) {
        bits |= libc::POLLIN;
    }
    if events.contains(Events::WRITE) {
        bits |= libc::POLLOUT;
    }
    bits
}

/// What the `revents` of one `pollfd` mean. `POLLNVAL` (the fd was closed
/// while registered) counts as an error, so the owner hears about it.
fn readiness(revents: libc::c_short) -> Readiness {
    Readiness {
        readable: revents & (libc::POLLIN | libc::POLLPRI) != 0,
        writable: revents & libc::POLLOUT != 0,
        error: revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
    }
}

impl Poll {
    fn slot(&mut self, fd: RawFd) -> io::Result<&mut libc::pollfd> {
        let index = *self.position.get(&fd).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("fd {fd} is not in the poll set"))
        })?;
        Ok(&mut self.fds[index])
    }
}

impl Mechanism for Poll {
    const BACKEND: Backend = Backend::Poll;

    fn open() -> io::Result<Self> {
        Ok(Poll::default())
    }

    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        self.position.insert(fd, self.fds.len());
        self.fds.push(libc::pollfd { fd, events: interest(events), revents: 0 });
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, _old: Events, new: Events) -> io::Result<()> {
        self.slot(fd)?.events = interest(new);
        Ok(())
    }

    fn remove(&mut self, fd: RawFd, _events: Events) -> io::Result<()> {
        let Some(index) = self.position.remove(&fd) else {
            return Ok(());
        };
        self.fds.swap_remove(index);
        if let Some(moved) = self.fds.get(index) {
            self.position.insert(moved.fd, index);
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
        // SAFETY: `fds` points at `fds.len()` initialised pollfd structs that
        // the kernel may update (revents) during the call.
        let count = cvt(unsafe {
            libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, as_millis_rounded_up(timeout))
        })? as usize;
        // The kernel told us how many entries have revents set: stop at the last.
        let mut left = count;
        for entry in &self.fds {
            if left == 0 {
                break;
            }
            if entry.revents != 0 {
                left -= 1;
                on_ready(entry.fd, readiness(entry.revents));
            }
        }
        Ok(count)
    }

    fn describe_wait(&self, timeout: Option<Duration>, _reported: &[(RawFd, Readiness)]) -> (String, String) {
        // A long array is cut short: the transcript is for reading.
        const SHOWN: usize = 8;
        let mut asked: Vec<String> = self
            .fds
            .iter()
            .take(SHOWN)
            .map(|entry| format!("{{fd={}, {}}}", entry.fd, bit_names(entry.events)))
            .collect();
        if self.fds.len() > SHOWN {
            asked.push(format!("… {} more", self.fds.len() - SHOWN));
        }
        let call =
            format!("poll([{}], {}, {})", asked.join(", "), self.fds.len(), as_millis_rounded_up(timeout));
        let answered: Vec<String> = self
            .fds
            .iter()
            .filter(|entry| entry.revents != 0)
            .map(|entry| format!("fd {} {}", entry.fd, bit_names(entry.revents)))
            .collect();
        (call, format!("[{}]", answered.join(", ")))
    }

    fn close(self) -> io::Result<()> {
        Ok(())
    }
}

/// `POLLIN|POLLHUP`: poll bits as the manual names them.
fn bit_names(bits: libc::c_short) -> String {
    const NAMES: [(libc::c_short, &str); 6] = [
        (libc::POLLIN, "POLLIN"),
        (libc::POLLPRI, "POLLPRI"),
        (libc::POLLOUT, "POLLOUT"),
        (libc::POLLERR, "POLLERR"),
        (libc::POLLHUP, "POLLHUP"),
        (libc::POLLNVAL, "POLLNVAL"),
    ];
    flags(bits, &NAMES)
}

// Written by hand: `libc::pollfd` implements `Debug` only from libc 0.2.176
// on, and we promise to build with 0.2.155.
impl fmt::Debug for Poll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poll").field("fds", &self.fds.len()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_fd_is_an_error_condition() {
        assert!(readiness(libc::POLLNVAL).error);
        assert!(readiness(libc::POLLHUP).error);
        assert_eq!(readiness(libc::POLLIN), Readiness { readable: true, ..Readiness::default() });
    }

    #[test]
    fn removal_keeps_positions_consistent() {
        let mut poll = Poll::default();
        for fd in 10..15 {
            poll.add(fd, Events::READ).unwrap();
        }
        poll.remove(10, Events::READ).unwrap();
        poll.modify(14, Events::READ, Events::WRITE).unwrap();
        for (fd, &index) in &poll.position {
            assert_eq!(poll.fds[index].fd, *fd);
        }
        assert_eq!(poll.fds.len(), 4);
        assert_eq!(poll.slot(14).unwrap().events, libc::POLLOUT);
    }
}
