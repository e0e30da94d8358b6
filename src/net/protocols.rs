//! Protocols (Tulip's `protocols.py`): the callbacks a transport calls.

use std::io;

use crate::Transport;

/// What a connection does with its bytes (asyncio's `Protocol`): the loop
/// calls these as things happen on the [`Transport`], always from a loop
/// callback, never from inside a transport method. Every method has a
/// default that does nothing.
///
/// The transport holds the protocol as `Rc<RefCell<P>>` and borrows it for
/// each call: a protocol may call its transport (e.g. `write` from
/// `data_received`), but must not keep a borrow of itself across an
/// `.await` (the transport then retries on a later iteration).
///
/// Order of calls: `connection_made`, then any number of `data_received`,
/// then at most one `eof_received`, then `connection_lost` exactly once
/// (if the connection was made). `pause_writing` and `resume_writing`
/// alternate, starting with a pause, anywhere in between.
pub trait Protocol: 'static {
    /// The connection is up; `transport` is the handle to keep for writing.
    fn connection_made(&mut self, transport: Transport) {
        let _ = transport;
    }

    /// Bytes arrived (never an empty slice).
    fn data_received(&mut self, data: &[u8]) {
        let _ = data;
    }

    /// The peer closed its writing side. Return `true` to keep the transport
    /// open for writing (half-close), `false` to have it closed.
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is closed: `None` after a normal close or abort, the
    /// error after a failure (e.g. a reset by the peer).
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }

    /// The transport's write buffer rose above its high-water mark: stop
    /// writing until [`resume_writing`](Self::resume_writing). Delivered
    /// soon after the `write` that crossed the mark, as a loop callback;
    /// a producer in a loop checks
    /// [`get_write_buffer_size`](Transport::get_write_buffer_size) meanwhile.
    fn pause_writing(&mut self) {}

    /// The write buffer drained to its low-water mark or below.
    fn resume_writing(&mut self) {}
}
