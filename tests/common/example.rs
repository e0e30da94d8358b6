//! Runs an example the way a user does, `cargo run --example NAME -- ARGS`,
//! and watches it with bounded waits: its stdout arrives line by line, its
//! stderr is kept for failure messages, and it is killed if the test ends
//! (or fails) while it still runs.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// `cargo run --example name -- args` for this package, whatever the
/// working directory; stdin is empty, stdout and stderr are piped.
fn cargo_run(name: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["run", "--quiet", "--manifest-path", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")])
        .args(["--example", name, "--"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A running example. Dropping it kills the example if it has not exited.
pub struct Example {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
    stderr: mpsc::Receiver<String>,
    stderr_text: Option<String>,
}

/// What an example that ran to the end left behind.
pub struct Finished {
    pub status: ExitStatus,
    /// Its stdout, one `\n` after each line.
    pub stdout: String,
    pub stderr: String,
}

impl Example {
    /// Starts `cargo run --example name -- args`.
    pub fn start(name: &str, args: &[&str]) -> Example {
        let mut child = cargo_run(name, args).spawn().expect("spawn cargo run");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (line_tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (stderr_tx, stderr_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            let _ = stderr_tx.send(String::from_utf8_lossy(&text).into_owned());
        });
        Example {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            stderr: stderr_rx,
            stderr_text: None,
        }
    }

    /// Runs the example to the end, at most `limit`.
    pub fn run(name: &str, args: &[&str], limit: Duration) -> Finished {
        let mut example = Example::start(name, args);
        let status = example.wait_exit(limit);
        let stdout = example.seen.iter().map(|line| format!("{line}\n")).collect();
        Finished { status, stdout, stderr: example.stderr() }
    }

    /// Kills the example and fails the test with `why` and all the example said.
    pub fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr();
        panic!("{}: {why}\n--- stdout ---\n{}\n--- stderr ---\n{stderr}", self.name, self.seen.join("\n"));
    }

    /// Everything the example wrote on stderr, once it has closed stderr
    /// (waiting a second at most; in a test that fails, what came so far).
    fn stderr(&mut self) -> String {
        if self.stderr_text.is_none() {
            self.stderr_text = self.stderr.recv_timeout(Duration::from_secs(1)).ok();
        }
        self.stderr_text.clone().unwrap_or_default()
    }

    /// The next stdout line that satisfies `wanted`, waiting at most
    /// `limit`; the lines passed over are kept in [`Example::seen`].
    pub fn wait_for_line(&mut self, limit: Duration, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail(&format!("no line with {what} within {limit:?}")),
                Err(RecvTimeoutError::Disconnected) => self.fail(&format!("stdout closed before {what}")),
            }
        }
    }

    /// The address a server example listens on, from its first line,
    /// `listening on 127.0.0.1:PORT` (PORT not 0). `limit` must cover
    /// building the example.
    pub fn address(&mut self, limit: Duration) -> SocketAddr {
        let first = self.wait_for_line(limit, "the first line", |_| true);
        match first.strip_prefix("listening on 127.0.0.1:").map(str::parse::<u16>) {
            Some(Ok(port)) if port != 0 => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            _ => self.fail(&format!("the first line should be 'listening on 127.0.0.1:PORT', got {first:?}")),
        }
    }

    /// Reads stdout until the example closes it, within `limit`.
    pub fn read_to_end(&mut self, limit: Duration) -> &[String] {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => return &self.seen,
                Err(RecvTimeoutError::Timeout) => self.fail(&format!("stdout still open after {limit:?}")),
            }
        }
    }

    /// Waits at most `limit` for the example to exit, then collects the
    /// rest of its stdout.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                        self.seen.push(line);
                    }
                    return status;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => self.fail(&format!("did not exit within {limit:?}")),
                Err(e) => self.fail(&format!("waiting for the example: {e}")),
            }
        }
    }

    /// Waits at most `limit` for the example to exit with status 0.
    pub fn wait_success(&mut self, limit: Duration) {
        let status = self.wait_exit(limit);
        if !status.success() {
            self.fail(&format!("exited with {status}"));
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // Never leave an example behind, even when an assertion failed.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A connection to a server example whose reads and writes give up after `limit`.
pub fn connect(address: SocketAddr, limit: Duration) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect to the example");
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.set_write_timeout(Some(limit)).unwrap();
    stream
}

/// `len` bytes that are not a short repeating cycle, so a loss or a
/// reordering in an echo shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}
