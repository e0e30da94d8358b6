//! Child processes (asyncio's `subprocess.py` and `base_subprocess.py`):
//! [`subprocess_exec`](BaseSelectorEventLoop::subprocess_exec) starts a
//! program and gives a [`Process`], whose exit the loop's child watcher
//! reports (`unix_events.rs`: a pidfd, or `SIGCHLD`) and whose pipes are
//! the loop's pipe transports (`pipes.rs`), read and written with `.await`.
//!
//! The child is started by std's `std::process::Command`: it makes the
//! pipes close-on-exec, resets the signal mask and `SIGPIPE` for the child,
//! and reports a failed `exec` (an unknown program is `NotFound`) after
//! reaping the child that failed, so no zombie is left. The loop then takes
//! the parent's pipe ends, makes them non-blocking, and watches the pid.
//!
//! A [`Process`] handle may be dropped while the child runs: the loop still
//! reaps it when it ends. When the loop closes, children still running are
//! killed (`SIGKILL`), as asyncio's subprocess transports do when closed,
//! and reaped on a thread of their own.

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::raw::c_int;
use std::os::unix::io::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use crate::coroutines::errors::copy_error;
use crate::event_loop::selector_events::Release;
use crate::event_loop::signals::check_signal_number;
use crate::event_loop::threadsafe::closed_error;
use crate::event_loop::unix_events::{is_unreaped_child, reap_in_background};
use crate::selectors::mechanism::cvt;
use crate::selectors::Selector;
use crate::{AbstractEventLoop, BaseSelectorEventLoop, IoHandlers, Protocol, Transport};

/// What a child's output pipe may hold unread before the loop stops
/// reading it (asyncio's `StreamReader` limit, 64 KiB, twice): the child
/// then waits in `write` until [`PipeReader::read`] makes room.
const READ_LIMIT: usize = 64 * 1024;

fn wake_all(wakers: &RefCell<Vec<Waker>>) {
    let wakers = std::mem::take(&mut *wakers.borrow_mut());
    wakers.into_iter().for_each(Waker::wake);
}

fn keep_waker(wakers: &RefCell<Vec<Waker>>, cx: &Context<'_>) {
    let mut wakers = wakers.borrow_mut();
    if !wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
        wakers.push(cx.waker().clone());
    }
}

/// What a child's stdout or stderr pipe has brought, shared by its
/// protocol (which fills it) and its [`PipeReader`] (which empties it).
#[derive(Default)]
struct ReaderState {
    buffer: RefCell<Vec<u8>>,
    eof: Cell<bool>,
    error: RefCell<Option<io::Error>>,
    wakers: RefCell<Vec<Waker>>,
    transport: RefCell<Option<Transport>>,
    paused: Cell<bool>,
}

impl ReaderState {
    /// Reading resumes once the buffer is back to the limit.
    fn maybe_resume(&self) {
        if self.paused.get() && self.buffer.borrow().len() <= READ_LIMIT {
            self.paused.set(false);
            if let Some(transport) = &*self.transport.borrow() {
                transport.resume_reading();
            }
        }
    }
}

struct ReaderProtocol(Rc<ReaderState>);

impl Protocol for ReaderProtocol {
    fn data_received(&mut self, data: &[u8]) {
        let state = &self.0;
        state.buffer.borrow_mut().extend_from_slice(data);
        if !state.paused.get() && state.buffer.borrow().len() > 2 * READ_LIMIT {
            state.paused.set(true);
            if let Some(transport) = &*state.transport.borrow() {
                transport.pause_reading();
            }
        }
        wake_all(&state.wakers);
    }

    fn eof_received(&mut self) -> bool {
        self.0.eof.set(true);
        wake_all(&self.0.wakers);
        false
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.0.eof.set(true);
        *self.0.error.borrow_mut() = error;
        self.0.transport.borrow_mut().take();
        wake_all(&self.0.wakers);
    }
}

/// The reading end of a child's stdout or stderr (asyncio's
/// `StreamReader` for `Process.stdout`). Dropping it closes the pipe: a
/// child that writes on gets `EPIPE` (or dies of `SIGPIPE`).
pub struct PipeReader {
    state: Rc<ReaderState>,
    transport: Transport,
}

impl PipeReader {
    /// Reads what has arrived, up to `buf.len()` bytes, waiting if nothing
    /// has; `Ok(0)` at end of file (the child closed its end, or ended).
    ///
    /// # Errors
    ///
    /// The error that ended the pipe (once; then `Ok(0)`).
    pub fn read<'a>(&'a mut self, buf: &'a mut [u8]) -> PipeRead<'a> {
        PipeRead { state: &self.state, buf }
    }

    /// Reads until end of file: everything the child writes on this pipe.
    ///
    /// # Errors
    ///
    /// The error that ended the pipe.
    pub fn read_to_end(&mut self) -> ReadToEnd<'_> {
        ReadToEnd { state: &self.state, out: Vec::new() }
    }

    /// Closes the pipe (also done on drop).
    pub fn close(&self) {
        self.transport.close();
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.transport.close();
    }
}

impl fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeReader")
            .field("buffered", &self.state.buffer.borrow().len())
            .field("eof", &self.state.eof.get())
            .finish()
    }
}

/// The future of [`PipeReader::read`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct PipeRead<'a> {
    state: &'a ReaderState,
    buf: &'a mut [u8],
}

impl Future for PipeRead<'_> {
    type Output = io::Result<usize>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let state = this.state;
        {
            let mut buffer = state.buffer.borrow_mut();
            if !buffer.is_empty() || this.buf.is_empty() {
                let n = buffer.len().min(this.buf.len());
                this.buf[..n].copy_from_slice(&buffer[..n]);
                buffer.drain(..n);
                drop(buffer);
                state.maybe_resume();
                return Poll::Ready(Ok(n));
            }
        }
        if let Some(err) = state.error.borrow_mut().take() {
            return Poll::Ready(Err(err));
        }
        if state.eof.get() {
            return Poll::Ready(Ok(0));
        }
        keep_waker(&state.wakers, cx);
        Poll::Pending
    }
}

impl fmt::Debug for ReaderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReaderState").field("buffered", &self.buffer.borrow().len()).finish_non_exhaustive()
    }
}

/// The future of [`PipeReader::read_to_end`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct ReadToEnd<'a> {
    state: &'a ReaderState,
    out: Vec<u8>,
}

impl Future for ReadToEnd<'_> {
    type Output = io::Result<Vec<u8>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<Vec<u8>>> {
        let this = &mut *self;
        let state = this.state;
        let arrived = std::mem::take(&mut *state.buffer.borrow_mut());
        if this.out.is_empty() {
            this.out = arrived;
        } else {
            this.out.extend_from_slice(&arrived);
        }
        state.maybe_resume();
        if let Some(err) = state.error.borrow_mut().take() {
            return Poll::Ready(Err(err));
        }
        if state.eof.get() {
            return Poll::Ready(Ok(std::mem::take(&mut this.out)));
        }
        keep_waker(&state.wakers, cx);
        Poll::Pending
    }
}

/// What a child's stdin pipe tells its [`PipeWriter`].
#[derive(Default)]
struct WriterState {
    paused: Cell<bool>,
    lost: Cell<bool>,
    error: RefCell<Option<io::Error>>,
    wakers: RefCell<Vec<Waker>>,
}

struct WriterProtocol(Rc<WriterState>);

impl Protocol for WriterProtocol {
    fn pause_writing(&mut self) {
        self.0.paused.set(true);
    }

    fn resume_writing(&mut self) {
        self.0.paused.set(false);
        wake_all(&self.0.wakers);
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.0.lost.set(true);
        *self.0.error.borrow_mut() = error;
        wake_all(&self.0.wakers);
    }
}

/// The writing end of a child's stdin (asyncio's `StreamWriter` for
/// `Process.stdin`). [`write`](Self::write) never blocks: what the pipe
/// does not take is buffered and written as the child reads;
/// [`drain`](Self::drain) waits while too much is buffered. Dropping it
/// closes the pipe once the buffer is written: the child reads end of file.
pub struct PipeWriter {
    state: Rc<WriterState>,
    transport: Transport,
}

impl PipeWriter {
    /// Writes `data`, buffering what the pipe does not take now.
    ///
    /// # Errors
    ///
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe) once the pipe is closed
    /// (the child closed its end, ended, or a write failed).
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        self.transport.write(data)
    }

    /// Waits until the buffer is back under its low-water mark (asyncio's
    /// `drain`); at once if it is below the high-water mark.
    ///
    /// # Errors
    ///
    /// The pipe's error if it closed with one (e.g. `EPIPE`: the child
    /// stopped reading), else [`BrokenPipe`](io::ErrorKind::BrokenPipe) if it
    /// is closed.
    pub fn drain(&self) -> Drain<'_> {
        Drain { writer: self }
    }

    /// [`write`](Self::write) then [`drain`](Self::drain).
    ///
    /// # Errors
    ///
    /// As those two.
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        self.write(data)?;
        self.drain().await
    }

    /// Closes the pipe once the buffer is written (the child then reads end
    /// of file). Also done on drop.
    pub fn close(&self) {
        self.transport.close();
    }

    /// Waits until the pipe is closed.
    ///
    /// # Errors
    ///
    /// The error it closed with, if any (e.g. `EPIPE`).
    pub fn wait_closed(&self) -> WaitClosed<'_> {
        WaitClosed { state: &self.state }
    }

    /// Bytes buffered, not yet taken by the pipe.
    pub fn buffered(&self) -> usize {
        self.transport.get_write_buffer_size()
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.transport.close();
    }
}

impl fmt::Debug for PipeWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeWriter")
            .field("buffered", &self.buffered())
            .field("closed", &self.state.lost.get())
            .finish()
    }
}

fn pipe_closed(state: &WriterState) -> io::Error {
    match &*state.error.borrow() {
        Some(err) => copy_error(err),
        None => io::Error::new(io::ErrorKind::BrokenPipe, "the pipe is closed"),
    }
}

/// The future of [`PipeWriter::drain`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Drain<'a> {
    writer: &'a PipeWriter,
}

impl Future for Drain<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let writer = self.writer;
        let state = &writer.state;
        if state.lost.get() {
            return Poll::Ready(Err(pipe_closed(state)));
        }
        // `pause_writing` arrives on the next iteration: the buffer's size
        // says at once whether it is due.
        let (_, high) = writer.transport.get_write_buffer_limits();
        if !state.paused.get() && writer.transport.get_write_buffer_size() <= high {
            return Poll::Ready(Ok(()));
        }
        keep_waker(&state.wakers, cx);
        Poll::Pending
    }
}

/// The future of [`PipeWriter::wait_closed`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitClosed<'a> {
    state: &'a WriterState,
}

impl Future for WaitClosed<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.lost.get() {
            return Poll::Ready(match &*self.state.error.borrow() {
                Some(err) => Err(copy_error(err)),
                None => Ok(()),
            });
        }
        keep_waker(&self.state.wakers, cx);
        Poll::Pending
    }
}

impl fmt::Debug for WaitClosed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitClosed").field("closed", &self.state.lost.get()).finish()
    }
}

impl fmt::Debug for WriterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterState").field("lost", &self.lost.get()).finish_non_exhaustive()
    }
}

/// What a [`Process`] handle shares with the loop's child watcher.
struct ProcessState {
    pid: libc::pid_t,
    status: Cell<Option<ExitStatus>>,
    /// The loop closed before the child's end was seen.
    abandoned: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl ProcessState {
    fn exited(&self, status: ExitStatus) {
        self.status.set(Some(status));
        wake_all(&self.wakers);
    }

    /// `kill(pid, signum)`, unless the child was reaped (its pid may be
    /// another process's by now): then nothing is sent.
    fn signal(&self, signum: c_int) -> io::Result<()> {
        check_signal_number(signum)?;
        if self.status.get().is_some() || !is_unreaped_child(self.pid) {
            return Ok(());
        }
        // SAFETY: kill takes no pointers; `pid` is our unreaped child.
        cvt(unsafe { libc::kill(self.pid, signum) })?;
        Ok(())
    }
}

impl Release for ProcessState {
    /// The loop closed with the child running: kill it (the loop's child
    /// watcher reaps it on a thread), and fail the waits.
    fn release(&self) {
        if self.status.get().is_none() {
            let _ = self.signal(libc::SIGKILL);
            self.abandoned.set(true);
        }
        wake_all(&self.wakers);
    }
}

/// A child process started by
/// [`subprocess_exec`](BaseSelectorEventLoop::subprocess_exec) (asyncio's
/// `asyncio.subprocess.Process`). Its pipes, where asked for, are the
/// public fields, as in std's `Child`; take them to read and write on
/// their own (`process.stdout.take()`).
///
/// Dropping the handle neither waits for nor kills the child: the loop
/// reaps it when it ends, and kills it if the loop closes first.
pub struct Process {
    state: Rc<ProcessState>,
    /// The child's stdin, if it was `Stdio::piped()`.
    pub stdin: Option<PipeWriter>,
    /// The child's stdout, if it was `Stdio::piped()`.
    pub stdout: Option<PipeReader>,
    /// The child's stderr, if it was `Stdio::piped()`.
    pub stderr: Option<PipeReader>,
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.state.pid as u32
    }

    /// asyncio's `returncode`: `None` while the child runs (or until the
    /// loop has seen it end), its exit code once it exited, `-N` if signal
    /// `N` killed it.
    pub fn returncode(&self) -> Option<i32> {
        self.state.status.get().map(returncode)
    }

    /// The child's exit status, once the loop has seen it end.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.state.status.get()
    }

    /// Waits for the child to end (asyncio's `wait`): its exit status. Use
    /// [`communicate`](Self::communicate) if it writes much to a pipe
    /// nobody reads: it would wait for room in the pipe for ever.
    ///
    /// # Errors
    ///
    /// If the loop closed before the child ended.
    pub fn wait(&self) -> ProcessWait {
        ProcessWait { state: Rc::clone(&self.state) }
    }

    /// Sends signal `signum` to the child (asyncio's `send_signal`). Once
    /// the child has been reaped, nothing is sent and `Ok(())` returned (as
    /// std's `Child::kill`): its pid may belong to another process by then.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for a number that is
    /// not a signal; the error of `kill(2)`.
    pub fn send_signal(&self, signum: c_int) -> io::Result<()> {
        self.state.signal(signum)
    }

    /// Sends `SIGTERM` (asyncio's `terminate`).
    ///
    /// # Errors
    ///
    /// As [`send_signal`](Self::send_signal).
    pub fn terminate(&self) -> io::Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL` (asyncio's `kill`).
    ///
    /// # Errors
    ///
    /// As [`send_signal`](Self::send_signal).
    pub fn kill(&self) -> io::Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    /// Writes `input` to the child's stdin and closes it, reads its stdout
    /// and stderr to the end, all at once, then waits for it to end
    /// (asyncio's `communicate`). The pipes are taken from the handle; an
    /// output that is not piped comes back empty. A child that exits
    /// without reading all of `input` is no error (asyncio ignores the
    /// `BrokenPipeError` too).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for `input` without a
    /// piped stdin; an error reading a pipe; the errors of [`wait`](Self::wait).
    pub async fn communicate(&mut self, input: Option<&[u8]>) -> io::Result<Output> {
        if input.is_some() && self.stdin.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "communicate was given input, but the child's stdin is not a pipe",
            ));
        }
        let stdin = self.stdin.take();
        let mut stdout = self.stdout.take();
        let mut stderr = self.stderr.take();
        let feed = async move {
            let Some(stdin) = stdin else { return Ok(Vec::new()) };
            let fed = match input {
                Some(input) => stdin.write_all(input).await,
                None => Ok(()),
            };
            stdin.close();
            let closed = stdin.wait_closed().await;
            for outcome in [fed, closed] {
                match outcome {
                    Err(err)
                        if !matches!(
                            err.kind(),
                            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        return Err(err)
                    }
                    _ => {}
                }
            }
            Ok(Vec::new())
        };
        let read_out = async move {
            match stdout.as_mut() {
                Some(reader) => reader.read_to_end().await,
                None => Ok(Vec::new()),
            }
        };
        let read_err = async move {
            match stderr.as_mut() {
                Some(reader) => reader.read_to_end().await,
                None => Ok(Vec::new()),
            }
        };
        type Part<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<u8>>> + 'a>>;
        let parts: Vec<Part<'_>> = vec![Box::pin(feed), Box::pin(read_out), Box::pin(read_err)];
        let mut outputs = crate::gather(parts).await.into_iter();
        let mut next = || outputs.next().unwrap_or_else(|| Ok(Vec::new()));
        let (fed, stdout, stderr) = (next(), next(), next());
        fed?;
        let (stdout, stderr) = (stdout?, stderr?);
        let status = self.wait().await?;
        Ok(Output { status, stdout, stderr })
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.state.pid)
            .field("returncode", &self.returncode())
            .finish()
    }
}

/// asyncio's `returncode` of an exit status: the code, or minus the signal.
fn returncode(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| -status.signal().unwrap_or(0))
}

/// The future of [`Process::wait`]; it does not borrow the process.
#[must_use = "futures do nothing unless awaited"]
pub struct ProcessWait {
    state: Rc<ProcessState>,
}

impl Future for ProcessWait {
    type Output = io::Result<ExitStatus>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        if let Some(status) = self.state.status.get() {
            return Poll::Ready(Ok(status));
        }
        if self.state.abandoned.get() {
            return Poll::Ready(Err(closed_error()));
        }
        keep_waker(&self.state.wakers, cx);
        Poll::Pending
    }
}

impl fmt::Debug for ProcessWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessWait").field("pid", &self.state.pid).finish()
    }
}

/// Child processes on the selector loop (asyncio's `subprocess_exec`,
/// `subprocess_shell`, `create_subprocess_exec`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Starts `program` with `args` (asyncio's `create_subprocess_exec`):
    /// each of stdin, stdout and stderr is `Stdio::piped()` (a pipe to the
    /// [`Process`]), `Stdio::inherit()` (this process's) or `Stdio::null()`.
    /// `program` is looked up in `PATH` unless it names a file.
    ///
    /// ```no_run
    /// use std::process::Stdio;
    /// use tulip::selectors::Backend;
    ///
    /// let event_loop = tulip::new_event_loop(Backend::Poll)?;
    /// let mut cat = event_loop.subprocess_exec("cat", &[], Stdio::piped(), Stdio::piped(), Stdio::inherit())?;
    /// let output = event_loop.run_until_complete(cat.communicate(Some(b"meow")))??;
    /// assert_eq!(output.stdout, b"meow");
    /// assert!(output.status.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) for an unknown program (the
    /// message names it), [`PermissionDenied`](io::ErrorKind::PermissionDenied)
    /// for one that cannot be run, and the other errors of spawning; those
    /// of watching the child ([`add_child_handler`](Self::add_child_handler));
    /// a closed loop.
    pub fn subprocess_exec(
        &self,
        program: impl AsRef<OsStr>,
        args: &[&str],
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    ) -> io::Result<Process> {
        let mut command = Command::new(program);
        command.args(args).stdin(stdin).stdout(stdout).stderr(stderr);
        self.subprocess_command(&mut command)
    }

    /// Runs `cmd` with the shell, `sh -c cmd` (asyncio's
    /// `create_subprocess_shell`). Quoting is the caller's business.
    ///
    /// # Errors
    ///
    /// As [`subprocess_exec`](Self::subprocess_exec).
    pub fn subprocess_shell(
        &self,
        cmd: &str,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    ) -> io::Result<Process> {
        self.subprocess_exec("/bin/sh", &["-c", cmd], stdin, stdout, stderr)
    }

    /// Starts `command` as it is set up (environment, directory, stdio, …):
    /// what [`subprocess_exec`](Self::subprocess_exec) does, for a
    /// `Command` of your own. Pipes are taken where stdio is `piped()`.
    ///
    /// # Errors
    ///
    /// As [`subprocess_exec`](Self::subprocess_exec).
    pub fn subprocess_command(&self, command: &mut Command) -> io::Result<Process> {
        if self.is_closed() {
            return Err(closed_error());
        }
        // Before there is a child: a watcher that cannot start fails here.
        self.prepare_child_watcher()?;
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                self.release_idle_child_watcher();
                let program = command.get_program();
                return Err(io::Error::new(err.kind(), format!("cannot run {program:?}: {err}")));
            }
        };
        let pid = child.id();
        let pipes = (
            child.stdin.take().map(OwnedFd::from),
            child.stdout.take().map(OwnedFd::from),
            child.stderr.take().map(OwnedFd::from),
        );
        // std's handle neither waits nor kills when dropped: the loop watches the pid.
        drop(child);
        let state = Rc::new(ProcessState {
            pid: pid as libc::pid_t,
            status: Cell::new(None),
            abandoned: Cell::new(false),
            wakers: RefCell::new(Vec::new()),
        });
        let watched = Rc::clone(&state);
        if let Err(err) = self.add_child_handler(pid, move |_, status| watched.exited(status)) {
            // Nobody would reap it: end it and reap it on a thread.
            // SAFETY: kill takes no pointers; `pid` is our unreaped child.
            let _ = cvt(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) });
            reap_in_background(pid as libc::pid_t);
            return Err(err);
        }
        let weak: Weak<dyn Release> = Rc::downgrade(&state) as Weak<dyn Release>;
        self.keep_resource(weak);
        match self.process_pipes(pipes) {
            Ok((stdin, stdout, stderr)) => Ok(Process { state, stdin, stdout, stderr }),
            Err(err) => {
                let _ = state.signal(libc::SIGKILL); // the watcher reaps it
                Err(err)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn process_pipes(
        &self,
        (stdin, stdout, stderr): (Option<OwnedFd>, Option<OwnedFd>, Option<OwnedFd>),
    ) -> io::Result<(Option<PipeWriter>, Option<PipeReader>, Option<PipeReader>)> {
        let writer = match stdin {
            Some(fd) => {
                let state = Rc::new(WriterState::default());
                let transport =
                    self.write_pipe_transport(fd, Rc::new(RefCell::new(WriterProtocol(Rc::clone(&state)))))?;
                Some(PipeWriter { state, transport })
            }
            None => None,
        };
        let reader = |fd: Option<OwnedFd>| -> io::Result<Option<PipeReader>> {
            let Some(fd) = fd else { return Ok(None) };
            let state = Rc::new(ReaderState::default());
            let transport =
                self.read_pipe_transport(fd, Rc::new(RefCell::new(ReaderProtocol(Rc::clone(&state)))))?;
            *state.transport.borrow_mut() = Some(transport.clone());
            Ok(Some(PipeReader { state, transport }))
        };
        Ok((writer, reader(stdout)?, reader(stderr)?))
    }
}
