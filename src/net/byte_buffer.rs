//! The byte queue of the transports and streams: bytes appended at the
//! back, taken from the front. The socket and pipe transports keep what
//! the fd did not take yet in one; a stream reader keeps what it received
//! and was not read yet.

/// Bytes waiting, front first: a `Vec` read from `start`, so that taking
/// from the front moves nothing. It is compacted as it drains: cleared
/// (keeping its capacity) once all is taken, and shifted down once more
/// than half of it is taken, so it never grows past twice what it holds.
/// Invariant: `start < data.len()`, or both are 0.
#[derive(Default)]
pub(crate) struct ByteBuffer {
    data: Vec<u8>,
    start: usize,
}

impl ByteBuffer {
    /// How many bytes wait.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes waiting, front first.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Appends `bytes` at the back.
    #[inline]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Drops the first `n` bytes (`n <= len`).
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        } else if self.start > self.data.len() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }

    /// Removes and returns the first `n` bytes (`n <= len`).
    pub(crate) fn take(&mut self, n: usize) -> Vec<u8> {
        let taken = self.bytes()[..n].to_vec();
        self.consume(n);
        taken
    }

    /// Removes and returns all the bytes.
    pub(crate) fn take_all(&mut self) -> Vec<u8> {
        self.take(self.len())
    }

    /// Drops everything, memory included.
    pub(crate) fn clear(&mut self) {
        *self = ByteBuffer::default();
    }
}
