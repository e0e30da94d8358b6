//! Streams (asyncio's `streams.py`): a [`StreamReader`] and a
//! [`StreamWriter`] over one connection, for code that reads "a line",
//! "exactly 12 bytes" or "up to the separator" and writes with
//! back-pressure, instead of handling `data_received` calls.
//!
//! No second I/O path: as asyncio's `StreamReaderProtocol`, a small
//! [`Protocol`] sits on an ordinary socket [`Transport`]. Its
//! `data_received` appends to the reader's buffer and wakes the task
//! waiting in a read; its `pause_writing`/`resume_writing` make
//! [`StreamWriter::drain`] wait and wake; its `connection_lost` ends both.
//! The reader, the writer and the protocol share one [`Shared`] state.
//!
//! Flow control both ways, as asyncio:
//! - reading: past twice the reader's limit of unread bytes (64 KiB by
//!   default, [`DEFAULT_LIMIT`]) the transport stops reading; it reads
//!   again once a read brings the buffer down to the limit, or when a read
//!   must wait for more;
//! - writing: [`drain`](StreamWriter::drain) waits while the transport's
//!   write buffer is above its high-water mark, until it is back at the
//!   low-water mark.
//!
//! Every read is cancellation-safe: bytes leave the buffer only in the
//! poll that returns them, so a read future dropped while it waits (a
//! `wait_for` that timed out, a cancelled task) loses nothing.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::Location;
use std::path::Path;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::coroutines::errors::copy_error;
use crate::net::byte_buffer::ByteBuffer;
use crate::selectors::Selector;
use crate::{
    BaseSelectorEventLoop, ExceptionContext, IoHandlers, Protocol, Server, SocketAddress, Transport,
};

/// The default [`StreamReader`] limit: 64 KiB (asyncio's `_DEFAULT_LIMIT`).
/// It bounds a line ([`readline`](StreamReader::readline),
/// [`readuntil`](StreamReader::readuntil)); reading from the socket pauses
/// above twice as many unread bytes.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Errors

/// The end of the stream came before a read was complete (asyncio's
/// `IncompleteReadError`). It travels inside an [`io::Error`] of kind
/// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof), and carries the bytes
/// that did arrive: they are no longer in the reader.
///
/// ```
/// use std::io;
/// use tulip::IncompleteRead;
///
/// let err: io::Error = IncompleteRead { partial: b"abc".to_vec(), expected: Some(10) }.into();
/// assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
/// assert_eq!(err.to_string(), "3 bytes read on a total of 10 expected bytes");
/// assert_eq!(IncompleteRead::of(&err).unwrap().partial, b"abc");
/// let partial = IncompleteRead::take(err).unwrap().partial; // by value
/// assert_eq!(partial, b"abc");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteRead {
    /// What was read before the end of the stream.
    pub partial: Vec<u8>,
    /// How many bytes were asked for; `None` for a read up to a separator.
    pub expected: Option<usize>,
}

impl IncompleteRead {
    /// The `IncompleteRead` inside `err`, if it is one.
    pub fn of(err: &io::Error) -> Option<&IncompleteRead> {
        err.get_ref()?.downcast_ref()
    }

    /// Takes the `IncompleteRead` out of `err` (to own its bytes).
    ///
    /// # Errors
    ///
    /// `err` itself, unchanged, if it is not an `IncompleteRead`.
    pub fn take(err: io::Error) -> Result<IncompleteRead, io::Error> {
        if Self::of(&err).is_none() {
            return Err(err);
        }
        let kind = err.kind();
        match err.into_inner().map(|inner| inner.downcast::<IncompleteRead>()) {
            Some(Ok(incomplete)) => Ok(*incomplete),
            Some(Err(inner)) => Err(io::Error::new(kind, inner)),
            None => Err(io::Error::from(kind)),
        }
    }
}

impl fmt::Display for IncompleteRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expected {
            Some(n) => write!(f, "{} bytes read on a total of {n} expected bytes", self.partial.len()),
            None => write!(f, "{} bytes read on a total of undefined expected bytes", self.partial.len()),
        }
    }
}

impl Error for IncompleteRead {}

impl From<IncompleteRead> for io::Error {
    fn from(incomplete: IncompleteRead) -> Self {
        io::Error::new(io::ErrorKind::UnexpectedEof, incomplete)
    }
}

/// A line, or a chunk up to a separator, is longer than the reader's limit
/// (asyncio's `LimitOverrunError`). It travels inside an [`io::Error`] of
/// kind [`InvalidData`](io::ErrorKind::InvalidData).
///
/// After [`readuntil`](StreamReader::readuntil) the data is still in the
/// reader, to be read another way; after
/// [`readline`](StreamReader::readline) it was discarded (see there).
///
/// ```
/// use std::io;
/// use tulip::LimitOverrun;
///
/// let err: io::Error = LimitOverrun { consumed: 70_000, found: true }.into();
/// assert_eq!(err.kind(), io::ErrorKind::InvalidData);
/// assert_eq!(LimitOverrun::of(&err).unwrap().consumed, 70_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOverrun {
    /// How many bytes to consume to get past the problem: the separator's
    /// offset when it was found, else the bytes searched without finding it.
    pub consumed: usize,
    /// Whether the separator was found (beyond the limit).
    pub found: bool,
}

impl LimitOverrun {
    /// The `LimitOverrun` inside `err`, if it is one.
    pub fn of(err: &io::Error) -> Option<&LimitOverrun> {
        err.get_ref()?.downcast_ref()
    }
}

impl fmt::Display for LimitOverrun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.found {
            write!(f, "separator is found, but chunk is longer than limit ({} bytes)", self.consumed)
        } else {
            write!(f, "separator is not found, and chunk exceeds the limit ({} bytes)", self.consumed)
        }
    }
}

impl Error for LimitOverrun {}

impl From<LimitOverrun> for io::Error {
    fn from(overrun: LimitOverrun) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, overrun)
    }
}

fn connection_lost_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection lost")
}

// ---------------------------------------------------------------------------
// The state a reader, a writer and their protocol share

/// What a [`StreamReader`], its [`StreamWriter`] and their
/// [`StreamProtocol`] share.
struct Shared {
    /// Set by `connection_made`, let go by `connection_lost`.
    transport: RefCell<Option<Transport>>,
    // The reading side.
    /// Bytes received and not read yet.
    buffer: RefCell<ByteBuffer>,
    limit: Cell<usize>,
    /// The peer's EOF, or the connection's end, was seen.
    eof: Cell<bool>,
    /// The transport's reading is paused by us (the buffer is full).
    reading_paused: Cell<bool>,
    /// The task of the read that waits (kept after the read, so the next
    /// read of the same task need not clone it again).
    read_waker: RefCell<Option<Waker>>,
    /// A read waits: `read_waker` is to be woken.
    read_waiting: Cell<bool>,
    /// The bytes the waiting read needs: reading does not pause below them.
    wanted: Cell<usize>,
    // The writing side.
    /// Between `pause_writing` and `resume_writing`.
    writing_paused: Cell<bool>,
    drain_wakers: RefCell<Vec<Waker>>,
    // The end.
    /// `connection_lost` came.
    lost: Cell<bool>,
    /// The error the connection was lost with: reads and `drain` raise it.
    error: RefCell<Option<io::Error>>,
    closed_wakers: RefCell<Vec<Waker>>,
    /// Readers and writers alive: the last one dropped closes the connection.
    handles: Cell<usize>,
}

impl Shared {
    fn new() -> Rc<Shared> {
        Rc::new(Shared {
            transport: RefCell::new(None),
            buffer: RefCell::new(ByteBuffer::default()),
            limit: Cell::new(DEFAULT_LIMIT),
            eof: Cell::new(false),
            reading_paused: Cell::new(false),
            read_waker: RefCell::new(None),
            read_waiting: Cell::new(false),
            wanted: Cell::new(0),
            writing_paused: Cell::new(false),
            drain_wakers: RefCell::new(Vec::new()),
            lost: Cell::new(false),
            error: RefCell::new(None),
            closed_wakers: RefCell::new(Vec::new()),
            handles: Cell::new(0),
        })
    }

    fn wake_reader(&self) {
        if !self.read_waiting.replace(false) {
            return;
        }
        // Out of the cell while it wakes (a waker may poll at once), then
        // back, unless the wake stored another.
        let waker = self.read_waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake_by_ref();
            let mut slot = self.read_waker.borrow_mut();
            if slot.is_none() {
                *slot = Some(waker);
            }
        }
    }

    /// Bytes arrived (asyncio's `feed_data`): buffer them, wake the read,
    /// and pause the transport past twice the limit (or past what the
    /// waiting read needs, if that is more).
    fn feed_data(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let len = {
            let mut buffer = self.buffer.borrow_mut();
            buffer.push(data);
            buffer.len()
        };
        self.wake_reader();
        let ceiling = self.limit.get().saturating_mul(2).max(self.wanted.get());
        if len > ceiling && !self.reading_paused.get() {
            if let Some(transport) = &*self.transport.borrow() {
                transport.pause_reading();
                self.reading_paused.set(true);
            }
        }
    }

    /// The peer will send nothing more (asyncio's `feed_eof`).
    fn feed_eof(&self) {
        self.eof.set(true);
        self.wake_reader();
    }

    /// Reads again once a read brought the buffer down to the limit
    /// (asyncio's `_maybe_resume_transport`).
    fn maybe_resume_reading(&self) {
        if self.reading_paused.get() && self.buffer.borrow().len() <= self.limit.get() {
            self.resume_reading();
        }
    }

    fn resume_reading(&self) {
        self.reading_paused.set(false);
        if let Some(transport) = &*self.transport.borrow() {
            transport.resume_reading();
        }
    }

    /// A copy of the error the connection was lost with, if any.
    #[inline]
    fn error(&self) -> Option<io::Error> {
        if !self.lost.get() {
            return None; // the usual case: one flag, no borrow
        }
        self.error.borrow().as_ref().map(copy_error)
    }

    /// Makes the read of `cx` wait for data, needing `wanted` bytes in all
    /// (asyncio's `_wait_for_data`). Reading resumes if it was paused: a
    /// read that waits while reading is paused would wait for ever.
    fn wait_for_data(&self, cx: &Context<'_>, wanted: usize) -> Poll<io::Result<Vec<u8>>> {
        if self.reading_paused.get() {
            self.resume_reading();
        }
        self.wanted.set(wanted);
        self.read_waiting.set(true);
        let mut slot = self.read_waker.borrow_mut();
        if !slot.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The read that waited is over (done or dropped).
    fn read_ended(&self) {
        self.read_waiting.set(false);
        self.wanted.set(0);
    }

    fn handle_made(self: &Rc<Self>) -> Rc<Shared> {
        self.handles.set(self.handles.get() + 1);
        Rc::clone(self)
    }

    /// A reader or writer was dropped: the last one closes the connection
    /// (after what is buffered is sent), as nothing can use it any more.
    fn handle_dropped(&self) {
        self.handles.set(self.handles.get().saturating_sub(1));
        if self.handles.get() == 0 {
            if let Some(transport) = &*self.transport.borrow() {
                transport.close();
            }
        }
    }

    fn connection_lost(&self, error: Option<io::Error>) {
        self.lost.set(true);
        self.eof.set(true);
        *self.error.borrow_mut() = error;
        // Let the transport go: it holds us through the protocol.
        let transport = self.transport.borrow_mut().take();
        drop(transport);
        self.wake_reader();
        let drainers = std::mem::take(&mut *self.drain_wakers.borrow_mut());
        drainers.into_iter().for_each(Waker::wake);
        let closers = std::mem::take(&mut *self.closed_wakers.borrow_mut());
        closers.into_iter().for_each(Waker::wake);
    }
}

/// Adds `cx`'s waker to `wakers` unless one that wakes the same task is there.
fn push_waker(wakers: &RefCell<Vec<Waker>>, cx: &Context<'_>) {
    let mut wakers = wakers.borrow_mut();
    if !wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
        wakers.push(cx.waker().clone());
    }
}

/// Ends the waiting of a read however the read ends, dropped included.
struct ReadGuard<'a>(&'a Shared);

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.0.read_ended();
    }
}

// ---------------------------------------------------------------------------
// The protocol

/// What to do once connected: a server starts its handler here.
type OnConnect = Box<dyn FnOnce(StreamReader, StreamWriter)>;

/// The protocol between a transport and a reader/writer pair (asyncio's
/// `StreamReaderProtocol`).
struct StreamProtocol {
    shared: Rc<Shared>,
    on_connect: Option<OnConnect>,
}

impl Protocol for StreamProtocol {
    fn connection_made(&mut self, transport: Transport) {
        *self.shared.transport.borrow_mut() = Some(transport.clone());
        if let Some(on_connect) = self.on_connect.take() {
            on_connect(StreamReader::new(&self.shared), StreamWriter::new(&self.shared, transport));
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        self.shared.feed_data(data);
    }

    /// The reader sees the end; the writing side stays open (a half-close),
    /// as asyncio's.
    fn eof_received(&mut self) -> bool {
        self.shared.feed_eof();
        true
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.shared.connection_lost(error);
    }

    fn pause_writing(&mut self) {
        self.shared.writing_paused.set(true);
    }

    fn resume_writing(&mut self) {
        self.shared.writing_paused.set(false);
        let drainers = std::mem::take(&mut *self.shared.drain_wakers.borrow_mut());
        drainers.into_iter().for_each(Waker::wake);
    }
}

// ---------------------------------------------------------------------------
// The reader

/// The reading half of a stream connection (asyncio's `StreamReader`),
/// from [`open_connection`](BaseSelectorEventLoop::open_connection) or
/// handed to a [`start_server`](BaseSelectorEventLoop::start_server)
/// handler.
///
/// Reads take `&mut self`: one read at a time, which the compiler checks
/// (asyncio raises `RuntimeError` when two coroutines wait on one reader).
/// Every read is cancellation-safe: dropped before it returns, it has
/// consumed nothing. After the connection was lost with an error, every
/// read returns a copy of that error (even with bytes still buffered, as
/// asyncio).
///
/// ```
/// // A tiny HTTP-like server, and a client reading its answer three ways.
/// let (status, headers, body) = tulip::run(|event_loop| async move {
///     let server = event_loop.start_server("127.0.0.1:0", |mut reader, writer| async move {
///         reader.readuntil(b"\r\n\r\n").await?;
///         writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello")?;
///         writer.close();
///         Ok(())
///     })?;
///     let addr = server.local_addr()?.as_inet().unwrap();
///     let (mut reader, writer) = event_loop.open_connection(addr).await?;
///     writer.write(b"GET / HTTP/1.0\r\n\r\n")?;
///     let status = reader.readline().await?;
///     let headers = reader.readuntil(b"\r\n\r\n").await?;
///     let body = reader.read_to_end().await?;
///     assert!(reader.at_eof());
///     std::io::Result::Ok((status, headers, body))
/// })??;
/// assert_eq!(status, b"HTTP/1.0 200 OK\r\n");
/// assert_eq!(headers, b"Content-Type: text/plain\r\n\r\n");
/// assert_eq!(body, b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct StreamReader {
    shared: Rc<Shared>,
}

impl StreamReader {
    fn new(shared: &Rc<Shared>) -> StreamReader {
        StreamReader { shared: shared.handle_made() }
    }

    /// Reads up to `n` bytes: what is buffered, as soon as there is at
    /// least one byte (asyncio's `read(n)`). An empty result means the end
    /// of the stream (or `n == 0`).
    ///
    /// # Errors
    ///
    /// The error the connection was lost with.
    pub async fn read(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let shared = &*self.shared;
        let _guard = ReadGuard(shared);
        poll_fn(|cx| {
            if let Some(err) = shared.error() {
                return Poll::Ready(Err(err));
            }
            let mut buffer = shared.buffer.borrow_mut();
            if n == 0 || !buffer.is_empty() || shared.eof.get() {
                let len = buffer.len();
                let taken = buffer.take(n.min(len));
                drop(buffer);
                shared.maybe_resume_reading();
                return Poll::Ready(Ok(taken));
            }
            drop(buffer);
            shared.wait_for_data(cx, 0)
        })
        .await
    }

    /// Reads everything up to the end of the stream (asyncio's `read()`,
    /// `n = -1`). Reading does not pause for the limit meanwhile: the
    /// caller asked for all of it.
    ///
    /// # Errors
    ///
    /// The error the connection was lost with; what was buffered stays
    /// unread.
    pub async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let shared = &*self.shared;
        let _guard = ReadGuard(shared);
        poll_fn(|cx| {
            if let Some(err) = shared.error() {
                return Poll::Ready(Err(err));
            }
            if shared.eof.get() {
                let all = shared.buffer.borrow_mut().take_all();
                shared.maybe_resume_reading();
                return Poll::Ready(Ok(all));
            }
            shared.wait_for_data(cx, usize::MAX)
        })
        .await
    }

    /// Reads exactly `n` bytes (asyncio's `readexactly`), whatever the
    /// limit.
    ///
    /// # Errors
    ///
    /// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) with an
    /// [`IncompleteRead`] holding the bytes that came, if the stream ends
    /// first (they are taken from the reader); the error the connection
    /// was lost with.
    pub async fn readexactly(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let shared = &*self.shared;
        let _guard = ReadGuard(shared);
        poll_fn(|cx| {
            if let Some(err) = shared.error() {
                return Poll::Ready(Err(err));
            }
            let mut buffer = shared.buffer.borrow_mut();
            if buffer.len() >= n {
                let taken = buffer.take(n);
                drop(buffer);
                shared.maybe_resume_reading();
                return Poll::Ready(Ok(taken));
            }
            if shared.eof.get() {
                let partial = buffer.take_all();
                return Poll::Ready(Err(IncompleteRead { partial, expected: Some(n) }.into()));
            }
            drop(buffer);
            shared.wait_for_data(cx, n)
        })
        .await
    }

    /// Reads a line, `\n` included (asyncio's `readline`). At the end of
    /// the stream it returns what is left without a `\n`, and then empty
    /// results.
    ///
    /// # Errors
    ///
    /// [`InvalidData`](io::ErrorKind::InvalidData) with a [`LimitOverrun`]
    /// when the line (without its `\n`) is longer than the limit; unlike
    /// [`readuntil`](Self::readuntil), the line is discarded: up to its
    /// `\n` if that came, else everything buffered (the rest of the line
    /// then comes as the next one), as asyncio. The error the connection
    /// was lost with.
    pub async fn readline(&mut self) -> io::Result<Vec<u8>> {
        match self.readuntil(b"\n").await {
            Ok(line) => Ok(line),
            Err(err) => {
                if let Some(overrun) = LimitOverrun::of(&err) {
                    let shared = &*self.shared;
                    let mut buffer = shared.buffer.borrow_mut();
                    if overrun.found {
                        buffer.consume(overrun.consumed + 1);
                    } else {
                        let n = buffer.len();
                        buffer.consume(n);
                    }
                    drop(buffer);
                    shared.maybe_resume_reading();
                    return Err(err);
                }
                IncompleteRead::take(err).map(|incomplete| incomplete.partial)
            }
        }
    }

    /// Reads up to and including `separator` (asyncio's `readuntil`).
    /// Separators split across the chunks the socket delivered are found.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for an empty separator;
    /// [`InvalidData`](io::ErrorKind::InvalidData) with a [`LimitOverrun`]
    /// when more than the limit would come before the separator (the data
    /// stays in the reader); [`UnexpectedEof`](io::ErrorKind::UnexpectedEof)
    /// with an [`IncompleteRead`] holding everything that was buffered (now
    /// taken) if the stream ends before a separator; the error the
    /// connection was lost with.
    pub async fn readuntil(&mut self, separator: &[u8]) -> io::Result<Vec<u8>> {
        if separator.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the separator must not be empty"));
        }
        let shared = &*self.shared;
        let _guard = ReadGuard(shared);
        // Bytes from the start known to hold no separator: a wake rescans
        // only what is new (and the separator's length less one before it).
        let mut offset = 0;
        poll_fn(|cx| {
            if let Some(err) = shared.error() {
                return Poll::Ready(Err(err));
            }
            let limit = shared.limit.get();
            let mut buffer = shared.buffer.borrow_mut();
            let len = buffer.len();
            if len - offset.min(len) >= separator.len() {
                match find(&buffer.bytes()[offset..], separator) {
                    Some(at) => {
                        let at = offset + at;
                        if at > limit {
                            return Poll::Ready(Err(LimitOverrun { consumed: at, found: true }.into()));
                        }
                        let chunk = buffer.take(at + separator.len());
                        drop(buffer);
                        shared.maybe_resume_reading();
                        return Poll::Ready(Ok(chunk));
                    }
                    None => {
                        offset = len + 1 - separator.len();
                        if offset > limit {
                            return Poll::Ready(Err(LimitOverrun { consumed: offset, found: false }.into()));
                        }
                    }
                }
            }
            if shared.eof.get() {
                let partial = buffer.take_all();
                return Poll::Ready(Err(IncompleteRead { partial, expected: None }.into()));
            }
            drop(buffer);
            shared.wait_for_data(cx, 0)
        })
        .await
    }

    /// `true` once the stream has ended and everything was read (asyncio's
    /// `at_eof`).
    pub fn at_eof(&self) -> bool {
        self.shared.eof.get() && self.shared.buffer.borrow().is_empty()
    }

    /// The limit: the longest line, and half the bytes buffered before
    /// reading pauses.
    pub fn limit(&self) -> usize {
        self.shared.limit.get()
    }

    /// Sets the limit (asyncio's `limit=` argument, default
    /// [`DEFAULT_LIMIT`]); it applies from the next read or arrival.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for 0.
    pub fn set_limit(&mut self, limit: usize) -> io::Result<()> {
        if limit == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the limit must be at least 1"));
        }
        self.shared.limit.set(limit);
        self.shared.maybe_resume_reading();
        Ok(())
    }

    /// Bytes received and not read yet.
    pub fn buffered(&self) -> usize {
        self.shared.buffer.borrow().len()
    }
}

/// Where `needle` (not empty) first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [byte] => haystack.iter().position(|b| b == byte),
        _ => haystack.windows(needle.len()).position(|window| window == needle),
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.shared.handle_dropped();
    }
}

impl fmt::Debug for StreamReader {
    /// As asyncio's repr: the bytes buffered, `eof`, a limit that is not
    /// the default, `paused`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &*self.shared;
        f.debug_struct("StreamReader")
            .field("buffered", &shared.buffer.borrow().len())
            .field("eof", &shared.eof.get())
            .field("limit", &shared.limit.get())
            .field("paused", &shared.reading_paused.get())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// The writer

/// The writing half of a stream connection (asyncio's `StreamWriter`):
/// a [`Transport`] plus [`drain`](Self::drain) and
/// [`wait_closed`](Self::wait_closed).
///
/// `write` never blocks: the transport sends what the socket takes and
/// buffers the rest. Await `drain` after writing, so a peer that does not
/// read makes the writer wait instead of the buffer grow.
///
/// Once both the writer and its [`StreamReader`] are dropped, the
/// connection is closed (after what is buffered is sent): nothing could
/// use it any more. asyncio leaves such a connection open (a handler that
/// forgets `close` leaks it); dropping just one of the two changes
/// nothing. Share a writer between tasks with an `Rc`.
///
/// ```
/// use tulip::{StreamReader, StreamWriter};
///
/// // A line echo server's handler.
/// async fn echo(mut reader: StreamReader, writer: StreamWriter) -> std::io::Result<()> {
///     loop {
///         let line = reader.readline().await?;
///         if line.is_empty() {
///             break; // the client closed its side
///         }
///         writer.write(&line)?;
///         writer.drain().await?; // waits while the client is not reading
///     }
///     writer.close();
///     writer.wait_closed().await
/// }
///
/// let echoed = tulip::run(|event_loop| async move {
///     let server = event_loop.start_server("127.0.0.1:0", echo)?;
///     let (mut reader, writer) = event_loop.open_connection(server.local_addr()?.as_inet().unwrap()).await?;
///     writer.writelines([&b"one\n"[..], b"two\n"])?;
///     writer.write_eof()?; // our side is done; theirs stays open until they close it
///     let echoed = reader.read_to_end().await?;
///     writer.close();
///     writer.wait_closed().await?;
///     std::io::Result::Ok(echoed)
/// })??;
/// assert_eq!(echoed, b"one\ntwo\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct StreamWriter {
    shared: Rc<Shared>,
    transport: Transport,
}

impl StreamWriter {
    fn new(shared: &Rc<Shared>, transport: Transport) -> StreamWriter {
        StreamWriter { shared: shared.handle_made(), transport }
    }

    /// The transport underneath (asyncio's `writer.transport`).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Sends `data`, buffering what the socket does not take now.
    ///
    /// # Errors
    ///
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe) once the connection is
    /// closing or closed; [`InvalidInput`](io::ErrorKind::InvalidInput)
    /// after [`write_eof`](Self::write_eof). (asyncio drops such a write
    /// silently and lets the next `drain` fail.)
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        self.transport.write(data)
    }

    /// Sends the buffers one after the other, in one write (asyncio's
    /// `writelines`).
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    pub fn writelines<B: AsRef<[u8]>>(&self, buffers: impl IntoIterator<Item = B>) -> io::Result<()> {
        let mut joined = Vec::new();
        for buffer in buffers {
            joined.extend_from_slice(buffer.as_ref());
        }
        self.transport.write(&joined)
    }

    /// Waits until the transport's write buffer is down to its low-water
    /// mark, if it went above the high-water mark (asyncio's `drain`);
    /// otherwise returns at once. While the connection is closing, it
    /// first lets the loop run once, so that a lost connection is noticed.
    ///
    /// # Errors
    ///
    /// The error the connection was lost with;
    /// [`ConnectionReset`](io::ErrorKind::ConnectionReset) "connection
    /// lost" if it was lost without one (a drain already waiting when the
    /// connection closes cleanly returns `Ok`, as asyncio's).
    pub async fn drain(&self) -> io::Result<()> {
        let shared = &*self.shared;
        let mut yielded = !self.transport.is_closing();
        let mut waited = false;
        poll_fn(|cx| {
            if let Some(err) = shared.error() {
                return Poll::Ready(Err(err));
            }
            if !yielded {
                // asyncio's `sleep(0)`: `connection_lost` is queued.
                yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if shared.lost.get() {
                return Poll::Ready(if waited { Ok(()) } else { Err(connection_lost_error()) });
            }
            // `pause_writing` reaches the protocol one loop callback after
            // the write that crossed the mark: the buffer's size says it now.
            let (_, high) = self.transport.get_write_buffer_limits();
            if shared.writing_paused.get() || self.transport.get_write_buffer_size() > high {
                waited = true;
                push_waker(&shared.drain_wakers, cx);
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Closes the writing side once the buffer is sent (a TCP FIN); the
    /// reader goes on reading (asyncio's `write_eof`).
    ///
    /// # Errors
    ///
    /// The error of `shutdown`, when done at once.
    pub fn write_eof(&self) -> io::Result<()> {
        self.transport.write_eof()
    }

    /// `true`: stream sockets can half-close.
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Closes the connection once the buffer is sent. Idempotent.
    pub fn close(&self) {
        self.transport.close();
    }

    /// `true` once closing or closed.
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// Waits until the connection is closed (its `connection_lost`).
    ///
    /// # Errors
    ///
    /// The error the connection was lost with, if any.
    pub async fn wait_closed(&self) -> io::Result<()> {
        let shared = &*self.shared;
        poll_fn(|cx| {
            if shared.lost.get() {
                return Poll::Ready(shared.error().map_or(Ok(()), Err));
            }
            push_waker(&shared.closed_wakers, cx);
            Poll::Pending
        })
        .await
    }

    /// The peer's address (asyncio's `get_extra_info('peername')`).
    ///
    /// # Errors
    ///
    /// [`NotConnected`](io::ErrorKind::NotConnected) once closed.
    pub fn peer_addr(&self) -> io::Result<SocketAddress> {
        self.transport.peer_addr()
    }

    /// This end's address (asyncio's `get_extra_info('sockname')`).
    ///
    /// # Errors
    ///
    /// [`NotConnected`](io::ErrorKind::NotConnected) once closed.
    pub fn local_addr(&self) -> io::Result<SocketAddress> {
        self.transport.local_addr()
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.shared.handle_dropped();
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter").field("transport", &self.transport).finish()
    }
}

// ---------------------------------------------------------------------------
// Opening connections and serving

/// Streams on the selector loop (asyncio's `open_connection`,
/// `start_server` and their Unix-domain twins).
///
/// These are methods of the loop, as `create_connection` and
/// `create_server` are, rather than asyncio's free functions that look the
/// running loop up. `start_server` takes `&self`: each connection's handler
/// is started as a task through the loop's queue, so the loop need not be
/// in an `Rc`; a handler that needs the loop captures an `Rc` of it (or
/// calls [`get_running_loop`](crate::get_running_loop) under
/// [`tulip::run`](crate::run)).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Connects to `addr` and returns the connection's reader and writer
    /// (asyncio's `open_connection`).
    ///
    /// ```no_run
    /// use tulip::selectors::Backend;
    ///
    /// let event_loop = tulip::new_event_loop(Backend::default())?;
    /// let reply = event_loop.run_until_complete(async {
    ///     let (mut reader, writer) = event_loop.open_connection("127.0.0.1:8888").await?;
    ///     writer.write(b"hello\n")?;
    ///     writer.drain().await?;
    ///     reader.readline().await
    /// })??;
    /// assert_eq!(reply, b"hello\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`create_connection`](Self::create_connection), e.g.
    /// [`ConnectionRefused`](io::ErrorKind::ConnectionRefused).
    pub async fn open_connection(
        &self,
        addr: impl crate::ToAddrs,
    ) -> io::Result<(StreamReader, StreamWriter)> {
        let shared = Shared::new();
        let protocol = StreamProtocol { shared: Rc::clone(&shared), on_connect: None };
        let (transport, _) = self.create_connection(addr, move || protocol).await?;
        Ok(pair(shared, transport))
    }

    /// [`open_connection`](Self::open_connection) to a Unix-domain listener
    /// at `path` (asyncio's `open_unix_connection`).
    ///
    /// # Errors
    ///
    /// Those of [`create_unix_connection`](Self::create_unix_connection).
    pub async fn open_unix_connection(
        &self,
        path: impl AsRef<Path>,
    ) -> io::Result<(StreamReader, StreamWriter)> {
        let shared = Shared::new();
        let protocol = StreamProtocol { shared: Rc::clone(&shared), on_connect: None };
        let (transport, _) = self.create_unix_connection(path, move || protocol).await?;
        Ok(pair(shared, transport))
    }

    /// Listens on `addr` and runs `handler(reader, writer)` as a task for
    /// each connection (asyncio's `start_server`). Serving starts at once;
    /// see [`create_server`](Self::create_server) for the [`Server`].
    ///
    /// The handler's `Err` goes to the loop's exception handler, naming
    /// the peer and where the server was started. When the handler
    /// returns, its reader and writer are dropped (unless it kept them
    /// elsewhere), which closes the connection. The task starts on the iteration after
    /// the connection is made; reading starts before, and data waits in
    /// the reader.
    ///
    /// ```no_run
    /// use tulip::{AbstractEventLoop, SelectorEventLoop};
    ///
    /// let event_loop = SelectorEventLoop::new()?;
    /// let server = event_loop.start_server("127.0.0.1:8888", |mut reader, writer| async move {
    ///     let name = reader.readline().await?;
    ///     writer.write(b"hello, ")?;
    ///     writer.write(&name)?;
    ///     writer.drain().await
    /// })?;
    /// println!("serving on {}", server.local_addr()?);
    /// event_loop.run_forever()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`create_server`](Self::create_server), e.g.
    /// [`AddrInUse`](io::ErrorKind::AddrInUse).
    #[track_caller]
    pub fn start_server<H, F>(&self, addr: impl crate::ToAddrs, handler: H) -> io::Result<Server>
    where
        H: Fn(StreamReader, StreamWriter) -> F + 'static,
        F: Future<Output = io::Result<()>> + 'static,
    {
        let factory = self.stream_factory(handler, Location::caller());
        self.create_server(addr, factory)
    }

    /// [`start_server`](Self::start_server) on a Unix-domain socket at
    /// `path` (asyncio's `start_unix_server`); see
    /// [`create_unix_server`](Self::create_unix_server) for the socket file.
    ///
    /// # Errors
    ///
    /// Those of [`create_unix_server`](Self::create_unix_server).
    #[track_caller]
    pub fn start_unix_server<H, F>(&self, path: impl AsRef<Path>, handler: H) -> io::Result<Server>
    where
        H: Fn(StreamReader, StreamWriter) -> F + 'static,
        F: Future<Output = io::Result<()>> + 'static,
    {
        let factory = self.stream_factory(handler, Location::caller());
        self.create_unix_server(path, factory)
    }

    /// The protocol factory of a stream server: each protocol, once
    /// connected, queues a loop callback that starts `handler` as a task.
    fn stream_factory<H, F>(
        &self,
        handler: H,
        origin: &'static Location<'static>,
    ) -> impl Fn() -> StreamProtocol + 'static
    where
        H: Fn(StreamReader, StreamWriter) -> F + 'static,
        F: Future<Output = io::Result<()>> + 'static,
    {
        let queue = Rc::downgrade(self.engine().ready());
        let handler = Rc::new(handler);
        move || {
            let (queue, handler) = (queue.clone(), Rc::clone(&handler));
            let on_connect: OnConnect = Box::new(move |reader, writer| {
                let Some(ready) = queue.upgrade() else { return };
                ready.call_soon(move |event_loop: &Self| {
                    let peer =
                        writer.peer_addr().map_or_else(|_| "a peer".to_owned(), |addr| addr.to_string());
                    let handling = handler(reader, writer);
                    let report = queue;
                    event_loop.create_task(async move {
                        let Err(err) = handling.await else { return };
                        if crate::is_cancelled(&err) {
                            return;
                        }
                        let Some(ready) = report.upgrade() else { return };
                        let context = ExceptionContext {
                            message: format!("stream handler for {peer} failed: {err}"),
                            panic: None,
                            origin: Some(origin),
                        };
                        ready.call_soon(move |event_loop: &Self| event_loop.call_exception_handler(&context));
                    });
                });
            });
            StreamProtocol { shared: Shared::new(), on_connect: Some(on_connect) }
        }
    }
}

/// The reader and writer of a connected client.
fn pair(shared: Rc<Shared>, transport: Transport) -> (StreamReader, StreamWriter) {
    (StreamReader::new(&shared), StreamWriter::new(&shared, transport))
}

#[cfg(test)]
mod tests {
    //! The reader's buffer rules with data fed by hand, as CPython's
    //! `test_streams.py` does with `feed_data` (the integration tests in
    //! `tests/streams.rs` go through sockets on every backend).

    use std::io;
    use std::rc::Rc;

    use super::{IncompleteRead, LimitOverrun, Shared, StreamReader};
    use crate::{AbstractEventLoop, SelectorEventLoop};

    const DATA: &[u8] = b"line1\nline2\nline3\n";

    fn reader(limit: usize) -> StreamReader {
        let shared = Shared::new();
        shared.limit.set(limit);
        StreamReader::new(&shared)
    }

    fn feed(reader: &StreamReader, chunks: &[&[u8]]) {
        chunks.iter().for_each(|chunk| reader.shared.feed_data(chunk));
    }

    fn buffer(reader: &StreamReader) -> Vec<u8> {
        reader.shared.buffer.borrow().bytes().to_vec()
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        let lp = SelectorEventLoop::new().unwrap();
        let out = lp.run_until_complete(f).unwrap();
        lp.close().unwrap();
        out
    }

    #[test]
    fn read_zero_and_read_n() {
        let mut r = reader(64);
        feed(&r, &[DATA]);
        assert_eq!(run(r.read(0)).unwrap(), b"");
        assert_eq!(buffer(&r), DATA);
        feed(&r, &[b"x"]);
        assert_eq!(run(r.read(5)).unwrap(), b"line1");
        assert_eq!(run(r.read(100)).unwrap(), b"\nline2\nline3\nx");
    }

    #[test]
    fn read_ignores_the_limit() {
        let mut r = reader(3);
        feed(&r, &[b"chunk"]);
        assert_eq!(run(r.read(5)).unwrap(), b"chunk");
        feed(&r, &[b"chunk"]);
        assert_eq!(run(r.readexactly(5)).unwrap(), b"chunk");
        assert_eq!(buffer(&r), b"");
    }

    #[test]
    fn readline_across_chunks_leaves_the_rest() {
        let mut r = reader(64);
        feed(&r, &[b"chunk1 ", b"chunk2 ", b"chunk3 ", b"\n chunk4"]);
        assert_eq!(run(r.readline()).unwrap(), b"chunk1 chunk2 chunk3 \n");
        assert_eq!(buffer(&r), b" chunk4");
        assert_eq!(run(r.read(7)).unwrap(), b" chunk4");
    }

    #[test]
    fn readline_over_the_limit_discards_the_line() {
        let mut r = reader(3);
        feed(&r, &[b"li", b"ne1\nline2\n"]);
        let err = run(r.readline()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(buffer(&r), b"line2\n");

        let mut r = reader(3);
        feed(&r, &[b"li", b"ne1", b"li"]);
        assert!(LimitOverrun::of(&run(r.readline()).unwrap_err()).is_some());
        assert_eq!(buffer(&r), b"");

        // The limit is strict: 7 bytes and the newline pass, 8 do not.
        let mut r = reader(7);
        feed(&r, &[b"1234567\n"]);
        assert_eq!(run(r.readline()).unwrap(), b"1234567\n");
        feed(&r, &[b"12345678\n"]);
        assert!(run(r.readline()).is_err());
        assert_eq!(buffer(&r), b"");
        feed(&r, &[b"12345678"]);
        assert!(run(r.readline()).is_err());
        assert_eq!(buffer(&r), b"");
    }

    #[test]
    fn readuntil_over_the_limit_keeps_the_data() {
        let mut r = reader(3);
        feed(&r, &[b"some dataAA"]);
        let err = run(r.readuntil(b"AAA")).unwrap_err();
        assert_eq!(LimitOverrun::of(&err), Some(&LimitOverrun { consumed: 9, found: false }));
        assert_eq!(buffer(&r), b"some dataAA");
        feed(&r, &[b"A"]);
        let err = run(r.readuntil(b"AAA")).unwrap_err();
        assert_eq!(LimitOverrun::of(&err), Some(&LimitOverrun { consumed: 9, found: true }));
        assert_eq!(buffer(&r), b"some dataAAA");
    }

    #[test]
    fn readuntil_finds_separators_split_across_chunks() {
        let mut r = reader(64);
        feed(&r, &[b"QWEaa", b"XYaa", b"a"]);
        assert_eq!(run(r.readuntil(b"aaa")).unwrap(), b"QWEaaXYaaa");
        feed(&r, &[b"XXX", b"a", b"a", b"a"]);
        assert_eq!(run(r.readuntil(b"aaa")).unwrap(), b"XXXaaa");
        feed(&r, &[b"lineAAAxxx"]);
        assert_eq!(run(r.readuntil(b"AAA")).unwrap(), b"lineAAA");
        assert_eq!(buffer(&r), b"xxx");
        let err = run(r.readuntil(b"")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn eof_in_the_middle_gives_the_partial_bytes() {
        let mut r = reader(64);
        feed(&r, &[b"some dataAA"]);
        r.shared.feed_eof();
        let err = run(r.readuntil(b"AAA")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(err.to_string(), "11 bytes read on a total of undefined expected bytes");
        assert_eq!(IncompleteRead::take(err).unwrap().partial, b"some dataAA");

        let mut r = reader(64);
        feed(&r, &[DATA]);
        r.shared.feed_eof();
        let err = run(r.readexactly(36)).unwrap_err();
        assert_eq!(err.to_string(), "18 bytes read on a total of 36 expected bytes");
        assert_eq!(
            IncompleteRead::of(&err),
            Some(&IncompleteRead { partial: DATA.to_vec(), expected: Some(36) })
        );
        assert_eq!(buffer(&r), b"");
        assert!(r.at_eof());
    }

    #[test]
    fn readline_at_eof_and_at_eof() {
        let mut r = reader(64);
        assert!(!r.at_eof());
        feed(&r, &[b"some data\n"]);
        assert!(!r.at_eof());
        assert_eq!(run(r.readline()).unwrap(), b"some data\n");
        assert!(!r.at_eof());
        feed(&r, &[b"some data"]);
        r.shared.feed_eof();
        assert!(!r.at_eof());
        assert_eq!(run(r.readline()).unwrap(), b"some data");
        assert!(r.at_eof());
        assert_eq!(run(r.readline()).unwrap(), b"");
        assert_eq!(run(r.read(10)).unwrap(), b"");
    }

    #[test]
    fn an_error_wins_over_buffered_data() {
        let mut r = reader(64);
        feed(&r, &[b"line\n"]);
        assert_eq!(run(r.read(2)).unwrap(), b"li");
        r.shared.connection_lost(Some(io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
        for _ in 0..2 {
            assert_eq!(run(r.read(2)).unwrap_err().kind(), io::ErrorKind::ConnectionReset);
            assert_eq!(run(r.readline()).unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        }
    }

    #[test]
    fn set_limit_refuses_zero() {
        let mut r = reader(64);
        assert_eq!(r.set_limit(0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        r.set_limit(5).unwrap();
        assert_eq!(r.limit(), 5);
        assert!(Rc::strong_count(&r.shared) >= 1);
    }
}
