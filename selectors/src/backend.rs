use std::fmt;
use std::io;
use std::str::FromStr;

use crate::{PollSelector, SelectSelector, Selector};

/// The kernel readiness mechanisms, by name.
///
/// ```
/// use tulip_selectors::Backend;
/// let backend: Backend = "EPOLL".parse()?;
/// assert_eq!(backend.to_string(), "epoll");
/// assert_eq!(Backend::available()[0], Backend::default());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `select(2)`: every Unix; fds below `FD_SETSIZE` only; O(highest fd) per call.
    Select,
    /// `poll(2)`: every Unix; O(registered fds) per call.
    Poll,
    /// `epoll(7)`: Linux and Android; O(ready fds) per call.
    Epoll,
    /// `kqueue(2)`: macOS, iOS and the BSDs; O(ready fds) per call.
    Kqueue,
    /// `io_uring(7)` poll requests: Linux 5.11+, where the kernel allows it;
    /// O(ready fds) per call, and no syscall to register, modify or unregister.
    IoUring,
}

impl Backend {
    /// Every backend, whether or not this target has it.
    pub const ALL: [Backend; 5] =
        [Backend::Select, Backend::Poll, Backend::Epoll, Backend::Kqueue, Backend::IoUring];

    /// The backends this target has, best first. io_uring comes last, and
    /// only where the kernel lets this process use it (asked once, on the
    /// first call: the sysctl `kernel.io_uring_disabled`, then a small ring,
    /// which fails on kernels without io_uring, under a seccomp filter, or
    /// without the features and opcodes the backend needs).
    pub fn available() -> Vec<Backend> {
        let mut backends = Vec::with_capacity(4);
        if cfg!(tulip_epoll) {
            backends.push(Backend::Epoll);
        }
        if cfg!(tulip_kqueue) {
            backends.push(Backend::Kqueue);
        }
        backends.extend([Backend::Poll, Backend::Select]);
        #[cfg(tulip_io_uring)]
        if crate::io_uring::probe().is_ok() {
            backends.push(Backend::IoUring);
        }
        backends
    }

    /// The backend [`DefaultSelector`](crate::DefaultSelector) uses here:
    /// the first of [`available`](Self::available), found without asking
    /// the kernel anything.
    #[allow(clippy::should_implement_trait)] // contract name; `Default` is implemented too
    pub fn default() -> Backend {
        if cfg!(tulip_epoll) {
            Backend::Epoll
        } else if cfg!(tulip_kqueue) {
            Backend::Kqueue
        } else {
            Backend::Poll
        }
    }

    /// Python's name for the backend: `"select"`, `"poll"`, `"epoll"`,
    /// `"kqueue"`, and `"io_uring"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Select => "select",
            Backend::Poll => "poll",
            Backend::Epoll => "epoll",
            Backend::Kqueue => "kqueue",
            Backend::IoUring => "io_uring",
        }
    }

    /// Opens a new selector of this backend, boxed so the choice can be made at run time.
    ///
    /// # Errors
    ///
    /// [`Unsupported`](io::ErrorKind::Unsupported) if this target lacks the
    /// backend (for io_uring: if this kernel does not let this process use
    /// it, with the reason); otherwise the error of creating its kernel handle.
    pub fn open<T: 'static>(self) -> io::Result<Box<dyn Selector<T>>> {
        match self {
            Backend::Select => Ok(Box::new(SelectSelector::<T>::new()?)),
            Backend::Poll => Ok(Box::new(PollSelector::<T>::new()?)),
            #[cfg(tulip_epoll)]
            Backend::Epoll => Ok(Box::new(crate::EpollSelector::<T>::new()?)),
            #[cfg(tulip_kqueue)]
            Backend::Kqueue => Ok(Box::new(crate::KqueueSelector::<T>::new()?)),
            #[cfg(tulip_io_uring)]
            Backend::IoUring => match crate::io_uring::probe() {
                Ok(()) => Ok(Box::new(crate::IoUringSelector::<T>::new()?)),
                Err(reason) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the io_uring backend is not available here: {reason}"),
                )),
            },
            #[allow(unreachable_patterns)] // reachable on targets lacking a backend
            unavailable => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the {unavailable} backend is not available on this platform"),
            )),
        }
    }
}

impl Default for Backend {
    fn default() -> Backend {
        Backend::default()
    }
}

impl fmt::Display for Backend {
    /// The name, honouring width, fill and alignment like a `str` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Backend {
    type Err = io::Error;

    /// Parses a backend name in any case.
    fn from_str(name: &str) -> io::Result<Backend> {
        Backend::ALL.into_iter().find(|b| b.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown backend {name:?}: expected select, poll, epoll, kqueue or io_uring"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for backend in Backend::ALL {
            assert_eq!(backend.to_string().parse::<Backend>().unwrap(), backend);
            assert_eq!(backend.to_string().to_uppercase().parse::<Backend>().unwrap(), backend);
        }
        let err = "devpoll".parse::<Backend>().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("devpoll"));
    }

    #[test]
    fn unavailable_backends_are_unsupported() {
        for backend in Backend::ALL {
            match backend.open::<()>() {
                Ok(selector) => {
                    assert!(Backend::available().contains(&backend));
                    assert_eq!(selector.backend(), backend);
                }
                Err(err) => {
                    assert!(!Backend::available().contains(&backend));
                    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
                }
            }
        }
    }
}
