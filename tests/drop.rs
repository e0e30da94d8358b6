//! Dropping a loop frees everything, as `close()` does, even while queued
//! callbacks, timers and tasks hold objects that point back at it (a
//! `tulip::Future`, a `Transport`, a closed `Server`): 1,000 loops made
//! and dropped in that state leave the process's fds and heap as they were.
//!
//! The heap is measured exactly, by a counting allocator: this test binary
//! has one test, so nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tulip::selectors::Backend;
use tulip::{AbstractEventLoop, Protocol, Transport};

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count()).unwrap_or(0)
}

/// Keeps its transport: a protocol and its transport point at each other.
struct Keep(Option<Transport>);

impl Protocol for Keep {
    fn connection_made(&mut self, transport: Transport) {
        self.0 = Some(transport);
    }
}

/// One loop left in the state that leaked before: a queued callback holds
/// a future and a transport, a timer holds the future, a task awaits it,
/// and a closed server waits for the loop to stop listening. Then dropped,
/// not closed. (A task holding an `Rc` of its own loop is another matter:
/// that cycle keeps the loop from being dropped at all, and only `close`
/// breaks it.)
fn make_and_drop(backend: Backend) {
    let lp = tulip::new_event_loop(backend).unwrap();
    let server = lp.create_server(SocketAddr::from(([127, 0, 0, 1], 0)), || Keep(None)).unwrap();
    let addr = server.local_addr().unwrap().as_inet().unwrap();
    let (transport, protocol) =
        lp.run_until_complete(lp.create_connection(addr, || Keep(None))).unwrap().unwrap();
    server.close();
    let future = lp.create_future::<Rc<RefCell<Keep>>>();
    let (held, timer_held) = (future.clone(), future.clone());
    lp.call_soon(move |_| drop((held, transport, protocol)));
    lp.call_later(Duration::from_secs(3600), move |_| drop(timer_held));
    lp.create_task(future);
    drop(server);
    drop(lp);
}

#[test]
fn dropping_a_loop_frees_its_memory_and_fds_even_with_callbacks_queued() {
    for backend in Backend::available() {
        // Warm up: one-time allocations (thread-locals, the panic hook).
        for _ in 0..10 {
            make_and_drop(backend);
        }
        let (fds, heap) = (open_fds(), IN_USE.load(Ordering::Relaxed));
        for _ in 0..1000 {
            make_and_drop(backend);
        }
        let (fds_after, heap_after) = (open_fds(), IN_USE.load(Ordering::Relaxed));
        assert_eq!(fds_after, fds, "{backend}: fds leaked");
        // A few bytes of slack: a registry of loops per thread may hold a
        // dead entry until the next loop registers.
        assert!(heap_after - heap < 4096, "{backend}: {} bytes leaked over 1,000 loops", heap_after - heap);
    }
}
