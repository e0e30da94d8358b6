//! Every example answers a newcomer the same way: `--help` prints its usage
//! on stdout and exits 0, a mistake prints the usage on stderr and exits 2.
//! And every example server survives running out of fds: it stops
//! accepting for a while instead of spinning, and serves again once fds
//! are free.
//!
//! The examples are run from their built binaries (`cargo test` builds
//! them first), so that a lowered fd limit applies to the example itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every example of the crate (a new one must be added here, and answer `--help`).
const EXAMPLES: [&str; 15] = [
    "compare_backends",
    "echo_async",
    "echo_callbacks",
    "echo_client",
    "echo_protocol",
    "echo_streams",
    "my_selector",
    "producer_consumer",
    "resolve",
    "seed_server",
    "subprocess",
    "threads",
    "timers",
    "tour",
    "udp_echo",
];

/// The built example `name`: next to this test binary's directory.
fn example(name: &str) -> Command {
    let mut path = std::env::current_exe().expect("the test binary's path");
    path.pop(); // deps
    path.pop(); // debug (or release)
    let path: PathBuf = path.join("examples").join(name);
    assert!(path.exists(), "{} is not built (cargo test builds the examples)", path.display());
    let mut command = Command::new(path);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

#[test]
fn every_example_answers_help_and_mistakes_the_same_way() {
    let listed: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .unwrap()
        .filter_map(|entry| {
            entry.ok()?.file_name().into_string().ok()?.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    for name in &listed {
        assert!(EXAMPLES.contains(&name.as_str()), "examples/{name}.rs is not checked here");
    }
    for name in EXAMPLES {
        let help = example(name).arg("--help").output().unwrap();
        let stdout = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{name} --help: {help:?}");
        assert!(stdout.starts_with(&format!("usage: {name}")), "{name} --help printed {stdout:?}");
        assert!(stdout.contains("--help"), "{name}'s usage names --help");

        let bad = example(name).arg("--no-such-option").output().unwrap();
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{name} --no-such-option: {bad:?}");
        assert!(
            stderr.starts_with(&format!("{name}: unknown option --no-such-option")),
            "{name}: {stderr:?}"
        );
        assert!(stderr.contains(&format!("usage: {name}")), "{name}: {stderr:?}");
        assert!(bad.stdout.is_empty(), "{name} printed to stdout on a mistake");
    }
}

/// A running example server, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts server `name` on a free port with at most `fds` open files.
fn start_with_fd_limit(name: &str, fds: libc::rlim_t) -> Server {
    let mut command = example(name);
    command.args(["--port", "0"]);
    // SAFETY: between fork and exec the closure only calls setrlimit, which
    // is async-signal-safe, on a local struct.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: fds, rlim_max: fds };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{name} said {line:?}"));
    let addr = addr.parse().unwrap();
    // Keep reading what it prints, so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Server { child, addr }
}

/// CPU time the process has used (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf takes a constant and touches no memory.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

fn echo_once(stream: &mut TcpStream, message: &[u8]) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(message).unwrap();
    let mut echoed = vec![0; message.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, message);
}

#[test]
fn every_example_server_backs_off_when_out_of_fds_and_serves_again() {
    for name in ["echo_callbacks", "echo_async", "echo_protocol", "echo_streams", "seed_server"] {
        let server = start_with_fd_limit(name, 32);
        // More clients than fds: the kernel queues them in the backlog, the
        // server accepts until EMFILE.
        let mut clients: Vec<TcpStream> = (0..48).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
        echo_once(&mut clients[0], b"first");
        std::thread::sleep(Duration::from_millis(200));
        let before = cpu_time(server.child.id());
        std::thread::sleep(Duration::from_millis(1000));
        let spent = cpu_time(server.child.id()) - before;
        assert!(spent < Duration::from_millis(300), "{name} spun out of fds: {spent:?} of CPU in 1 s");
        // Free fds: the clients it accepted go away; the last one, still
        // waiting in the backlog, is served once the server accepts again.
        let mut last = clients.pop().unwrap();
        clients.clear();
        let started = Instant::now();
        echo_once(&mut last, b"still serving");
        assert!(started.elapsed() < Duration::from_secs(10), "{name}");
    }
}

/// Runs `command` to the end, within `limit`; its stdout and stderr.
fn run_bounded(mut command: Command, limit: Duration) -> (String, String) {
    let mut child = command.spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (out.join().unwrap(), err.join().unwrap())
}

/// The seed tour runs to the end by itself, every slide there, with the
/// system calls of every backend on screen.
#[test]
fn the_tour_runs_to_the_end_with_the_transcript() {
    let (stdout, stderr) = run_bounded(example("tour"), Duration::from_secs(30));
    for slide in ["== 1. Polling", "== 2. The event loop", "== 3. Coroutines", "== 4. The closing demo"] {
        assert!(stdout.contains(slide), "no {slide:?} in\n{stdout}\n{stderr}");
    }
    for call in ["poll([", "select(nfds="] {
        assert!(stdout.contains(call), "no {call:?} in\n{stdout}");
    }
    if tulip::selectors::Backend::available().contains(&tulip::selectors::Backend::Epoll) {
        assert!(stdout.contains("epoll_wait("), "{stdout}");
    }
    assert!(stdout.contains("BaseSelectorEventLoop<S>"), "{stdout}");
    assert!(stdout.contains("#1 "), "the loop's iteration record: {stdout}");
    assert!(stdout.contains("listening on 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("the tour is over"), "{stdout}");
}

/// `TULIP_TRACE=1` turns both transcripts on for an example that knows
/// nothing of them: the selector's system calls and the loop's iterations,
/// on stderr.
#[test]
fn tulip_trace_prints_the_syscalls_and_the_iterations() {
    let mut command = example("timers");
    command.env("TULIP_TRACE", "1");
    let (stdout, stderr) = run_bounded(command, Duration::from_secs(30));
    assert!(stdout.contains("run_forever returned"), "{stdout}");
    let calls = ["epoll_wait(", "poll(", "select(nfds=", "kevent("];
    assert!(calls.iter().any(|call| stderr.contains(call)), "no system call in\n{stderr}");
    assert!(stderr.contains("#1 "), "no iteration record in\n{stderr}");
    assert!(stderr.contains("timer fired (scheduled at examples/timers.rs:"), "{stderr}");
    let (_, quiet) = run_bounded(example("timers"), Duration::from_secs(30));
    assert!(!quiet.contains("#1 "), "without TULIP_TRACE nothing is traced: {quiet}");
}

/// The exercise (`examples/my_selector.rs`, a backend over `ppoll(2)`)
/// passes every rule of the conformance kit, each printed as it passes;
/// `--rule` checks one, and refuses a name the kit does not have.
#[cfg(not(target_vendor = "apple"))]
#[test]
fn the_exercise_passes_every_rule_of_the_kit() {
    let (stdout, stderr) = run_bounded(example("my_selector"), Duration::from_secs(60));
    let rules = tulip_selectors::conformance::RULES;
    for rule in rules {
        let passed = stdout.lines().any(|line| line.split_whitespace().take(2).eq(["ok", rule.name()]));
        assert!(passed, "no \"ok {}\" in\n{stdout}\n{stderr}", rule.name());
    }
    assert!(stdout.contains(&format!("{} passed, 0 failed", rules.len())), "{stdout}");

    let mut one_rule = example("my_selector");
    one_rule.args(["--rule", "timeout_is_never_early"]);
    let (stdout, _) = run_bounded(one_rule, Duration::from_secs(30));
    assert_eq!(stdout.trim(), "ok: timeout_is_never_early");
    let unknown = example("my_selector").args(["--rule", "no_such_rule"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no rule named \"no_such_rule\""),
        "{unknown:?}"
    );
}
