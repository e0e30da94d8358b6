//! The Layer 1 contract of DESIGN.md, run for every backend this target
//! has through the conformance kit (`tulip_selectors::conformance`, the
//! `conformance` feature): the same rules any selector of your own is
//! checked with. `conformance_tests!` makes one `#[test]` per rule and
//! backend (`epoll::register_returns_the_key`, `io_uring::…`, `poll::…`,
//! `select::…`), so
//! a failure names both. The rules themselves live in
//! `selectors/src/conformance/`; this file only instantiates them, and
//! tests `Backend`.

#![warn(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

use tulip_selectors::conformance::support::shared;
use tulip_selectors::{Backend, Selector};

/// One module of the kit's tests per backend, each gated as its backend
/// is, and the list of the backends given one, gated the same way.
macro_rules! every_backend {
    ($($(#[$gate:meta])? $module:ident: $selector:ty => $backend:ident),* $(,)?) => {
        $( $(#[$gate])? tulip_selectors::conformance_tests!($module, <$selector>::new); )*
        /// The backends instantiated above.
        const INSTANTIATED: &[Backend] = &[$( $(#[$gate])? Backend::$backend ),*];
    };
}

every_backend! {
    #[cfg(tulip_epoll)] epoll: tulip_selectors::EpollSelector<String> => Epoll,
    #[cfg(tulip_kqueue)] kqueue: tulip_selectors::KqueueSelector<String> => Kqueue,
    poll: tulip_selectors::PollSelector<String> => Poll,
    select: tulip_selectors::SelectSelector<String> => Select,
}

// io_uring is built on every Linux, but the kernel may refuse it (too old,
// the `kernel.io_uring_disabled` sysctl, a seccomp filter): there its
// tests are skipped, saying why.
#[cfg(tulip_io_uring)]
tulip_selectors::conformance_tests!(
    io_uring,
    tulip_selectors::IoUringSelector::<String>::new,
    runs_here = match Backend::IoUring.open::<()>() {
        Ok(_) => Ok(()),
        Err(err) => Err(format!("this kernel refuses io_uring: {err}")),
    }
);

/// The modules above cover exactly the backends this target has: a
/// backend added to `Backend::available()` without a module here, or a
/// module whose gate disagrees with the selectors crate's, fails.
#[test]
fn every_available_backend_is_instantiated() {
    let mut available = Backend::available();
    let mut instantiated = INSTANTIATED.to_vec();
    // Built, but refused by this kernel: its tests skip, saying why.
    if cfg!(tulip_io_uring) && available.contains(&Backend::IoUring) {
        instantiated.push(Backend::IoUring);
    }
    if cfg!(not(tulip_io_uring)) {
        assert!(!available.contains(&Backend::IoUring), "io_uring is available but not built");
    }
    available.sort_by_key(|b| b.name());
    instantiated.sort_by_key(|b| b.name());
    assert_eq!(available, instantiated);
    if cfg!(not(tulip_io_uring)) {
        assert!(!Backend::available().contains(&Backend::IoUring));
    }
}

// ---------------------------------------------------------------- Backend

#[test]
fn backend_names_display_and_parse_in_any_case() {
    let names = [
        (Backend::Select, "select"),
        (Backend::Poll, "poll"),
        (Backend::Epoll, "epoll"),
        (Backend::Kqueue, "kqueue"),
        (Backend::IoUring, "io_uring"),
    ];
    assert_eq!(Backend::ALL.len(), names.len());
    for (backend, name) in names {
        assert!(Backend::ALL.contains(&backend));
        assert_eq!(backend.to_string(), name);
        assert_eq!(format!("[{backend}]"), format!("[{name}]"));
        for spelling in [name.to_owned(), name.to_uppercase(), mixed_case(name)] {
            assert_eq!(spelling.parse::<Backend>().expect(&spelling), backend);
        }
    }
    for bad in ["", "devpoll", "epoll ", " poll", "iocp", "selectt", "io-uring", "io_uring_"] {
        let err = bad.parse::<Backend>().expect_err(bad);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}");
    }
}

fn mixed_case(name: &str) -> String {
    name.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect()
}

#[test]
fn available_backends_start_with_the_default() {
    let available = Backend::available();
    assert_eq!(available[0], Backend::default());
    assert_eq!(<Backend as Default>::default(), Backend::default());
    assert!(available.contains(&Backend::Poll) && available.contains(&Backend::Select));
    let mut unique = available.clone();
    unique.dedup();
    assert_eq!(unique.len(), available.len());
    if cfg!(any(target_os = "linux", target_os = "android")) {
        assert_eq!(Backend::default(), Backend::Epoll);
        assert!(!available.contains(&Backend::Kqueue));
    }
    // io_uring, where the kernel allows it, is listed after every other.
    if let Some(position) = available.iter().position(|&b| b == Backend::IoUring) {
        assert_eq!(position, available.len() - 1, "{available:?}");
        assert_eq!(std::env::consts::OS, "linux", "io_uring is Linux's");
    }
}

#[test]
fn open_gives_each_available_backend_and_refuses_the_others() {
    let _shared = shared();
    for backend in Backend::ALL {
        match backend.open::<String>() {
            Ok(sel) => {
                assert!(Backend::available().contains(&backend), "{backend} opened but is not available");
                assert_eq!(sel.backend(), backend);
                assert!(sel.close().is_ok(), "close through a Box only drops it");
            }
            Err(err) => {
                assert!(!Backend::available().contains(&backend), "{backend}: {err}");
                assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
                assert!(err.to_string().contains(&backend.to_string()), "{err}");
            }
        }
    }
    if cfg!(any(target_os = "linux", target_os = "android")) {
        let err = Backend::Kqueue.open::<()>().map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    }
}

// ---------------------------------------------------------------- the kit itself

/// `check_all` runs every rule, and a selector that is not what it declares
/// fails exactly the rules that depend on the declaration: poll declared
/// as epoll (which asks the kernel at `register`, refuses regular files
/// and forgets closed fds).
#[test]
fn check_all_names_every_rule_that_fails() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use tulip_selectors::conformance::{check_all, check_all_with};
    use tulip_selectors::PollSelector;

    let report = check_all(PollSelector::<String>::new);
    assert_eq!(report.passed.len(), tulip_selectors::conformance::RULES.len());
    assert_eq!(report.capabilities, Backend::Poll.capabilities());

    let outcome = catch_unwind(AssertUnwindSafe(|| {
        check_all_with(Backend::Epoll.capabilities(), PollSelector::<String>::new)
    }));
    let payload = outcome.expect_err("poll is not epoll");
    let message = payload.downcast_ref::<String>().expect("a formatted message");
    let failed: Vec<&str> =
        message.lines().skip(1).map(|line| line.trim_start().split(':').next().unwrap_or_default()).collect();
    assert_eq!(
        failed,
        [
            "register_returns_the_key",
            "register_of_a_closed_fd",
            "register_of_a_regular_file",
            "modify_refused_by_the_os_removes_the_key",
            "fd_closed_while_registered",
            "random_sequences_match_the_model",
        ],
        "{message}"
    );
}
