//! Runs the Layer 2 examples as a user would (`cargo run --example …`) and
//! checks what they do: the echo server echoes byte-exact on every backend
//! and exits after `--max-conns`; the timers example prints in order; the
//! producer/consumer example processes every job, on every backend.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::example::{connect, pattern, Example};
use tulip::selectors::Backend;

/// Long enough for `cargo run` to build the example if it is not built yet.
const START_LIMIT: Duration = Duration::from_secs(180);
/// How long the example may take once it runs.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// Sends `message` from one thread while reading the echo on this one (the
/// server stops reading when too much echo waits, so both must progress).
fn round_trip(stream: &TcpStream, message: &[u8]) {
    round_trip_reading_after(stream, message, Duration::ZERO);
}

/// As [`round_trip`], but starts reading only after `delay`, so the echo
/// piles up in the server.
fn round_trip_reading_after(stream: &TcpStream, message: &[u8], delay: Duration) {
    let mut writer = stream.try_clone().unwrap();
    let owned = message.to_vec();
    let sender = thread::spawn(move || writer.write_all(&owned));
    thread::sleep(delay);
    let mut echoed = vec![0u8; message.len()];
    (&*stream).read_exact(&mut echoed).expect("read the echo");
    sender.join().unwrap().expect("send");
    assert!(echoed == message, "the echo differs from what was sent ({} bytes)", message.len());
}

fn echo_callbacks_echoes_and_exits(backend: Backend) {
    let mut server =
        Example::start("echo_callbacks", &["--port", "0", "--max-conns", "2", "--backend", backend.name()]);
    let address = server.address(START_LIMIT);

    // First connection: small messages, every byte value, one after another.
    let one = connect(address, RUN_LIMIT);
    round_trip(&one, b"hello\n");
    round_trip(&one, &(0..=255u8).collect::<Vec<_>>());
    // Second connection, open at the same time: a 1 MB message.
    let two = connect(address, RUN_LIMIT);
    round_trip(&two, &pattern(1_000_000));
    // More than the kernel buffers of both sockets hold, read late: the
    // server's writes become partial, so it must buffer, flush when
    // writable, and stop reading while too much echo waits.
    round_trip_reading_after(&two, &pattern(16 << 20), Duration::from_millis(200));
    round_trip(&one, b"still there");

    // EOF from us: the server closes its side once the echo is flushed.
    for stream in [&one, &two] {
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        (&*stream).read_to_end(&mut rest).expect("the server closed the connection");
        assert!(rest.is_empty(), "nothing after the echo: {} bytes", rest.len());
    }
    // Two connections closed: `--max-conns 2` makes it exit, with status 0.
    server.wait_success(RUN_LIMIT);
}

backend_tests!(with_backend: echo_callbacks_echoes_and_exits, producer_consumer_processes_every_job);

#[test]
fn echo_server_closes_idle_connections() {
    let mut server =
        Example::start("echo_callbacks", &["--port", "0", "--max-conns", "1", "--idle-timeout", "0.2"]);
    let idle = connect(server.address(START_LIMIT), RUN_LIMIT);
    // The server's last activity (reading "ping", writing it back) comes
    // after this instant, so the idle timeout counts from later than it.
    let quiet_since = Instant::now();
    round_trip(&idle, b"ping");
    let mut rest = Vec::new();
    (&idle).read_to_end(&mut rest).expect("closed by the server");
    let waited = quiet_since.elapsed();
    assert!(rest.is_empty());
    assert!(waited >= Duration::from_millis(200), "closed after {waited:?}, before the idle timeout");
    assert!(waited < Duration::from_millis(200) + Duration::from_secs(5), "closed after {waited:?}");
    server.wait_success(RUN_LIMIT);
}

#[test]
fn timers_example_prints_in_order() {
    let started = Instant::now();
    let mut example = Example::start("timers", &[]);
    let output = example.read_to_end(START_LIMIT).to_vec();
    example.wait_success(RUN_LIMIT);
    assert!(started.elapsed() < START_LIMIT);
    let expected = [
        ("call_soon: first", 0),
        ("call_soon: second", 0),
        ("call_later(100 ms)", 100),
        ("call_at(start + 200 ms)", 200),
        ("call_soon from inside the 200 ms timer", 200),
        ("call_later(300 ms)", 300),
        ("run_forever returned", 300),
    ];
    assert_eq!(output.len(), expected.len() + 1, "{output:#?}");
    for (line, (text, at_least_ms)) in output.iter().zip(expected) {
        let (ms, rest) = line.trim_start().split_once(" ms  ").unwrap_or_else(|| panic!("{line:?}"));
        assert!(rest.starts_with(text), "expected {text:?}, got {line:?}\n{output:#?}");
        let ms: u64 = ms.parse().unwrap();
        assert!(ms >= at_least_ms, "{line:?} ran before {at_least_ms} ms");
        assert!(ms < at_least_ms + 2000, "{line:?} ran far too late");
    }
    assert!(!output.iter().any(|line| line.contains("never printed")));
    assert!(output.last().unwrap().contains("3 timers fired, 1 cancelled"), "{output:#?}");
}

/// The Queue/Semaphore/Lock/TaskGroup example: every job put once and
/// processed once, after it was put; never more than two storing or four
/// queued; done by itself in under a second.
fn producer_consumer_processes_every_job(backend: Backend) {
    let output = Example::run("producer_consumer", &["--backend", backend.name()], START_LIMIT);
    assert!(output.status.success(), "{}{}", output.stdout, output.stderr);
    // Each line is "  N ms  what": keep the what.
    let lines: Vec<&str> =
        output.stdout.lines().map(|line| line.split_once(" ms  ").map_or(line, |(_, what)| what)).collect();
    assert!(lines[0].ends_with(&format!("on {backend}")), "{lines:#?}");
    for producer in 1..=3 {
        for n in 1..=5 {
            let job = format!("job {producer}.{n}");
            let put = lines.iter().position(|l| l.starts_with(&format!("producer {producer} put {job} (")));
            let put = put.unwrap_or_else(|| panic!("{job} never put: {lines:#?}"));
            let processed: Vec<usize> = (0..lines.len())
                .filter(|&i| {
                    lines[i].starts_with("consumer ") && lines[i].ends_with(&format!(" processed {job}"))
                })
                .collect();
            assert_eq!(processed.len(), 1, "{job} processed once: {lines:#?}");
            assert!(put < processed[0], "{job} processed before it was put");
        }
    }
    // "done: 15 jobs produced, 15 processed, at most S storing at once, at most Q queued, in T ms"
    let last = lines.last().unwrap();
    let numbers: Vec<u64> =
        last.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert!(last.starts_with("done: ") && numbers.len() == 5, "unexpected last line {last:?}");
    let [produced, processed, storing, queued, ms] = numbers[..] else { unreachable!() };
    assert_eq!((produced, processed), (15, 15), "{last}");
    assert!((1..=2).contains(&storing), "the semaphore allows two: {last}");
    assert!((1..=4).contains(&queued), "the queue holds four: {last}");
    assert!(ms < 1000, "took {ms} ms");
}
