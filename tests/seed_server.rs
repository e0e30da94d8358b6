//! Runs `examples/seed_server.rs` the way the README does (`cargo run
//! --example seed_server -- …`), once per backend, and talks to it over TCP:
//! echoes must be byte-exact, big ones must go through the server's
//! partial-write path, and `--max-conns` must make it exit 0. Every wait is
//! bounded; a server that hangs is killed and the test fails.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tulip::selectors::Backend;

#[macro_use]
mod common;

use common::example::{connect, pattern, Example};

/// Waiting for the first line may include compiling the example.
const START_BOUND: Duration = Duration::from_secs(240);
/// Any other wait.
const BOUND: Duration = Duration::from_secs(30);

/// Sends `data` from a thread, then half-closes; returns the writer thread.
fn send_in_background(stream: &TcpStream, data: Vec<u8>) -> thread::JoinHandle<()> {
    let mut writer = stream.try_clone().expect("clone the client socket");
    thread::spawn(move || {
        writer.write_all(&data).expect("send to the seed server");
        writer.shutdown(Shutdown::Write).expect("half-close");
    })
}

/// Reads until end of file, which must come within [`BOUND`] and after exactly `expected`.
fn read_echo(stream: &mut TcpStream, expected: &[u8]) {
    let deadline = Instant::now() + BOUND;
    let mut echoed = Vec::with_capacity(expected.len());
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        assert!(
            Instant::now() < deadline,
            "echo not complete within {BOUND:?} ({} bytes so far)",
            echoed.len()
        );
        let n = stream.read(&mut chunk).expect("read the echo");
        if n == 0 {
            break;
        }
        echoed.extend_from_slice(&chunk[..n]);
        assert!(echoed.len() <= expected.len(), "the echo is longer than what was sent");
    }
    assert_eq!(echoed.len(), expected.len(), "echo length");
    assert!(echoed == expected, "echo differs from what was sent");
}

fn echoes(backend: Backend) {
    let mut server = Example::start(
        "seed_server",
        &["--port", "0", "--max-conns", "3", "--backend", &backend.to_string()],
    );
    let address = server.address(START_BOUND);
    let tag = format!("[{backend}]");

    // 1. A line, echoed back.
    let mut client = connect(address, BOUND);
    client.write_all(b"hello, seed\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_echo(&mut client, b"hello, seed\n");
    drop(client);
    server.wait_for_line(BOUND, "the accept", |l| {
        l.starts_with(&tag) && l.contains("READ -> accept 127.0.0.1:")
    });
    server.wait_for_line(BOUND, "the echo", |l| l.starts_with(&tag) && l.contains("12 bytes echoed"));

    // 2. One megabyte, read while it is being sent.
    let big = pattern(1 << 20);
    let mut client = connect(address, BOUND);
    let writer = send_in_background(&client, big.clone());
    read_echo(&mut client, &big);
    writer.join().expect("writer thread");
    drop(client);

    // 3. Sixteen megabytes, not read until the server reports an echo it
    // could not send at once: then it must queue, ask for WRITE, and flush.
    let huge = pattern(16 << 20);
    let mut client = connect(address, BOUND);
    let writer = send_in_background(&client, huge.clone());
    server.wait_for_line(BOUND, "a partial write", |l| l.starts_with(&tag) && l.contains("pending"));
    read_echo(&mut client, &huge);
    writer.join().expect("writer thread");
    drop(client);

    server.wait_success(BOUND);
    let said = |needle: &str| server.seen.iter().any(|l| l.starts_with(&tag) && l.contains(needle));
    assert!(said("WRITE -> "), "queued echoes are flushed on WRITE readiness");
    assert!(said("3 closed so far"), "all three connections were closed");
    assert!(said("--max-conns reached (3 closed), exiting"));
}

backend_tests!(with_backend: echoes);

/// The backend picked when none is named is `Backend::default()`.
#[test]
fn default_backend_is_the_best_one_here() {
    let mut server = Example::start("seed_server", &["0", "--max-conns=1"]);
    let address = server.address(START_BOUND);
    let mut client = connect(address, BOUND);
    client.write_all(b"x").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_echo(&mut client, b"x");
    drop(client);
    assert!(server.wait_exit(BOUND).success());
    let tag = format!("[{}]", Backend::default());
    assert!(server.seen.iter().skip(1).all(|l| l.starts_with(&tag)), "{:?}", server.seen);
}

#[test]
fn bad_arguments_print_usage_and_exit_2() {
    let mut cases = vec![
        vec!["--backend", "devpoll"],
        vec!["--backend"],
        vec!["--port", "65536"],
        vec!["--port=http"],
        vec!["--max-conns", "0"],
        vec!["--max-conns", "-1"],
        vec!["--frobnicate"],
        vec!["8888", "9999"],
    ];
    for backend in Backend::ALL {
        if !Backend::available().contains(&backend) {
            cases.push(vec!["--backend", backend.name()]);
        }
    }
    for args in cases {
        let output = Example::run("seed_server", &args, START_BOUND);
        let stderr = &output.stderr;
        assert_eq!(output.status.code(), Some(2), "{args:?} should exit 2; stderr: {stderr}");
        assert!(stderr.contains("usage: seed_server"), "{args:?}: no usage on stderr: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let output = Example::run("seed_server", &["--help"], START_BOUND);
    assert!(output.status.success());
    assert!(output.stdout.contains("usage: seed_server"));
}
