//! `io_uring(7)` as a readiness selector (Linux 5.11 and later): one
//! `IORING_OP_POLL_ADD` request per registered fd, and `io_uring_enter` as
//! the wait.
//!
//! **Registering costs no syscall.** `register`, `modify` and `unregister`
//! only write requests into the submission ring, shared memory; the kernel
//! gets them all in the `io_uring_enter` that waits, at the next `select`. A
//! connection accepted, registered, served and unregistered between two
//! waits never reaches the kernel at all: an `unregister` before that
//! `select` takes the unsent `POLL_ADD` back out of the ring. When the ring
//! is full, what is queued is handed over at once (an `io_uring_enter` that
//! does not wait), so nothing is lost.
//!
//! **Level-triggered, with one-shot polls.** A `POLL_ADD` completes once,
//! with the fd's poll mask, and is then gone; this backend re-arms it at the
//! next `select`, in the same `io_uring_enter` that waits. The kernel checks
//! the fd as it arms the poll and completes it at once if the fd is still
//! ready, so an fd that stays ready is reported at every `select`, as
//! select, poll and level-triggered epoll do. Multishot polls
//! (`IORING_POLL_ADD_MULTI`) would spare the re-arm but cannot give that:
//! they post a completion when the fd's wait queue is woken, so an fd left
//! readable after a partial read would not be reported again.
//!
//! The one exception: the kernel always adds `POLLRDHUP` to what a poll
//! waits for. A key registered for WRITE only, whose peer has shut down its
//! sending side while our send buffer is full, would complete every one-shot
//! poll at once with nothing the key asked for, and the wait would spin.
//! Such an fd gets a multishot poll, which completes only on wake-ups, until
//! it has something to report.
//!
//! **A zero timeout with nothing to do costs no syscall.** When no request
//! is queued, no completion waits in the ring, and the kernel's flag for
//! woken polls (`IORING_SETUP_TASKRUN_FLAG`, Linux 5.19) is clear, every
//! poll is armed and none has fired: `select(Some(Duration::ZERO))` returns
//! empty without entering the kernel. The kernel sets that flag in the
//! waker's syscall, before its `write` returns, so a write another thread
//! has made (and told us about) is never missed.
//!
//! **Timeouts** go in the wait itself (`IORING_ENTER_EXT_ARG`, a
//! nanosecond `timespec`), not in a timeout request: no submission entry, no
//! completion to tell apart from the polls', nothing left armed in the kernel
//! when the wait ends early. They are never early (the kernel's timer is
//! `CLOCK_MONOTONIC`, like `Instant`), and a huge one is clamped to
//! [`LONGEST_WAIT`](crate::timeout::LONGEST_WAIT).
//!
//! **Stale completions are never reported.** Each poll's `user_data` holds
//! the fd and a generation, new for every registration and for every
//! `modify` that replaces an armed poll (`IORING_OP_POLL_REMOVE` cancels the
//! old one). A completion whose generation is not the fd's current one (the
//! fd was unregistered, or registered again, since) is dropped.
//!
//! **Closed fds.** As with poll, `register` asks the kernel nothing, so a
//! closed fd is accepted; if it is still closed when its poll reaches the
//! kernel, the poll fails with `EBADF` and the fd is reported ready for its
//! registered events, like `POLLNVAL`. Once a poll is armed the kernel holds
//! the open file: closing the fd then neither wakes the poll nor releases
//! the file, as with epoll. So unregister before closing. (`unregister` of
//! an fd with an armed poll sends the `POLL_REMOVE` at once, one
//! `io_uring_enter` that does not wait, so the file is released when the
//! call returns; an fd whose poll has just completed, the usual case in an
//! event loop, needs nothing from the kernel.) Dropping or closing the
//! selector cancels every armed poll the same way before closing the ring.
//!
//! **Fork.** A child made by `fork()` shares the ring, its fd and its
//! mapped queues, with the parent. The child never submits to it: dropping
//! an inherited ring only unmaps it and closes the child's fd, and
//! [`Selector::after_fork`](crate::Selector::after_fork) opens a new ring and
//! arms every registration there.
//!
//! **Task work.** The kernel finishes a woken poll on the thread that armed
//! it, as "task work" that it signals the way it signals a signal: at that
//! thread's next entry into the kernel, not in the waker's `write` as
//! epoll's ready list is updated. (With `IORING_SETUP_COOP_TASKRUN` it does
//! not interrupt the thread while it runs to do so; a sleeping thread is
//! still woken.) So a blocking syscall that this thread makes while its
//! polls are armed, and that fails rather than restarts when interrupted (a
//! `read` under `SO_RCVTIMEO`, say), may fail with `EINTR`. An event loop
//! makes no such calls. `IORING_SETUP_DEFER_TASKRUN` (Linux 6.1) would
//! avoid it, but then the kernel finishes woken polls in small batches per
//! wait (tried here: a `select` with 10,000 ready fds saw 41 of them), so
//! one `select` would no longer return every ready fd; and it ties the ring
//! to the thread that made it, where a selector is `Send`. A selector moved
//! to another thread still works, a little later for the polls the first
//! thread armed: that thread finishes them, or, if it has exited, the
//! kernel cancels them and they are armed again.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

use crate::base::{Change, Mechanism};
use crate::events::Readiness;
use crate::fork::{current_generation, fork_generation};
use crate::syscall::is_interrupted;
use crate::{Backend, BaseSelector, Events};

mod ring;

use ring::{poll_mask, Cqe, Ring, Sqe, CQE_F_MORE, OP_POLL_ADD, POLL_ADD_MULTI};

/// Submission ring size: how many changes queue up before a flush.
const SQ_ENTRIES: u32 = 256;
/// Completion ring size: completions beyond it wait in the kernel's overflow
/// list and are fetched by a second `io_uring_enter`.
const CQ_ENTRIES: u32 = 2048;
/// The `user_data` of the `POLL_REMOVE` requests: no poll has it (a poll's
/// low half is its fd, which is never `-1`).
const CANCEL: u64 = u64::MAX;
/// fds below this keep their state in a vector, the rest in a map.
const DENSE_LIMIT: usize = 1 << 16;

/// Where one registered fd's poll request stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// No request anywhere (the fd is not registered).
    #[default]
    Idle,
    /// Written into the submission ring at this position, not yet sent.
    Queued(u32),
    /// Sent: the kernel holds the poll (or has completed it, unread).
    Armed,
    /// Completed and read; a new poll is sent at the next wait.
    Rearm,
}

/// One fd's registration, as far as the kernel is concerned.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// With the fd, the `user_data` of its current poll.
    generation: u32,
    events: Events,
    state: State,
    /// A key registered for WRITE only whose last poll reported only
    /// `POLLRDHUP`: its polls are multishot until one reports something.
    quiet: bool,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot { generation: 0, events: Events::empty(), state: State::Idle, quiet: false }
    }
}

/// Per-fd state, dense below [`DENSE_LIMIT`] (one index per lookup, as the
/// registry does) and in a map above.
#[derive(Debug, Default)]
struct Slots {
    dense: Vec<Slot>,
    sparse: HashMap<RawFd, Slot>,
}

impl Slots {
    #[inline]
    fn index(fd: RawFd) -> Option<usize> {
        usize::try_from(fd).ok().filter(|&i| i < DENSE_LIMIT)
    }

    #[inline]
    fn get(&self, fd: RawFd) -> Option<&Slot> {
        match Self::index(fd) {
            Some(i) => self.dense.get(i).filter(|slot| slot.state != State::Idle),
            None => self.sparse.get(&fd),
        }
    }

    #[inline]
    fn get_mut(&mut self, fd: RawFd) -> Option<&mut Slot> {
        match Self::index(fd) {
            Some(i) => self.dense.get_mut(i).filter(|slot| slot.state != State::Idle),
            None => self.sparse.get_mut(&fd),
        }
    }

    fn insert(&mut self, fd: RawFd, slot: Slot) {
        match Self::index(fd) {
            Some(i) => {
                if self.dense.len() <= i {
                    self.dense.resize(i + 1, Slot::default());
                }
                self.dense[i] = slot;
            }
            None => {
                self.sparse.insert(fd, slot);
            }
        }
    }

    fn remove(&mut self, fd: RawFd) -> Option<Slot> {
        match Self::index(fd) {
            Some(i) => self.dense.get_mut(i).map(std::mem::take).filter(|slot| slot.state != State::Idle),
            None => self.sparse.remove(&fd),
        }
    }
}

/// Work kept for the start of the next wait, when the submission ring is
/// handed to the kernel anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferred {
    /// Arm a new poll for this fd, if it is still waiting for one.
    Arm(RawFd),
    /// Cancel the poll with this `user_data`.
    Cancel(u64),
}

/// The `io_uring` mechanism: the ring, each fd's poll state, and the work
/// kept for the next wait.
pub struct IoUring {
    ring: Ring,
    slots: Slots,
    next_generation: u32,
    deferred: Vec<Deferred>,
    /// The fork generation the ring was made in. A child process made by
    /// `fork()` shares the ring (its fd and its mapped queues) with the
    /// parent: there it must never submit, only unmap and close.
    born: u64,
    /// For the transcript: the last wait's `io_uring_enter` (requests
    /// sent, whether it slept), `None` if it needed no syscall.
    last_enter: Option<(u32, bool)>,
    /// For the transcript: how many times a change handed the ring over at
    /// once (a full ring, the cancel of an armed poll), and how many
    /// requests the last of those sent; and how many of them were described.
    flushes: (u64, u32),
    flushes_described: std::cell::Cell<u64>,
}

/// The poll bits that ask for `events`. The kernel adds `POLLERR`,
/// `POLLHUP`, `POLLNVAL` and `POLLRDHUP` to every poll.
#[inline]
fn interest(events: Events) -> u32 {
    let mut bits = 0;
    if events.contains(Events::READ) {
        bits |= libc::POLLIN;
    }
    if events.contains(Events::WRITE) {
        bits |= libc::POLLOUT;
    }
    bits as u16 as u32
}

/// What a poll's completion says: `None` if it was cancelled (by us, or by
/// the kernel when the thread that armed it exited), otherwise the meaning
/// of its poll mask. A poll that failed (`EBADF`: the fd was closed before
/// the poll reached the kernel) is an error condition, like `POLLNVAL`.
#[inline]
fn readiness(res: i32) -> Option<Readiness> {
    if res == -libc::ECANCELED {
        return None;
    }
    if res < 0 {
        return Some(Readiness { error: true, ..Readiness::default() });
    }
    let has = |bits: libc::c_short| res & i32::from(bits) != 0;
    Some(Readiness {
        readable: has(libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP),
        writable: has(libc::POLLOUT),
        error: has(libc::POLLERR | libc::POLLHUP | libc::POLLNVAL),
    })
}

/// A poll request's `user_data`: the generation above the fd.
#[inline]
fn user_data(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

/// The fd and generation in a poll's `user_data`.
#[inline]
fn fd_and_generation(user_data: u64) -> (RawFd, u32) {
    (user_data as u32 as RawFd, (user_data >> 32) as u32)
}

/// The `POLL_ADD` for `fd` as `slot` has it.
#[inline]
fn poll_add(fd: RawFd, slot: &Slot) -> Sqe {
    let flags = if slot.quiet { POLL_ADD_MULTI } else { 0 };
    Sqe::poll_add(fd, interest(slot.events), flags, user_data(fd, slot.generation))
}

/// The `POLL_REMOVE` that cancels the poll whose `user_data` is `target`.
#[inline]
fn poll_remove(target: u64, flags: u8) -> Sqe {
    Sqe::poll_remove(target, flags, CANCEL)
}

#[cold]
#[inline(never)]
fn not_watched(fd: RawFd) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("fd {fd} has no io_uring poll"))
}

impl IoUring {
    /// A mechanism over a ring of `sq_entries` submissions and `cq_entries`
    /// completions.
    fn with_entries(sq_entries: u32, cq_entries: u32) -> io::Result<IoUring> {
        Ok(IoUring {
            ring: Ring::new(sq_entries, cq_entries)?,
            slots: Slots::default(),
            next_generation: 0,
            deferred: Vec::new(),
            born: fork_generation(),
            last_enter: None,
            flushes: (0, 0),
            flushes_described: std::cell::Cell::new(0),
        })
    }

    #[inline]
    fn new_generation(&mut self) -> u32 {
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        generation
    }

    /// Queues `sqe`, first handing the full ring to the kernel if need be.
    #[inline]
    fn push(&mut self, sqe: Sqe) -> io::Result<u32> {
        if self.ring.is_full() {
            self.flush()?;
        }
        self.ring.push(sqe).ok_or_else(|| io::Error::other("the io_uring submission ring stayed full"))
    }

    /// Queues a poll for `fd` as its slot describes it.
    #[inline]
    fn queue_poll(&mut self, fd: RawFd) -> io::Result<()> {
        let sqe = poll_add(fd, self.slots.get(fd).ok_or_else(|| not_watched(fd))?);
        let position = self.push(sqe)?;
        if let Some(slot) = self.slots.get_mut(fd) {
            slot.state = State::Queued(position);
        }
        Ok(())
    }

    /// Queues the cancellation of the poll `target`; if the ring cannot
    /// take it now, the next wait sends it.
    fn queue_cancel(&mut self, target: u64) -> io::Result<()> {
        let sqe = poll_remove(target, self.ring.skip_success());
        match self.push(sqe) {
            Ok(_) => Ok(()),
            Err(err) => {
                self.deferred.push(Deferred::Cancel(target));
                Err(err)
            }
        }
    }

    /// Takes the unsent request at `position` back out of the ring; the
    /// request moved into its place gets its new position.
    fn unqueue(&mut self, position: u32) {
        let Some(moved) = self.ring.unqueue(position) else { return };
        if moved.opcode == OP_POLL_ADD {
            let (fd, generation) = fd_and_generation(moved.user_data);
            if let Some(slot) = self.slots.get_mut(fd).filter(|slot| slot.generation == generation) {
                slot.state = State::Queued(position);
            }
        }
    }

    /// Hands every queued request to the kernel without waiting, and lets
    /// it finish what that started (a cancelled poll releases its file).
    fn flush(&mut self) -> io::Result<()> {
        let queued = self.ring.unsubmitted();
        self.flushes = (self.flushes.0 + 1, queued);
        loop {
            let entered = self.ring.enter(true, 0, None);
            self.note_submitted();
            match entered {
                Ok(_) if self.ring.unsubmitted() < queued || queued == 0 => return Ok(()),
                Ok(_) => {
                    return Err(io::Error::other(format!(
                        "io_uring_enter took none of the {queued} queued requests"
                    )))
                }
                Err(err) if is_interrupted(&err) => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Marks the polls the kernel has just consumed as armed.
    #[inline]
    fn note_submitted(&mut self) {
        let (mut position, end) = self.ring.take_submitted();
        while position != end {
            let sqe = self.ring.sqe(position);
            if sqe.opcode == OP_POLL_ADD {
                let (fd, generation) = fd_and_generation(sqe.user_data);
                if let Some(slot) = self.slots.get_mut(fd) {
                    if slot.generation == generation && slot.state == State::Queued(position) {
                        slot.state = State::Armed;
                    }
                }
            }
            position = position.wrapping_add(1);
        }
    }

    /// Queues what the last wait left to do: re-arm completed polls, cancel
    /// multishot polls that are no longer wanted.
    #[inline]
    fn run_deferred(&mut self) -> io::Result<()> {
        let mut done = 0;
        let mut outcome = Ok(());
        while let Some(&work) = self.deferred.get(done) {
            let queued = match work {
                Deferred::Arm(fd) if self.slots.get(fd).is_some_and(|slot| slot.state == State::Rearm) => {
                    self.queue_poll(fd)
                }
                Deferred::Arm(_) => Ok(()),
                Deferred::Cancel(target) => {
                    self.push(poll_remove(target, self.ring.skip_success())).map(drop)
                }
            };
            if let Err(err) = queued {
                outcome = Err(err);
                break;
            }
            done += 1;
        }
        self.deferred.drain(..done);
        outcome
    }

    /// What one completion means: the fd and its readiness if it is to be
    /// reported. Updates the fd's state, and defers its next poll.
    #[inline]
    fn complete(&mut self, cqe: Cqe) -> Option<(RawFd, Readiness)> {
        if cqe.user_data == CANCEL {
            return None;
        }
        let (fd, generation) = fd_and_generation(cqe.user_data);
        let slot = self.slots.get_mut(fd)?;
        if slot.generation != generation || slot.state != State::Armed {
            // Stale: the fd was unregistered, modified or registered again
            // since this poll was queued.
            return None;
        }
        let readiness = readiness(cqe.res);
        let wanted = readiness.is_some_and(|r| !r.reported(slot.events).is_empty());
        if slot.quiet {
            // A multishot poll: it stays armed while the kernel says MORE.
            let armed = cqe.flags & CQE_F_MORE != 0;
            if wanted {
                // Back to one-shot polls, under a new generation.
                if armed {
                    self.deferred.push(Deferred::Cancel(cqe.user_data));
                }
                slot.quiet = false;
                slot.generation = self.next_generation;
                self.next_generation = self.next_generation.wrapping_add(1);
            } else if armed {
                return None;
            }
        } else if readiness.is_some() && !wanted {
            // Only POLLRDHUP, for a WRITE key: wait for wake-ups instead.
            slot.quiet = true;
        }
        slot.state = State::Rearm;
        self.deferred.push(Deferred::Arm(fd));
        readiness.filter(|_| wanted).map(|readiness| (fd, readiness))
    }

    /// Reads every completion in the ring (and in the kernel's overflow
    /// list), handing each fd to report to `on_ready`. Returns how many.
    #[inline]
    fn reap<F: FnMut(RawFd, Readiness)>(&mut self, on_ready: &mut F) -> io::Result<usize> {
        let mut reported = 0;
        loop {
            let (mut head, tail) = self.ring.completions();
            while head != tail {
                let cqe = self.ring.cqe(head);
                head = head.wrapping_add(1);
                if let Some((fd, readiness)) = self.complete(cqe) {
                    reported += 1;
                    on_ready(fd, readiness);
                }
            }
            self.ring.release(head);
            if !self.ring.overflowed() {
                return Ok(reported);
            }
            // The ring was full: fetch what the kernel kept aside. (No poll
            // is re-armed in between, so no fd can complete twice.)
            let entered = self.ring.enter(true, 0, None);
            self.note_submitted();
            match entered {
                Ok(_) => {}
                // What was read is reported; the rest comes next time.
                Err(_) if reported > 0 => return Ok(reported),
                Err(err) => return Err(err),
            }
        }
    }
}

impl Mechanism for IoUring {
    const BACKEND: Backend = Backend::IoUring;

    fn open() -> io::Result<Self> {
        IoUring::with_entries(SQ_ENTRIES, CQ_ENTRIES)
    }

    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
        let generation = self.new_generation();
        // A placeholder state until the poll is queued (Idle would read as
        // "not registered").
        self.slots.insert(fd, Slot { generation, events, state: State::Rearm, quiet: false });
        if let Err(err) = self.queue_poll(fd) {
            self.slots.remove(fd);
            return Err(err);
        }
        Ok(())
    }

    fn modify(&mut self, fd: RawFd, _old: Events, new: Events) -> io::Result<()> {
        let generation = self.new_generation();
        let slot = self.slots.get_mut(fd).ok_or_else(|| not_watched(fd))?;
        slot.events = new;
        slot.quiet = false;
        match slot.state {
            // Not sent yet: rewrite the request in the ring.
            State::Queued(position) => {
                let sqe = self.ring.sqe_mut(position);
                sqe.op_flags = poll_mask(interest(new));
                sqe.len = 0;
                Ok(())
            }
            // The kernel holds the old poll: cancel it, queue a new one.
            State::Armed => {
                let old = user_data(fd, slot.generation);
                slot.generation = generation;
                slot.state = State::Rearm;
                self.queue_cancel(old)?;
                self.queue_poll(fd)
            }
            // The next wait arms a poll for the new events.
            State::Rearm | State::Idle => Ok(()),
        }
    }

    fn remove(&mut self, fd: RawFd, _events: Events) -> io::Result<()> {
        let Some(slot) = self.slots.remove(fd) else { return Ok(()) };
        match slot.state {
            // Never sent: take it back, and the kernel never hears of the fd.
            State::Queued(position) => {
                self.unqueue(position);
                Ok(())
            }
            // The kernel's poll holds the open file: cancel it now, so that
            // closing the fd after this call closes the file.
            State::Armed => {
                self.queue_cancel(user_data(fd, slot.generation))?;
                self.flush()
            }
            State::Rearm | State::Idle => Ok(()),
        }
    }

    #[inline]
    fn wait<F: FnMut(RawFd, Readiness)>(
        &mut self,
        timeout: Option<Duration>,
        _registered: usize,
        mut on_ready: F,
    ) -> io::Result<usize> {
        self.run_deferred()?;
        if self.ring.is_idle() && matches!(timeout, Some(d) if d.is_zero()) {
            // Every poll is armed and none has been woken: nothing is ready,
            // and a zero timeout needs no syscall to say so.
            self.last_enter = None;
            return Ok(0);
        }
        let mut interrupted = None;
        // Completions already waiting mean no sleep; so does a zero timeout.
        // The enter is made either way: it sends the queued requests, and
        // finishes polls the kernel woke meanwhile.
        let sleep = !self.ring.has_completions() && !matches!(timeout, Some(d) if d.is_zero());
        self.last_enter = Some((self.ring.unsubmitted(), sleep));
        let entered = self.ring.enter(true, u32::from(sleep), timeout.filter(|_| sleep));
        self.note_submitted();
        match entered {
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(libc::ETIME) => {}
            Err(err) if is_interrupted(&err) => interrupted = Some(err),
            Err(err) => return Err(err),
        }
        let reported = self.reap(&mut on_ready)?;
        match interrupted {
            // Nothing to report: let the caller retry with what is left of the timeout.
            Some(err) if reported == 0 => Err(err),
            _ => Ok(reported),
        }
    }

    fn describe_open(&self) -> Option<(&'static str, RawFd)> {
        Some(("io_uring_setup(entries=256)", self.ring.fd()))
    }

    fn describe_change(&self, _change: Change) -> Vec<String> {
        // Changes are queued in the ring; only one that had to hand it over
        // at once made a syscall.
        let (count, sent) = self.flushes;
        if self.flushes_described.replace(count) == count {
            return Vec::new();
        }
        vec![format!("io_uring_enter({}, to_submit={sent}, min_complete=0)", self.ring.fd())]
    }

    fn describe_wait(&self, timeout: Option<Duration>, reported: &[(RawFd, Readiness)]) -> (String, String) {
        let answer: Vec<String> =
            reported.iter().map(|(fd, readiness)| format!("fd {fd} {readiness:?}")).collect();
        let call = match self.last_enter {
            None => "(no syscall: every poll armed, none woken)".to_owned(),
            Some((sent, sleep)) => {
                let wait = match timeout.filter(|_| sleep) {
                    Some(d) => format!("timeout={d:?}"),
                    None if sleep => "no timeout".to_owned(),
                    None => "no sleep".to_owned(),
                };
                let fd = self.ring.fd();
                format!("io_uring_enter({fd}, to_submit={sent}, min_complete={}, {wait})", u32::from(sleep))
            }
        };
        (call, format!("[{}]", answer.join(", ")))
    }

    fn close(mut self) -> io::Result<()> {
        self.shutdown();
        self.ring.close()
    }
}

impl IoUring {
    /// Cancels every poll the kernel holds, so that their files are
    /// released now, on this thread, rather than by the kernel's clean-up of
    /// the closed ring later (which, without `DEFER_TASKRUN`, would also
    /// interrupt whatever this thread is doing then). Unsent requests are
    /// dropped. Best effort: errors leave the rest to that clean-up.
    fn shutdown(&mut self) {
        // In a forked child the polls are the parent's: leave them be.
        if self.ring.is_closed() || self.born != current_generation() {
            return;
        }
        self.ring.discard_unsubmitted();
        self.deferred.clear();
        let slots = std::mem::take(&mut self.slots);
        let dense = slots.dense.iter().enumerate().map(|(fd, slot)| (fd as RawFd, slot));
        let skip_success = self.ring.skip_success();
        for (fd, slot) in dense.chain(slots.sparse.iter().map(|(&fd, slot)| (fd, slot))) {
            if slot.state != State::Armed {
                continue;
            }
            if self.ring.is_full() && self.flush().is_err() {
                return;
            }
            self.ring.push(poll_remove(user_data(fd, slot.generation), skip_success));
        }
        if self.ring.unsubmitted() > 0 {
            let _ = self.flush();
        }
    }
}

impl Drop for IoUring {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for IoUring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoUring")
            .field("ring", &self.ring)
            .field("deferred", &self.deferred.len())
            .finish_non_exhaustive()
    }
}

impl<T> AsRawFd for BaseSelector<T, IoUring> {
    /// The io_uring fd (readable when completions are waiting), for nesting
    /// this selector inside another.
    fn as_raw_fd(&self) -> RawFd {
        self.mechanism.ring.fd()
    }
}

/// Whether this process can use the io_uring backend, asked of the kernel
/// once: `Err` says why not.
pub(crate) fn probe() -> Result<(), &'static str> {
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    PROBED.get_or_init(probe_kernel).as_ref().map(|_| ()).map_err(String::as_str)
}

/// `true` if the sysctl `kernel.io_uring_disabled` (Linux 6.6+), read as
/// `setting`, refuses io_uring to every process: 0 allows it, 1 allows it
/// only to members of `kernel.io_uring_group` (which setting up a ring
/// tells), 2 to nobody.
fn disabled_for_everyone(setting: &str) -> bool {
    setting.trim() == "2"
}

fn probe_kernel() -> Result<(), String> {
    if let Ok(setting) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if disabled_for_everyone(&setting) {
            return Err("io_uring is disabled by the sysctl kernel.io_uring_disabled = 2".to_owned());
        }
    }
    // A small ring answers the rest: ENOSYS, EPERM (sysctl or seccomp), and
    // missing features or opcodes.
    Ring::new(4, 8).map(drop).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::Selector;

    #[test]
    fn poll_bits_translate_both_ways() {
        let both = interest(Events::READ | Events::WRITE) as i32;
        let seen = readiness(both).expect("a mask");
        assert!(seen.readable && seen.writable && !seen.error);
        assert_eq!(interest(Events::READ), libc::POLLIN as u32);
        assert_eq!(interest(Events::WRITE), libc::POLLOUT as u32);
        assert!(readiness(i32::from(libc::POLLRDHUP)).expect("a mask").readable);
        for bits in [libc::POLLHUP, libc::POLLERR, libc::POLLNVAL] {
            assert!(readiness(i32::from(bits)).expect("a mask").error);
        }
    }

    #[test]
    fn failed_polls_are_errors_and_cancelled_ones_say_nothing() {
        assert_eq!(readiness(-libc::EBADF), Some(Readiness { error: true, ..Readiness::default() }));
        assert_eq!(readiness(-libc::ECANCELED), None);
        // A WRITE key's poll that saw only POLLRDHUP has nothing to report.
        let rdhup = readiness(i32::from(libc::POLLRDHUP)).expect("a mask");
        assert!(rdhup.reported(Events::WRITE).is_empty());
    }

    #[test]
    fn the_sysctl_refuses_everyone_only_at_2() {
        assert!(disabled_for_everyone("2\n"));
        assert!(!disabled_for_everyone("0\n"));
        assert!(!disabled_for_everyone("1\n"), "1 leaves the answer to io_uring_setup");
    }

    #[test]
    fn the_probe_agrees_with_open() {
        let probed = probe();
        let opened = IoUring::open();
        assert_eq!(probed.is_ok(), opened.is_ok(), "probe {probed:?}, open {:?}", opened.err());
        assert_eq!(crate::Backend::available().contains(&Backend::IoUring), probed.is_ok());
    }

    #[test]
    fn user_data_carries_fd_and_generation() {
        for (fd, generation) in [(0, 0), (7, 1), (RawFd::MAX, u32::MAX), (65_536, 12_345)] {
            let data = user_data(fd, generation);
            assert_eq!(fd_and_generation(data), (fd, generation));
            assert_ne!(data, CANCEL, "no poll may look like a cancellation");
        }
    }

    #[test]
    fn slots_are_dense_below_the_limit_and_sparse_above() {
        let mut slots = Slots::default();
        let armed = Slot { generation: 3, events: Events::READ, state: State::Armed, quiet: false };
        for fd in [2, DENSE_LIMIT as RawFd + 5] {
            assert!(slots.get(fd).is_none());
            slots.insert(fd, armed);
            assert_eq!(slots.get(fd).map(|slot| slot.generation), Some(3));
            slots.get_mut(fd).expect("inserted").generation = 4;
            assert_eq!(slots.remove(fd).map(|slot| slot.generation), Some(4));
            assert!(slots.get(fd).is_none() && slots.remove(fd).is_none());
        }
        assert!(slots.dense.len() < 10, "a huge fd must not grow the vector");
    }

    /// A selector over a ring of 4 entries, or `None` (with a note) where
    /// this kernel has no io_uring.
    fn small(sq_entries: u32) -> Option<BaseSelector<&'static str, IoUring>> {
        match IoUring::with_entries(sq_entries, sq_entries * 2) {
            Ok(mechanism) => Some(BaseSelector::with_mechanism(mechanism)),
            Err(err) => {
                println!("skipped: no io_uring here ({err})");
                None
            }
        }
    }

    fn ready_fds(selector: &mut BaseSelector<&'static str, IoUring>, timeout: Duration) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> =
            selector.select(Some(timeout)).expect("select").map(|(key, _)| key.fd).collect();
        fds.sort_unstable();
        fds
    }

    /// More registrations than the ring holds: the full ring is handed to
    /// the kernel (without waiting) and every fd is still watched.
    #[test]
    fn a_full_ring_is_flushed_not_lost() {
        let Some(mut selector) = small(4) else { return };
        let pairs: Vec<_> = (0..11).map(|_| UnixStream::pair().expect("socketpair")).collect();
        for (a, _) in &pairs {
            selector.register(a.as_raw_fd(), Events::WRITE, "a").expect("register");
        }
        // 11 polls through a ring of 4: two flushes happened, 3 are still queued.
        assert_eq!(selector.mechanism.ring.unsubmitted(), 3);
        let mut expected: Vec<RawFd> = pairs.iter().map(|(a, _)| a.as_raw_fd()).collect();
        expected.sort_unstable();
        assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), expected);
        // And every one is re-armed (through the ring, flushing again) and reported again.
        assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), expected);
    }

    /// A register/unregister pair before any wait never reaches the kernel:
    /// the queued poll is taken back out of the ring.
    #[test]
    fn register_then_unregister_before_a_wait_sends_nothing() {
        let Some(mut selector) = small(4) else { return };
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let (c, _d) = UnixStream::pair().expect("socketpair");
        selector.register(a.as_raw_fd(), Events::WRITE, "a").expect("register");
        selector.register(c.as_raw_fd(), Events::WRITE, "c").expect("register");
        assert_eq!(selector.mechanism.ring.unsubmitted(), 2);
        // Taking back the first moves the second into its place.
        selector.unregister(a.as_raw_fd()).expect("unregister");
        assert_eq!(selector.mechanism.ring.unsubmitted(), 1);
        assert_eq!(
            selector.mechanism.slots.get(c.as_raw_fd()).map(|slot| slot.state),
            Some(State::Queued(0))
        );
        selector.unregister(c.as_raw_fd()).expect("unregister");
        assert_eq!(selector.mechanism.ring.unsubmitted(), 0, "nothing is left for the kernel");
        let started = std::time::Instant::now();
        assert!(ready_fds(&mut selector, Duration::from_millis(20)).is_empty());
        assert!(started.elapsed() >= Duration::from_millis(20));
        // The ring stays consistent: registering again works.
        selector.register(c.as_raw_fd(), Events::WRITE, "c again").expect("register");
        assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), [c.as_raw_fd()]);
    }

    /// A modify before the poll is sent rewrites the queued request; after,
    /// the old poll is cancelled and its late completion is never reported.
    #[test]
    fn modify_rewrites_queued_polls_and_replaces_armed_ones() {
        let Some(mut selector) = small(8) else { return };
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        let fd = a.as_raw_fd();
        selector.register(fd, Events::WRITE, "w").expect("register");
        selector.modify(fd, Events::READ, "r").expect("modify while queued");
        assert_eq!(selector.mechanism.ring.unsubmitted(), 1, "rewritten in place, not queued twice");
        assert!(ready_fds(&mut selector, Duration::ZERO).is_empty(), "READ only, nothing to read");
        assert_eq!(selector.mechanism.slots.get(fd).map(|slot| slot.state), Some(State::Armed));
        selector.modify(fd, Events::WRITE, "w").expect("modify while armed");
        let generation = selector.mechanism.slots.get(fd).map(|slot| slot.generation);
        assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), [fd]);
        assert_eq!(selector.mechanism.slots.get(fd).map(|slot| slot.generation), generation);
        selector.modify(fd, Events::READ, "r").expect("modify back");
        b.write_all(b"x").expect("write");
        let reported: Vec<_> =
            selector.select(Some(Duration::from_secs(5))).expect("select").map(|(k, e)| (k.fd, e)).collect();
        assert_eq!(reported, [(fd, Events::READ)]);
    }

    /// A selector moved to another thread keeps working, even for the
    /// polls the first thread armed (the kernel finishes those on it).
    #[test]
    fn a_selector_moved_to_another_thread_keeps_working() {
        let Some(mut selector) = small(8) else { return };
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        let (c, _d) = UnixStream::pair().expect("socketpair");
        selector.register(a.as_raw_fd(), Events::READ, "a").expect("register");
        assert!(ready_fds(&mut selector, Duration::ZERO).is_empty(), "armed on this thread");
        let (a_fd, c_fd) = (a.as_raw_fd(), c.as_raw_fd());
        let mut selector = std::thread::spawn(move || {
            selector.register(c_fd, Events::WRITE, "c").expect("register on the new thread");
            assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), [c_fd]);
            selector.unregister(c_fd).expect("unregister");
            // `a`'s poll was armed by the first thread, which finishes it
            // when woken (it is blocked in `join`): a moment later than a
            // poll armed here would be, so this wait has nothing else to report.
            b.write_all(b"x").expect("write");
            assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), [a_fd]);
            selector
        })
        .join()
        .expect("the other thread");
        // And back on this thread.
        assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), [a_fd]);
        drop(c);
    }

    /// Polls armed by a thread that has since exited: the kernel cancels
    /// them when they are woken, and they are armed again, here.
    #[test]
    fn polls_of_an_exited_thread_are_armed_again() {
        let Some(selector) = small(8) else { return };
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        let a_fd = a.as_raw_fd();
        let mut selector = std::thread::spawn(move || {
            let mut selector = selector;
            selector.register(a_fd, Events::READ, "a").expect("register");
            assert!(ready_fds(&mut selector, Duration::ZERO).is_empty(), "armed by this thread");
            selector
        })
        .join()
        .expect("the arming thread");
        b.write_all(b"x").expect("write");
        assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), [a_fd]);
        assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), [a_fd], "and level-triggered");
    }

    /// The CPU time this thread has used.
    fn thread_cpu_time() -> Duration {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid timespec for the kernel to fill.
        crate::syscall::cvt(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) })
            .expect("clock_gettime");
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }

    /// A WRITE key whose peer shut down its sending side while our send
    /// buffer is full: POLLRDHUP alone must not make the wait spin.
    #[test]
    fn rdhup_alone_does_not_wake_a_write_key() {
        let Some(mut selector) = small(8) else { return };
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("non-blocking");
        b.set_nonblocking(true).expect("non-blocking");
        let chunk = [0u8; 65536];
        while a.write(&chunk).is_ok() {}
        b.shutdown(std::net::Shutdown::Write).expect("shutdown");
        selector.register(a.as_raw_fd(), Events::WRITE, "writer").expect("register");
        let wait = Duration::from_millis(200);
        let (started, cpu) = (std::time::Instant::now(), thread_cpu_time());
        assert!(ready_fds(&mut selector, wait).is_empty());
        let (elapsed, busy) = (started.elapsed(), thread_cpu_time() - cpu);
        assert!(elapsed >= wait);
        assert!(busy < wait / 4, "the wait spun: {busy:?} of CPU in {elapsed:?}");
        assert!(selector.mechanism.slots.get(a.as_raw_fd()).is_some_and(|slot| slot.quiet));
        // Room to write again: reported, and back to one-shot polls.
        let mut sink = vec![0u8; 1 << 20];
        while matches!(std::io::Read::read(&mut b, &mut sink), Ok(n) if n > 0) {}
        assert_eq!(ready_fds(&mut selector, Duration::from_secs(5)), [a.as_raw_fd()]);
        assert!(selector.mechanism.slots.get(a.as_raw_fd()).is_some_and(|slot| !slot.quiet));
        assert_eq!(
            ready_fds(&mut selector, Duration::from_secs(5)),
            [a.as_raw_fd()],
            "level-triggered again"
        );
    }
}
