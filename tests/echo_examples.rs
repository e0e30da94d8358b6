//! Runs the two Layer 3 echo servers (`echo_async`, `echo_protocol`) with
//! `cargo run` and checks `echo_client` against each, identically, on every
//! backend. Every child is killed if it outlives its time.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tulip::selectors::Backend;

/// Covers building the examples on a cold cache.
const START_TIMEOUT: Duration = Duration::from_secs(300);
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn cargo_example(name: &str, args: &[&str]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .arg("run")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--example")
        .arg(name)
        .arg("--");
    command.args(args);
    command
}

/// Kills the child when dropped, unless it was waited for.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` at most `limit`, killing it after.
fn wait_bounded(mut guard: Guard, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        let child = guard.0.as_mut().expect("a child");
        if child.try_wait().expect("try_wait").is_some() {
            return guard.0.take().expect("a child").wait_with_output().expect("output");
        }
        assert!(Instant::now() < deadline, "{what} still running after {limit:?}: killed");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a server example with a free port; returns it and its port.
fn start_server(example: &str, backend: Backend) -> (Guard, u16) {
    let backend = backend.to_string();
    let child = cargo_example(example, &["--port", "0", "--max-conns", "4", "--backend", &backend])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cargo run");
    let mut guard = Guard(Some(child));
    let stdout = guard.0.as_mut().and_then(|child| child.stdout.take()).expect("stdout");
    let (line_tx, line_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = line_tx.send(first);
    });
    let first = line_rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| panic!("{example} printed nothing"));
    let port = first
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{example}'s first line: {first:?}"));
    (guard, port)
}

fn check_server(example: &str) {
    for backend in Backend::available() {
        let (server, port) = start_server(example, backend);
        let port = port.to_string();
        // Two clients, 4 connections in all: the server then exits by itself.
        for conns in ["1", "3"] {
            let client = cargo_example(
                "echo_client",
                &[
                    "--port",
                    &port,
                    "--conns",
                    conns,
                    "--messages",
                    "300",
                    "--size",
                    "100",
                    "--backend",
                    &backend.to_string(),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cargo run echo_client");
            let output = wait_bounded(Guard(Some(client)), RUN_TIMEOUT, "echo_client");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{example}/{backend}: client failed: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let expected =
                format!("ok: {} round trips over {conns} connections", 300 * conns.parse::<u32>().unwrap());
            assert!(stdout.starts_with(&expected), "{example}/{backend}: {stdout:?}");
        }
        let output = wait_bounded(server, RUN_TIMEOUT, example);
        assert!(output.status.success(), "{example}/{backend} exited with {}", output.status);
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
