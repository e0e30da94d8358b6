//! Runs `examples/seed_server.rs` the way the README does (`cargo run
//! --example seed_server -- …`), once per backend, and talks to it over TCP:
//! echoes must be byte-exact, big ones must go through the server's
//! partial-write path, and `--max-conns` must make it exit 0. Every wait is
//! bounded; a server that hangs is killed and the test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use tulip::selectors::Backend;

/// Waiting for the first line may include compiling the example.
const START_BOUND: Duration = Duration::from_secs(240);
/// Any other wait.
const BOUND: Duration = Duration::from_secs(30);

/// `cargo run --example seed_server -- <args>`, for this package whatever the working directory.
fn seed_server(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["run", "--quiet", "--manifest-path", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")])
        .args(["--example", "seed_server", "--"])
        .args(args);
    command
}

/// A running server: its stdout lines arrive on a channel, stderr is kept for failure messages.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = seed_server(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cargo run");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Server { child, lines, seen: Vec::new(), stderr: Some(stderr) }
    }

    /// Kills the server and panics with everything it said.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        panic!("{why}\n--- server stdout ---\n{}\n--- server stderr ---\n{stderr}", self.seen.join("\n"));
    }

    /// The next stdout line that satisfies `wanted`, waiting at most `bound`.
    fn wait_for_line(&mut self, bound: Duration, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail(&format!("no line with {what} within {bound:?}")),
                Err(RecvTimeoutError::Disconnected) => self.fail(&format!("stdout closed before {what}")),
            }
        }
    }

    /// The address from the first line, `listening on 127.0.0.1:PORT`.
    fn address(&mut self) -> SocketAddr {
        let first = self.wait_for_line(START_BOUND, "the first line", |_| true);
        let Some(address) = first.strip_prefix("listening on ") else {
            self.fail(&format!("first line should be 'listening on ADDRESS', got {first:?}"));
        };
        match address.trim().parse() {
            Ok(address) => address,
            Err(e) => self.fail(&format!("bad address in {first:?}: {e}")),
        }
    }

    fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    // Collect what it printed last.
                    while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                        self.seen.push(line);
                    }
                    return status;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => self.fail(&format!("the server did not exit within {bound:?}")),
                Err(e) => self.fail(&format!("waiting for the server: {e}")),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave a server behind, even when an assertion failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect to the seed server");
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream.set_write_timeout(Some(BOUND)).unwrap();
    stream
}

/// A message whose bytes are not all alike, so a reordering or loss shows.
fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

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

fn echo_with(backend: Backend) {
    let mut server = Server::start(&["--port", "0", "--max-conns", "3", "--backend", &backend.to_string()]);
    let address = server.address();
    assert!(address.ip().is_loopback());
    let tag = format!("[{backend}]");

    // 1. A line, echoed back.
    let mut client = connect(address);
    client.write_all(b"hello, seed\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_echo(&mut client, b"hello, seed\n");
    drop(client);
    server.wait_for_line(BOUND, "the accept", |l| {
        l.starts_with(&tag) && l.contains("READ -> accept 127.0.0.1:")
    });
    server.wait_for_line(BOUND, "the echo", |l| l.starts_with(&tag) && l.contains("12 bytes echoed"));

    // 2. One megabyte, read while it is being sent.
    let big = message(1 << 20);
    let mut client = connect(address);
    let writer = send_in_background(&client, big.clone());
    read_echo(&mut client, &big);
    writer.join().expect("writer thread");
    drop(client);

    // 3. Sixteen megabytes, not read until the server reports an echo it
    // could not send at once: then it must queue, ask for WRITE, and flush.
    let huge = message(16 << 20);
    let mut client = connect(address);
    let writer = send_in_background(&client, huge.clone());
    server.wait_for_line(BOUND, "a partial write", |l| l.starts_with(&tag) && l.contains("pending"));
    read_echo(&mut client, &huge);
    writer.join().expect("writer thread");
    drop(client);

    let status = server.wait_exit(BOUND);
    if !status.success() {
        server.fail(&format!("exit status {status}"));
    }
    let said = |needle: &str| server.seen.iter().any(|l| l.starts_with(&tag) && l.contains(needle));
    assert!(said("WRITE -> "), "queued echoes are flushed on WRITE readiness");
    assert!(said("3 closed so far"), "all three connections were closed");
    assert!(said("--max-conns reached (3 closed), exiting"));
}

#[test]
fn echoes_with_select() {
    echo_with(Backend::Select);
}

#[test]
fn echoes_with_poll() {
    echo_with(Backend::Poll);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn echoes_with_epoll() {
    echo_with(Backend::Epoll);
}

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
#[test]
fn echoes_with_kqueue() {
    echo_with(Backend::Kqueue);
}

/// The backend picked when none is named is `Backend::default()`.
#[test]
fn default_backend_is_the_best_one_here() {
    let mut server = Server::start(&["0", "--max-conns=1"]);
    let address = server.address();
    let mut client = connect(address);
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
        let output = seed_server(&args).stdin(Stdio::null()).output().expect("run cargo");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} should exit 2; stderr: {stderr}");
        assert!(stderr.contains("usage: seed_server"), "{args:?}: no usage on stderr: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let output = seed_server(&["--help"]).stdin(Stdio::null()).output().expect("run cargo");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("usage: seed_server"));
}
