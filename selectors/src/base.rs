//! What every backend shares (CPython's `_BaseSelectorImpl`): argument checks,
//! the fd → key registry, the error rules of the contract, and the wait loop
//! that rounds, clamps and retries timeouts. A backend supplies only a
//! [`Mechanism`]: its syscalls and the translation of its event bits.

use std::fmt;
use std::io;
use std::os::unix::io::RawFd;
use std::slice;
use std::time::{Duration, Instant};

use crate::fork::{current_generation, fork_generation, inherited_error};
use crate::mechanism::Readiness;
use crate::registry::Registry;
use crate::syscall::is_interrupted;
use crate::transcript::{self, Observer, Syscall};
use crate::{Backend, Events, Keys, Selector, SelectorKey};

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

    /// For the transcript: the kernel object this mechanism made and how,
    /// `("epoll_create1(EPOLL_CLOEXEC)", fd)`; `None` if it has none.
    fn describe_open(&self) -> Option<(&'static str, RawFd)> {
        None
    }

    /// For the transcript: the system calls `change` makes (`add`,
    /// `modify` or `remove`), in the kernel's words:
    /// `epoll_ctl(7, ADD, fd=5, EPOLLIN)`. Empty if it makes none.
    fn describe_change(&self, change: Change) -> Vec<String> {
        let _ = change;
        Vec::new()
    }

    /// For the transcript: the kernel wait `wait` just made with
    /// `timeout`, and what the kernel answered beyond the count, in its
    /// words: `("epoll_wait(7, max=4, timeout=10)", "[fd 5 EPOLLIN]")`.
    /// `reported` is what `wait` handed on (all of it, masked or not).
    fn describe_wait(&self, timeout: Option<Duration>, reported: &[(RawFd, Readiness)]) -> (String, String) {
        let answer: Vec<String> =
            reported.iter().map(|(fd, readiness)| format!("fd {fd} {readiness:?}")).collect();
        (format!("wait({timeout:?})"), format!("[{}]", answer.join(", ")))
    }

    /// In a child process made by `fork()`: replaces the kernel state the
    /// child shares with its parent by a fresh one of its own, empty
    /// ([`BaseSelector`] then adds every registration again). The default
    /// opens a new mechanism and drops the inherited one, which closes the
    /// child's copy of its fds and nothing else.
    ///
    /// # Errors
    ///
    /// The error of creating the new kernel state.
    fn after_fork(&mut self) -> io::Result<()> {
        *self = Self::open()?;
        Ok(())
    }
}

/// A change of registration, as [`Mechanism::describe_change`] is asked about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `add(fd, events)`.
    Add(RawFd, Events),
    /// `modify(fd, old, new)`.
    Modify(RawFd, Events, Events),
    /// `remove(fd, events)`.
    Remove(RawFd, Events),
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
    /// The fork generation the kernel state belongs to (see `fork.rs`).
    born: u64,
    /// Who hears of every system call (see `transcript.rs`).
    observer: Option<Box<dyn Observer>>,
}

impl<T, M: Mechanism> BaseSelector<T, M> {
    /// Creates an empty selector.
    ///
    /// # Errors
    ///
    /// The error of creating the kernel handle, if the mechanism has one.
    pub fn new() -> io::Result<Self> {
        let born = fork_generation();
        let mut selector = BaseSelector {
            registry: Registry::new(),
            mechanism: M::open()?,
            ready: Vec::new(),
            born,
            observer: None,
        };
        if let Some(observer) = transcript::from_environment() {
            selector.set_observer(Some(observer));
            if let Some((call, fd)) = selector.mechanism.describe_open() {
                selector.note(call, &fd.to_string(), "new()");
            }
        }
        Ok(selector)
    }

    /// Tells the observer of one system call, if there is one.
    #[cold]
    fn note(&mut self, call: &str, result: &str, operation: &str) {
        if let Some(observer) = &mut self.observer {
            observer.syscall(&Syscall { call, result, operation });
        }
    }

    /// Passes on `outcome`, the result of `change`, after telling the
    /// observer (if any) of the calls it made.
    #[inline(always)]
    fn noted(&mut self, change: Change, outcome: io::Result<()>) -> io::Result<()> {
        if self.observer.is_some() {
            self.note_change(change, &outcome);
        }
        outcome
    }

    /// Tells the observer of the calls a change of registration made.
    #[cold]
    #[inline(never)]
    fn note_change(&mut self, change: Change, outcome: &io::Result<()>) {
        let result = transcript::result(outcome.as_ref().map(|()| 0));
        let operation = match change {
            Change::Add(fd, events) => format!("register(fd {fd}, {events})"),
            Change::Modify(fd, _, events) => format!("modify(fd {fd}, {events})"),
            Change::Remove(fd, _) => format!("unregister(fd {fd})"),
        };
        for call in self.mechanism.describe_change(change) {
            self.note(&call, &result, &operation);
        }
    }

    /// `true` in a child process made by `fork()` since this selector was
    /// made (or last given [`after_fork`](Selector::after_fork)): its kernel
    /// state is the parent's, and it must not touch it.
    #[inline]
    fn inherited(&self) -> bool {
        // `new` installed the handler (fork_generation), so a load will do.
        self.born != current_generation()
    }

    /// Refuses to touch kernel state that belongs to the parent process.
    #[inline]
    fn check_not_inherited(&self) -> io::Result<()> {
        if self.inherited() {
            return Err(inherited_error("selector"));
        }
        Ok(())
    }

    /// Waits once or more until something is ready or `timeout` has passed,
    /// handing each ready key to `sink`.
    ///
    /// The first wait is the whole story almost always, so it is inline and
    /// short; retrying after `EINTR` or an early wake lives in the cold
    /// [`wait_again`](Self::wait_again).
    #[inline]
    fn wait_until_ready<const NOTED: bool, F: FnMut(&SelectorKey<T>, Events)>(
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
        match self.wait_once::<NOTED, F>(timeout, timeout, &mut sink) {
            // The kernel said something (even if it was all masked out):
            // report it rather than spin on events nobody asked for.
            Ok(reported) if reported > 0 => Ok(()),
            Ok(_) if is_zero(timeout) => Ok(()),
            Ok(_) => self.wait_again::<NOTED, F>(timeout, deadline, &mut sink),
            Err(err) if is_interrupted(&err) => self.wait_again::<NOTED, F>(timeout, deadline, &mut sink),
            Err(err) => Err(err),
        }
    }

    /// Interrupted, or woke with nothing: waits again for what is left of
    /// `timeout`, as long as it takes.
    #[cold]
    #[inline(never)]
    fn wait_again<const NOTED: bool, F: FnMut(&SelectorKey<T>, Events)>(
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
            match self.wait_once::<NOTED, _>(remaining, timeout, &mut |key: &SelectorKey<T>, events| {
                sink(key, events)
            }) {
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
    /// Returns how many fds the kernel reported. `NOTED`: the observer
    /// hears of it (a copy of the wait loop compiled apart, so the plain
    /// one carries no test); `asked` is the timeout the caller of `select`
    /// gave (a retry waits less).
    #[inline(always)]
    fn wait_once<const NOTED: bool, F: FnMut(&SelectorKey<T>, Events)>(
        &mut self,
        timeout: Option<Duration>,
        asked: Option<Duration>,
        sink: &mut F,
    ) -> io::Result<usize> {
        if NOTED {
            return self.wait_once_noted(timeout, asked, sink);
        }
        let BaseSelector { registry, mechanism, .. } = self;
        mechanism.wait(
            timeout,
            registry.len(),
            #[inline(always)]
            |fd, readiness| deliver(registry, sink, fd, readiness),
        )
    }

    /// [`wait_once`](Self::wait_once) with an observer: the same wait, then
    /// the observer hears of it in the kernel's words.
    #[cold]
    #[inline(never)]
    fn wait_once_noted<F: FnMut(&SelectorKey<T>, Events)>(
        &mut self,
        timeout: Option<Duration>,
        asked: Option<Duration>,
        sink: &mut F,
    ) -> io::Result<usize> {
        let BaseSelector { registry, mechanism, .. } = self;
        let mut reported = Vec::new();
        let waited = mechanism.wait(timeout, registry.len(), |fd, readiness| {
            reported.push((fd, readiness));
            deliver(registry, sink, fd, readiness);
        });
        let (call, answer) = self.mechanism.describe_wait(timeout, &reported);
        let result = match &waited {
            Ok(count) if answer.is_empty() || answer == "[]" => count.to_string(),
            Ok(count) => format!("{count} {answer}"),
            Err(err) => transcript::result::<usize>(Err(err)),
        };
        let operation = match asked {
            None => "select(None)".to_owned(),
            Some(d) => format!("select({d:?})"),
        };
        self.note(&call, &result, &operation);
        waited
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
        self.check_not_inherited()?;
        if self.registry.get(fd).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("fd {fd} is already registered"),
            ));
        }
        let added = self.mechanism.add(fd, events);
        self.noted(Change::Add(fd, events), added)?;
        Ok(self.registry.insert(SelectorKey { fd, events, data }))
    }

    #[inline]
    fn unregister(&mut self, fd: RawFd) -> io::Result<SelectorKey<T>> {
        let key = self.registry.remove(fd).ok_or_else(|| not_registered(fd))?;
        // The fd may already be closed (EBADF) or closed and reused (ENOENT):
        // either way the kernel no longer watches it for us. In a forked
        // child the watch is the parent's: it stays.
        if !self.inherited() {
            let removed = self.mechanism.remove(fd, key.events);
            let _ = self.noted(Change::Remove(fd, key.events), removed);
        }
        Ok(key)
    }

    #[inline]
    fn modify(&mut self, fd: RawFd, events: Events, data: T) -> io::Result<&SelectorKey<T>> {
        let old = self.registry.get(fd).ok_or_else(|| not_registered(fd))?.events;
        check_events(fd, events)?;
        if events != old {
            self.check_not_inherited()?;
            let modified = self.mechanism.modify(fd, old, events);
            if let Err(err) = self.noted(Change::Modify(fd, old, events), modified) {
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
        self.check_not_inherited()?;
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.reserve(self.registry.len());
        let sink = |key: &SelectorKey<T>, events| ready.push((key.fd, events));
        let waited = if self.observer.is_some() {
            self.wait_until_ready::<true, _>(timeout, sink)
        } else {
            self.wait_until_ready::<false, _>(timeout, sink)
        };
        self.ready = ready;
        waited?;
        Ok(Selected { ready: self.ready.iter(), registry: &self.registry })
    }

    /// Hands each ready key to `on_ready` as the kernel's answer is read:
    /// nothing is stored, each key is looked up once.
    #[inline]
    fn select_each(
        &mut self,
        timeout: Option<Duration>,
        on_ready: &mut dyn FnMut(&SelectorKey<T>, Events),
    ) -> io::Result<usize> {
        self.check_not_inherited()?;
        let mut count = 0;
        let sink = |key: &SelectorKey<T>, events| {
            count += 1;
            on_ready(key, events);
        };
        if self.observer.is_some() {
            self.wait_until_ready::<true, _>(timeout, sink)?;
        } else {
            self.wait_until_ready::<false, _>(timeout, sink)?;
        }
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

    fn close(mut self) -> io::Result<()> {
        let open = self.mechanism.describe_open();
        let mut observer = self.observer.take();
        let closed = self.mechanism.close();
        if let (Some(observer), Some((_, fd))) = (&mut observer, open) {
            let result = transcript::result(closed.as_ref().map(|()| 0));
            observer.syscall(&Syscall {
                call: &format!("close({fd})"),
                result: &result,
                operation: "close()",
            });
        }
        closed
    }

    fn set_observer(&mut self, observer: Option<Box<dyn Observer>>) {
        self.observer = observer;
    }

    /// A fresh kernel object for this process, with every key registered
    /// again; a no-op in the process that made the selector.
    fn after_fork(&mut self) -> io::Result<()> {
        if !self.inherited() {
            return Ok(());
        }
        self.mechanism.after_fork()?;
        self.born = fork_generation();
        let keys: Vec<(RawFd, Events)> = self.registry.keys().map(|key| (key.fd, key.events)).collect();
        let mut first_error = None;
        for (fd, events) in keys {
            if let Err(err) = self.mechanism.add(fd, events) {
                // As after a refused register: no key is kept for it.
                self.registry.remove(fd);
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
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
