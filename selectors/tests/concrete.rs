//! The concrete selector types (`SelectSelector`, `PollSelector`,
//! `EpollSelector`, `DefaultSelector`), used directly rather than through
//! `Backend::open`: a generic walk through the API, `close`, the kernel
//! handle's flags and lifetime, and boxing a concrete type as `dyn Selector`.
//! (The contract's rules, `select_each` and the I/O-safe forms among them,
//! run on the concrete types in `conformance.rs`.)

#![warn(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use tulip_selectors::{Backend, DefaultSelector, Events, PollSelector, SelectSelector, Selector};

/// Every method of the trait, called on a concrete `S` (static dispatch).
fn walk_through<S: Selector<String>>(mut sel: S, backend: Backend) {
    assert_eq!(sel.backend(), backend);
    assert!(sel.is_empty());
    let (a, mut b) = pair();
    let key = sel.register(fd(&a), Events::READ, data("a")).unwrap().clone();
    assert_eq!(sel.get_key(fd(&a)), Some(&key));
    assert_eq!(sel.keys().len(), 1);
    assert!(ready(&mut sel, Some(Duration::ZERO)).is_empty());
    b.write_all(b"x").unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(fd(&a), Events::READ, data("a"))]);
    sel.modify(fd(&a), Events::READ | Events::WRITE, data("both")).unwrap();
    assert_eq!(ready(&mut sel, Some(BOUND)), [(fd(&a), Events::all(), data("both"))]);
    assert_eq!(sel.unregister(fd(&a)).unwrap().data, "both");
    assert_eq!(sel.len(), 0);
    sel.register(fd(&a), Events::WRITE, data("left registered")).unwrap();
    sel.close().expect("close with a key still registered");
}

#[test]
fn select_selector() {
    let _shared = shared();
    walk_through(SelectSelector::<String>::new().unwrap(), Backend::Select);
}

#[test]
fn poll_selector() {
    let _shared = shared();
    walk_through(PollSelector::<String>::new().unwrap(), Backend::Poll);
}

#[test]
fn default_selector_is_the_default_backend() {
    let _shared = shared();
    walk_through(DefaultSelector::<String>::new().unwrap(), Backend::default());
}

#[test]
fn boxed_concrete_selectors_are_dyn_selectors() {
    let _shared = shared();
    let mut boxes: Vec<Box<dyn Selector<String>>> =
        vec![Box::new(SelectSelector::new().unwrap()), Box::new(PollSelector::new().unwrap())];
    #[cfg(tulip_epoll)]
    boxes.push(Box::new(tulip_selectors::EpollSelector::new().unwrap()));
    boxes.push(Box::new(DefaultSelector::new().unwrap()));
    for sel in boxes {
        let backend = sel.backend();
        walk_through(sel, backend);
    }
    // A Box of a concrete type is itself a selector of that type.
    walk_through(Box::new(PollSelector::<String>::new().unwrap()), Backend::Poll);
}

/// Selectors can move to another thread (an event loop may be built on one
/// thread and run on another). Checked when this file compiles, not as a
/// test: there is nothing for it to do at run time.
const _: () = {
    fn assert_send<S: Send>() {}
    let _ = assert_send::<SelectSelector<String>>;
    let _ = assert_send::<PollSelector<String>>;
    let _ = assert_send::<DefaultSelector<String>>;
    #[cfg(tulip_epoll)]
    let _ = assert_send::<tulip_selectors::EpollSelector<String>>;
    #[cfg(tulip_kqueue)]
    let _ = assert_send::<tulip_selectors::KqueueSelector<String>>;
};

#[cfg(tulip_epoll)]
mod epoll {
    use std::os::unix::io::{AsRawFd, RawFd};

    use super::*;
    use tulip_selectors::EpollSelector;

    #[test]
    fn epoll_selector() {
        let _shared = shared();
        walk_through(EpollSelector::<String>::new().unwrap(), Backend::Epoll);
    }

    /// What `/proc/self/fd/N` links to, if N is open.
    fn link_of(fd: RawFd) -> Option<String> {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).ok().map(|p| p.to_string_lossy().into_owned())
    }

    /// The epoll fd is close-on-exec, is an epoll instance, and is closed on
    /// drop. Exclusive, so no other test can take its number once it is closed.
    #[test]
    fn epoll_fd_is_cloexec_and_closed_on_drop() {
        let _exclusive = exclusive();
        let sel = EpollSelector::<String>::new().unwrap();
        let epfd = sel.as_raw_fd();
        assert!(epfd >= 0);
        assert!(is_cloexec(epfd), "the epoll fd must be close-on-exec");
        assert_eq!(link_of(epfd).as_deref(), Some("anon_inode:[eventpoll]"));
        drop(sel);
        assert!(!is_open(epfd), "drop must close the epoll fd");
        assert_eq!(link_of(epfd), None);
    }

    #[test]
    fn close_reports_success_and_releases_the_fd() {
        let _exclusive = exclusive();
        let mut sel = EpollSelector::<String>::new().unwrap();
        let (a, _b) = pair();
        sel.register(fd(&a), Events::READ, data("a")).unwrap();
        let epfd = sel.as_raw_fd();
        assert!(is_open(epfd));
        sel.close().expect("close");
        assert!(!is_open(epfd), "close must close the epoll fd");
    }

    /// Each selector has its own epoll instance.
    #[test]
    fn each_selector_owns_its_epoll_fd() {
        let _shared = shared();
        let one = EpollSelector::<String>::new().unwrap();
        let two = EpollSelector::<String>::new().unwrap();
        assert_ne!(one.as_raw_fd(), two.as_raw_fd());
    }

    /// An epoll selector can be nested in another one through its fd.
    #[test]
    fn epoll_fd_is_readable_when_an_inner_fd_is_ready() {
        let _shared = shared();
        let mut inner = EpollSelector::<String>::new().unwrap();
        let mut outer = PollSelector::<String>::new().unwrap();
        let (a, mut b) = pair();
        inner.register(fd(&a), Events::READ, data("a")).unwrap();
        outer.register(inner.as_raw_fd(), Events::READ, data("inner")).unwrap();
        assert!(ready(&mut outer, Some(Duration::ZERO)).is_empty());
        b.write_all(b"x").unwrap();
        assert_eq!(ready(&mut outer, Some(BOUND)), [(inner.as_raw_fd(), Events::READ, data("inner"))]);
        assert_eq!(ready(&mut inner, Some(BOUND)), [(fd(&a), Events::READ, data("a"))]);
    }
}

#[test]
fn select_and_poll_close_is_ok() {
    let _shared = shared();
    assert!(SelectSelector::<()>::new().unwrap().close().is_ok());
    assert!(PollSelector::<()>::new().unwrap().close().is_ok());
}

#[test]
fn debug_output_names_the_backend() {
    let _shared = shared();
    let sel = PollSelector::<String>::new().unwrap();
    let text = format!("{sel:?}");
    assert!(text.contains("Poll"), "{text}");
    let text = format!("{:?}", DefaultSelector::<String>::new().unwrap());
    assert!(text.to_lowercase().contains(&Backend::default().to_string()), "{text}");
}
