//! `tulip::testing::TestLoop`: virtual time. An hour of timers, and a
//! protocol's idle timeout, tested without waiting; `advance`; `sleep` and
//! `wait_for` on it; real I/O still works and is taken before time moves.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulip::testing::TestLoop;
use tulip::{AbstractEventLoop, Protocol, SelectorEventLoop, TimerHandle, Transport};

/// A test of virtual time must not take real time.
const WALL_LIMIT: Duration = Duration::from_secs(5);

#[test]
fn an_hour_long_call_later_chain_runs_in_milliseconds() {
    let lp = TestLoop::new().unwrap();
    let start = lp.time();
    let fired: Rc<RefCell<Vec<Duration>>> = Rc::default();
    fn link(lp: &SelectorEventLoop, left: u32, start: std::time::Instant, fired: Rc<RefCell<Vec<Duration>>>) {
        fired.borrow_mut().push(lp.time() - start);
        if left == 0 {
            lp.stop();
            return;
        }
        lp.call_later(Duration::from_secs(60), move |lp| link(lp, left - 1, start, fired));
    }
    let f = Rc::clone(&fired);
    lp.call_later(Duration::from_secs(60), move |lp| link(lp, 59, start, f));
    let wall = Instant::now();
    lp.run_forever().unwrap();
    assert!(wall.elapsed() < WALL_LIMIT, "virtual time took {:?} of real time", wall.elapsed());
    let fired = fired.borrow();
    assert_eq!(fired.len(), 60);
    for (i, at) in fired.iter().enumerate() {
        // Each link is due a minute after the one before: never early, and
        // on virtual time exactly on time.
        assert_eq!(*at, Duration::from_secs(60 * (i as u64 + 1)), "link {i}");
    }
    assert!(lp.time() - start >= Duration::from_secs(3600));
}

#[test]
fn advance_moves_the_clock_and_due_timers_run_next() {
    let lp = TestLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = Rc::clone(&ran);
    let timer: TimerHandle = lp.call_later(Duration::from_secs(30), move |_| r.set(true));
    lp.advance(Duration::from_secs(29));
    lp.stop();
    lp.run_forever().unwrap();
    assert!(!ran.get(), "not due yet at +29 s");
    lp.advance(Duration::from_secs(1));
    assert!(lp.time() >= timer.when());
    lp.stop();
    lp.run_forever().unwrap();
    assert!(ran.get(), "due at +30 s");
}

#[test]
fn advance_on_the_real_clock_is_refused() {
    let lp = SelectorEventLoop::new().unwrap();
    let err = lp.advance(Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("real clock"), "{err}");
}

#[test]
fn sleep_and_wait_for_take_virtual_time() {
    let lp = TestLoop::new().unwrap();
    let start = lp.time();
    let wall = Instant::now();
    let waited = lp
        .run_until_complete(async {
            tulip::sleep(&lp, Duration::from_secs(600)).await;
            let slow = tulip::sleep(&lp, Duration::from_secs(3600));
            tulip::wait_for(&lp, slow, Duration::from_secs(60)).await
        })
        .unwrap();
    assert_eq!(waited.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(lp.time() - start, Duration::from_secs(660));
    assert!(wall.elapsed() < WALL_LIMIT);
}

/// Closes its connection after `idle` without data; says when.
struct IdleTimeout {
    idle: Duration,
    transport: Option<Transport>,
    timer: Option<TimerHandle>,
    closed_at: Rc<Cell<Option<Instant>>>,
    event_loop: Rc<TestLoop>,
}

impl IdleTimeout {
    fn rearm(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.cancel();
        }
        let (transport, closed_at) = (self.transport.clone(), Rc::clone(&self.closed_at));
        self.timer = Some(self.event_loop.call_later(self.idle, move |lp| {
            closed_at.set(Some(lp.time()));
            if let Some(transport) = transport {
                transport.close();
            }
        }));
    }
}

impl Protocol for IdleTimeout {
    fn connection_made(&mut self, transport: Transport) {
        self.transport = Some(transport);
        self.rearm();
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(transport) = &self.transport {
            let _ = transport.write(data);
        }
        self.rearm();
    }

    fn connection_lost(&mut self, _error: Option<std::io::Error>) {
        if let Some(timer) = self.timer.take() {
            timer.cancel();
        }
    }
}

#[test]
fn a_protocol_idle_timeout_is_tested_without_waiting() {
    let lp = Rc::new(TestLoop::new().unwrap());
    let closed_at: Rc<Cell<Option<Instant>>> = Rc::default();
    let (c, l) = (Rc::clone(&closed_at), Rc::clone(&lp));
    let idle = Duration::from_secs(300);
    let server = lp
        .create_server(([127, 0, 0, 1], 0), move || IdleTimeout {
            idle,
            transport: None,
            timer: None,
            closed_at: Rc::clone(&c),
            event_loop: Rc::clone(&l),
        })
        .unwrap();
    let addr = server.local_addr().unwrap().as_inet().unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    // The test reads from inside the loop's own thread: never block it.
    client.set_nonblocking(true).unwrap();
    let wall = Instant::now();
    // Real I/O on virtual time: the echo comes back before any time passes.
    client.write_all(b"ping").unwrap();
    let start = lp.time();
    let echoed = lp
        .run_until_complete(async {
            // Wait (virtually) until the server has echoed, then go idle.
            let mut buf = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                match (&client).read(&mut buf[got..]) {
                    Ok(n) => got += n,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(err) => return Err(err),
                }
                if got < 4 {
                    tulip::sleep(&*lp, Duration::from_millis(1)).await;
                }
            }
            Ok(buf)
        })
        .unwrap();
    assert_eq!(&echoed.unwrap(), b"ping");
    // Now nothing happens for 300 virtual seconds: the server closes.
    let l = Rc::clone(&lp);
    let check = Rc::clone(&closed_at);
    lp.run_until_complete(async move {
        while check.get().is_none() {
            tulip::sleep(&*l, Duration::from_secs(10)).await;
        }
    })
    .unwrap();
    // Let the loop finish closing (connection_lost comes on a later iteration).
    lp.run_until_complete(tulip::sleep(&*lp, Duration::from_secs(1))).unwrap();
    let closed = closed_at.get().unwrap();
    assert!(closed - start >= idle, "closed after {:?}, before the idle timeout", closed - start);
    assert!(closed - start < idle + Duration::from_secs(1), "closed after {:?}", closed - start);
    client.set_nonblocking(false).unwrap();
    client.set_read_timeout(Some(WALL_LIMIT)).unwrap();
    assert_eq!((&client).read(&mut [0u8; 8]).unwrap(), 0, "the server closed the connection");
    assert!(wall.elapsed() < WALL_LIMIT, "took {:?} of real time", wall.elapsed());
    server.close();
    // The protocol factory holds the loop and the loop holds the server (its
    // queued `stop_listening`): a cycle of `Rc`s, which closing the loop
    // breaks by dropping every queued callback. LeakSanitizer checks it.
    lp.close().unwrap();
}
