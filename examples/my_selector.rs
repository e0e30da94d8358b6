//! Write your own backend: a selector over `ppoll(2)` in one screen of
//! code, then every rule of the selector contract checked on it.
//!
//! ```text
//! cargo run --example my_selector                      # every rule, each printed as it passes
//! cargo run --example my_selector -- --rule timeout_is_never_early
//! ```
//!
//! A backend is a `Mechanism`: its kernel calls and the meaning of its
//! event bits. `BaseSelector<T, YourMechanism>` adds everything backends
//! share (argument checks, the fd → key table, the error rules, timeouts
//! that never wake early, `EINTR` retries), so the mechanism below is all
//! there is to write. Then `tulip_selectors::conformance::check_all` (the
//! `conformance` feature) runs every rule this project's own backends pass.
//!
//! The exercise: break something (forget `POLLNVAL`, drop the `remove`,
//! round the timeout down) and see which rule catches it.

mod common;

use common::{Arg, Cli};

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = "usage: my_selector [--rule NAME]\n\n\
Builds a selector over ppoll(2) from a Mechanism and the shared BaseSelector,\n\
and checks it with the conformance kit, printing each rule as it passes.\n  \
--rule NAME       check one rule only (names: tulip_selectors::conformance::RULES)\n  \
-h, --help        show this help";

#[cfg(not(target_vendor = "apple"))]
mod ppoll {
    use std::io;
    use std::os::unix::io::RawFd;
    use std::ptr;
    use std::time::Duration;

    use tulip_selectors::mechanism::{clamped, cvt, Mechanism, Readiness};
    use tulip_selectors::{Backend, BaseSelector, Events};

    /// The `ppoll` mechanism: the array of `pollfd`s handed to the kernel.
    pub struct Ppoll {
        fds: Vec<libc::pollfd>,
    }

    /// The `poll` bits for `events`.
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

    impl Mechanism for Ppoll {
        /// It behaves as poll does (ppoll is poll with a `timespec` and a
        /// signal mask), so the kit follows poll's capabilities.
        const BACKEND: Backend = Backend::Poll;

        fn open() -> io::Result<Self> {
            Ok(Ppoll { fds: Vec::new() })
        }

        fn add(&mut self, fd: RawFd, events: Events) -> io::Result<()> {
            self.fds.push(libc::pollfd { fd, events: interest(events), revents: 0 });
            Ok(())
        }

        fn modify(&mut self, fd: RawFd, _old: Events, new: Events) -> io::Result<()> {
            for entry in self.fds.iter_mut().filter(|entry| entry.fd == fd) {
                entry.events = interest(new);
            }
            Ok(())
        }

        fn remove(&mut self, fd: RawFd, _events: Events) -> io::Result<()> {
            self.fds.retain(|entry| entry.fd != fd);
            Ok(())
        }

        fn wait<F: FnMut(RawFd, Readiness)>(
            &mut self,
            timeout: Option<Duration>,
            _registered: usize,
            mut on_ready: F,
        ) -> io::Result<usize> {
            // Nanoseconds: no rounding needed. A huge timeout is clamped.
            let timespec = timeout.map(|t| {
                let t = clamped(t);
                libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as _ }
            });
            let timespec_ptr = timespec.as_ref().map_or(ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `fds` points at `fds.len()` initialised pollfds the kernel
            // may update; `timespec_ptr` is null or points at a live timespec;
            // a null signal mask leaves the mask alone.
            let count = cvt(unsafe {
                libc::ppoll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, timespec_ptr, ptr::null())
            })?;
            for entry in self.fds.iter().filter(|entry| entry.revents != 0) {
                on_ready(
                    entry.fd,
                    Readiness {
                        readable: entry.revents & (libc::POLLIN | libc::POLLPRI) != 0,
                        writable: entry.revents & libc::POLLOUT != 0,
                        // A closed fd (POLLNVAL) or a hang-up is reported to its owner.
                        error: entry.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
                    },
                );
            }
            Ok(count as usize)
        }

        fn close(self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The whole selector: the shared core over the mechanism above.
    pub type MySelector<T> = BaseSelector<T, Ppoll>;
}

#[cfg(not(target_vendor = "apple"))]
fn main() {
    use ppoll::MySelector;

    let mut cli = Cli::new("my_selector", USAGE);
    let mut rule = None;
    while let Some(arg) = cli.next() {
        match &arg {
            Arg::Flag(flag) if flag == "--rule" => rule = Some(cli.value(flag)),
            _ => cli.unknown(&arg),
        }
    }
    match rule {
        Some(name) => {
            if !tulip_selectors::conformance::RULES.iter().any(|rule| rule.name() == name) {
                cli.fail(&format!("no rule named {name:?}"));
            }
            tulip_selectors::conformance::check(&name, MySelector::<String>::new);
            println!("ok: {name}");
        }
        // The one line: every rule, a panic naming each one that fails.
        None => drop(tulip_selectors::conformance::check_all(MySelector::<String>::new)),
    }
}

/// Apple systems have no `ppoll(2)`: the exercise needs Linux or a BSD.
#[cfg(target_vendor = "apple")]
fn main() {
    let mut cli = Cli::new("my_selector", USAGE);
    if let Some(arg) = cli.next() {
        if !matches!(&arg, Arg::Flag(flag) if flag == "--rule") {
            cli.unknown(&arg);
        }
    }
    eprintln!("my_selector: ppoll(2) does not exist on this system; try Linux or a BSD");
    std::process::exit(1);
}
