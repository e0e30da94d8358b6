//! Layer 3: sock_accept, sock_connect, sock_recv and sock_sendall on every
//! backend, over 127.0.0.1 and Unix-domain sockets.

#[macro_use]
mod common;

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use tulip::{AbstractEventLoop, DynSelectorEventLoop};

backend_tests!(
    run_on_thread:
    tcp_round_trip,
    tcp_large_sendall_partial_writes,
    unix_round_trip,
    connect_refused,
    connect_unix_errors,
    recv_eof,
    recv_after_peer_reset,
    sendall_to_reset_peer,
    recv_on_blocking_socket,
    dropped_recv_leaves_nothing,
    dropped_accept_leaves_nothing,
    dropped_sendall_leaves_nothing,
    dropped_connect_leaves_nothing,
    created_sockets_are_cloexec,
    unix_connect_retries_when_backlog_is_full,
    second_waiting_recv_is_refused,
);

fn tcp_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Futures of one output type but different bodies, for `gather`.
type Boxed<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + 'a>>;

fn timeout() -> Duration {
    Duration::from_secs(20)
}

/// Runs `fut` under [`timeout`]; a hang fails the test.
fn run<F: Future>(event_loop: &DynSelectorEventLoop, fut: F) -> F::Output {
    event_loop.run_until_complete(tulip::wait_for(event_loop, fut, timeout())).unwrap().unwrap()
}

fn tcp_round_trip(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    let lp = &event_loop;
    let work = async {
        let client = lp.sock_connect(addr).await?;
        let (server, peer) = lp.sock_accept(&listener).await?;
        assert_eq!(peer, client.local_addr()?);
        lp.sock_sendall(&client, b"ping").await?;
        let mut buf = [0u8; 16];
        let n = lp.sock_recv(&server, &mut buf).await?;
        assert_eq!(&buf[..n], b"ping");
        lp.sock_sendall(&server, b"pong").await?;
        let n = lp.sock_recv(&client, &mut buf).await?;
        assert_eq!(&buf[..n], b"pong");
        lp.sock_sendall(&client, b"").await?;
        io::Result::Ok(())
    };
    run(lp, work).unwrap();
    assert_eq!(event_loop.watched_fds(), 0);
}

fn tcp_large_sendall_partial_writes(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    let lp = &event_loop;
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let work = async {
        let client = lp.sock_connect(addr).await?;
        let (server, _) = lp.sock_accept(&listener).await?;
        let sender = async {
            lp.sock_sendall(&client, &data).await?;
            client.shutdown(std::net::Shutdown::Write)?;
            io::Result::Ok(Vec::new())
        };
        let receiver = async {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = lp.sock_recv(&server, &mut buf).await?;
                if n == 0 {
                    return io::Result::Ok(got);
                }
                got.extend_from_slice(&buf[..n]);
            }
        };
        let both: Vec<Boxed<'_, Vec<u8>>> = vec![Box::pin(sender), Box::pin(receiver)];
        let mut results = tulip::gather(both).await;
        results.pop().unwrap()
    };
    let got = run(lp, work).unwrap();
    assert!(got == data, "received {} bytes, byte-exact: {}", got.len(), got == data);
    assert_eq!(event_loop.watched_fds(), 0);
}

fn unix_round_trip(event_loop: DynSelectorEventLoop) {
    let path = common::UnixPath::new();
    let listener = UnixListener::bind(&path.0).unwrap();
    let lp = &event_loop;
    let work = async {
        let client = lp.sock_connect_unix(&path.0).await?;
        let (server, _) = lp.sock_accept(&listener).await?;
        lp.sock_sendall(&client, b"over unix").await?;
        let mut buf = [0u8; 32];
        let n = lp.sock_recv(&server, &mut buf).await?;
        assert_eq!(&buf[..n], b"over unix");
        drop(client);
        assert_eq!(lp.sock_recv(&server, &mut buf).await?, 0);
        io::Result::Ok(())
    };
    run(lp, work).unwrap();
    assert_eq!(event_loop.watched_fds(), 0);
}

fn connect_refused(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    drop(listener);
    let err = event_loop.run_until_complete(event_loop.sock_connect(addr)).unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(event_loop.watched_fds(), 0);
}

fn connect_unix_errors(event_loop: DynSelectorEventLoop) {
    let path = common::UnixPath::new();
    let err = event_loop.run_until_complete(event_loop.sock_connect_unix(&path.0)).unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let long = "x".repeat(200);
    let err = event_loop.run_until_complete(event_loop.sock_connect_unix(&long)).unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    // A socket file nobody listens on.
    let listener = UnixListener::bind(&path.0).unwrap();
    drop(listener);
    let err = event_loop.run_until_complete(event_loop.sock_connect_unix(&path.0)).unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

fn recv_eof(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    let lp = &event_loop;
    let work = async {
        let client = lp.sock_connect(addr).await?;
        let (server, _) = lp.sock_accept(&listener).await?;
        let closer = tulip::sleep(lp, Duration::from_millis(5));
        let mut buf = [0u8; 8];
        let recv = lp.sock_recv(&server, &mut buf);
        let close_later = async {
            closer.await;
            drop(client);
            Ok(usize::MAX)
        };
        let both: Vec<Boxed<'_, usize>> = vec![Box::pin(recv), Box::pin(close_later)];
        tulip::gather(both).await.remove(0)
    };
    let n = run(lp, work).unwrap();
    assert_eq!(n, 0);
}

fn recv_after_peer_reset(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    let lp = &event_loop;
    let work = async {
        let client = lp.sock_connect(addr).await?;
        let (server, _) = lp.sock_accept(&listener).await?;
        common::reset(server);
        let mut buf = [0u8; 8];
        lp.sock_recv(&client, &mut buf).await
    };
    let err = run(lp, work).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(event_loop.watched_fds(), 0);
}

fn sendall_to_reset_peer(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    let lp = &event_loop;
    let data = vec![7u8; 16 << 20];
    let work = async {
        let client = lp.sock_connect(addr).await?;
        let (server, _) = lp.sock_accept(&listener).await?;
        common::reset(server);
        lp.sock_sendall(&client, &data).await
    };
    let err = run(lp, work).unwrap_err();
    assert!(
        matches!(err.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        "{err} ({:?})",
        err.kind()
    );
    assert_eq!(event_loop.watched_fds(), 0);
}

fn recv_on_blocking_socket(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    let client = TcpStream::connect(addr).unwrap(); // blocking mode
    let (mut server, _) = listener.accept().unwrap();
    let lp = &event_loop;
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        server.write_all(b"late").unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
        rest
    });
    let work = async {
        let mut buf = [0u8; 8];
        let n = lp.sock_recv(&client, &mut buf).await?;
        lp.sock_sendall(&client, b"bye").await?;
        client.shutdown(std::net::Shutdown::Write)?;
        io::Result::Ok(buf[..n].to_vec())
    };
    let got = run(lp, work).unwrap();
    assert_eq!(got, b"late");
    assert_eq!(writer.join().unwrap(), b"bye");
}

/// Polls `future` once inside the loop, then drops it.
fn poll_once_then_drop<F: Future>(event_loop: &DynSelectorEventLoop, future: F) -> bool {
    let mut future = pin!(future);
    event_loop.run_until_complete(poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_pending()))).unwrap()
}

fn dropped_recv_leaves_nothing(event_loop: DynSelectorEventLoop) {
    let (a, _b) = UnixStream::pair().unwrap();
    let mut buf = [0u8; 8];
    let pending = poll_once_then_drop(&event_loop, event_loop.sock_recv(&a, &mut buf));
    assert!(pending);
    assert_eq!(event_loop.watched_fds(), 0);
    assert!(!event_loop.remove_reader(a.as_raw_fd()).unwrap());
    // Dropped by a timeout.
    let err = event_loop
        .run_until_complete(tulip::wait_for(
            &event_loop,
            event_loop.sock_recv(&a, &mut buf),
            Duration::from_millis(5),
        ))
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(!event_loop.remove_reader(a.as_raw_fd()).unwrap());
    assert_eq!(event_loop.watched_fds(), 0);
}

fn dropped_accept_leaves_nothing(event_loop: DynSelectorEventLoop) {
    let (listener, _) = tcp_listener();
    assert!(poll_once_then_drop(&event_loop, event_loop.sock_accept(&listener)));
    assert_eq!(event_loop.watched_fds(), 0);
    assert!(!event_loop.remove_reader(listener.as_raw_fd()).unwrap());
}

fn dropped_sendall_leaves_nothing(event_loop: DynSelectorEventLoop) {
    let (a, _b) = UnixStream::pair().unwrap();
    let data = vec![1u8; 32 << 20]; // more than any socket buffer
    assert!(poll_once_then_drop(&event_loop, event_loop.sock_sendall(&a, &data)));
    assert_eq!(event_loop.watched_fds(), 0);
    assert!(!event_loop.remove_writer(a.as_raw_fd()).unwrap());
}

fn dropped_connect_leaves_nothing(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    // Loopback connects may finish at once or report EINPROGRESS; either
    // way, nothing stays registered once the future is gone.
    for _ in 0..20 {
        poll_once_then_drop(&event_loop, event_loop.sock_connect(addr));
        assert_eq!(event_loop.watched_fds(), 0);
    }
    drop(listener);
}

fn created_sockets_are_cloexec(event_loop: DynSelectorEventLoop) {
    let (listener, addr) = tcp_listener();
    let lp = &event_loop;
    let (client, server) = event_loop
        .run_until_complete(async {
            let client = lp.sock_connect(addr).await?;
            let (server, _) = lp.sock_accept(&listener).await?;
            io::Result::Ok((client, server))
        })
        .unwrap()
        .unwrap();
    for fd in [client.as_raw_fd(), server.as_raw_fd()] {
        // SAFETY: fcntl(F_GETFD) on an open fd takes no pointer.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0, "fd {fd} is not close-on-exec");
        // SAFETY: as above.
        let status = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert!(status & libc::O_NONBLOCK != 0, "fd {fd} is blocking");
    }
}

fn unix_connect_retries_when_backlog_is_full(event_loop: DynSelectorEventLoop) {
    const CLIENTS: usize = 40;
    let path = common::UnixPath::new();
    let listener = UnixListener::bind(&path.0).unwrap();
    // A small backlog (listen again to change it), soon full.
    // SAFETY: listen(2) on a socket we own takes no pointer.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 4) }, 0);
    let listener = Rc::new(listener);
    let event_loop = Rc::new(event_loop);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (lp, path) = (event_loop.clone(), path.0.clone());
            event_loop.create_task(async move { lp.sock_connect_unix(&path).await })
        })
        .collect();
    let accepter = {
        let (lp, listener) = (event_loop.clone(), listener.clone());
        event_loop.create_task(async move {
            tulip::sleep(&*lp, Duration::from_millis(20)).await;
            let mut accepted = Vec::new();
            while accepted.len() < CLIENTS {
                accepted.push(lp.sock_accept(&*listener).await?.0);
            }
            io::Result::Ok(accepted.len())
        })
    };
    let all = async {
        let connected = tulip::gather(clients).await;
        let accepted = accepter.await;
        (connected, accepted)
    };
    let (connected, accepted) = run(&event_loop, all);
    for client in connected {
        client.unwrap().unwrap();
    }
    assert_eq!(accepted.unwrap().unwrap(), CLIENTS);
    event_loop.close().unwrap();
}

fn second_waiting_recv_is_refused(event_loop: DynSelectorEventLoop) {
    let (a, mut b) = UnixStream::pair().unwrap();
    let lp = &event_loop;
    let (mut first_buf, mut second_buf) = ([0u8; 8], [0u8; 8]);
    let work = async {
        let first = lp.sock_recv(&a, &mut first_buf);
        let second = async {
            tulip::sleep(lp, Duration::from_millis(2)).await;
            let refused = lp.sock_recv(&a, &mut second_buf).await;
            b.write_all(b"data").unwrap();
            refused
        };
        let both: Vec<Boxed<'_, usize>> = vec![Box::pin(first), Box::pin(second)];
        tulip::gather(both).await
    };
    let outcomes = run(lp, work);
    assert_eq!(outcomes[1].as_ref().unwrap_err().kind(), io::ErrorKind::ResourceBusy);
    assert_eq!(*outcomes[0].as_ref().unwrap(), 4, "the first one still works");
    assert_eq!(&first_buf[..4], b"data");
    assert_eq!(event_loop.watched_fds(), 0);
    // Once it is done, the socket can be waited on again.
    let mut buf = [0u8; 8];
    assert!(poll_once_then_drop(&event_loop, event_loop.sock_recv(&a, &mut buf)));
}
