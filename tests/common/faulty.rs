//! A selector of the tests' own: a real backend wrapped so that a test can
//! make `select` fail, panic or return `EINTR`, refuse `modify`, or record
//! the timeouts it is given. Shared by `with_selector.rs` (through
//! `common`) and `asyncio_port.rs` (by path, so that file needs nothing else).

#![allow(dead_code)] // each test binary uses its own subset

use std::cell::{Cell, RefCell};
use std::io;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::time::Duration;

use tulip::selectors::{Backend, Events, Keys, Selected, Selector, SelectorKey};
use tulip::{BaseSelectorEventLoop, IoHandlers};

/// What the next `select` does, once.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Fault {
    #[default]
    None,
    Error,
    Panic,
}

/// What the wrapping selector is told to do, and what it saw.
#[derive(Default)]
pub struct Faults {
    /// Selects so far.
    pub selects: Cell<u32>,
    /// The timeout each select was given.
    pub timeouts: RefCell<Vec<Option<Duration>>>,
    /// The next select fails or panics, once.
    pub next: Cell<Fault>,
    /// Fail every select after this many (`Some(0)`: all of them).
    pub fail_after: Cell<Option<u32>>,
    /// Return `EINTR` from this many selects first.
    pub eintr: Cell<u32>,
    /// Poll without blocking, whatever the timeout.
    pub no_wait: Cell<bool>,
    /// Refuse `modify` as the OS would: the key is dropped (Layer 1).
    pub refuse_modify: Cell<bool>,
    /// Refuse `modify` but keep the key (a selector that breaks Layer 1).
    pub refuse_modify_keep_key: Cell<bool>,
}

/// A real backend that does what its [`Faults`] say.
pub struct Faulty {
    inner: Box<dyn Selector<IoHandlers>>,
    faults: Rc<Faults>,
}

/// A loop over [`Faulty`] wrapping `backend`, and the faults to set.
pub fn faulty_loop(backend: Backend) -> (BaseSelectorEventLoop<Faulty>, Rc<Faults>) {
    let faults = Rc::new(Faults::default());
    let selector = Faulty { inner: backend.open().expect("Backend::open"), faults: Rc::clone(&faults) };
    (BaseSelectorEventLoop::with_selector(selector).expect("with_selector"), faults)
}

impl Selector<IoHandlers> for Faulty {
    fn register(
        &mut self,
        fd: RawFd,
        events: Events,
        data: IoHandlers,
    ) -> io::Result<&SelectorKey<IoHandlers>> {
        self.inner.register(fd, events, data)
    }
    fn unregister(&mut self, fd: RawFd) -> io::Result<SelectorKey<IoHandlers>> {
        self.inner.unregister(fd)
    }
    fn modify(
        &mut self,
        fd: RawFd,
        events: Events,
        data: IoHandlers,
    ) -> io::Result<&SelectorKey<IoHandlers>> {
        if self.faults.refuse_modify.get() {
            let _ = self.inner.unregister(fd);
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if self.faults.refuse_modify_keep_key.get() {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        self.inner.modify(fd, events, data)
    }
    fn select(&mut self, timeout: Option<Duration>) -> io::Result<Selected<'_, IoHandlers>> {
        let f = &self.faults;
        let n = f.selects.get();
        f.selects.set(n + 1);
        f.timeouts.borrow_mut().push(timeout);
        match f.next.replace(Fault::None) {
            Fault::None => {}
            Fault::Error => return Err(io::Error::other("injected select failure")),
            Fault::Panic => panic!("injected select panic"),
        }
        if f.eintr.get() > 0 {
            f.eintr.set(f.eintr.get() - 1);
            return Err(io::Error::from_raw_os_error(libc::EINTR));
        }
        if f.fail_after.get().is_some_and(|after| n >= after) {
            return Err(io::Error::other("injected select failure"));
        }
        let timeout = if f.no_wait.get() { Some(Duration::ZERO) } else { timeout };
        self.inner.select(timeout)
    }
    fn get_key(&self, fd: RawFd) -> Option<&SelectorKey<IoHandlers>> {
        self.inner.get_key(fd)
    }
    fn keys(&self) -> Keys<'_, IoHandlers> {
        self.inner.keys()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    fn close(self) -> io::Result<()> {
        self.inner.close()
    }
}
