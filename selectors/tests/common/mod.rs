//! Helpers shared by the integration tests of `tulip-selectors`: those of
//! the conformance kit (`tulip_selectors::conformance::support`: the
//! fd-table locks, socketpairs, high fds, signal handlers, assertions), so
//! that these tests and the kit's rules share one set of locks, and a
//! backend opened by name.

#![allow(dead_code)] // each test binary uses its own subset

pub use tulip_selectors::conformance::support::*;
use tulip_selectors::{Backend, Selector};

/// A new selector of `backend`, holding `String` data (not `Copy`, so data
/// must really move in and out).
pub fn open(backend: Backend) -> Box<dyn Selector<String>> {
    let selector = backend.open::<String>().unwrap_or_else(|e| panic!("open {backend}: {e}"));
    assert_eq!(selector.backend(), backend);
    selector
}

/// `true` if `backend` can be opened here; otherwise says why the test is
/// skipped (io_uring is compiled for Linux, and the kernel may still refuse it).
pub fn runnable(backend: Backend) -> bool {
    if Backend::available().contains(&backend) {
        return true;
    }
    let reason = backend.open::<()>().err().map(|err| err.to_string()).unwrap_or_default();
    println!("skipped: the {backend} backend is not available here: {reason}");
    false
}
