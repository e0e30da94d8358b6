//! What every backend shares (CPython's `_BaseSelectorImpl`): argument checks,
//! the fd → key registry, the error rules of the contract, and the wait loop
//! that rounds, clamps and retries timeouts. A backend supplies only a
//! [`Mechanism`]: its syscalls and the translation of its event bits.

use std::fmt;
use std::io;
use std::os::unix::io::RawFd;
use std::slice;
use std::time::{Duration, Instant};

use crate::registry::Registry;
use crate::sys::is_interrupted;
use crate::{Backend, Events, Keys, Readiness, Selector, SelectorKey};

/// One kernel readiness mechanism: the part of a selector that differs
/// between `select(2)`, `poll(2)`, `epoll(7)` and `kqueue(2)`.
///
/// [`BaseSelector`] calls these only with arguments it has already checked:
/// `fd` is non-negative, `events` are non-empty and known, `add` is only
/// called for an fd not yet added, `modify` and `remove` only for one that was.
pub trait Mechanism: Sized {
    /// Which [`Backend`] this is.
    const BACKEND: Backend;

    /// Creates the kernel state (the epoll or kqueue fd, empty tables).
    ///
    /// # Errors
    ///
    /// The error of the creating syscall (`EMFILE`, `ENOMEM`, …).
    fn open() -> io::Result<Self>;

    /// Refuses an fd this mechanism can never watch (select: `fd ≥ FD_SETSIZE`).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) naming the fd and the limit.
    fn check_fd(fd: RawFd) -> io::Result<()> {
        let _ = fd;
        Ok(())
    }

    /// Starts watching `fd` for `events`.
    ///
    /// # Errors
    ///
    /// The kernel's refusal (`EBADF`, `EPERM`, …).
    fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()>;

    /// Changes the events of an fd from `old` to `new` (they differ).
    ///
    /// # Errors
    ///
    /// The kernel's refusal.
    fn modify(&mut self, fd: RawFd, old: Events, new: Events) -> io::Result<()>;

    /// Stops watching `fd`, which was added for `events`.
    ///
    /// # Errors
    ///
    /// The kernel's refusal (the caller ignores it: the fd may be closed).
    fn remove(&mut self, fd: RawFd, events: Events) -> io::Result<()>;

    /// Makes **one** kernel wait of at most `timeout` (`None`: no limit) and
    /// calls `on_ready` once per fd the kernel reported, merging what it said
    /// into one [`Readiness`]. `registered` is how many fds are watched, so
    /// buffers can hold every ready fd at once. Returns how many fds the kernel
    /// reported. Rounding up and clamping are the mechanism's job; retrying
    /// after `EINTR` or an early wake is the caller's.
    ///
    /// # Errors
    ///
    /// The kernel's error, `EINTR` included.
    fn wait<F: FnMut(RawFd, Readiness)>(
        &mut self,
        timeout: Option<Duration>,
        registered: usize,
        on_ready: F,
    ) -> io::Result<usize>;

    /// Releases the kernel state, reporting the error `Drop` would ignore.
    ///
    /// # Errors
    ///
    /// The error of `close(2)`.
    fn close(self) -> io::Result<()>;
}

/// A selector made of the shared bookkeeping and one [`Mechanism`].
///
/// You normally name it through its aliases: [`SelectSelector`](crate::SelectSelector),
/// [`PollSelector`](crate::PollSelector), `EpollSelector` (Linux, Android),
/// `KqueueSelector` (macOS, iOS, the BSDs) and [`DefaultSelector`](crate::DefaultSelector).
/// (Epoll and kqueue are not linked: each exists only on its own targets.)
pub struct BaseSelector<T, M> {
    pub(crate) registry: Registry<T>,
    pub(crate) mechanism: M,
    /// The last `select`'s result, reused so a warm `select` allocates nothing.
    ready: Vec<(RawFd, Events)>,
}

impl<T, M: Mechanism> BaseSelector<T, M> {
    /// Creates an empty selector.
    ///
    /// # Errors
    ///
    /// The error of creating the kernel handle, if the mechanism has one.
    pub fn new() -> io::Result<Self> {
        Ok(Self::with_mechanism(M::open()?))
    }

    /// An empty selector over a mechanism made some other way (tests make
    /// small ones).
    pub(crate) fn with_mechanism(mechanism: M) -> Self {
        BaseSelector { registry: Registry::new(), mechanism, ready: Vec::new() }
    }

    /// Waits once or more until something is ready or `timeout` has passed,
    /// handing each ready key to `sink`.
    ///
    /// The first wait is the whole story almost always, so it is inline and
    /// short; retrying after `EINTR` or an early wake lives in the cold
    /// [`wait_again`](Self::wait_again).
    #[inline]
    fn wait_until_ready<F: FnMut(&SelectorKey<T>, Events)>(
        &mut self,
        timeout: Option<Duration>,
        mut sink: F,
    ) -> io::Result<()> {
        // Read the clock only when a non-zero timeout must be honoured exactly:
        // the common `None` and zero cases cost nothing beyond the syscall.
        let deadline = match timeout {
            Some(d) if !d.is_zero() => Instant::now().checked_add(d),
            _ => None,
        };
        match self.wait_once(timeout, &mut sink) {
            // The kernel said something (even if it was all masked out):
            // report it rather than spin on events nobody asked for.
            Ok(reported) if reported > 0 => Ok(()),
            Ok(_) if is_zero(timeout) => Ok(()),
            Ok(_) => self.wait_again(timeout, deadline, &mut sink),
            Err(err) if is_interrupted(&err) => self.wait_again(timeout, deadline, &mut sink),
            Err(err) => Err(err),
        }
    }

    /// Interrupted, or woke with nothing: waits again for what is left of
    /// `timeout`, as long as it takes.
    #[cold]
    #[inline(never)]
    fn wait_again<F: FnMut(&SelectorKey<T>, Events)>(
        &mut self,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
        sink: &mut F,
    ) -> io::Result<()> {
        loop {
            let remaining = match (timeout, deadline) {
                (None, _) => None,
                (Some(d), _) if d.is_zero() => Some(Duration::ZERO),
                (Some(_), Some(deadline)) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(()),
                },
                // So far in the future that `Instant` cannot hold it: wait on.
                (Some(d), None) => Some(d),
            };
            // A closure of its own, so that the hot path's closure has one
            // caller and is inlined into the loop over the kernel's answer.
            match self.wait_once(remaining, &mut |key: &SelectorKey<T>, events| sink(key, events)) {
                Ok(reported) if reported > 0 => return Ok(()),
                Ok(_) if is_zero(remaining) => return Ok(()),
                Ok(_) => {}
                Err(err) if is_interrupted(&err) => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// One kernel wait, handing each reported fd that has a key, with its
    /// events masked by the key's, to `sink` (unless none are left).
    /// Returns how many fds the kernel reported.
    #[inline(always)]
    fn wait_once<F: FnMut(&SelectorKey<T>, Events)>(
        &mut self,
        timeout: Option<Duration>,
        sink: &mut F,
    ) -> io::Result<usize> {
        let BaseSelector { registry, mechanism, .. } = self;
        mechanism.wait(
            timeout,
            registry.len(),
            #[inline(always)]
            |fd, readiness| deliver(registry, sink, fd, readiness),
        )
    }
}

/// Hands `fd`'s readiness to `sink` if it has a key and any of its events
/// are left once masked. Always inline, as are the closures around it: one
/// loop over the kernel's answer, no call per fd.
#[inline(always)]
fn deliver<T, F: FnMut(&SelectorKey<T>, Events)>(
    registry: &Registry<T>,
    sink: &mut F,
    fd: RawFd,
    readiness: Readiness,
) {
    if let Some(key) = registry.get(fd) {
        let events = readiness.reported(key.events);
        if !events.is_empty() {
            sink(key, events);
        }
    }
}

#[inline]
fn is_zero(timeout: Option<Duration>) -> bool {
    matches!(timeout, Some(d) if d.is_zero())
}

#[cold]
#[inline(never)]
fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cold]
#[inline(never)]
fn not_registered(fd: RawFd) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("fd {fd} is not registered"))
}

#[cold]
#[inline(never)]
fn invalid_events(fd: RawFd, events: Events) -> io::Error {
    invalid_input(format!("invalid events {:#x} for fd {fd}: expected READ, WRITE or both", events.bits()))
}

#[inline]
fn check_events(fd: RawFd, events: Events) -> io::Result<()> {
    if events.is_empty() || events.bits() & !Events::all().bits() != 0 {
        return Err(invalid_events(fd, events));
    }
    Ok(())
}

impl<T, M: Mechanism> Selector<T> for BaseSelector<T, M> {
    #[inline]
    fn register(&mut self, fd: RawFd, events: Events, data: T) -> io::Result<&SelectorKey<T>> {
        if fd < 0 {
            return Err(invalid_input(format!("invalid file descriptor {fd}")));
        }
        check_events(fd, events)?;
        M::check_fd(fd)?;
        if self.registry.get(fd).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("fd {fd} is already registered"),
            ));
        }
        self.mechanism.add(fd, events)?;
        Ok(self.registry.insert(SelectorKey { fd, events, data }))
    }

    #[inline]
    fn unregister(&mut self, fd: RawFd) -> io::Result<SelectorKey<T>> {
        let key = self.registry.remove(fd).ok_or_else(|| not_registered(fd))?;
        // The fd may already be closed (EBADF) or closed and reused (ENOENT):
        // either way the kernel no longer watches it for us.
        let _ = self.mechanism.remove(fd, key.events);
        Ok(key)
    }

    #[inline]
    fn modify(&mut self, fd: RawFd, events: Events, data: T) -> io::Result<&SelectorKey<T>> {
        let old = self.registry.get(fd).ok_or_else(|| not_registered(fd))?.events;
        check_events(fd, events)?;
        if events != old {
            if let Err(err) = self.mechanism.modify(fd, old, events) {
                // bpo-30014: after a failed modify the kernel's view is unknown,
                // so forget the key rather than keep one that may never fire.
                self.registry.remove(fd);
                let _ = self.mechanism.remove(fd, old);
                return Err(err);
            }
        }
        let key = self.registry.get_mut(fd).ok_or_else(|| not_registered(fd))?;
        key.events = events;
        key.data = data;
        Ok(key)
    }

    #[inline]
    fn select(&mut self, timeout: Option<Duration>) -> io::Result<Selected<'_, T>> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.reserve(self.registry.len());
        let waited = self.wait_until_ready(timeout, |key, events| ready.push((key.fd, events)));
        self.ready = ready;
        waited?;
        Ok(Selected { ready: self.ready.iter(), registry: &self.registry })
    }

    /// Hands each ready key to `on_ready` as the kernel's answer is read:
    /// nothing is stored, each key is looked up once.
    #[inline]
    fn select_each<F>(&mut self, timeout: Option<Duration>, mut on_ready: F) -> io::Result<usize>
    where
        F: FnMut(&SelectorKey<T>, Events),
    {
        let mut count = 0;
        self.wait_until_ready(
            timeout,
            #[inline(always)]
            |key, events| {
                count += 1;
                on_ready(key, events);
            },
        )?;
        Ok(count)
    }

    fn get_key(&self, fd: RawFd) -> Option<&SelectorKey<T>> {
        self.registry.get(fd)
    }

    fn keys(&self) -> Keys<'_, T> {
        self.registry.keys()
    }

    fn len(&self) -> usize {
        self.registry.len()
    }

    fn backend(&self) -> Backend {
        M::BACKEND
    }

    fn close(self) -> io::Result<()> {
        self.mechanism.close()
    }
}

impl<T, M: Mechanism> fmt::Debug for BaseSelector<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("backend", &M::BACKEND)
            .field("registered", &self.registry.len())
            .finish()
    }
}

/// The ready fds of one [`select`](Selector::select): `(key, events)` pairs,
/// one per fd. It borrows the selector, so collect what you need before
/// registering, modifying or unregistering.
pub struct Selected<'a, T> {
    ready: slice::Iter<'a, (RawFd, Events)>,
    registry: &'a Registry<T>,
}

impl<'a, T> Iterator for Selected<'a, T> {
    type Item = (&'a SelectorKey<T>, Events);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // Every fd in `ready` had a key when it was pushed, and the registry
        // cannot change while this borrow lives, so the lookup always succeeds.
        let &(fd, events) = self.ready.next()?;
        self.registry.get(fd).map(|key| (key, events))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.ready.len(), Some(self.ready.len()))
    }
}

impl<T> ExactSizeIterator for Selected<'_, T> {}

impl<T> fmt::Debug for Selected<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ready.as_slice()).finish()
    }
}
