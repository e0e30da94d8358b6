//! Host names on every backend: `getaddrinfo` on the loop's worker threads,
//! and `create_connection`/`create_server` given `"localhost:PORT"`. Only
//! `localhost` and names that cannot exist are looked up: there is no
//! network here.

#[macro_use]
mod common;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use tulip::{DynSelectorEventLoop, Protocol};

backend_tests!(
    run_on_thread:
    getaddrinfo_localhost,
    getaddrinfo_of_a_literal_needs_no_thread,
    getaddrinfo_of_unknown_names_says_which,
    create_connection_by_name,
    create_connection_tries_each_address_in_turn,
    create_connection_errors_name_what_failed,
    create_server_by_name,
);

/// Runs `fut` under a generous timeout (a resolver may wait for a DNS
/// server that never answers); a hang fails the test.
fn run<F: Future>(event_loop: &DynSelectorEventLoop, fut: F) -> F::Output {
    event_loop.run_until_complete(tulip::wait_for(event_loop, fut, Duration::from_secs(40))).unwrap().unwrap()
}

/// A name that cannot exist: spaces are no part of a host name, so the
/// resolver refuses it without asking a DNS server (there is no network
/// here), and it is under `.invalid`, which none may answer (RFC 2606).
const NO_SUCH_HOST: &str = "no such host.invalid";

struct Quiet;
impl Protocol for Quiet {}

fn getaddrinfo_localhost(event_loop: DynSelectorEventLoop) {
    let addrs = run(&event_loop, event_loop.getaddrinfo("localhost", 8080)).unwrap();
    assert!(!addrs.is_empty());
    for addr in &addrs {
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 8080);
    }
    let mut unique = addrs.clone();
    unique.dedup();
    assert_eq!(unique.len(), addrs.len(), "each address once: {addrs:?}");
    assert!(addrs.contains(&SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))), "{addrs:?}");
    assert_eq!(event_loop.executor_workers(), 1, "looked up on one worker thread");
}

fn getaddrinfo_of_a_literal_needs_no_thread(event_loop: DynSelectorEventLoop) {
    let v4 = run(&event_loop, event_loop.getaddrinfo("127.0.0.1", 1)).unwrap();
    assert_eq!(v4, [SocketAddr::from(([127, 0, 0, 1], 1))]);
    let v6 = run(&event_loop, event_loop.getaddrinfo("[::1]", 2)).unwrap();
    assert_eq!(v6, ["[::1]:2".parse::<SocketAddr>().unwrap()]);
    assert_eq!(event_loop.executor_workers(), 0);
}

fn getaddrinfo_of_unknown_names_says_which(event_loop: DynSelectorEventLoop) {
    let err = run(&event_loop, event_loop.getaddrinfo(NO_SUCH_HOST, 80)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(NO_SUCH_HOST), "{err}");
    assert!(err.to_string().starts_with("failed to resolve"), "{err}");
    for bad in ["", "bad\0name"] {
        let err = run(&event_loop, event_loop.getaddrinfo(bad, 80)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "{bad:?}: {err}");
    }
}

fn create_connection_by_name(event_loop: DynSelectorEventLoop) {
    let server = event_loop.create_server("127.0.0.1:0", || Quiet).unwrap();
    let port = server.local_addr().unwrap().as_inet().unwrap().port();
    let (transport, _) =
        run(&event_loop, event_loop.create_connection(format!("localhost:{port}"), || Quiet)).unwrap();
    assert_eq!(transport.peer_addr().unwrap().as_inet().unwrap(), SocketAddr::from(([127, 0, 0, 1], port)));
    transport.close();
    let (again, _) = run(&event_loop, event_loop.create_connection(("localhost", port), || Quiet)).unwrap();
    again.close();
    server.close();
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(1)));
}

fn create_connection_tries_each_address_in_turn(event_loop: DynSelectorEventLoop) {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let server = event_loop.create_server("127.0.0.1:0", || Quiet).unwrap();
    let open = server.local_addr().unwrap().as_inet().unwrap();
    let (transport, _) = run(&event_loop, event_loop.create_connection([closed, open], || Quiet)).unwrap();
    assert_eq!(transport.peer_addr().unwrap().as_inet().unwrap(), open);
    transport.close();
    server.close();
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(1)));
}

fn create_connection_errors_name_what_failed(event_loop: DynSelectorEventLoop) {
    let closed_port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (closed, other) = (closed_port(), closed_port());
    // Every address of localhost refuses: the kind they share comes back.
    let err = run(&event_loop, event_loop.create_connection(format!("localhost:{closed}"), || Quiet))
        .map(drop)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // Two addresses, two failures: both in the message.
    let two = [SocketAddr::from(([127, 0, 0, 1], closed)), SocketAddr::from(([127, 0, 0, 1], other))];
    let err = run(&event_loop, event_loop.create_connection(&two[..], || Quiet)).map(drop).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let message = err.to_string();
    assert!(message.contains(&two[0].to_string()) && message.contains(&two[1].to_string()), "{message}");
    let err = run(&event_loop, event_loop.create_connection(format!("{NO_SUCH_HOST}:80"), || Quiet))
        .map(drop)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(NO_SUCH_HOST), "{err}");
    let err = run(&event_loop, event_loop.create_connection("localhost", || Quiet)).map(drop).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("\"localhost\""), "{err}");
}

fn create_server_by_name(event_loop: DynSelectorEventLoop) {
    let server = event_loop.create_server("localhost:0", || Quiet).unwrap();
    let addr = server.local_addr().unwrap().as_inet().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let (transport, _) = run(&event_loop, event_loop.create_connection(addr, || Quiet)).unwrap();
    transport.close();
    server.close();
    // The name's addresses are tried in turn: a taken port fails on each.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = event_loop.create_server(("127.0.0.1", port), || Quiet).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    let err = event_loop.create_server(format!("{NO_SUCH_HOST}:0"), || Quiet).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(NO_SUCH_HOST), "{err}");
    let err = event_loop.create_server("localhost:http", || Quiet).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(1)));
}
