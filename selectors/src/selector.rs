use std::io;
use std::os::unix::io::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use crate::transcript::Observer;
use crate::{Backend, Events, Keys, Selected, SelectorKey};

/// A readiness selector: Python's `selectors.BaseSelector`.
///
/// Register file descriptors with the [`Events`] to watch and some data of
/// your own, then call [`select`](Selector::select) to wait until some of them
/// are ready. Every backend ([`SelectSelector`](crate::SelectSelector),
/// [`PollSelector`](crate::PollSelector), `EpollSelector` on Linux and Android,
/// `KqueueSelector` on macOS, iOS and the BSDs) behaves the same through this
/// trait, and `Box<dyn Selector<T>>` works too (see [`Backend::open`]).
///
/// ```
/// use std::io::Write;
/// use std::os::unix::{io::AsRawFd, net::UnixStream};
/// use std::time::Duration;
/// use tulip_selectors::{DefaultSelector, Events, Selector};
///
/// let (mut a, b) = UnixStream::pair()?;
/// let mut selector = DefaultSelector::new()?;
/// selector.register(b.as_raw_fd(), Events::READ, "b")?;
/// a.write_all(b"ping")?;
/// let ready: Vec<_> = selector.select(Some(Duration::from_secs(5)))?
///     .map(|(key, events)| (key.data, events))
///     .collect();
/// assert_eq!(ready, [("b", Events::READ)]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Selector<T> {
    /// Starts watching `fd` for `events`, with `data` attached.
    ///
    /// # Errors
    ///
    /// - [`InvalidInput`](io::ErrorKind::InvalidInput): `fd` is negative, `events` is
    ///   empty or has unknown bits, or (select backend) `fd` ≥ `FD_SETSIZE`.
    /// - [`AlreadyExists`](io::ErrorKind::AlreadyExists): `fd` is already registered.
    /// - Any error the kernel returns (such as `EBADF` from `epoll_ctl` for a
    ///   closed fd); nothing is registered then.
    fn register(&mut self, fd: RawFd, events: Events, data: T) -> io::Result<&SelectorKey<T>>;

    /// [`register`](Self::register) for an fd borrowed from its owner (a
    /// socket's `as_fd()`): the I/O-safe form, which cannot be handed a
    /// closed or made-up number. Prefer it whenever you hold the socket.
    ///
    /// Why it matters: an fd number is reused as soon as it is closed.
    /// `epoll` and `kqueue` watch the open file behind the number, `poll`
    /// and `select` the number itself; a registration made for a number
    /// that was closed (or that now names another file) watches the wrong
    /// thing, or nothing, without a word. The borrow proves the file is
    /// open *now*; the registration outlives it, so unregister before the
    /// owner closes the fd, as with the `RawFd` forms.
    ///
    /// # Errors
    ///
    /// As [`register`](Self::register).
    fn register_fd(&mut self, fd: BorrowedFd<'_>, events: Events, data: T) -> io::Result<&SelectorKey<T>> {
        self.register(fd.as_raw_fd(), events, data)
    }

    /// [`modify`](Self::modify) for a borrowed fd (see [`register_fd`](Self::register_fd)).
    ///
    /// # Errors
    ///
    /// As [`modify`](Self::modify).
    fn modify_fd(&mut self, fd: BorrowedFd<'_>, events: Events, data: T) -> io::Result<&SelectorKey<T>> {
        self.modify(fd.as_raw_fd(), events, data)
    }

    /// [`unregister`](Self::unregister) for a borrowed fd (see [`register_fd`](Self::register_fd)).
    ///
    /// # Errors
    ///
    /// As [`unregister`](Self::unregister).
    fn unregister_fd(&mut self, fd: BorrowedFd<'_>) -> io::Result<SelectorKey<T>> {
        self.unregister(fd.as_raw_fd())
    }

    /// Stops watching `fd` and returns its key.
    ///
    /// An fd that was closed (or even reused) before being unregistered is still
    /// removed: the kernel's complaint is ignored, as in CPython. Still,
    /// unregister *before* closing: epoll watches the open file, and if the
    /// file outlives the fd (a `dup`, a child process) nothing can remove that
    /// watch any more (see the `epoll` module).
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if `fd` is not registered.
    fn unregister(&mut self, fd: RawFd) -> io::Result<SelectorKey<T>>;

    /// Changes the events and data of a registered `fd`.
    ///
    /// With the same events only `data` is replaced, without a syscall.
    ///
    /// # Errors
    ///
    /// - [`NotFound`](io::ErrorKind::NotFound) if `fd` is not registered.
    /// - [`InvalidInput`](io::ErrorKind::InvalidInput) for empty or unknown events;
    ///   the key is left as it was.
    /// - Any error the kernel returns; the key is then **removed**, since the
    ///   kernel and the selector no longer agree on it (bpo-30014).
    fn modify(&mut self, fd: RawFd, events: Events, data: T) -> io::Result<&SelectorKey<T>>;

    /// Waits until at least one registered fd is ready, or `timeout` passes.
    ///
    /// `None` blocks; `Some(Duration::ZERO)` polls without blocking; `Some(d)`
    /// never returns sooner than `d` with nothing ready. Each ready fd appears
    /// once, with its events merged and masked by its registration; error and
    /// hang-up conditions count as ready for every registered event. A signal
    /// that interrupts the wait is absorbed (PEP 475). The result borrows the
    /// selector: collect what you need before calling back into it.
    ///
    /// # Errors
    ///
    /// Any error of the underlying syscall other than `EINTR`, such as `EBADF`
    /// from the select backend when a registered fd was closed.
    fn select(&mut self, timeout: Option<Duration>) -> io::Result<Selected<'_, T>>;

    /// [`select`](Self::select), handing each ready key and its events to
    /// `on_ready` instead of returning them; returns how many it was handed.
    /// The same wait, the same fds and events in the same order. The crate's
    /// selectors call `on_ready` as they read the kernel's answer, so nothing
    /// is stored and each key is looked up once: an event loop's dispatch.
    /// `on_ready` runs while the selector is borrowed: it cannot register,
    /// modify or unregister. A `dyn` callback, so that a
    /// `Box<dyn Selector<T>>` forwards it like every other method.
    ///
    /// # Errors
    ///
    /// Those of [`select`](Self::select); then `on_ready` was not called.
    fn select_each(
        &mut self,
        timeout: Option<Duration>,
        on_ready: &mut dyn FnMut(&SelectorKey<T>, Events),
    ) -> io::Result<usize> {
        let ready = self.select(timeout)?;
        let count = ready.len();
        for (key, events) in ready {
            on_ready(key, events);
        }
        Ok(count)
    }

    /// The key of `fd`, if it is registered.
    fn get_key(&self, fd: RawFd) -> Option<&SelectorKey<T>>;

    /// All keys, in no particular order (Python's `get_map()`).
    fn keys(&self) -> Keys<'_, T>;

    /// How many fds are registered.
    fn len(&self) -> usize;

    /// `true` when no fd is registered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which kernel mechanism this selector uses.
    fn backend(&self) -> Backend;

    /// Tells `observer` of every system call this selector makes from now
    /// on, in the kernel's words (`None`: stop); see
    /// [`transcript`](crate::transcript). The default (a selector of your
    /// own) drops it.
    fn set_observer(&mut self, observer: Option<Box<dyn Observer>>) {
        drop(observer);
    }

    /// In a child process made by `fork()`, gives this selector kernel
    /// state of its own, with the same registrations (libuv's
    /// `uv_loop_fork`). Until then an inherited selector refuses
    /// `register`, `modify` and `select`, and `unregister`, `close` and
    /// drop leave the parent's kernel state alone: epoll's interest list is
    /// shared with the parent, and an `EPOLL_CTL_DEL` in the child would
    /// remove the parent's registration. A no-op where nothing was
    /// inherited; the default does nothing.
    ///
    /// # Errors
    ///
    /// The error of creating the new kernel object or adding an fd to it
    /// (such an fd's key is dropped).
    fn after_fork(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Closes the kernel handle (if any), reporting the error that `Drop`
    /// would ignore. Through a `Box<dyn Selector<T>>` this can only drop it.
    ///
    /// # Errors
    ///
    /// The error of `close(2)` on the epoll or kqueue fd.
    fn close(self) -> io::Result<()>
    where
        Self: Sized;
}

impl<T, S: Selector<T> + ?Sized> Selector<T> for Box<S> {
    fn register(&mut self, fd: RawFd, events: Events, data: T) -> io::Result<&SelectorKey<T>> {
        (**self).register(fd, events, data)
    }
    fn unregister(&mut self, fd: RawFd) -> io::Result<SelectorKey<T>> {
        (**self).unregister(fd)
    }
    fn modify(&mut self, fd: RawFd, events: Events, data: T) -> io::Result<&SelectorKey<T>> {
        (**self).modify(fd, events, data)
    }
    fn select(&mut self, timeout: Option<Duration>) -> io::Result<Selected<'_, T>> {
        (**self).select(timeout)
    }
    fn select_each(
        &mut self,
        timeout: Option<Duration>,
        on_ready: &mut dyn FnMut(&SelectorKey<T>, Events),
    ) -> io::Result<usize> {
        (**self).select_each(timeout, on_ready)
    }
    fn get_key(&self, fd: RawFd) -> Option<&SelectorKey<T>> {
        (**self).get_key(fd)
    }
    fn keys(&self) -> Keys<'_, T> {
        (**self).keys()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn is_empty(&self) -> bool {
        (**self).is_empty()
    }
    fn backend(&self) -> Backend {
        (**self).backend()
    }
    fn after_fork(&mut self) -> io::Result<()> {
        (**self).after_fork()
    }
    fn set_observer(&mut self, observer: Option<Box<dyn Observer>>) {
        (**self).set_observer(observer)
    }
    /// A boxed selector may be unsized (`dyn Selector`), so it cannot be moved
    /// out to call its own `close`: dropping it closes the handle, ignoring errors.
    fn close(self) -> io::Result<()> {
        drop(self);
        Ok(())
    }
}
