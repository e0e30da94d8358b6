//! The event-loop workloads, written once and used twice: by the criterion
//! bench `event_loop.rs` (timings) and by the `loop_steps` example
//! (instruction counts under callgrind). Each workload exists three ways
//! where that makes sense: on tulip's loop, on the floor (a minimal loop
//! written here), and on tokio's current-thread runtime.
//!
//! Each `run` does one batch of work and returns a number derived from it,
//! so nothing is optimised away and every run can be checked.

#![allow(dead_code)] // each of the two users runs a subset

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tulip::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers, LoopHandle, Selector, SelectorEventLoop};
use tulip_benches::raw::RawEpoll;
use tulip_benches::{read_byte, socketpair, write_byte};

/// A fixed-seed linear congruential generator (Knuth's MMIX constants), so
/// every run schedules the same delays.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }

    /// A delay in `0..=max`, nanosecond-grained.
    pub fn delay_up_to(&mut self, max: Duration) -> Duration {
        Duration::from_nanos(self.next_u64() % (max.as_nanos() as u64 + 1))
    }
}

/// `n` delays up to 1 ms from the fixed seed.
pub fn timer_delays(n: usize) -> Vec<Duration> {
    let mut lcg = Lcg::new(0x0074_756c_6970);
    (0..n).map(|_| lcg.delay_up_to(Duration::from_millis(1))).collect()
}

fn new_loop() -> SelectorEventLoop {
    SelectorEventLoop::new().expect("event loop")
}

// ---------------------------------------------------------------------------
// call_soon batches

/// tulip: schedule `n` callbacks, then `stop(); run_forever()` runs exactly
/// the one iteration that runs them.
pub struct TulipBatch {
    event_loop: SelectorEventLoop,
    counter: Rc<Cell<u64>>,
}

impl TulipBatch {
    pub fn new() -> TulipBatch {
        TulipBatch { event_loop: new_loop(), counter: Rc::new(Cell::new(0)) }
    }

    #[inline(never)]
    pub fn run(&self, n: u64) -> u64 {
        for _ in 0..n {
            let counter = Rc::clone(&self.counter);
            self.event_loop.call_soon(move |_| counter.set(counter.get() + 1));
        }
        self.event_loop.stop();
        self.event_loop.run_forever().expect("run_forever");
        self.counter.get()
    }
}

type FloorCallback = Box<dyn FnOnce(&MinimalLoop)>;

/// The floor: the least a loop can be and still run queued closures in
/// turn. A `VecDeque` of boxed closures; one iteration runs those queued
/// when it begins (what they queue waits for the next), and a stop flag.
/// No handles, no cancellation, no panic catching, no timers, no I/O.
pub struct MinimalLoop {
    queue: RefCell<VecDeque<FloorCallback>>,
    stopping: Cell<bool>,
}

impl MinimalLoop {
    pub fn new() -> MinimalLoop {
        MinimalLoop { queue: RefCell::new(VecDeque::new()), stopping: Cell::new(false) }
    }

    #[inline]
    pub fn call_soon(&self, callback: impl FnOnce(&MinimalLoop) + 'static) {
        self.queue.borrow_mut().push_back(Box::new(callback));
    }

    pub fn stop(&self) {
        self.stopping.set(true);
    }

    /// Runs the callbacks queued now, and only those.
    #[inline]
    pub fn run_once(&self) {
        let queued = self.queue.borrow().len();
        for _ in 0..queued {
            let callback = self.queue.borrow_mut().pop_front();
            if let Some(callback) = callback {
                callback(self);
            }
        }
    }

    pub fn run_forever(&self) {
        loop {
            self.run_once();
            if self.stopping.replace(false) {
                return;
            }
        }
    }
}

/// The floor of [`TulipBatch`]: the closures capture the same `Rc` counter.
pub struct FloorBatch {
    event_loop: MinimalLoop,
    counter: Rc<Cell<u64>>,
}

impl FloorBatch {
    pub fn new() -> FloorBatch {
        FloorBatch { event_loop: MinimalLoop::new(), counter: Rc::new(Cell::new(0)) }
    }

    #[inline(never)]
    pub fn run(&self, n: u64) -> u64 {
        for _ in 0..n {
            let counter = Rc::clone(&self.counter);
            self.event_loop.call_soon(move |_| counter.set(counter.get() + 1));
        }
        self.event_loop.stop();
        self.event_loop.run_forever();
        self.counter.get()
    }
}

// ---------------------------------------------------------------------------
// call_soon chains

fn tulip_link(event_loop: &SelectorEventLoop, left: u64, counter: Rc<Cell<u64>>) {
    counter.set(counter.get() + 1);
    if left == 0 {
        event_loop.stop();
    } else {
        event_loop.call_soon(move |event_loop| tulip_link(event_loop, left - 1, counter));
    }
}

/// tulip: each callback schedules the next; the last stops the loop. One
/// link per iteration, so this measures an iteration's fixed cost.
pub struct TulipChain {
    event_loop: SelectorEventLoop,
    counter: Rc<Cell<u64>>,
}

impl TulipChain {
    pub fn new() -> TulipChain {
        TulipChain { event_loop: new_loop(), counter: Rc::new(Cell::new(0)) }
    }

    #[inline(never)]
    pub fn run(&self, links: u64) -> u64 {
        let counter = Rc::clone(&self.counter);
        self.event_loop.call_soon(move |event_loop| tulip_link(event_loop, links - 1, counter));
        self.event_loop.run_forever().expect("run_forever");
        self.counter.get()
    }
}

fn floor_link(event_loop: &MinimalLoop, left: u64, counter: Rc<Cell<u64>>) {
    counter.set(counter.get() + 1);
    if left == 0 {
        event_loop.stop();
    } else {
        event_loop.call_soon(move |event_loop| floor_link(event_loop, left - 1, counter));
    }
}

/// The floor of [`TulipChain`].
pub struct FloorChain {
    event_loop: MinimalLoop,
    counter: Rc<Cell<u64>>,
}

impl FloorChain {
    pub fn new() -> FloorChain {
        FloorChain { event_loop: MinimalLoop::new(), counter: Rc::new(Cell::new(0)) }
    }

    #[inline(never)]
    pub fn run(&self, links: u64) -> u64 {
        let counter = Rc::clone(&self.counter);
        self.event_loop.call_soon(move |event_loop| floor_link(event_loop, links - 1, counter));
        self.event_loop.run_forever();
        self.counter.get()
    }
}

// ---------------------------------------------------------------------------
// call_later: schedule many, fire them all

/// tulip: `delays.len()` timers with the given delays; the last to fire
/// stops the loop. Returns how many fired.
pub struct TulipTimers {
    event_loop: SelectorEventLoop,
    fired: Rc<Cell<u64>>,
}

impl TulipTimers {
    pub fn new() -> TulipTimers {
        TulipTimers { event_loop: new_loop(), fired: Rc::new(Cell::new(0)) }
    }

    #[inline(never)]
    pub fn run(&self, delays: &[Duration]) -> u64 {
        let total = delays.len() as u64;
        self.fired.set(0);
        for &delay in delays {
            let fired = Rc::clone(&self.fired);
            self.event_loop.call_later(delay, move |event_loop| {
                fired.set(fired.get() + 1);
                if fired.get() == total {
                    event_loop.stop();
                }
            });
        }
        self.event_loop.run_forever().expect("run_forever");
        assert_eq!(self.fired.get(), total, "every timer fired");
        self.fired.get()
    }
}

// ---------------------------------------------------------------------------
// call_later + cancel

/// tulip: schedule a timer and cancel it, `n` times, then one iteration of
/// the loop (which purges what was cancelled), as a loop that sets and
/// clears timeouts does. Returns the timers in the heap after the
/// iteration; [`peak`](Self::peak) is the most there were before one.
pub struct TulipScheduleCancel {
    event_loop: SelectorEventLoop,
    counter: Rc<Cell<u64>>,
    delays: Lcg,
    peak: usize,
}

impl TulipScheduleCancel {
    pub fn new() -> TulipScheduleCancel {
        TulipScheduleCancel {
            event_loop: new_loop(),
            counter: Rc::new(Cell::new(0)),
            delays: Lcg::new(7),
            peak: 0,
        }
    }

    #[inline(never)]
    pub fn run(&mut self, n: u64) -> usize {
        for _ in 0..n {
            let counter = Rc::clone(&self.counter);
            let delay = self.delays.delay_up_to(Duration::from_millis(1));
            let handle = self.event_loop.call_later(delay, move |_| counter.set(counter.get() + 1));
            handle.cancel();
        }
        self.peak = self.peak.max(self.timers_in_heap());
        self.event_loop.stop();
        self.event_loop.run_forever().expect("run_forever");
        assert_eq!(self.counter.get(), 0, "no cancelled timer ran");
        self.timers_in_heap()
    }

    pub fn timers_in_heap(&self) -> usize {
        self.event_loop.stats().timers_in_heap
    }

    /// The most timers the heap held (before an iteration purged them).
    pub fn peak(&self) -> usize {
        self.peak
    }
}

// ---------------------------------------------------------------------------
// add_reader ping-pong over a socketpair

/// tulip: a reader on each end of a socketpair. A's reader reads the byte and
/// writes one back (making B readable); B's reader reads it, counts a round
/// trip and writes again (making A readable), until `rounds` are done.
pub struct TulipPingPong {
    event_loop: SelectorEventLoop,
    a: OwnedFd,
    b: OwnedFd,
    target: Rc<Cell<u64>>,
    rounds: Rc<Cell<u64>>,
}

impl TulipPingPong {
    pub fn new() -> TulipPingPong {
        let event_loop = new_loop();
        let (a, b) = socketpair();
        let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
        let target = Rc::new(Cell::new(0));
        let rounds = Rc::new(Cell::new(0));
        event_loop
            .add_reader(fa, move |_| {
                read_byte(fa);
                write_byte(fa);
            })
            .expect("add_reader");
        let (t, r) = (Rc::clone(&target), Rc::clone(&rounds));
        event_loop
            .add_reader(fb, move |event_loop| {
                read_byte(fb);
                r.set(r.get() + 1);
                if r.get() == t.get() {
                    event_loop.stop();
                } else {
                    write_byte(fb);
                }
            })
            .expect("add_reader");
        TulipPingPong { event_loop, a, b, target, rounds }
    }

    #[inline(never)]
    pub fn run(&self, rounds: u64) -> u64 {
        self.rounds.set(0);
        self.target.set(rounds);
        write_byte(self.b.as_raw_fd());
        self.event_loop.run_forever().expect("run_forever");
        self.rounds.get()
    }

    pub fn stats(&self) -> tulip::LoopStats {
        self.event_loop.stats()
    }
}

/// The floor of [`TulipPingPong`]: the same reads and writes, dispatched
/// from `epoll_wait` by comparing fds.
pub struct RawPingPong {
    epoll: RawEpoll,
    a: OwnedFd,
    b: OwnedFd,
}

impl RawPingPong {
    pub fn new() -> RawPingPong {
        let (a, b) = socketpair();
        let epoll = RawEpoll::readers(&[a.as_raw_fd(), b.as_raw_fd()]);
        RawPingPong { epoll, a, b }
    }

    #[inline(never)]
    pub fn run(&mut self, rounds: u64) -> u64 {
        let (fa, fb) = (self.a.as_raw_fd(), self.b.as_raw_fd());
        let mut done = 0;
        write_byte(fb);
        while done < rounds {
            self.epoll.wait(-1, |fd| {
                if fd == fa {
                    read_byte(fa);
                    write_byte(fa);
                } else {
                    read_byte(fb);
                    done += 1;
                    if done < rounds {
                        write_byte(fb);
                    }
                }
            });
        }
        done
    }
}

// ---------------------------------------------------------------------------
// call_soon_threadsafe from another thread

thread_local! {
    /// Counted by the threadsafe callbacks, on the loop's thread.
    static THREADSAFE_COUNT: Cell<u64> = const { Cell::new(0) };
}

/// tulip: a producer thread (kept for all runs) makes `n` threadsafe calls
/// per run; the loop counts them and the last one stops it.
pub struct TulipThreadsafe {
    event_loop: SelectorEventLoop,
    requests: Option<mpsc::Sender<u64>>,
    producer: Option<thread::JoinHandle<()>>,
}

impl TulipThreadsafe {
    pub fn new() -> TulipThreadsafe {
        let event_loop = new_loop();
        let handle: LoopHandle<SelectorEventLoop> = event_loop.handle();
        let (requests, incoming) = mpsc::channel::<u64>();
        let producer = thread::spawn(move || {
            for n in incoming {
                for i in 1..=n {
                    let last = i == n;
                    handle
                        .call_soon_threadsafe(move |event_loop| {
                            THREADSAFE_COUNT.with(|count| count.set(count.get() + i));
                            if last {
                                event_loop.stop();
                            }
                        })
                        .expect("call_soon_threadsafe");
                }
            }
        });
        TulipThreadsafe { event_loop, requests: Some(requests), producer: Some(producer) }
    }

    #[inline(never)]
    pub fn run(&self, n: u64) -> u64 {
        THREADSAFE_COUNT.with(|count| count.set(0));
        self.requests.as_ref().expect("producer").send(n).expect("producer alive");
        self.event_loop.run_forever().expect("run_forever");
        let sum = THREADSAFE_COUNT.with(Cell::get);
        assert_eq!(sum, n * (n + 1) / 2, "every threadsafe call ran once");
        sum
    }
}

impl Drop for TulipThreadsafe {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(producer) = self.producer.take() {
            let _ = producer.join();
        }
    }
}

// ---------------------------------------------------------------------------
// accept-serve-close churn of short TCP connections

/// A listener on the loop accepting short connections: each is registered
/// (`add_reader`), served once (read a 1-byte request, write a 1-byte
/// response) and unregistered and closed from its own reader. Generic over
/// the selector, so epoll and io_uring run the same static code: on epoll a
/// connection costs an `epoll_ctl` to register and one to unregister; on
/// io_uring both ride in the `io_uring_enter` that waits.
pub struct Churn<S: Selector<IoHandlers> + 'static> {
    event_loop: BaseSelectorEventLoop<S>,
    address: SocketAddr,
    served: Rc<Cell<u64>>,
    target: Rc<Cell<u64>>,
    clients: Vec<TcpStream>,
}

/// How many connections a [`Churn`] run opens at once: the listener's
/// backlog must hold them all before the loop accepts.
pub const CHURN_BATCH: u64 = 64;

impl<S: Selector<IoHandlers> + 'static> Churn<S> {
    pub fn new(selector: S) -> Churn<S> {
        let event_loop = BaseSelectorEventLoop::with_selector(selector).expect("event loop");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let served = Rc::new(Cell::new(0));
        let target = Rc::new(Cell::new(0));
        let (s, t) = (Rc::clone(&served), Rc::clone(&target));
        event_loop
            .add_reader(listener.as_raw_fd(), move |event_loop| {
                while let Ok((stream, _)) = listener.accept() {
                    serve_one(event_loop, stream, Rc::clone(&s), Rc::clone(&t));
                }
            })
            .expect("add_reader on the listener");
        Churn { event_loop, address, served, target, clients: Vec::new() }
    }

    /// `n` (at most [`CHURN_BATCH`]) clients connect and send a request;
    /// the loop accepts, serves and closes each; the clients read the
    /// response and close with a reset (no `TIME_WAIT` left behind).
    /// Returns how many connections were served.
    #[inline(never)]
    pub fn run(&mut self, n: u64) -> u64 {
        assert!(n <= CHURN_BATCH, "at most {CHURN_BATCH} connections per run");
        self.served.set(0);
        self.target.set(n);
        for _ in 0..n {
            let mut client = TcpStream::connect(self.address).expect("connect");
            client.write_all(b"?").expect("request");
            self.clients.push(client);
        }
        self.event_loop.run_forever().expect("run_forever");
        for mut client in self.clients.drain(..) {
            let mut response = [0u8; 1];
            client.read_exact(&mut response).expect("response");
            reset_on_close(&client);
        }
        self.served.get()
    }
}

/// Registers `stream`, whose reader serves it once and closes it.
fn serve_one<L: AbstractEventLoop>(
    event_loop: &L,
    stream: TcpStream,
    served: Rc<Cell<u64>>,
    target: Rc<Cell<u64>>,
) {
    stream.set_nonblocking(true).expect("non-blocking");
    let fd = stream.as_raw_fd();
    let mut stream = Some(stream);
    event_loop
        .add_reader(fd, move |event_loop| {
            let Some(mut conn) = stream.take() else { return };
            let mut request = [0u8; 1];
            conn.read_exact(&mut request).expect("request");
            conn.write_all(b"!").expect("response");
            // Unregister first, then close (drop).
            event_loop.remove_reader(fd).expect("remove_reader");
            drop(conn);
            served.set(served.get() + 1);
            if served.get() == target.get() {
                event_loop.stop();
            }
        })
        .expect("add_reader on a connection");
}

/// `SO_LINGER` of zero: closing sends a reset and leaves no `TIME_WAIT`.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads one `linger` of the size given.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_LINGER");
}

// ---------------------------------------------------------------------------
// tokio, current-thread runtime

pub mod peers {
    use std::cell::{Cell, RefCell};
    use std::time::Duration;

    use tokio::runtime::{Builder, Runtime};
    use tokio::sync::oneshot;

    thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
        static LAST: RefCell<Option<oneshot::Sender<()>>> = const { RefCell::new(None) };
    }

    fn count(by: u64) -> u64 {
        COUNT.with(|count| {
            count.set(count.get() + by);
            count.get()
        })
    }

    /// A current-thread runtime with nothing enabled (no I/O or time driver):
    /// tokio's scheduler at its lightest.
    pub fn bare_runtime() -> Runtime {
        Builder::new_current_thread().build().expect("tokio runtime")
    }

    /// tokio: spawn `n` tasks and run them; the last one spawned (and run,
    /// the queue is FIFO) completes the oneshot the runtime blocks on. The
    /// tasks count in a thread-local, so they share nothing reference-counted.
    #[inline(never)]
    pub fn batch(runtime: &Runtime, n: u64) -> u64 {
        runtime.block_on(async move {
            COUNT.with(|count| count.set(0));
            let (tx, rx) = oneshot::channel();
            let mut tx = Some(tx);
            for i in 0..n {
                let done = if i + 1 == n { tx.take() } else { None };
                tokio::spawn(async move {
                    count(1);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                });
            }
            rx.await.expect("last task ran");
            COUNT.with(Cell::get)
        })
    }

    fn link(left: u64, done: oneshot::Sender<()>) {
        tokio::spawn(async move {
            count(1);
            if left == 0 {
                let _ = done.send(());
            } else {
                link(left - 1, done);
            }
        });
    }

    /// tokio: each task spawns the next; the last completes the oneshot.
    #[inline(never)]
    pub fn chain(runtime: &Runtime, links: u64) -> u64 {
        runtime.block_on(async move {
            COUNT.with(|count| count.set(0));
            let (tx, rx) = oneshot::channel();
            link(links - 1, tx);
            rx.await.expect("chain ran");
            COUNT.with(Cell::get)
        })
    }

    /// A current-thread runtime with the time driver.
    pub fn timer_runtime() -> Runtime {
        Builder::new_current_thread().enable_time().build().expect("tokio runtime")
    }

    /// tokio: one spawned task per delay, each `sleep`s then counts; the last
    /// to wake completes the oneshot.
    #[inline(never)]
    pub fn timers(runtime: &Runtime, delays: &[Duration]) -> u64 {
        let total = delays.len() as u64;
        runtime.block_on(async move {
            COUNT.with(|count| count.set(0));
            let (tx, rx) = oneshot::channel();
            LAST.with(|last| *last.borrow_mut() = Some(tx));
            for &delay in delays {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if count(1) == total {
                        if let Some(done) = LAST.with(|last| last.borrow_mut().take()) {
                            let _ = done.send(());
                        }
                    }
                });
            }
            rx.await.expect("every timer fired");
            COUNT.with(Cell::get)
        })
    }
}
