//! Runs the two Layer 3 echo servers (`echo_async`, `echo_protocol`) with
//! `cargo run` and checks `echo_client` against each, identically, on every
//! backend. Every child is killed if it outlives its time.

use std::time::Duration;

use tulip::selectors::Backend;

mod common;

use common::example::Example;

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

/// Every Layer 3 echo example treats a bad command line alike: the problem
/// and the usage line on stderr, exit status 2, nothing served.
#[test]
fn bad_command_lines_exit_2_with_the_usage() {
    let cases: [(&str, &[&str], &str); 5] = [
        ("echo_async", &["--bogus", "1"], "unknown option --bogus"),
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
