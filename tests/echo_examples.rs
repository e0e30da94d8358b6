//! Runs the three Layer 3 echo servers (`echo_async`, `echo_protocol`,
//! `echo_streams`) with `cargo run` and checks each identically, on every
//! backend: `echo_client` against it, then black-box checks from plain
//! sockets (100 concurrent connections byte-exact, 10 MiB to a slow
//! reader, a half-close). Every child is killed if it outlives its time.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use tulip::selectors::Backend;

mod common;

use common::example::{connect, pattern, Example};

/// Covers building the examples on a cold cache.
const START_TIMEOUT: Duration = Duration::from_secs(300);
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn check_server(example: &str) {
    for backend in Backend::available() {
        let backend_name = backend.to_string();
        let mut server =
            Example::start(example, &["--port", "0", "--max-conns", "4", "--backend", &backend_name]);
        let port = server.address(START_TIMEOUT).port().to_string();
        // Two clients, 4 connections in all: the server then exits by itself.
        for conns in ["1", "3"] {
            let args = [
                "--port",
                &port,
                "--conns",
                conns,
                "--messages",
                "300",
                "--size",
                "100",
                "--backend",
                &backend_name,
            ];
            let output = Example::run("echo_client", &args, RUN_TIMEOUT);
            let stdout = &output.stdout;
            assert!(output.status.success(), "{example}/{backend}: client failed: {stdout}{}", output.stderr);
            let expected =
                format!("ok: {} round trips over {conns} connections", 300 * conns.parse::<u32>().unwrap());
            assert!(stdout.starts_with(&expected), "{example}/{backend}: {stdout:?}");
        }
        let status = server.wait_exit(RUN_TIMEOUT);
        assert!(status.success(), "{example}/{backend} exited with {status}");
    }
}

#[test]
fn echo_async_serves_the_client() {
    check_server("echo_async");
}

#[test]
fn echo_protocol_serves_the_client() {
    check_server("echo_protocol");
}

#[test]
fn echo_streams_serves_the_client() {
    check_server("echo_streams");
}

/// Connections the black-box checks make: 100 at once, the slow reader,
/// the half-close.
const CHECKED_CONNS: usize = 102;

/// The checks every Layer 3 echo server passes, as a client on plain
/// blocking sockets sees them; the server then exits by itself
/// (`--max-conns`).
fn black_box(example: &str) {
    for backend in Backend::available() {
        let backend_name = backend.to_string();
        let max_conns = CHECKED_CONNS.to_string();
        let mut server =
            Example::start(example, &["--port", "0", "--max-conns", &max_conns, "--backend", &backend_name]);
        let address = server.address(START_TIMEOUT);
        hundred_connections_at_once(address);
        ten_mib_to_a_slow_reader(address);
        half_close(address);
        let status = server.wait_exit(RUN_TIMEOUT);
        assert!(status.success(), "{example}/{backend} exited with {status}");
    }
}

/// 100 connections open together; three rounds of a message on each, its
/// bytes different per connection and round, then every echo, byte-exact.
fn hundred_connections_at_once(address: SocketAddr) {
    let conns: Vec<TcpStream> = (0..100).map(|_| connect(address, RUN_TIMEOUT)).collect();
    let base = pattern(4096 + 100 * 3);
    for round in 0..3 {
        let message = |i: usize| &base[i * 3 + round..i * 3 + round + 1000 + i * 30];
        for (i, mut conn) in conns.iter().enumerate() {
            conn.write_all(message(i)).expect("send");
        }
        for (i, mut conn) in conns.iter().enumerate() {
            let mut echo = vec![0u8; message(i).len()];
            conn.read_exact(&mut echo).expect("read the echo");
            assert!(echo == message(i), "connection {i}, round {round}: the echo differs");
        }
    }
    for conn in &conns {
        conn.shutdown(Shutdown::Write).unwrap();
    }
    for mut conn in conns {
        assert_eq!(conn.read(&mut [0u8; 16]).expect("read the end"), 0, "the server closes after our EOF");
    }
}

/// 10 MiB sent while the reader starts late and reads slowly: the server
/// must hold back (stop reading) rather than lose or reorder bytes.
fn ten_mib_to_a_slow_reader(address: SocketAddr) {
    const TOTAL: usize = 10 << 20;
    let conn = connect(address, RUN_TIMEOUT);
    let mut sending = conn.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let data = pattern(TOTAL);
        sending.write_all(&data).expect("send 10 MiB");
        sending.shutdown(Shutdown::Write).unwrap();
    });
    thread::sleep(Duration::from_millis(300));
    let expected = pattern(TOTAL);
    let mut got = 0;
    let mut buf = vec![0u8; 32 * 1024];
    let mut reader = &conn;
    loop {
        let n = reader.read(&mut buf).expect("read the echo");
        if n == 0 {
            break;
        }
        assert!(got + n <= TOTAL, "more echo than was sent");
        assert!(buf[..n] == expected[got..got + n], "the echo differs from byte {got} on");
        got += n;
        if got % (1 << 20) < n {
            thread::sleep(Duration::from_millis(20)); // slow: a pause every MiB
        }
    }
    assert_eq!(got, TOTAL, "the whole echo, then the end");
    sender.join().unwrap();
}

/// Bytes with no newline, then our EOF: all of them come back, then the
/// server's EOF.
fn half_close(address: SocketAddr) {
    let mut conn = connect(address, RUN_TIMEOUT);
    conn.write_all(b"no newline at the end").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut echo = Vec::new();
    conn.read_to_end(&mut echo).expect("read to the end");
    assert_eq!(echo, b"no newline at the end");
}

#[test]
fn echo_async_passes_the_black_box_checks() {
    black_box("echo_async");
}

#[test]
fn echo_protocol_passes_the_black_box_checks() {
    black_box("echo_protocol");
}

#[test]
fn echo_streams_passes_the_black_box_checks() {
    black_box("echo_streams");
}

/// `--help` prints the usage on stdout and exits 0.
#[test]
fn echo_streams_help() {
    let output = Example::run("echo_streams", &["--help"], START_TIMEOUT);
    assert!(output.status.success());
    assert!(output.stdout.starts_with("usage: echo_streams"), "{}", output.stdout);
    assert!(output.stdout.contains("--max-conns N"), "{}", output.stdout);
}

/// Every Layer 3 echo example treats a bad command line alike: the problem
/// and the usage line on stderr, exit status 2, nothing served.
#[test]
fn bad_command_lines_exit_2_with_the_usage() {
    let cases: [(&str, &[&str], &str); 7] = [
        ("echo_async", &["--bogus", "1"], "unknown option --bogus"),
        ("echo_streams", &["--bogus", "1"], "unknown option --bogus"),
        ("echo_streams", &["--max-conns", "0"], "--max-conns must be at least 1"),
        ("echo_protocol", &["--max-conns", "0"], "--max-conns must be at least 1"),
        ("echo_async", &["--max-conns", "0"], "--max-conns must be at least 1"),
        ("echo_protocol", &["--port"], "--port needs a value"),
        ("echo_client", &["--conns", "2"], "--port is required"),
    ];
    for (example, args, problem) in cases {
        let output = Example::run(example, args, START_TIMEOUT);
        assert_eq!(output.status.code(), Some(2), "{example} {args:?}: {}", output.stderr);
        assert!(output.stderr.contains(problem), "{example} {args:?}: {}", output.stderr);
        assert!(output.stderr.contains(&format!("usage: {example}")), "{example}: {}", output.stderr);
        assert!(output.stdout.is_empty(), "{example} {args:?} printed {:?}", output.stdout);
    }
}
