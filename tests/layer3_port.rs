//! Layer 3 checked the way CPython's asyncio tests check it (test_futures,
//! test_tasks, test_sock_lowlevel, test_selector_events' transports),
//! written against the names of the Layer 3 API contract, on
//! `SelectorEventLoop` and on `new_event_loop(backend)` for every backend.
//!
//! The other Layer 3 test files check much of this already; the cases here
//! are the ported tests' own phrasing of it, and what those files leave out.

#[macro_use]
mod common;

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::mpsc;
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use common::{drop_flag, UnixPath};
use tulip::selectors::{Backend, Selector};
use tulip::{
    is_cancelled, AbstractEventLoop, BaseSelectorEventLoop, IoHandlers, Protocol, SelectorEventLoop, Server,
    Task, Transport,
};

/// The selector of a loop under test.
trait Sel: Selector<IoHandlers> + 'static {}
impl<T: Selector<IoHandlers> + 'static> Sel for T {}

type Lp<S> = BaseSelectorEventLoop<S>;

/// The longest one loop run may take in these tests.
const LIMIT: Duration = Duration::from_secs(5);
/// The longest one test case may take.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// Runs `test` on its own thread with the loop `make` builds there,
/// failing if it takes longer than [`CASE_LIMIT`] or if anything reaches
/// the loop's exception handler (a test expecting reports installs its own).
fn on_thread<S: Sel>(
    name: String,
    make: impl FnOnce() -> io::Result<Lp<S>> + Send + 'static,
    test: fn(Lp<S>),
) {
    let (done, finished) = mpsc::channel();
    let worker = thread::Builder::new()
        .name(format!("port-{name}"))
        .spawn(move || {
            let event_loop = make().expect("make the loop");
            let reports: Rc<RefCell<Vec<String>>> = Rc::default();
            let sink = Rc::clone(&reports);
            event_loop.set_exception_handler(Some(Box::new(move |_, context| {
                sink.borrow_mut().push(context.to_string());
            })));
            test(event_loop);
            let reports = reports.borrow();
            assert!(reports.is_empty(), "the loop reported: {reports:?}");
            let _ = done.send(());
        })
        .expect("spawn the test thread");
    match finished.recv_timeout(CASE_LIMIT) {
        Ok(()) => worker.join().expect("test thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the test thread ended without reporting"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: still running after {CASE_LIMIT:?}"),
    }
}

/// Runs `test` over `backend` through `tulip::new_event_loop`.
fn on_backend(backend: Backend, test: fn(tulip::DynSelectorEventLoop)) {
    if !Backend::available().contains(&backend) {
        // Only io_uring can be built and refused (an old kernel, the sysctl, seccomp).
        eprintln!("skipped: this kernel refuses {backend}");
        return;
    }
    on_thread(backend.to_string(), move || tulip::new_event_loop(backend), test);
}

/// Makes each case a test on `SelectorEventLoop` (`default_loop::case`)
/// and on every backend this target builds (`epoll::case`, …; a backend's
/// module exists only where it is built).
macro_rules! port_tests {
    ($($case:ident),* $(,)?) => {
        mod default_loop {
            $( #[test] fn $case() { super::on_thread("default".into(), tulip::SelectorEventLoop::new, super::$case) } )*
        }
        port_tests!(@backend select, Select, $($case),*);
        port_tests!(@backend poll, Poll, $($case),*);
        #[cfg(tulip_epoll)]
        port_tests!(@backend epoll, Epoll, $($case),*);
        #[cfg(tulip_kqueue)]
        port_tests!(@backend kqueue, Kqueue, $($case),*);
        #[cfg(tulip_io_uring)]
        port_tests!(@backend io_uring, IoUring, $($case),*);

        /// The modules above cover exactly the backends this target has.
        #[test]
        fn every_available_backend_is_tested() {
            let mut tested = vec![
                #[cfg(tulip_epoll)]
                epoll::BACKEND,
                #[cfg(tulip_kqueue)]
                kqueue::BACKEND,
                #[cfg(tulip_io_uring)]
                io_uring::BACKEND,
                poll::BACKEND,
                select::BACKEND,
            ];
            let mut available = Backend::available();
            // Built, but refused by this kernel: its tests skip, saying why.
            tested.retain(|backend| *backend != Backend::IoUring || available.contains(backend));
            tested.sort_by_key(|b| b.name());
            available.sort_by_key(|b| b.name());
            assert_eq!(tested, available);
        }
    };
    (@backend $module:ident, $variant:ident, $($case:ident),*) => {
        mod $module {
            /// The backend this module tests.
            pub const BACKEND: tulip::selectors::Backend = tulip::selectors::Backend::$variant;
            $( #[test] fn $case() { super::on_backend(BACKEND, super::$case) } )*
        }
    };
}

port_tests!(
    // test_futures
    future_result_state_machine,
    future_exception_state_machine,
    future_cancel_state_machine,
    done_callbacks_run_in_order_through_the_loop,
    done_callback_of_a_cancelled_future,
    cancelled_future_raises_in_the_awaiting_task,
    // test_tasks
    task_cancel_cancels_the_future_it_awaits,
    task_cancel_propagates_into_sock_recv,
    task_cancel_wakes_its_awaiters,
    task_awaiting_a_cancelled_task_gets_cancelled,
    tasks_interleave_at_their_yield_points,
    self_woken_task_is_polled_once_per_iteration,
    run_until_complete_inside_a_task_is_refused,
    run_until_complete_stopped_leaves_the_future_pending,
    wait_for_times_out_and_cancels_the_future,
    wait_for_zero_timeout,
    wait_for_cancelled_with_its_task,
    gather_keeps_argument_order_with_a_cancelled_member,
    // test_sock_lowlevel
    accept_connect_recv_sendall_over_ipv6,
    recv_gives_the_data_then_zero_at_eof,
    recv_waiting_when_the_peer_resets,
    sendall_large_buffer_to_a_slow_reader,
    cancelled_operations_release_the_socket,
    // test_selector_events: transports
    create_connection_resolves_after_connection_made,
    write_tries_the_socket_at_once,
    write_buffers_the_rest_and_flow_control_follows_it,
    pause_writing_only_above_the_high_water_mark,
    write_eof_flushes_then_half_closes,
    abort_drops_the_buffer_and_unregisters,
    connection_lost_exactly_once,
    eof_without_keep_open_closes,
    server_close_keeps_open_connections,
);

// ---------------------------------------------------------------------------
// Helpers

/// Runs `fut` under [`LIMIT`]; a hang fails the test.
fn run<S: Sel, F: Future>(lp: &Lp<S>, fut: F) -> F::Output {
    lp.run_until_complete(tulip::wait_for(lp, fut, LIMIT)).expect("run_until_complete").expect("in time")
}

/// Runs one loop iteration.
fn one_iteration<S: Sel>(lp: &Lp<S>) {
    lp.stop();
    lp.run_forever().unwrap();
}

/// Runs the loop a millisecond at a time until `done()`, at most [`LIMIT`].
fn run_until<S: Sel>(lp: &Lp<S>, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "still waiting for {what} after {LIMIT:?}");
        run(lp, tulip::sleep(lp, Duration::from_millis(1)));
    }
}

/// A future that is pending once, waking its task first (asyncio's `sleep(0)`).
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

fn set_sockopt(fd: i32, option: libc::c_int, value: libc::c_int) {
    // SAFETY: setsockopt reads one `c_int` from a valid pointer, its size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", io::Error::last_os_error());
}

/// What a [`Rec`] protocol saw.
#[derive(Default)]
struct RecLog {
    transport: Option<Transport>,
    data: Vec<u8>,
    events: Vec<String>,
    /// `eof_received`'s answer.
    keep_open: bool,
    /// Echo what arrives.
    echo: bool,
    /// The write buffer's size when `pause_writing`/`resume_writing` came.
    flow_sizes: Vec<usize>,
    /// Completed by `connection_lost`.
    lost: Option<tulip::Future<()>>,
}

type Log = Rc<RefCell<RecLog>>;

/// A protocol recording everything into a [`Log`].
struct Rec(Log);

impl Protocol for Rec {
    fn connection_made(&mut self, transport: Transport) {
        let mut log = self.0.borrow_mut();
        log.events.push("made".into());
        log.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        let mut log = self.0.borrow_mut();
        assert!(!data.is_empty(), "data_received with no data");
        log.data.extend_from_slice(data);
        if log.echo {
            log.transport.as_ref().unwrap().write(data).unwrap();
        }
    }

    fn eof_received(&mut self) -> bool {
        let mut log = self.0.borrow_mut();
        log.events.push("eof".into());
        log.keep_open
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        let mut log = self.0.borrow_mut();
        log.events.push(format!("lost:{:?}", error.map(|e| e.kind())));
        if let Some(lost) = &log.lost {
            let _ = lost.set_result(());
        }
    }

    fn pause_writing(&mut self) {
        let mut log = self.0.borrow_mut();
        log.events.push("pause".into());
        let size = log.transport.as_ref().unwrap().get_write_buffer_size();
        log.flow_sizes.push(size);
    }

    fn resume_writing(&mut self) {
        let mut log = self.0.borrow_mut();
        log.events.push("resume".into());
        let size = log.transport.as_ref().unwrap().get_write_buffer_size();
        log.flow_sizes.push(size);
    }
}

fn new_log<S: Sel>(lp: &Lp<S>) -> Log {
    Rc::new(RefCell::new(RecLog { lost: Some(lp.create_future()), ..RecLog::default() }))
}

fn events(log: &Log) -> Vec<String> {
    log.borrow().events.clone()
}

fn count(log: &Log, prefix: &str) -> usize {
    log.borrow().events.iter().filter(|e| e.starts_with(prefix)).count()
}

/// Waits for the `connection_lost` of `log`'s protocol.
fn wait_lost<S: Sel>(lp: &Lp<S>, log: &Log) {
    let lost = log.borrow().lost.clone().unwrap();
    run(lp, lost).unwrap();
}

/// A TCP transport to a plain listener, with its peer socket (blocking).
fn tcp_transport<S: Sel>(lp: &Lp<S>, log: &Log) -> (Transport, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let factory_log = Rc::clone(log);
    let (transport, _) = run(lp, lp.create_connection(addr, move || Rec(factory_log))).unwrap();
    let (peer, _) = listener.accept().unwrap();
    (transport, peer)
}

/// A Unix-domain transport to a plain listener, with its peer socket
/// (non-blocking). Unix socket buffers are small and fixed (no autotuning):
/// a write of a few MiB is always partly buffered while the peer does not read.
fn unix_transport<S: Sel>(lp: &Lp<S>, log: &Log) -> (Transport, UnixStream) {
    let path = UnixPath::new();
    let listener = UnixListener::bind(&path.0).unwrap();
    let factory_log = Rc::clone(log);
    let (transport, _) = run(lp, lp.create_unix_connection(&path.0, move || Rec(factory_log))).unwrap();
    let (peer, _) = listener.accept().unwrap();
    peer.set_nonblocking(true).unwrap();
    (transport, peer)
}

/// Reads `peer` through the loop until EOF.
fn read_to_eof<S: Sel, T: AsRawFd>(lp: &Lp<S>, peer: &T) -> Vec<u8> {
    run(lp, async {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = lp.sock_recv(peer, &mut buf).await?;
            if n == 0 {
                return io::Result::Ok(got);
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .unwrap()
}

// ---------------------------------------------------------------------------
// Step 1: the shapes the Layer 3 API contract writes, as a user would.

struct Quiet;
impl Protocol for Quiet {}

#[test]
fn guidance_shapes_on_selector_event_loop() -> io::Result<()> {
    let lp = SelectorEventLoop::new()?;
    let watchdog = common::Watchdog::new(&lp, Duration::from_secs(20));

    // Sockets: sock_connect(SocketAddr), sock_accept(&TcpListener) -> (TcpStream, SocketAddr).
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr: SocketAddr = listener.local_addr()?;
    let echoed: Vec<u8> = lp.run_until_complete(async {
        let client: TcpStream = lp.sock_connect(addr).await?;
        let (s, peer): (TcpStream, SocketAddr) = lp.sock_accept(&listener).await?;
        assert_eq!(peer, client.local_addr()?);
        lp.sock_sendall(&client, b"shape").await?;
        let mut buf = [0u8; 16];
        let n: usize = lp.sock_recv(&s, &mut buf).await?;
        tulip::sleep(&lp, Duration::from_millis(1)).await;
        io::Result::Ok(buf[..n].to_vec())
    })??;
    assert_eq!(echoed, b"shape");

    // Futures and tasks.
    let fut: tulip::Future<i32> = lp.create_future::<i32>();
    fut.set_result(3)?;
    assert_eq!(lp.run_until_complete(fut)??, 3);
    let task: Task<i32> = lp.create_task(async { 4 });
    assert_eq!(lp.run_until_complete(task)??, 4);

    // sleep and wait_for given `&Rc<loop>`, as a task holding its loop writes them.
    let lp = Rc::new(lp);
    let inner = Rc::clone(&lp);
    let task = lp.create_task(async move {
        tulip::sleep(&inner, Duration::from_millis(1)).await;
        let sub = inner.create_task(async { 5 });
        let five = sub.await?;
        tulip::wait_for(&inner, async move { five }, Duration::from_secs(1)).await
    });
    assert_eq!(lp.run_until_complete(task)???, 5);

    // Transports: create_server(addr, factory) -> Server; create_connection awaited.
    let server: Server = lp.create_server("127.0.0.1:0", || Quiet)?;
    let addr = server.local_addr()?.as_inet().expect("an inet address");
    let (transport, _protocol) = lp.run_until_complete(lp.create_connection(addr, || Quiet))??;
    let transport: Transport = transport;
    transport.write(b"hi")?;
    transport.close();
    server.close();

    // The Unix-domain twins.
    let path = UnixPath::new();
    let unix_server: Server = lp.create_unix_server(&path.0, || Quiet)?;
    let (unix_transport, _) = lp.run_until_complete(lp.create_unix_connection(&path.0, || Quiet))??;
    unix_transport.close();
    unix_server.close();
    let unix_listener = UnixListener::bind(&path.0)?;
    let (a, b) = lp.run_until_complete(async {
        let a: UnixStream = lp.sock_connect_unix(&path.0).await?;
        let (b, _addr): (UnixStream, std::os::unix::net::SocketAddr) = lp.sock_accept(&unix_listener).await?;
        io::Result::Ok((a, b))
    })??;
    drop((a, b));

    lp.run_until_complete(tulip::sleep(&lp, Duration::from_millis(2)))?;
    watchdog.disarm();
    lp.close()
}

// ---------------------------------------------------------------------------
// test_futures

fn future_result_state_machine<S: Sel>(lp: Lp<S>) {
    let fut = lp.create_future::<u32>();
    assert!(!fut.done() && !fut.cancelled());
    assert_eq!(fut.result().unwrap_err().kind(), io::ErrorKind::InvalidInput, "not done yet");
    assert_eq!(fut.exception().unwrap_err().kind(), io::ErrorKind::InvalidInput, "not done yet");
    fut.set_result(42).unwrap();
    assert!(fut.done() && !fut.cancelled());
    assert_eq!(fut.result().unwrap(), 42);
    assert!(fut.exception().unwrap().is_none());
    // Done: everything else is refused, the result stays.
    assert!(!fut.cancel(), "cancel of a done future returns false");
    assert!(!fut.cancelled());
    assert_eq!(fut.set_result(1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(fut.set_exception(io::Error::other("late")).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(fut.result().unwrap(), 42);
    assert_eq!(lp.run_until_complete(fut).unwrap().unwrap(), 42);
}

fn future_exception_state_machine<S: Sel>(lp: Lp<S>) {
    let fut = lp.create_future::<u32>();
    fut.set_exception(io::Error::from_raw_os_error(libc::ECONNRESET)).unwrap();
    assert!(fut.done() && !fut.cancelled());
    let err = fut.exception().unwrap().expect("the error");
    assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET));
    assert_eq!(fut.result().unwrap_err().raw_os_error(), Some(libc::ECONNRESET), "result() gives the error");
    assert!(!fut.cancel(), "cancel of a failed future returns false");
    assert_eq!(fut.set_result(1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    let awaited = lp.run_until_complete(fut).unwrap().unwrap_err();
    assert_eq!(awaited.kind(), io::ErrorKind::ConnectionReset);
}

fn future_cancel_state_machine<S: Sel>(lp: Lp<S>) {
    let fut = lp.create_future::<u32>();
    assert!(fut.cancel());
    assert!(fut.cancelled() && fut.done());
    assert!(is_cancelled(&fut.result().unwrap_err()));
    assert!(is_cancelled(&fut.exception().unwrap_err()));
    assert!(!fut.cancel(), "cancelled already");
    assert_eq!(fut.set_result(1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(fut.set_exception(io::Error::other("x")).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert!(fut.cancelled(), "still cancelled");
    assert!(is_cancelled(&lp.run_until_complete(fut).unwrap().unwrap_err()));
}

fn done_callbacks_run_in_order_through_the_loop<S: Sel>(lp: Lp<S>) {
    let order: Rc<RefCell<Vec<String>>> = Rc::default();
    let push = |what: String| {
        let order = Rc::clone(&order);
        move || order.borrow_mut().push(what)
    };
    let fut = lp.create_future::<u8>();
    let before = push("call_soon before".into());
    lp.call_soon(move |_| before());
    for i in 1..=3 {
        let order = Rc::clone(&order);
        fut.add_done_callback(move |f| order.borrow_mut().push(format!("cb{i}:{}", f.result().unwrap())));
    }
    fut.set_result(9).unwrap();
    assert!(order.borrow().is_empty(), "set_result calls no callback itself");
    let after = push("call_soon after".into());
    lp.call_soon(move |_| after());
    let ran = lp.stats().callbacks_run;
    one_iteration(&lp);
    assert_eq!(*order.borrow(), ["call_soon before", "cb1:9", "cb2:9", "cb3:9", "call_soon after"]);
    assert!(lp.stats().callbacks_run - ran >= 5, "each done callback is a loop callback");
    // Added to a done future: scheduled, not called on the spot.
    let order2 = Rc::clone(&order);
    fut.add_done_callback(move |f| order2.borrow_mut().push(format!("late:{}", f.result().unwrap())));
    assert_eq!(order.borrow().len(), 5);
    one_iteration(&lp);
    assert_eq!(order.borrow().last().unwrap(), "late:9");
    one_iteration(&lp);
    assert_eq!(order.borrow().len(), 6, "each callback runs once");
}

fn done_callback_of_a_cancelled_future<S: Sel>(lp: Lp<S>) {
    let seen: Rc<RefCell<Vec<(bool, bool)>>> = Rc::default();
    let fut = lp.create_future::<u8>();
    let sink = Rc::clone(&seen);
    fut.add_done_callback(move |f| {
        sink.borrow_mut().push((f.cancelled(), is_cancelled(&f.result().unwrap_err())));
    });
    assert!(fut.cancel());
    assert!(seen.borrow().is_empty(), "cancel calls no callback itself");
    one_iteration(&lp);
    assert_eq!(*seen.borrow(), [(true, true)]);
}

fn cancelled_future_raises_in_the_awaiting_task<S: Sel>(lp: Lp<S>) {
    // test_cancel_inner_future: the awaiting task gets the cancellation.
    let fut = lp.create_future::<u32>();
    let awaited = fut.clone();
    let task = lp.create_task(async move { awaited.await.map(|v| v + 1) });
    one_iteration(&lp);
    assert!(!task.done(), "the task waits for the future");
    assert!(fut.cancel());
    let outcome = run(&lp, task.clone()).expect("the task itself ran to its end");
    assert!(is_cancelled(&outcome.unwrap_err()));
    assert!(task.done());
    assert!(fut.cancelled());
}

// ---------------------------------------------------------------------------
// test_tasks

fn task_cancel_cancels_the_future_it_awaits<S: Sel>(lp: Lp<S>) {
    // test_task_cancel_waiter_future: cancelling the task cancels the future
    // it waits on; a future it only holds is left alone.
    let fut = lp.create_future::<()>();
    let awaited = fut.clone();
    let held = lp.create_future::<()>();
    let kept = held.clone();
    let task = lp.create_task(async move {
        let _kept = kept;
        awaited.await
    });
    one_iteration(&lp);
    assert!(task.cancel());
    assert!(!fut.done(), "cancel() acts at the task's next poll point, not inside the call");
    let err = lp.run_until_complete(task.clone()).unwrap().unwrap_err();
    assert!(is_cancelled(&err), "{err}");
    assert!(task.cancelled() && task.done());
    assert!(fut.cancelled(), "the future the task waited on was cancelled with it");
    assert!(!held.done(), "a future it never awaited stays pending");
    held.set_result(()).unwrap();
    assert_eq!(lp.pending_tasks(), 0);
}

fn task_cancel_propagates_into_sock_recv<S: Sel>(lp: Lp<S>) {
    let lp = Rc::new(lp);
    let (a, _b) = UnixStream::pair().unwrap();
    let a = Rc::new(a);
    let (inner, sock) = (Rc::clone(&lp), Rc::clone(&a));
    let task = lp.create_task(async move {
        let mut buf = [0u8; 8];
        inner.sock_recv(&sock, &mut buf).await
    });
    one_iteration(&lp);
    assert_eq!(lp.watched_fds(), 1, "the recv waits with a reader");
    assert!(task.cancel());
    let err = lp.run_until_complete(task).unwrap().unwrap_err();
    assert!(is_cancelled(&err), "{err}");
    assert_eq!(lp.watched_fds(), 0, "the cancelled recv left nothing registered");
    assert!(!lp.remove_reader(a.as_raw_fd()).unwrap());
}

fn task_cancel_wakes_its_awaiters<S: Sel>(lp: Lp<S>) {
    let lp = Rc::new(lp);
    let (dropped, guard) = drop_flag();
    let inner = Rc::clone(&lp);
    let sleeper = lp.create_task(async move {
        let _guard = guard;
        tulip::sleep(&inner, Duration::from_secs(3600)).await;
        1
    });
    let awaited = sleeper.clone();
    let joiner = lp.create_task(awaited);
    let canceller = sleeper.clone();
    lp.call_later(Duration::from_millis(5), move |_| assert!(canceller.cancel()));
    let start = Instant::now();
    let joined = run(&lp, joiner).expect("the joiner ran to its end");
    let took = start.elapsed();
    assert!(is_cancelled(&joined.unwrap_err()), "the awaiter got the cancellation");
    assert!(took >= Duration::from_millis(5) && took < Duration::from_secs(2), "{took:?}");
    assert!(sleeper.cancelled() && dropped.get());
    assert!(!sleeper.cancel(), "done now");
    assert_eq!(lp.pending_tasks(), 0);
}

fn task_awaiting_a_cancelled_task_gets_cancelled<S: Sel>(lp: Lp<S>) {
    let lp = Rc::new(lp);
    let inner_loop = Rc::clone(&lp);
    let inner = lp.create_task(async move {
        tulip::sleep(&inner_loop, Duration::from_secs(3600)).await;
        "never"
    });
    let awaited = inner.clone();
    let outer = lp.create_task(async move {
        let got = awaited.await;
        (got.map_err(|e| is_cancelled(&e)), "outer finished")
    });
    one_iteration(&lp);
    assert!(inner.cancel());
    let (got, finished) = run(&lp, outer.clone()).unwrap();
    assert_eq!(got, Err(true), "the inner task's cancellation reached the outer one");
    assert_eq!(finished, "outer finished");
    assert!(!outer.cancelled(), "the outer task handled it and ended normally");
}

fn tasks_interleave_at_their_yield_points<S: Sel>(lp: Lp<S>) {
    let order: Rc<RefCell<Vec<String>>> = Rc::default();
    let tasks: Vec<Task<()>> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let order = Rc::clone(&order);
            lp.create_task(async move {
                for step in 0..3 {
                    order.borrow_mut().push(format!("{name}{step}"));
                    yield_now().await;
                }
            })
        })
        .collect();
    for outcome in run(&lp, tulip::gather(tasks)) {
        outcome.unwrap();
    }
    assert_eq!(*order.borrow(), ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]);
}

fn self_woken_task_is_polled_once_per_iteration<S: Sel>(lp: Lp<S>) {
    let polls = Rc::new(Cell::new(0u32));
    let counter = Rc::clone(&polls);
    let task = lp.create_task(poll_fn(move |cx| {
        counter.set(counter.get() + 1);
        if counter.get() == 5 {
            return Poll::Ready(());
        }
        (0..100).for_each(|_| cx.waker().wake_by_ref());
        let clones: Vec<std::task::Waker> = (0..100).map(|_| cx.waker().clone()).collect();
        clones.into_iter().for_each(std::task::Waker::wake);
        Poll::Pending
    }));
    let iterations = lp.stats().iterations;
    one_iteration(&lp);
    assert_eq!(polls.get(), 1);
    one_iteration(&lp);
    assert_eq!(polls.get(), 2, "200 wakes, one poll, on the next iteration");
    lp.run_until_complete(task).unwrap().unwrap();
    assert_eq!(polls.get(), 5);
    assert!(lp.stats().iterations - iterations >= 5, "one poll per iteration");
}

fn run_until_complete_inside_a_task_is_refused<S: Sel>(lp: Lp<S>) {
    let lp = Rc::new(lp);
    let inner = Rc::clone(&lp);
    let task =
        lp.create_task(async move { inner.run_until_complete(async { 1 }).map_err(|e| e.to_string()) });
    let refused = run(&lp, task).unwrap().unwrap_err();
    assert!(refused.contains("already running"), "{refused}");
    lp.close().unwrap();
    let err = lp.run_until_complete(async { 1 }).unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}

fn run_until_complete_stopped_leaves_the_future_pending<S: Sel>(lp: Lp<S>) {
    // Stopping is not cancelling: the future stays pending and can still complete.
    let fut = lp.create_future::<u8>();
    lp.call_soon(|lp| lp.stop());
    let err = lp.run_until_complete(fut.clone()).unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
    assert!(!fut.done());
    fut.set_result(8).unwrap();
    assert_eq!(lp.run_until_complete(fut).unwrap().unwrap(), 8);
}

fn wait_for_times_out_and_cancels_the_future<S: Sel>(lp: Lp<S>) {
    // test_wait_for: on timeout, TimedOut, never early, and the future it
    // waited for is cancelled.
    let fut = lp.create_future::<u8>();
    let start = Instant::now();
    let err = lp
        .run_until_complete(tulip::wait_for(&lp, fut.clone(), Duration::from_millis(10)))
        .unwrap()
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(took >= Duration::from_millis(10) && took < Duration::from_secs(2), "{took:?}");
    assert!(fut.cancelled(), "wait_for cancelled the future at its timeout");
    // Done in time: the result, and the future is not touched.
    let fut = lp.create_future::<u8>();
    let setter = fut.clone();
    lp.call_later(Duration::from_millis(1), move |_| setter.set_result(3).unwrap());
    let got = lp.run_until_complete(tulip::wait_for(&lp, fut.clone(), Duration::from_secs(10))).unwrap();
    assert_eq!(got.unwrap().unwrap(), 3);
    assert!(!fut.cancelled());
}

fn wait_for_zero_timeout<S: Sel>(lp: Lp<S>) {
    // A future that is ready at once wins even a zero timeout.
    let ready = lp.run_until_complete(tulip::wait_for(&lp, async { 7 }, Duration::ZERO)).unwrap();
    assert_eq!(ready.unwrap(), 7);
    let done = lp.create_future::<u8>();
    done.set_result(1).unwrap();
    assert_eq!(
        lp.run_until_complete(tulip::wait_for(&lp, done, Duration::ZERO)).unwrap().unwrap().unwrap(),
        1
    );
    // One that is not times out at once.
    let (dropped, guard) = drop_flag();
    let never = async move {
        let _guard = guard;
        pending::<()>().await
    };
    let start = Instant::now();
    let err = lp.run_until_complete(tulip::wait_for(&lp, never, Duration::ZERO)).unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(dropped.get(), "the inner future was dropped");
    assert!(start.elapsed() < Duration::from_secs(2));
}

fn wait_for_cancelled_with_its_task<S: Sel>(lp: Lp<S>) {
    // test_wait_for_cancellation: cancelling the task that waits cancels
    // the inner future and the timeout's timer.
    let lp = Rc::new(lp);
    let (dropped, guard) = drop_flag();
    let fut = lp.create_future::<u8>();
    let awaited = fut.clone();
    let inner_loop = Rc::clone(&lp);
    let task = lp.create_task(async move {
        let inner = async move {
            let _guard = guard;
            awaited.await
        };
        tulip::wait_for(&inner_loop, inner, Duration::from_secs(3600)).await
    });
    one_iteration(&lp);
    assert_eq!(lp.stats().timers_in_heap, 1, "the timeout's timer");
    let cancelled_timers = lp.stats().timers_cancelled;
    assert!(task.cancel());
    let err = lp.run_until_complete(task.clone()).unwrap().unwrap_err();
    assert!(is_cancelled(&err), "{err}");
    assert!(dropped.get(), "the inner future was dropped");
    assert!(fut.cancelled(), "and the future it awaited cancelled");
    assert_eq!(lp.stats().timers_cancelled - cancelled_timers, 1, "the timeout's timer was cancelled");
    assert_eq!(lp.pending_tasks(), 0);
}

fn gather_keeps_argument_order_with_a_cancelled_member<S: Sel>(lp: Lp<S>) {
    let lp = Rc::new(lp);
    let tasks: Vec<Task<u64>> = (0..4u64)
        .map(|i| {
            let inner = Rc::clone(&lp);
            lp.create_task(async move {
                // The last one finishes first.
                tulip::sleep(&inner, Duration::from_millis(2 * (4 - i))).await;
                i
            })
        })
        .collect();
    assert!(tasks[2].cancel());
    let outcomes = run(&lp, tulip::gather(tasks.clone()));
    let summary: Vec<Result<u64, bool>> =
        outcomes.into_iter().map(|o| o.map_err(|e| is_cancelled(&e))).collect();
    assert_eq!(summary, [Ok(0), Ok(1), Err(true), Ok(3)]);
    assert!(tasks[2].cancelled() && !tasks[3].cancelled());
}

// ---------------------------------------------------------------------------
// test_sock_lowlevel

/// Needs an IPv6 loopback: without one it fails, saying so, rather than
/// pass without testing anything.
fn accept_connect_recv_sendall_over_ipv6<S: Sel>(lp: Lp<S>) {
    let listener = TcpListener::bind("[::1]:0")
        .unwrap_or_else(|err| panic!("this case needs an IPv6 loopback, and binding [::1]:0 failed: {err}"));
    let addr = listener.local_addr().unwrap();
    let work = async {
        let client = lp.sock_connect(addr).await?;
        let (server, peer) = lp.sock_accept(&listener).await?;
        assert_eq!(peer, client.local_addr()?);
        assert!(peer.is_ipv6());
        lp.sock_sendall(&client, b"over v6").await?;
        let mut buf = [0u8; 16];
        let n = lp.sock_recv(&server, &mut buf).await?;
        io::Result::Ok(buf[..n].to_vec())
    };
    assert_eq!(run(&lp, work).unwrap(), b"over v6");
    drop(listener);
    let err = run(&lp, lp.sock_connect(addr)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(lp.watched_fds(), 0);
}

fn recv_gives_the_data_then_zero_at_eof<S: Sel>(lp: Lp<S>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let work = async {
        let client = lp.sock_connect(addr).await?;
        let (server, _) = lp.sock_accept(&listener).await?;
        lp.sock_sendall(&client, b"last words").await?;
        drop(client);
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            let n = lp.sock_recv(&server, &mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(lp.sock_recv(&server, &mut buf).await?, 0, "EOF again");
        io::Result::Ok(got)
    };
    assert_eq!(run(&lp, work).unwrap(), b"last words");
    assert_eq!(lp.watched_fds(), 0);
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + 'a>>;

fn recv_waiting_when_the_peer_resets<S: Sel>(lp: Lp<S>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let work = async {
        let client = lp.sock_connect(addr).await?;
        let (server, _) = lp.sock_accept(&listener).await?;
        let mut buf = [0u8; 8];
        let recv = lp.sock_recv(&client, &mut buf);
        let reset_later = async {
            tulip::sleep(&lp, Duration::from_millis(5)).await;
            common::reset(server);
            Ok(0)
        };
        let both: Vec<Boxed<'_, usize>> = vec![Box::pin(recv), Box::pin(reset_later)];
        tulip::gather(both).await.remove(0)
    };
    let err = run(&lp, work).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(lp.watched_fds(), 0);
}

fn sendall_large_buffer_to_a_slow_reader<S: Sel>(lp: Lp<S>) {
    const TOTAL: usize = 4 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    set_sockopt(listener.as_raw_fd(), libc::SO_RCVBUF, 32 << 10);
    let addr = listener.local_addr().unwrap();
    let reader = thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(LIMIT)).unwrap();
        let mut got = Vec::with_capacity(TOTAL);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = sock.read(&mut buf).unwrap();
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_micros(500)); // a slow reader
        }
    });
    let data = patterned(TOTAL);
    let polls = Cell::new(0u32);
    let work = async {
        let client = lp.sock_connect(addr).await?;
        set_sockopt(client.as_raw_fd(), libc::SO_SNDBUF, 32 << 10);
        let mut sendall = pin!(lp.sock_sendall(&client, &data));
        poll_fn(|cx| {
            polls.set(polls.get() + 1);
            sendall.as_mut().poll(cx)
        })
        .await?;
        client.shutdown(Shutdown::Write)?;
        io::Result::Ok(())
    };
    run(&lp, work).unwrap();
    assert!(polls.get() > 1, "sendall had to wait for the reader");
    let got = reader.join().unwrap();
    assert!(got == data, "the reader got {} bytes; byte-exact: {}", got.len(), got == data);
    assert_eq!(lp.watched_fds(), 0);
}

fn cancelled_operations_release_the_socket<S: Sel>(lp: Lp<S>) {
    let lp = Rc::new(lp);
    // A task blocked in sock_accept, cancelled.
    let listener = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    let (inner, sock) = (Rc::clone(&lp), Rc::clone(&listener));
    let accepting = lp.create_task(async move { inner.sock_accept(&sock).await.map(|(s, _)| s) });
    one_iteration(&lp);
    assert_eq!(lp.watched_fds(), 1);
    accepting.cancel();
    assert!(is_cancelled(&run(&lp, accepting).unwrap_err()));
    assert_eq!(lp.watched_fds(), 0);
    assert!(!lp.remove_reader(listener.as_raw_fd()).unwrap());
    // The listener is free for the next accept.
    let (client, server) = run(&lp, async {
        let client = lp.sock_connect(addr).await?;
        let (server, _) = lp.sock_accept(&listener).await?;
        io::Result::Ok((client, server))
    })
    .unwrap();
    // A sendall to a full socket that times out.
    set_sockopt(client.as_raw_fd(), libc::SO_SNDBUF, 32 << 10);
    let big = vec![5u8; 8 << 20];
    let err = lp
        .run_until_complete(tulip::wait_for(&*lp, lp.sock_sendall(&client, &big), Duration::from_millis(10)))
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(lp.watched_fds(), 0);
    assert!(!lp.remove_writer(client.as_raw_fd()).unwrap());
    // The socket is free for the next sendall once the peer reads.
    server.set_nonblocking(true).unwrap();
    let drained = run(&lp, async {
        let send = async {
            lp.sock_sendall(&client, b"after").await?;
            client.shutdown(Shutdown::Write)?;
            Ok(Vec::new())
        };
        let recv = async {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = lp.sock_recv(&server, &mut buf).await?;
                if n == 0 {
                    return Ok(got);
                }
                got.extend_from_slice(&buf[..n]);
            }
        };
        let both: Vec<Boxed<'_, Vec<u8>>> = vec![Box::pin(send), Box::pin(recv)];
        let mut outcomes = tulip::gather(both).await;
        outcomes.pop().unwrap()
    })
    .unwrap();
    assert!(drained.ends_with(b"after"), "the next sendall went through");
    assert_eq!(lp.watched_fds(), 0);
}

// ---------------------------------------------------------------------------
// test_selector_events: transports

fn create_connection_resolves_after_connection_made<S: Sel>(lp: Lp<S>) {
    let log = new_log(&lp);
    let (transport, peer) = tcp_transport(&lp, &log);
    assert_eq!(events(&log), ["made"], "connection_made ran before create_connection returned");
    let theirs = log.borrow().transport.clone().unwrap();
    assert_eq!(theirs.local_addr().unwrap().as_inet(), transport.local_addr().unwrap().as_inet());
    assert_eq!(transport.peer_addr().unwrap().as_inet(), Some(peer.local_addr().unwrap()));
    assert!(!transport.is_closing() && transport.is_reading());
    transport.close();
    wait_lost(&lp, &log);
}

fn write_tries_the_socket_at_once<S: Sel>(lp: Lp<S>) {
    let log = new_log(&lp);
    let (transport, mut peer) = tcp_transport(&lp, &log);
    assert_eq!(lp.watched_fds(), 1, "reading");
    transport.write(b"immediate").unwrap();
    assert_eq!(transport.get_write_buffer_size(), 0, "the socket took it all: nothing buffered");
    // The peer has it without the loop running.
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = [0u8; 16];
    let n = peer.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"immediate");
    one_iteration(&lp);
    assert_eq!(lp.watched_fds(), 1, "no writer was needed");
    assert_eq!(events(&log), ["made"], "no flow control for a small write");
    // The other way still works.
    peer.write_all(b"back").unwrap();
    run_until(&lp, "the data", || log.borrow().data == b"back");
    transport.close();
    wait_lost(&lp, &log);
    assert_eq!(peer.read(&mut buf).unwrap(), 0, "closed: the peer reads EOF");
}

fn write_buffers_the_rest_and_flow_control_follows_it<S: Sel>(lp: Lp<S>) {
    let log = new_log(&lp);
    let (transport, peer) = unix_transport(&lp, &log);
    transport.set_write_buffer_limits(Some(64 << 10), Some(16 << 10)).unwrap();
    let big = patterned(2 << 20);
    transport.write(&big).unwrap();
    let buffered = transport.get_write_buffer_size();
    assert!(buffered > 0 && buffered < big.len(), "part sent at once, the rest ({buffered}) buffered");
    one_iteration(&lp);
    assert_eq!(events(&log), ["made", "pause"], "above the high-water mark");
    // More writes while paused go behind the buffer, in order.
    let tail = patterned(1000);
    transport.write(&tail).unwrap();
    let mut expected = big.clone();
    expected.extend_from_slice(&tail);
    // The peer reads it all; the buffer drains and writing resumes.
    let got = run(&lp, async {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        while got.len() < expected.len() {
            let n = lp.sock_recv(&peer, &mut buf).await?;
            assert!(n > 0, "EOF before all the data");
            got.extend_from_slice(&buf[..n]);
        }
        io::Result::Ok(got)
    })
    .unwrap();
    assert!(got == expected, "all {} bytes, in order", expected.len());
    run_until(&lp, "resume_writing", || count(&log, "resume") == 1);
    assert_eq!(events(&log), ["made", "pause", "resume"]);
    let sizes = log.borrow().flow_sizes.clone();
    assert!(sizes[1] <= 16 << 10, "resumed at or below the low-water mark: {sizes:?}");
    assert_eq!(transport.get_write_buffer_size(), 0);
    one_iteration(&lp);
    assert_eq!(lp.watched_fds(), 1, "the writer is gone once the buffer is empty");
    transport.close();
    wait_lost(&lp, &log);
}

fn pause_writing_only_above_the_high_water_mark<S: Sel>(lp: Lp<S>) {
    let log = new_log(&lp);
    let (transport, _peer) = unix_transport(&lp, &log);
    transport.set_write_buffer_limits(Some(1 << 30), Some(0)).unwrap();
    transport.write(&vec![1u8; 2 << 20]).unwrap();
    one_iteration(&lp);
    let size = transport.get_write_buffer_size();
    assert!(size > 0, "the peer reads nothing: the rest stays buffered");
    // At the mark: no pause.
    transport.set_write_buffer_limits(Some(size), Some(0)).unwrap();
    one_iteration(&lp);
    assert_eq!(events(&log), ["made"], "a buffer at the high-water mark is not above it");
    // Just under the buffer's size: paused, by a loop callback.
    let size = transport.get_write_buffer_size();
    transport.set_write_buffer_limits(Some(size - 1), Some(0)).unwrap();
    assert_eq!(events(&log), ["made"], "not called from inside set_write_buffer_limits");
    one_iteration(&lp);
    assert_eq!(events(&log), ["made", "pause"]);
    // Paused already: more writes do not pause again.
    transport.write(&[2u8; 4096]).unwrap();
    one_iteration(&lp);
    assert_eq!(count(&log, "pause"), 1);
    // Aborted: the buffer goes, connection_lost comes, no resume.
    transport.abort();
    wait_lost(&lp, &log);
    assert_eq!(events(&log), ["made", "pause", "lost:None"]);
}

fn write_eof_flushes_then_half_closes<S: Sel>(lp: Lp<S>) {
    let log = new_log(&lp);
    let (transport, mut peer) = unix_transport(&lp, &log);
    let big = patterned(1 << 20);
    transport.write(&big).unwrap();
    assert!(transport.get_write_buffer_size() > 0);
    transport.write_eof().unwrap();
    assert!(!transport.is_closing(), "half-closed, not closing");
    assert_eq!(transport.write(b"x").unwrap_err().kind(), io::ErrorKind::InvalidInput, "no writes after EOF");
    // The peer reads every buffered byte, then the EOF.
    let got = read_to_eof(&lp, &peer);
    assert!(got == big, "{} bytes before the EOF, byte-exact: {}", got.len(), got == big);
    // Reading goes on after write_eof.
    peer.set_nonblocking(false).unwrap();
    peer.write_all(b"reply").unwrap();
    run_until(&lp, "the reply", || log.borrow().data == b"reply");
    assert!(!transport.is_closing());
    peer.shutdown(Shutdown::Write).unwrap();
    wait_lost(&lp, &log);
    let seen = events(&log);
    assert_eq!(&seen[seen.len() - 2..], ["eof", "lost:None"], "{seen:?}");
    assert_eq!(count(&log, "lost"), 1);
}

fn abort_drops_the_buffer_and_unregisters<S: Sel>(lp: Lp<S>) {
    let log = new_log(&lp);
    let (transport, peer) = unix_transport(&lp, &log);
    let big = vec![3u8; 2 << 20];
    transport.write(&big).unwrap();
    one_iteration(&lp);
    assert!(transport.get_write_buffer_size() > 0);
    transport.abort();
    assert_eq!(transport.get_write_buffer_size(), 0, "abort dropped the buffer at once");
    assert!(transport.is_closing());
    assert_eq!(transport.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    wait_lost(&lp, &log);
    assert_eq!(count(&log, "lost:None"), 1);
    assert_eq!(lp.watched_fds(), 0, "neither reader nor writer is left");
    let got = read_to_eof(&lp, &peer);
    assert!(got.len() < big.len(), "the buffered part was never sent");
}

fn connection_lost_exactly_once<S: Sel>(lp: Lp<S>) {
    // Closed and aborted over and over: one connection_lost(None).
    let log = new_log(&lp);
    let (transport, mut peer) = tcp_transport(&lp, &log);
    transport.close();
    transport.abort();
    transport.close();
    transport.abort();
    wait_lost(&lp, &log);
    run(&lp, tulip::sleep(&lp, Duration::from_millis(5)));
    assert_eq!(events(&log), ["made", "lost:None"]);
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(peer.read(&mut [0u8; 8]).unwrap(), 0);
    // Reset by the peer, then closed and aborted: one connection_lost, with the error.
    let log = new_log(&lp);
    let (transport, peer) = tcp_transport(&lp, &log);
    common::reset(peer);
    wait_lost(&lp, &log);
    transport.close();
    transport.abort();
    assert_eq!(transport.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    run(&lp, tulip::sleep(&lp, Duration::from_millis(5)));
    assert_eq!(events(&log), ["made", "lost:Some(ConnectionReset)"]);
    assert_eq!(transport.get_write_buffer_size(), 0);
    assert!(transport.is_closing());
    assert_eq!(lp.watched_fds(), 0);
}

fn eof_without_keep_open_closes<S: Sel>(lp: Lp<S>) {
    let log = new_log(&lp);
    let (transport, mut peer) = tcp_transport(&lp, &log);
    peer.write_all(b"bye").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    wait_lost(&lp, &log);
    assert_eq!(log.borrow().data, b"bye");
    assert_eq!(events(&log), ["made", "eof", "lost:None"]);
    assert!(transport.is_closing());
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(peer.read(&mut [0u8; 8]).unwrap(), 0, "the transport closed its side");
}

fn server_close_keeps_open_connections<S: Sel>(lp: Lp<S>) {
    let server_logs: Rc<RefCell<Vec<Log>>> = Rc::default();
    let made = Rc::clone(&server_logs);
    let server = lp
        .create_server("127.0.0.1:0", move || {
            let log = Rc::new(RefCell::new(RecLog { echo: true, ..RecLog::default() }));
            made.borrow_mut().push(Rc::clone(&log));
            Rec(log)
        })
        .unwrap();
    let addr = server.local_addr().unwrap().as_inet().unwrap();
    let log = new_log(&lp);
    let factory_log = Rc::clone(&log);
    let (transport, _) = run(&lp, lp.create_connection(addr, move || Rec(factory_log))).unwrap();
    run_until(&lp, "the server's connection_made", || server_logs.borrow().len() == 1);
    server.close();
    assert!(!server.is_serving());
    one_iteration(&lp);
    // The open connection still echoes.
    transport.write(b"still here").unwrap();
    run_until(&lp, "the echo", || log.borrow().data == b"still here");
    // New ones are refused.
    let err = run(&lp, lp.sock_connect(addr)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(server.connections_made(), 1);
    transport.close();
    wait_lost(&lp, &log);
    run_until(&lp, "the server side's close", || count(&server_logs.borrow()[0], "lost") == 1);
    assert_eq!(lp.watched_fds(), 0);
}
