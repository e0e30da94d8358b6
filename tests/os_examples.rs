//! Runs the examples of issue 14 as a user would (`cargo run --example …`)
//! and checks what they print: `udp_echo` driven by an independent client
//! (Python's asyncio) on every backend, `threads`, `resolve` and
//! `subprocess`. Every child is killed if it outlives its time.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::example::Example;
use tulip::selectors::Backend;

/// Long enough for `cargo run` to build an example on a cold cache.
const START_LIMIT: Duration = Duration::from_secs(300);
/// How long an example may take once it runs.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A UDP client written with Python's asyncio, knowing nothing of tulip:
/// sends `count` numbered datagrams one at a time, each checked when it
/// comes back (resent after a second without an answer: UDP may drop),
/// then prints `ok COUNT`.
const PYTHON_CLIENT: &str = r#"
import asyncio, sys

class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.waiting = None
    def datagram_received(self, data, addr):
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(data)
    def error_received(self, exc):
        print("error", exc, file=sys.stderr)

async def main(port, count):
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    for i in range(count):
        message = ("datagram %d " % i).encode() + bytes(range(256)) * (i % 5)
        for attempt in range(5):
            client.waiting = loop.create_future()
            transport.sendto(message)
            try:
                echo = await asyncio.wait_for(client.waiting, 1.0)
                break
            except asyncio.TimeoutError:
                continue
        else:
            sys.exit("no echo for datagram %d" % i)
        if echo != message:
            sys.exit("datagram %d came back altered" % i)
    transport.close()
    print("ok", count)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"#;

/// `python3`, if this machine has it.
fn python() -> Option<Command> {
    let found = Command::new("python3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    match found {
        Ok(status) if status.success() => Some(Command::new("python3")),
        _ => {
            eprintln!("python3 is not available here: the asyncio client is skipped");
            None
        }
    }
}

/// Runs `command` to its end, at most `limit`: (status, stdout, stderr).
fn run_bounded(mut command: Command, limit: Duration) -> (std::process::ExitStatus, String, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

fn udp_echo_answers_an_asyncio_client(backend: Backend) {
    let Some(mut python) = python() else { return };
    let mut server =
        Example::start("udp_echo", &["--port", "0", "--max-datagrams", "20", "--backend", backend.name()]);
    let port = server.address(START_LIMIT).port().to_string();
    python.args(["-c", PYTHON_CLIENT, &port, "20"]);
    let (status, stdout, stderr) = run_bounded(python, RUN_LIMIT);
    assert!(status.success(), "{backend}: the asyncio client failed: {stdout}{stderr}");
    assert_eq!(stdout.trim(), "ok 20", "{backend}: {stderr}");
    // Twenty datagrams echoed: the server exits by itself.
    server.wait_success(RUN_LIMIT);
}

backend_tests!(with_backend: udp_echo_answers_an_asyncio_client);

#[test]
fn threads_example_keeps_the_loop_free() {
    let output = Example::run("threads", &[], START_LIMIT);
    assert!(output.status.success(), "{}{}", output.stdout, output.stderr);
    let lines: Vec<(u64, &str)> = output
        .stdout
        .lines()
        .map(|line| {
            let (ms, text) = line.trim_start().split_once(" ms  ").unwrap_or_else(|| panic!("{line:?}"));
            (ms.parse().unwrap(), text)
        })
        .collect();
    let at = |prefix: &str| lines.iter().find(|(_, text)| text.starts_with(prefix)).map(|(ms, _)| *ms);
    let first_tick = at("tick").expect("the loop ticked");
    let last_job = at("job 4").expect("job 4 finished");
    assert!(first_tick < last_job, "the loop ticked while the jobs ran: {lines:?}");
    assert!(last_job >= 400, "job 4 sleeps 400 ms: {lines:?}");
    for i in 1..=4 {
        assert!(at(&format!("job {i}: slept {} ms, then found 5133 primes", i * 100)).is_some(), "{lines:?}");
    }
    let panicked = lines.iter().find(|(_, text)| text.starts_with("the panicking job")).expect("reported").1;
    assert!(panicked.contains("the function panicked at examples/threads.rs:"), "{panicked}");
    assert!(panicked.ends_with("no answer for you"), "{panicked}");
    assert!(lines.last().unwrap().1.starts_with("all done on"), "{lines:?}");
}

#[test]
fn resolve_example_looks_up_localhost_and_names_what_it_cannot() {
    let output = Example::run("resolve", &["localhost", "127.0.0.1", "no such host.invalid"], START_LIMIT);
    assert_eq!(output.status.code(), Some(1), "a name was not found: {}{}", output.stdout, output.stderr);
    let stdout = &output.stdout;
    assert!(
        stdout.lines().any(|line| line.starts_with("localhost: ") && line.contains("127.0.0.1")),
        "{stdout}"
    );
    assert!(stdout.contains("127.0.0.1: 127.0.0.1 (a literal: no lookup)"), "{stdout}");
    assert!(stdout.contains("no such host.invalid: failed to resolve \"no such host.invalid\""), "{stdout}");
    assert!(stdout.ends_with("3 names, 1 not found\n"), "{stdout}");
    // --connect to a port nobody listens on: looked up, then refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let output = Example::run("resolve", &["--connect", "--port", &closed, "localhost"], RUN_LIMIT);
    assert!(output.status.success(), "{}{}", output.stdout, output.stderr);
    assert!(output.stdout.contains("localhost: cannot connect:"), "{}", output.stdout);
}

#[test]
fn subprocess_example_runs_its_four_parts() {
    for backend in Backend::available() {
        let output = Example::run("subprocess", &["--backend", backend.name()], START_LIMIT);
        assert!(output.status.success(), "{backend}: {}{}", output.stdout, output.stderr);
        let stdout = &output.stdout;
        assert!(
            stdout.contains("1. tr answered \"HELLO, CHILD\" on stdout, \"\" on stderr; exit status 0"),
            "{stdout}"
        );
        let lines: Vec<&str> = stdout.lines().filter(|line| line.starts_with("2.")).collect();
        assert_eq!(lines.len(), 5, "{stdout}");
        for (line, text) in lines[1..4].iter().zip(["line 1", "line 2", "line 3"]) {
            assert!(line.ends_with(text), "{stdout}");
        }
        assert!(stdout.contains("returncode -15"), "{stdout}");
        assert!(
            stdout.contains("4. connect_read_pipe got 4 lines, then end of file; the child exited with 0"),
            "{stdout}"
        );
    }
}

/// The new examples treat a bad command line as the others do: the problem
/// and the usage line on stderr, exit status 2, nothing done.
#[test]
fn bad_command_lines_exit_2_with_the_usage() {
    let cases: [(&str, &[&str], &str); 5] = [
        ("udp_echo", &["--bogus", "1"], "unknown option --bogus"),
        ("udp_echo", &["--max-datagrams", "0"], "--max-datagrams must be at least 1"),
        ("threads", &["--backend"], "--backend needs a value"),
        ("resolve", &[], "no name to look up"),
        ("subprocess", &["--bogus", "x"], "unknown option --bogus"),
    ];
    for (example, args, problem) in cases {
        let output = Example::run(example, args, START_LIMIT);
        assert_eq!(output.status.code(), Some(2), "{example} {args:?}: {}", output.stderr);
        assert!(output.stderr.contains(problem), "{example} {args:?}: {}", output.stderr);
        assert!(output.stderr.contains(&format!("usage: {example}")), "{example}: {}", output.stderr);
        assert!(output.stdout.is_empty(), "{example} {args:?} printed {:?}", output.stdout);
    }
}
