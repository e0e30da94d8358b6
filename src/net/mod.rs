//! Layer 3, I/O on the loop.
pub(crate) mod byte_buffer;
pub(crate) mod datagram_transport;
pub(crate) mod datagrams;
pub(crate) mod fd_transport;
pub(crate) mod names;
pub(crate) mod pipes;
pub(crate) mod protocols;
pub(crate) mod server;
pub(crate) mod socket_transport;
pub(crate) mod sockets;
pub(crate) mod streams;
pub(crate) mod subprocess;
pub(crate) mod sys;
pub(crate) mod transports;
