//! Child processes and pipes on every backend, with the default child
//! watcher (a pidfd per child on Linux) and, in `sigchld_watcher::*`, with
//! the `SIGCHLD` watcher (one loop at a time: signal handling is
//! process-wide, so those tests take turns). A hundred short-lived
//! children, `cat` fed 10 MiB, children killed by signals, a loop closed
//! with children running, unknown programs, and the pipe transports.

#[macro_use]
mod common;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tulip::selectors::mechanism::nonblocking_pipe;
use tulip::selectors::Backend;
use tulip::{AbstractEventLoop, ChildWatcher, DynSelectorEventLoop, Protocol, Transport};

backend_tests!(
    run_on_thread:
    a_hundred_short_lived_children,
    cat_echoes_10_mib_byte_exact,
    communicate_a_few_bytes,
    children_killed_by_signals,
    closing_the_loop_kills_and_reaps_running_children,
    unknown_programs_are_not_found,
    pipes_read_and_written_piece_by_piece,
    read_and_write_pipe_transports,
    child_handlers_refuse_what_is_not_a_child,
);

/// Each case again with the `SIGCHLD` watcher.
macro_rules! with_signal_watcher {
    ($($case:ident),* $(,)?) => {
        mod sigchld_watcher {
            use super::*;
            $(
                #[test]
                fn $case() {
                    for backend in Backend::available() {
                        common::run_on_thread(backend, |lp| {
                            lp.set_child_watcher(ChildWatcher::Signal).unwrap();
                            super::$case(lp)
                        });
                    }
                }
            )*
        }
    };
}

/// One loop at a time may handle signals.
static SIGNALS: Mutex<()> = Mutex::new(());

/// Waits for this test's turn if its loop watches children with
/// `SIGCHLD` (the `sigchld_watcher` tests, and every test where there is
/// no pidfd): one loop at a time may handle signals.
/// The loop comes back second, so that it is dropped (and gives signal
/// handling back) before the turn ends: `let (_turn, event_loop) = …`.
fn turn(
    event_loop: DynSelectorEventLoop,
) -> (Option<std::sync::MutexGuard<'static, ()>>, DynSelectorEventLoop) {
    let turn = (event_loop.child_watcher() == ChildWatcher::Signal)
        .then(|| SIGNALS.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    (turn, event_loop)
}

with_signal_watcher!(
    a_hundred_short_lived_children,
    cat_echoes_10_mib_byte_exact,
    communicate_a_few_bytes,
    children_killed_by_signals,
    closing_the_loop_kills_and_reaps_running_children,
    unknown_programs_are_not_found,
);

/// Runs `fut` under a generous timeout; a hang fails the test.
fn run<F: Future>(event_loop: &DynSelectorEventLoop, fut: F) -> F::Output {
    event_loop.run_until_complete(tulip::wait_for(event_loop, fut, Duration::from_secs(60))).unwrap().unwrap()
}

/// `true` if `pid` is a zombie child of this process (Linux's `/proc`;
/// elsewhere nothing can be told, and `false`).
fn is_our_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // pid (comm) state ppid ...: the comm may hold spaces and parentheses.
    let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return false };
    let mut fields = after.split_whitespace();
    let (state, ppid) = (fields.next(), fields.next());
    state == Some("Z") && ppid == Some(&std::process::id().to_string())
}

/// Waits (at most 10 s) until none of `pids` is a zombie of ours.
fn assert_reaped(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let zombies: Vec<u32> = pids.iter().copied().filter(|&pid| is_our_zombie(pid)).collect();
        if zombies.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "zombies left behind: {zombies:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn a_hundred_short_lived_children(event_loop: DynSelectorEventLoop) {
    let (_turn, event_loop) = turn(event_loop);
    let lp = &event_loop;
    let mut processes = Vec::new();
    for i in 0..100 {
        let process = if i % 2 == 0 {
            lp.subprocess_exec("true", &[], Stdio::null(), Stdio::null(), Stdio::null())
        } else {
            lp.subprocess_exec("sh", &["-c", "exit 3"], Stdio::null(), Stdio::null(), Stdio::null())
        };
        processes.push(process.unwrap());
    }
    assert!(lp.watched_children() <= 100);
    let pids: Vec<u32> = processes.iter().map(|p| p.pid()).collect();
    let statuses = run(lp, tulip::gather(processes.iter().map(|p| p.wait())));
    for (i, (status, process)) in statuses.into_iter().zip(&processes).enumerate() {
        let status = status.unwrap();
        let expected = if i % 2 == 0 { 0 } else { 3 };
        assert_eq!(status.code(), Some(expected), "child {i}");
        assert_eq!(process.returncode(), Some(expected));
    }
    assert_eq!(lp.watched_children(), 0, "every child reaped and forgotten");
    assert_reaped(&pids);
    // A second wait answers at once.
    assert_eq!(run(lp, processes[1].wait()).unwrap().code(), Some(3));
}

fn cat_echoes_10_mib_byte_exact(event_loop: DynSelectorEventLoop) {
    let (_turn, event_loop) = turn(event_loop);
    let lp = &event_loop;
    let input: Vec<u8> = (0..10u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut cat = lp.subprocess_exec("cat", &[], Stdio::piped(), Stdio::piped(), Stdio::piped()).unwrap();
    let started = Instant::now();
    let output = run(lp, cat.communicate(Some(&input))).unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    assert_eq!(output.stdout.len(), input.len());
    assert!(output.stdout == input, "byte-exact");
    assert!(output.stderr.is_empty());
    assert_eq!(cat.returncode(), Some(0));
    assert!(cat.stdin.is_none() && cat.stdout.is_none(), "communicate took the pipes");
    eprintln!("cat: 10 MiB through and back in {:?}", started.elapsed());
}

/// Input the pipe takes at once: stdin closes before its transport's
/// first callback ran, and `communicate` must still hear of it. No
/// `wait_for` here: nothing but the pipes and the child may wake the loop
/// (the thread's limit fails a hang).
fn communicate_a_few_bytes(event_loop: DynSelectorEventLoop) {
    let (_turn, event_loop) = turn(event_loop);
    for _ in 0..3 {
        let mut tr = event_loop
            .subprocess_exec("tr", &["a-z", "A-Z"], Stdio::piped(), Stdio::piped(), Stdio::piped())
            .unwrap();
        let output = event_loop.run_until_complete(tr.communicate(Some(b"hello, child"))).unwrap().unwrap();
        assert_eq!(output.stdout, b"HELLO, CHILD");
        assert!(output.stderr.is_empty() && output.status.success());
        let mut quiet =
            event_loop.subprocess_exec("true", &[], Stdio::piped(), Stdio::piped(), Stdio::null()).unwrap();
        let output = event_loop.run_until_complete(quiet.communicate(None)).unwrap().unwrap();
        assert!(output.stdout.is_empty() && output.status.success());
    }
}

fn children_killed_by_signals(event_loop: DynSelectorEventLoop) {
    let (_turn, event_loop) = turn(event_loop);
    let lp = &event_loop;
    let killed = lp.subprocess_exec("sleep", &["30"], Stdio::null(), Stdio::null(), Stdio::null()).unwrap();
    let terminated =
        lp.subprocess_exec("sleep", &["30"], Stdio::null(), Stdio::null(), Stdio::null()).unwrap();
    assert_eq!(killed.returncode(), None);
    killed.kill().unwrap();
    terminated.terminate().unwrap();
    let started = Instant::now();
    let status = run(lp, killed.wait()).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(killed.returncode(), Some(-libc::SIGKILL));
    assert_eq!(run(lp, terminated.wait()).unwrap().signal(), Some(libc::SIGTERM));
    assert_eq!(terminated.returncode(), Some(-libc::SIGTERM));
    assert!(started.elapsed() < Duration::from_secs(10), "not the 30 s of sleep");
    // Reaped: nothing more is sent, and that is no error (as std's kill).
    killed.kill().unwrap();
    let err = killed.send_signal(0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = terminated.send_signal(100_000).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

fn closing_the_loop_kills_and_reaps_running_children(event_loop: DynSelectorEventLoop) {
    let (_turn, event_loop) = turn(event_loop);
    let kept =
        event_loop.subprocess_exec("sleep", &["30"], Stdio::null(), Stdio::piped(), Stdio::null()).unwrap();
    let dropped =
        event_loop.subprocess_exec("sleep", &["30"], Stdio::piped(), Stdio::null(), Stdio::null()).unwrap();
    let pids = [kept.pid(), dropped.pid()];
    drop(dropped);
    let wait = kept.wait();
    // Let the loop watch them a little.
    run(&event_loop, tulip::sleep(&event_loop, Duration::from_millis(20)));
    assert_eq!(event_loop.watched_children(), 2);
    let closing = Instant::now();
    event_loop.close().unwrap();
    assert!(closing.elapsed() < Duration::from_secs(1), "close waited {:?}", closing.elapsed());
    assert_eq!(event_loop.watched_children(), 0);
    // Both were killed and are reaped on the reaper thread, well before 30 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in pids {
        while std::fs::metadata(format!("/proc/{pid}")).is_ok() && !cfg!(not(target_os = "linux")) {
            assert!(Instant::now() < deadline, "child {pid} still there after close");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_reaped(&pids);
    // The wait cannot complete any more: it fails rather than hang.
    let mut wait = std::pin::pin!(wait);
    let waker = std::task::Waker::from(std::sync::Arc::new(NoWake));
    match wait.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
        std::task::Poll::Ready(Err(err)) => assert_eq!(err.to_string(), "event loop is closed"),
        other => panic!("{other:?}"),
    }
    assert_eq!(kept.returncode(), None);
}

/// A waker that does nothing, to poll a future by hand.
struct NoWake;

impl std::task::Wake for NoWake {
    fn wake(self: std::sync::Arc<Self>) {}
}

fn unknown_programs_are_not_found(event_loop: DynSelectorEventLoop) {
    let (_turn, event_loop) = turn(event_loop);
    let lp = &event_loop;
    let before = zombies_named_like_us();
    let err = lp
        .subprocess_exec("no-such-program-tulip-test", &[], Stdio::piped(), Stdio::piped(), Stdio::piped())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no-such-program-tulip-test"), "{err}");
    let err = lp
        .subprocess_exec("/nonexistent/dir/prog", &[], Stdio::null(), Stdio::null(), Stdio::null())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let not_executable = common::UnixPath::new();
    std::fs::write(&not_executable.0, b"#!/bin/sh\n").unwrap(); // mode 644: not executable
    let err =
        lp.subprocess_exec(&not_executable.0, &[], Stdio::null(), Stdio::null(), Stdio::null()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert_eq!(lp.watched_children(), 0);
    // std reaped the child whose exec failed: no zombie of ours is left.
    assert!(zombies_named_like_us() <= before, "a failed exec left a zombie");
    // A shell that cannot find the program is a child that exits 127.
    let mut shell = lp
        .subprocess_shell("no-such-program-tulip-test", Stdio::null(), Stdio::null(), Stdio::piped())
        .unwrap();
    let output = run(lp, shell.communicate(None)).unwrap();
    assert_eq!(output.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-program-tulip-test"));
}

/// Zombie children of ours whose name is this test binary's: a child whose
/// `exec` failed is a copy of us.
fn zombies_named_like_us() -> usize {
    let Ok(comm) = std::fs::read_to_string("/proc/self/comm") else { return 0 };
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            is_our_zombie(pid)
                && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == comm)
        })
        .count()
}

fn pipes_read_and_written_piece_by_piece(event_loop: DynSelectorEventLoop) {
    let (_turn, event_loop) = turn(event_loop);
    let lp = &event_loop;
    // A shell that answers each line, and reports on stderr.
    let script = "while read line; do echo \"got $line\"; done; echo done >&2; exit 7";
    let mut child = lp.subprocess_shell(script, Stdio::piped(), Stdio::piped(), Stdio::piped()).unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    run(lp, async {
        let mut buf = [0u8; 64];
        for i in 0..5 {
            stdin.write_all(format!("{i}\n").as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            while !answer.ends_with(b"\n") {
                let n = stdout.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "the child's stdout ended early");
                answer.extend_from_slice(&buf[..n]);
            }
            assert_eq!(answer, format!("got {i}\n").into_bytes());
        }
        stdin.close();
        stdin.wait_closed().await.unwrap();
        assert_eq!(stdout.read(&mut buf).await.unwrap(), 0, "end of file after the last answer");
        let mut stderr = child.stderr.take().unwrap();
        assert_eq!(stderr.read_to_end().await.unwrap(), b"done\n");
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(7));
        // Writing to a child that is gone fails, it does not kill us.
        assert_eq!(stdin.write(b"late").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    });
}

/// What a pipe protocol saw.
#[derive(Default)]
struct PipeLog {
    data: Vec<u8>,
    events: Vec<String>,
}

struct PipeRecorder(Rc<RefCell<PipeLog>>);

impl Protocol for PipeRecorder {
    fn connection_made(&mut self, _transport: Transport) {
        self.0.borrow_mut().events.push("made".into());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.0.borrow_mut().data.extend_from_slice(data);
    }
    fn eof_received(&mut self) -> bool {
        self.0.borrow_mut().events.push("eof".into());
        true // ignored: a pipe cannot stay half-open
    }
    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.0.borrow_mut().events.push(format!("lost:{:?}", error.map(|e| e.kind())));
    }
    fn pause_writing(&mut self) {
        self.0.borrow_mut().events.push("pause".into());
    }
    fn resume_writing(&mut self) {
        self.0.borrow_mut().events.push("resume".into());
    }
}

async fn until(lp: &DynSelectorEventLoop, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tulip::sleep(lp, Duration::from_millis(1)).await;
    }
}

fn read_and_write_pipe_transports(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    let (reader_log, writer_log) =
        (Rc::new(RefCell::new(PipeLog::default())), Rc::new(RefCell::new(PipeLog::default())));
    run(lp, async {
        let (read_end, write_end) = nonblocking_pipe().unwrap();
        let log = Rc::clone(&reader_log);
        let (reader, _) = lp.connect_read_pipe(read_end, move || PipeRecorder(log)).await.unwrap();
        let log = Rc::clone(&writer_log);
        let (writer, _) = lp.connect_write_pipe(write_end, move || PipeRecorder(log)).await.unwrap();
        assert_eq!(reader.write(b"x").unwrap_err().kind(), io::ErrorKind::Unsupported);
        assert_eq!(writer.peer_addr().unwrap_err().kind(), io::ErrorKind::Unsupported);
        writer.write(&data).unwrap();
        assert!(writer.get_write_buffer_size() > 0, "a pipe holds less than 1 MiB");
        writer.write_eof().unwrap(); // closes once written
        until(lp, "the reader's end", || reader_log.borrow().events.iter().any(|e| e.starts_with("lost")))
            .await;
        until(lp, "the writer's end", || writer_log.borrow().events.iter().any(|e| e.starts_with("lost")))
            .await;
        assert!(reader.is_closing() && writer.is_closing());

        // The reader closes first: the writer learns it without writing.
        let (read_end, write_end) = nonblocking_pipe().unwrap();
        let hangup_log = Rc::new(RefCell::new(PipeLog::default()));
        let log = Rc::clone(&hangup_log);
        let (_writer, _) = lp.connect_write_pipe(write_end, move || PipeRecorder(log)).await.unwrap();
        tulip::sleep(lp, Duration::from_millis(5)).await;
        drop(read_end);
        until(lp, "the hang-up", || hangup_log.borrow().events.iter().any(|e| e.starts_with("lost"))).await;
        assert_eq!(hangup_log.borrow().events, ["made", "lost:None"]);

        // A regular file is no pipe.
        let path = common::UnixPath::new();
        std::fs::write(&path.0, b"a regular file").unwrap();
        let file = std::fs::File::open(&path.0).unwrap();
        let err = lp.connect_read_pipe(file, || PipeRecorder(Rc::default())).await.map(drop).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    });
    let reader_log = reader_log.borrow();
    assert!(reader_log.data == data, "1 MiB through the pipe, byte-exact ({} bytes)", reader_log.data.len());
    assert_eq!(reader_log.events, ["made", "eof", "lost:None"]);
    assert_eq!(writer_log.borrow().events, ["made", "pause", "resume", "lost:None"]);
    assert_eq!(event_loop.watched_fds(), 0);
}

fn child_handlers_refuse_what_is_not_a_child(event_loop: DynSelectorEventLoop) {
    let (_turn, event_loop) = turn(event_loop);
    let err = event_loop.add_child_handler(0, |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let err = event_loop.add_child_handler(u32::MAX, |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    // Our parent is not our child.
    let parent = std::os::unix::process::parent_id();
    let err = event_loop.add_child_handler(parent, |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains(&parent.to_string()), "{err}");
    assert_eq!(event_loop.watched_children(), 0);
    // A child of ours (it waits for a line), with a handler replaced by a second one.
    #[allow(clippy::zombie_processes)] // the loop reaps it: that is the point
    let mut child = std::process::Command::new("sh")
        .args(["-c", "read line; exit 5"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let first = Rc::clone(&seen);
    event_loop.add_child_handler(child.id(), move |_, _| first.borrow_mut().push("first".into())).unwrap();
    let second = Rc::clone(&seen);
    event_loop
        .add_child_handler(child.id(), move |_, status| {
            second.borrow_mut().push(format!("{:?}", status.code()))
        })
        .unwrap();
    assert_eq!(event_loop.watched_children(), 1);
    drop(child.stdin.take()); // end of file: `read` returns, the shell exits
    run(&event_loop, until(&event_loop, "the child's end", || !seen.borrow().is_empty()));
    // Reaped: it is no child of ours any more.
    let err = event_loop.add_child_handler(child.id(), |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert_eq!(*seen.borrow(), ["Some(5)"]);
}
