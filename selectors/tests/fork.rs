//! Selectors across `fork()` (libuv's `test-fork.c`, polling#37): in the
//! child, an inherited selector leaves the parent's kernel state alone
//! (`unregister` makes no `EPOLL_CTL_DEL`, `select` is refused), and after
//! `after_fork` it works on state of its own. One test, so no other test
//! thread is running while the process forks.

use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tulip_selectors::mechanism::cvt;
use tulip_selectors::{Backend, Events, Selector, Waker};

const BOUND: Duration = Duration::from_secs(5);

/// Forks; the child runs `child` and exits with its result (0: passed),
/// without unwinding or running destructors; the parent gets that status.
fn in_child(child: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    // SAFETY: fork(2); the child only runs `child`, then _exit.
    let pid = cvt(unsafe { libc::fork() }).map_err(|err| format!("fork: {err}"))?;
    if pid == 0 {
        let code = match child() {
            Ok(()) => 0,
            Err(message) => {
                let _ = std::io::stderr().write_all(format!("child: {message}\n").as_bytes());
                1
            }
        };
        // SAFETY: ends the child at once, as a forked child of a threaded
        // process should.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is writable.
    cvt(unsafe { libc::waitpid(pid, &mut status, 0) }).map_err(|err| format!("waitpid: {err}"))?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("the child failed (status {status:#x})"))
    }
}

fn ready_fds(selector: &mut dyn Selector<&'static str>) -> Vec<&'static str> {
    match selector.select(Some(BOUND)) {
        Ok(ready) => ready.map(|(key, _)| key.data).collect(),
        Err(err) => panic!("select: {err}"),
    }
}

/// The child unregisters and drops its inherited copy: the parent's
/// registration is intact.
fn a_child_that_unregisters_leaves_the_parent_registered(backend: Backend) {
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut selector = backend.open::<&'static str>().unwrap();
    selector.register(b.as_raw_fd(), Events::READ, "b").unwrap();
    in_child(|| {
        let refused = selector.select(Some(Duration::ZERO)).map(|ready| ready.len());
        if refused.is_ok() {
            return Err("an inherited selector's select ran".into());
        }
        selector.unregister(b.as_raw_fd()).map_err(|err| format!("unregister: {err}"))?;
        // Dropped (closed) in the child, too.
        let fresh = backend.open::<&'static str>().map_err(|err| err.to_string())?;
        drop(std::mem::replace(&mut selector, fresh));
        Ok(())
    })
    .unwrap_or_else(|err| panic!("{backend}: {err}"));
    a.write_all(b"x").unwrap();
    assert_eq!(ready_fds(&mut *selector), ["b"], "{backend}: the parent's registration survived");
}

/// After `after_fork` the child's selector works, with the same keys.
fn after_fork_gives_the_child_a_selector_of_its_own(backend: Backend) {
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut selector = backend.open::<&'static str>().unwrap();
    selector.register(b.as_raw_fd(), Events::READ, "b").unwrap();
    let waker = Waker::new().unwrap();
    selector.register(waker.fd(), Events::READ, "waker").unwrap();
    in_child(|| {
        waker.after_fork().map_err(|err| format!("waker: {err}"))?;
        selector.after_fork().map_err(|err| format!("after_fork: {err}"))?;
        a.write_all(b"x").map_err(|err| err.to_string())?;
        let ready: Vec<_> =
            selector.select(Some(BOUND)).map_err(|err| err.to_string())?.map(|(key, _)| key.data).collect();
        if ready != ["b"] {
            return Err(format!("the child saw {ready:?}"));
        }
        let mut byte = [0];
        (&b).read_exact(&mut byte).map_err(|err| err.to_string())?;
        // The child's waker is its own now: waking it does not wake the parent.
        waker.wake().map_err(|err| err.to_string())?;
        let ready: Vec<_> =
            selector.select(Some(BOUND)).map_err(|err| err.to_string())?.map(|(key, _)| key.data).collect();
        if ready != ["waker"] {
            return Err(format!("after a wake the child saw {ready:?}"));
        }
        Ok(())
    })
    .unwrap_or_else(|err| panic!("{backend}: {err}"));
    // The parent: nothing is readable (the child read its byte), nor woken.
    let ready: Vec<_> =
        selector.select(Some(Duration::from_millis(50))).unwrap().map(|(key, _)| key.data).collect();
    assert!(ready.is_empty(), "{backend}: the parent saw {ready:?}");
    selector.after_fork().unwrap(); // a no-op in the process that made it
    a.write_all(b"y").unwrap();
    assert_eq!(ready_fds(&mut *selector), ["b"], "{backend}");
}

#[test]
fn selectors_across_fork() {
    for backend in Backend::available() {
        a_child_that_unregisters_leaves_the_parent_registered(backend);
        after_fork_gives_the_child_a_selector_of_its_own(backend);
    }
}
