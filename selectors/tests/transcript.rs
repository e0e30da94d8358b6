//! The syscall transcript: for a scripted register / select / modify /
//! unregister sequence, each backend reports the system calls it makes,
//! in its kernel's words, with the fds and events, and a refused call
//! with its errno's name.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tulip_selectors::transcript::{Observer, Syscall, WriteTranscript};
use tulip_selectors::{Backend, Events};

/// Keeps each call as its line.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Observer for Lines {
    fn syscall(&mut self, call: &Syscall<'_>) {
        self.0.lock().unwrap().push(call.to_string());
    }
}

impl Lines {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn scripted(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let lines = Lines::default();
    sel.set_observer(Some(Box::new(lines.clone())));
    let (mut a, b) = pair();
    let (fa, fb) = (fd(&a), fd(&b));
    sel.register(fb, Events::READ, data("b")).unwrap();
    sel.register(fa, Events::WRITE, data("a")).unwrap();
    a.write_all(b"x").unwrap();
    let ready = ready(&mut *sel, Some(Duration::from_millis(10)));
    assert_eq!(ready.len(), 2, "{backend}: {ready:?}");
    sel.modify(fb, Events::READ | Events::WRITE, data("b both")).unwrap();
    sel.unregister(fa).unwrap();
    let lines = lines.take();
    let joined = lines.join("\n");
    let expect = |needle: String| assert!(joined.contains(&needle), "{backend}: no `{needle}` in\n{joined}");
    match backend {
        Backend::Epoll => {
            expect(format!("epoll_ctl({}, ADD, fd={fb}, EPOLLIN) = 0", sel_fd(&lines)));
            expect(format!("ADD, fd={fa}, EPOLLOUT) = 0"));
            expect("epoll_wait(".to_owned());
            expect("timeout=10) = 2 [".to_owned());
            expect(format!("fd {fb} EPOLLIN"));
            expect(format!("fd {fa} EPOLLOUT"));
            expect(format!("MOD, fd={fb}, EPOLLIN|EPOLLOUT) = 0"));
            expect(format!("DEL, fd={fa}) = 0"));
            assert_eq!(lines.len(), 5, "{joined}");
        }
        Backend::Poll => {
            expect(format!("poll([{{fd={fb}, POLLIN}}, {{fd={fa}, POLLOUT}}], 2, 10) = 2 ["));
            expect(format!("fd {fb} POLLIN"));
            expect(format!("fd {fa} POLLOUT"));
            assert_eq!(lines.len(), 1, "poll makes no syscall to register: {joined}");
        }
        Backend::Select => {
            let nfds = fa.max(fb) + 1;
            expect(format!(
                "select(nfds={nfds}, r={{{fb}}}, w={{{fa}}}, timeout=0.010000s) = 2 [r: {fb}, w: {fa}]"
            ));
            assert_eq!(lines.len(), 1, "select makes no syscall to register: {joined}");
        }
        Backend::Kqueue => {
            expect(format!("ident={fb}, EVFILT_READ, EV_ADD"));
            // The modify that only adds checks that the kept filter is there.
            expect(format!("ident={fb}, EVFILT_READ, EV_ENABLE"));
            expect(format!("ident={fb}, EVFILT_WRITE, EV_ADD"));
            expect("kevent(".to_owned());
        }
        Backend::IoUring => {
            // Both polls go to the kernel with the wait; both completed, so
            // the modify and the unregister have nothing to cancel.
            expect("to_submit=2, min_complete=1, timeout=10ms) = 2 [".to_owned());
            assert_eq!(lines.len(), 1, "io_uring queues registrations: {joined}");
        }
    }
    for line in &lines {
        if line.contains("select(") && !line.starts_with("select(") {
            continue;
        }
        assert!(line.len() > 57, "the operation is beside the call: {line}");
    }
    assert!(joined.contains(&format!("register(fd {fb}, READ)")) || !backend.capabilities().register_syscall);
    assert!(joined.contains("select(10ms)"), "{joined}");
}

/// The epoll fd in the first `epoll_ctl` line.
fn sel_fd(lines: &[String]) -> String {
    let line = lines.iter().find(|l| l.starts_with("epoll_ctl(")).expect("an epoll_ctl line");
    line["epoll_ctl(".len()..line.find(',').unwrap()].to_owned()
}

/// A register the kernel refuses is in the transcript with its errno's
/// name; a backend that makes no syscall at `register` accepts the closed
/// fd and says nothing.
fn refused_register_names_its_errno(backend: Backend) {
    let _shared = shared();
    let _high = high_fds();
    let mut sel = open(backend);
    let lines = Lines::default();
    sel.set_observer(Some(Box::new(lines.clone())));
    let (a, _b) = high_pair();
    let closed = fd(&a);
    drop(a);
    let result = sel.register(closed, Events::READ, data("closed")).map(|key| key.fd);
    if !backend.capabilities().register_syscall {
        assert_eq!(result.expect("no syscall, no refusal"), closed);
        assert_eq!(lines.take(), Vec::<String>::new(), "{backend}: no syscall at register");
        return;
    }
    assert_os_error(result, libc::EBADF);
    let joined = lines.take().join("\n");
    assert!(joined.contains(&format!("fd={closed}")), "{joined}");
    assert!(joined.contains("= -1 EBADF"), "{joined}");
    assert!(joined.contains(&format!("register(fd {closed}, READ)")), "{joined}");
}

fn no_observer_no_lines(backend: Backend) {
    let _shared = shared();
    let mut sel = open(backend);
    let lines = Lines::default();
    sel.set_observer(Some(Box::new(lines.clone())));
    sel.set_observer(None);
    let (a, _b) = pair();
    sel.register(fd(&a), Events::WRITE, data("a")).unwrap();
    let _ = ready(&mut *sel, Some(Duration::ZERO));
    assert!(lines.take().is_empty());
}

/// A signal that interrupts the wait shows as `= -1 EINTR`, followed by
/// the retry with what is left of the timeout.
fn an_interrupted_wait_and_its_retry_are_both_reported(backend: Backend) {
    use std::os::unix::thread::JoinHandleExt;
    let _shared = shared();
    let handler = SignalHandler::install(libc::SIGUSR1);
    let lines = Lines::default();
    let (idle, _peer) = pair();
    let idle_fd = fd(&idle);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let observer = lines.clone();
    let selecting = std::thread::spawn(move || {
        let mut sel = open(backend);
        sel.set_observer(Some(Box::new(observer)));
        sel.register(idle_fd, Events::READ, data("idle")).unwrap();
        started_tx.send(()).unwrap();
        sel.select(Some(Duration::from_millis(300))).map(|ready| ready.len()).map_err(|e| e.to_string())
    });
    started_rx.recv_timeout(BOUND).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: the thread is not joined yet, so its pthread_t is valid;
    // SIGUSR1 has a handler that only stores to an atomic.
    let rc = unsafe { libc::pthread_kill(selecting.as_pthread_t(), libc::SIGUSR1) };
    assert_eq!(rc, 0);
    assert_eq!(selecting.join().unwrap(), Ok(0));
    assert!(handler.ran());
    drop(handler);
    let joined = lines.take().join("\n");
    let waits: Vec<&str> = joined.lines().filter(|line| line.ends_with("select(300ms)")).collect();
    assert!(waits.len() >= 2, "{backend}: {joined}");
    if backend == Backend::IoUring {
        // An `io_uring_enter` that also sent requests returns how many it
        // sent, not the interrupted wait's EINTR: the early return shows
        // as `= 0`, and the retry follows all the same.
        assert!(waits[0].contains("= -1 EINTR") || waits[0].contains("= 0"), "{backend}: {joined}");
    } else {
        assert!(waits[0].contains("= -1 EINTR"), "{backend}: {joined}");
    }
    assert!(waits.last().unwrap().contains("= 0"), "{backend}: {joined}");
}

#[test]
fn every_backend_reports_its_syscalls() {
    for backend in Backend::available() {
        scripted(backend);
        refused_register_names_its_errno(backend);
        no_observer_no_lines(backend);
        an_interrupted_wait_and_its_retry_are_both_reported(backend);
    }
}

#[test]
fn a_write_transcript_writes_one_line_per_call() {
    let out = Arc::new(Mutex::new(Vec::new()));
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sel = open(Backend::Poll);
    sel.set_observer(Some(Box::new(WriteTranscript::new(Shared(Arc::clone(&out))))));
    let (a, _b) = pair();
    sel.register(fd(&a), Events::WRITE, data("a")).unwrap();
    let _ = ready(&mut *sel, Some(Duration::ZERO));
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("poll([{{fd={}, POLLOUT}}], 1, 0) = 1 [fd {} POLLOUT]", fd(&a), fd(&a))),
        "{text}"
    );
    assert!(text.trim_end().ends_with("select(0ns)"), "{text}");
}
