//! Layer 3: streams (`StreamReader`, `StreamWriter`, `open_connection`,
//! `start_server`) on every backend, over 127.0.0.1 and Unix-domain
//! sockets. The behaviours of CPython's `test_streams.py`, through real
//! sockets: a peer writes chunks at chosen moments, so a read sees them
//! arrive one by one (the buffer rules with data fed by hand are unit
//! tests in `src/net/streams.rs`).

#[macro_use]
mod common;

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use common::UnixPath;
use tulip::{
    AbstractEventLoop, DynSelectorEventLoop, IncompleteRead, LimitOverrun, StreamReader, StreamWriter,
    DEFAULT_LIMIT,
};

backend_tests!(
    run_on_thread:
    start_server_and_open_connection,
    unix_server_and_connection,
    readline_then_read_to_end,
    readuntil_across_chunk_boundaries,
    readuntil_limit_overrun_keeps_the_data,
    readline_limit_overrun_discards_the_line,
    eof_in_the_middle_of_readexactly,
    at_eof_only_once_everything_is_read,
    reading_pauses_above_twice_the_limit,
    readexactly_more_than_the_limit,
    drain_waits_for_a_slow_reader,
    many_drains_wake_together,
    drain_raises_after_the_peer_goes,
    drain_and_write_after_close,
    wait_closed_after_close,
    wait_closed_with_unread_data_and_eof_after_it,
    a_dropped_readline_loses_no_data,
    a_cancelled_read_task_loses_no_data,
    a_reset_reaches_reads_and_wait_closed,
    half_close_with_write_eof,
    dropping_reader_and_writer_closes_the_connection,
    a_failing_handler_is_reported,
    addresses,
    writelines_sends_in_order,
    closing_the_loop_ends_handlers_and_connections,
);

/// Runs `fut` under a generous timeout; a hang fails the test.
fn run<F: Future>(event_loop: &DynSelectorEventLoop, fut: F) -> F::Output {
    event_loop.run_until_complete(tulip::wait_for(event_loop, fut, Duration::from_secs(30))).unwrap().unwrap()
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn port_of(server: &tulip::Server) -> SocketAddr {
    server.local_addr().unwrap().as_inet().unwrap()
}

fn sleep_ms(event_loop: &DynSelectorEventLoop, ms: u64) -> tulip::Sleep {
    tulip::sleep(event_loop, Duration::from_millis(ms))
}

/// A stream connection to a plain blocking socket the test drives.
async fn connected(event_loop: &DynSelectorEventLoop) -> (StreamReader, StreamWriter, TcpStream) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let (reader, writer) = event_loop.open_connection(listener.local_addr().unwrap()).await.unwrap();
    // The connection is in the backlog: accept does not block.
    let (peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    peer.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    (reader, writer, peer)
}

/// A line echo server: `readline`, `write`, `drain`, until EOF, then close
/// and `wait_closed` (CPython's `MyServer.handle_client`).
async fn echo_lines(mut reader: StreamReader, writer: StreamWriter) -> io::Result<()> {
    loop {
        let line = reader.readline().await?;
        if line.is_empty() {
            break;
        }
        writer.write(&line)?;
        writer.drain().await?;
    }
    writer.close();
    writer.wait_closed().await
}

/// test_start_server: a coroutine handler, a client with
/// `open_connection`, a line there and back.
fn start_server_and_open_connection(event_loop: DynSelectorEventLoop) {
    let server = event_loop.start_server(localhost(), echo_lines).unwrap();
    let addr = port_of(&server);
    let (reply, second) = run(&event_loop, async {
        let (mut reader, writer) = event_loop.open_connection(addr).await?;
        writer.write(b"hello world!\n")?;
        let reply = reader.readline().await?;
        writer.write(b"and ")?;
        writer.write(b"again\n")?;
        writer.drain().await?;
        let second = reader.readline().await?;
        writer.close();
        writer.wait_closed().await?;
        io::Result::Ok((reply, second))
    })
    .unwrap();
    assert_eq!(reply, b"hello world!\n");
    assert_eq!(second, b"and again\n");
    assert_eq!(server.connections_made(), 1);
    server.close();
}

/// test_start_unix_server / test_open_unix_connection.
fn unix_server_and_connection(event_loop: DynSelectorEventLoop) {
    let path = UnixPath::new();
    let server = event_loop.start_unix_server(&path.0, echo_lines).unwrap();
    let reply = run(&event_loop, async {
        let (mut reader, writer) = event_loop.open_unix_connection(&path.0).await?;
        writer.write(b"hello world!\n")?;
        let reply = reader.readline().await?;
        assert!(writer.peer_addr()?.as_unix().is_some());
        writer.close();
        writer.wait_closed().await?;
        io::Result::Ok(reply)
    })
    .unwrap();
    assert_eq!(reply, b"hello world!\n");
    server.close();
}

/// test_open_connection: a status line, then everything to the end.
fn readline_then_read_to_end(event_loop: DynSelectorEventLoop) {
    let server = event_loop
        .start_server(localhost(), |mut reader, writer| async move {
            let request = reader.readuntil(b"\r\n\r\n").await?;
            assert_eq!(request, b"GET / HTTP/1.0\r\n\r\n");
            writer.write(b"HTTP/1.0 200 OK\r\n")?;
            writer.write(b"Content-Type: text/plain\r\n\r\n")?;
            writer.write(&vec![b'x'; 300_000])?; // more than the reader's limit
            writer.write(b"Test message")?;
            writer.drain().await?;
            writer.close();
            Ok(())
        })
        .unwrap();
    let addr = port_of(&server);
    let (status, rest) = run(&event_loop, async {
        let (mut reader, writer) = event_loop.open_connection(addr).await?;
        writer.write(b"GET / HTTP/1.0\r\n\r\n")?;
        let status = reader.readline().await?;
        let rest = reader.read_to_end().await?;
        assert!(reader.at_eof());
        assert_eq!(reader.read(10).await?, b"");
        io::Result::Ok((status, rest))
    })
    .unwrap();
    assert_eq!(status, b"HTTP/1.0 200 OK\r\n");
    assert!(rest.starts_with(b"Content-Type: text/plain\r\n\r\nxxx"));
    assert!(rest.ends_with(b"xTest message"));
    assert_eq!(rest.len(), 28 + 300_000 + 12);
    server.close();
}

/// test_readuntil_multi_chunks_1: the separator arrives split over chunks
/// sent one by one; the read waits through each.
fn readuntil_across_chunk_boundaries(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, _writer, mut peer) = connected(lp).await;
        for chunks in
            [&[&b"QWEaa"[..], b"XYaa", b"a"][..], &[b"QWEaa", b"XYa", b"aa"], &[b"XXX", b"a", b"a", b"a"]]
        {
            let expected: Vec<u8> = chunks.concat();
            let read = reader.readuntil(b"aaa");
            let mut read = Box::pin(read);
            for (i, chunk) in chunks.iter().enumerate() {
                peer.write_all(chunk).unwrap();
                if i + 1 < chunks.len() {
                    // Give the loop time to deliver this chunk alone; the
                    // read must still be waiting.
                    let waited = tulip::wait_for(lp, read.as_mut(), Duration::from_millis(20)).await;
                    assert_eq!(
                        waited.unwrap_err().kind(),
                        io::ErrorKind::TimedOut,
                        "{chunks:?} after chunk {i}"
                    );
                }
            }
            assert_eq!(read.await.unwrap(), expected);
        }
        peer.write_all(b"lineAAAxxx").unwrap();
        assert_eq!(reader.readuntil(b"AAA").await.unwrap(), b"lineAAA");
        assert_eq!(reader.read(100).await.unwrap(), b"xxx");
        let err = reader.readuntil(b"").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    });
}

/// Waits until `reader` holds `n` bytes (data arrives through the loop).
async fn until_buffered(lp: &DynSelectorEventLoop, reader: &StreamReader, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.buffered() < n {
        assert!(Instant::now() < deadline, "only {} of {n} bytes arrived", reader.buffered());
        sleep_ms(lp, 1).await;
    }
}

/// test_readuntil_limit_found_sep: over the limit, the data stays.
fn readuntil_limit_overrun_keeps_the_data(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, _writer, mut peer) = connected(lp).await;
        reader.set_limit(3).unwrap();
        peer.write_all(b"some dataAA").unwrap();
        until_buffered(lp, &reader, 11).await;
        let err = reader.readuntil(b"AAA").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(LimitOverrun::of(&err), Some(&LimitOverrun { consumed: 9, found: false }));
        assert!(err.to_string().contains("not found"), "{err}");
        assert_eq!(reader.buffered(), 11);
        // 11 bytes are above twice the limit: reading paused. A larger
        // limit lets the next byte in.
        assert!(!_writer.transport().is_reading());
        reader.set_limit(100).unwrap();
        peer.write_all(b"A").unwrap();
        until_buffered(lp, &reader, 12).await;
        reader.set_limit(3).unwrap();
        let err = reader.readuntil(b"AAA").await.unwrap_err();
        assert_eq!(LimitOverrun::of(&err), Some(&LimitOverrun { consumed: 9, found: true }));
        assert!(err.to_string().contains("is found"), "{err}");
        assert_eq!(reader.readexactly(12).await.unwrap(), b"some dataAAA");
    });
}

/// test_readline_limit: a line over the limit is discarded, up to its
/// newline if it came, else with everything buffered.
fn readline_limit_overrun_discards_the_line(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, _writer, mut peer) = connected(lp).await;
        reader.set_limit(7).unwrap();
        peer.write_all(b"chunk1chunk2\nchunk3\n").unwrap();
        until_buffered(lp, &reader, 20).await;
        let err = reader.readline().await.unwrap_err();
        assert!(LimitOverrun::of(&err).is_some(), "{err}");
        assert_eq!(reader.readline().await.unwrap(), b"chunk3\n");
        // Strict: 7 bytes and the newline pass.
        peer.write_all(b"1234567\n").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"1234567\n");
        // Not found within the limit: the buffer goes; the line's rest
        // comes as the next line.
        peer.write_all(b"12345678").unwrap();
        until_buffered(lp, &reader, 8).await;
        assert!(reader.readline().await.is_err());
        assert_eq!(reader.buffered(), 0);
        peer.write_all(b"9\nok\n").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"9\n");
        assert_eq!(reader.readline().await.unwrap(), b"ok\n");
    });
}

const DATA: &[u8] = b"line1\nline2\nline3\n";

/// test_readexactly_eof: the end comes in the middle of `readexactly`.
fn eof_in_the_middle_of_readexactly(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, _writer, mut peer) = connected(lp).await;
        peer.write_all(DATA).unwrap();
        peer.write_all(DATA).unwrap();
        assert_eq!(reader.readexactly(DATA.len() + 3).await.unwrap(), [DATA, b"lin"].concat());
        // Waiting for 36 with 15 there, then the end.
        let mut read = Box::pin(reader.readexactly(36));
        let waited = tulip::wait_for(lp, read.as_mut(), Duration::from_millis(20)).await;
        assert_eq!(waited.unwrap_err().kind(), io::ErrorKind::TimedOut);
        peer.shutdown(Shutdown::Write).unwrap();
        let err = read.await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(err.to_string(), "15 bytes read on a total of 36 expected bytes");
        let incomplete = IncompleteRead::take(err).unwrap();
        assert_eq!(incomplete.partial, b"e1\nline2\nline3\n");
        assert_eq!(incomplete.expected, Some(36));
        assert!(reader.at_eof());
        assert_eq!(reader.readexactly(0).await.unwrap(), b"");
        let err = reader.readexactly(1).await.unwrap_err();
        assert_eq!(IncompleteRead::of(&err).unwrap().partial, b"");
    });
}

/// test_at_eof: true only once the end came and the buffer is empty.
fn at_eof_only_once_everything_is_read(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, _writer, mut peer) = connected(lp).await;
        assert!(!reader.at_eof());
        peer.write_all(b"some data\n").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"some data\n");
        assert!(!reader.at_eof());
        peer.write_all(b"some data").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        until_buffered(lp, &reader, 9).await;
        sleep_ms(lp, 10).await;
        assert!(!reader.at_eof(), "bytes are left");
        assert_eq!(reader.readline().await.unwrap(), b"some data");
        assert!(reader.at_eof());
        assert_eq!(reader.readline().await.unwrap(), b"");
    });
}

/// asyncio's flow control of reading: above twice the limit the
/// transport stops reading; a read down to the limit starts it again.
fn reading_pauses_above_twice_the_limit(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, writer, mut peer) = connected(lp).await;
        reader.set_limit(1000).unwrap();
        assert!(writer.transport().is_reading());
        peer.write_all(&[7u8; 1500]).unwrap();
        until_buffered(lp, &reader, 1500).await;
        assert!(writer.transport().is_reading(), "1500 bytes are below 2 x 1000");
        peer.write_all(&[7u8; 1000]).unwrap();
        until_buffered(lp, &reader, 2500).await;
        assert!(!writer.transport().is_reading(), "2500 bytes are above 2 x 1000");
        // Paused: what the peer sends now waits in the kernel.
        peer.write_all(&[8u8; 5000]).unwrap();
        sleep_ms(lp, 20).await;
        assert_eq!(reader.buffered(), 2500);
        // Reading down to 1500 is not enough; down to 1000 is.
        assert_eq!(reader.readexactly(1000).await.unwrap(), [7u8; 1000]);
        assert!(!writer.transport().is_reading());
        assert_eq!(reader.readexactly(500).await.unwrap(), [7u8; 500]);
        assert!(writer.transport().is_reading());
        let rest = reader.readexactly(1000 + 5000).await.unwrap();
        assert_eq!(rest[..1000], [7u8; 1000]);
        assert_eq!(rest[1000..], [8u8; 5000]);
    });
}

/// `readexactly(n)` with n far above twice the limit completes: a read
/// that waits resumes reading (asyncio's `_wait_for_data`).
fn readexactly_more_than_the_limit(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    let sender = |mut peer: TcpStream| {
        thread::spawn(move || {
            let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
            peer.write_all(&data).unwrap();
            peer
        })
    };
    run(lp, async {
        let (mut reader, _writer, peer) = connected(lp).await;
        reader.set_limit(1024).unwrap();
        let sending = sender(peer);
        let data = reader.readexactly(1 << 20).await.unwrap();
        assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        drop(sending.join().unwrap());
        assert_eq!(reader.read_to_end().await.unwrap(), b"");
    });
}

/// `drain` waits while the peer does not read, and returns once the
/// transport's buffer is back at its low-water mark.
fn drain_waits_for_a_slow_reader(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (_reader, writer, peer) = connected(lp).await;
        writer.transport().set_write_buffer_limits(Some(64 * 1024), None).unwrap();
        let (low, high) = writer.transport().get_write_buffer_limits();
        // Nothing buffered: at once.
        writer.drain().await.unwrap();
        let big = vec![5u8; 8 << 20];
        writer.write(&big).unwrap();
        assert!(writer.transport().get_write_buffer_size() > high);
        let mut drain = Box::pin(writer.drain());
        let waited = tulip::wait_for(lp, drain.as_mut(), Duration::from_millis(50)).await;
        assert_eq!(waited.unwrap_err().kind(), io::ErrorKind::TimedOut, "the peer reads nothing yet");
        let reading = thread::spawn(move || {
            let mut peer = peer;
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            while total < 8 << 20 {
                let n = peer.read(&mut buf).unwrap();
                assert!(n > 0);
                total += n;
            }
            total
        });
        drain.await.unwrap();
        assert!(writer.transport().get_write_buffer_size() <= low);
        assert_eq!(reading.join().unwrap(), 8 << 20);
    });
}

/// test_multiple_drain: every task waiting in `drain` wakes when writing
/// resumes.
fn many_drains_wake_together(event_loop: DynSelectorEventLoop) {
    let lp = Rc::new(event_loop);
    let event_loop = &*lp;
    run(event_loop, async {
        let (_reader, writer, peer) = connected(event_loop).await;
        let writer = Rc::new(writer);
        writer.write(&vec![1u8; 8 << 20]).unwrap();
        let drained = Rc::new(RefCell::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (writer, drained) = (Rc::clone(&writer), Rc::clone(&drained));
                lp.create_task(async move {
                    writer.drain().await.unwrap();
                    *drained.borrow_mut() += 1;
                })
            })
            .collect();
        sleep_ms(event_loop, 30).await;
        assert_eq!(*drained.borrow(), 0);
        let reading = thread::spawn(move || {
            let mut peer = peer;
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            while total < 8 << 20 {
                total += peer.read(&mut buf).unwrap();
            }
        });
        for task in tulip::gather(tasks).await {
            task.unwrap();
        }
        assert_eq!(*drained.borrow(), 10);
        reading.join().unwrap();
    });
}

/// test_drain_raises: the peer accepts and closes; writing and draining
/// in a loop ends with an error instead of spinning for ever.
fn drain_raises_after_the_peer_goes(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    let listener = TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let closer = thread::spawn(move || drop(listener.accept().unwrap()));
    let err = run(lp, async {
        let (_reader, writer) = lp.open_connection(addr).await.unwrap();
        loop {
            if let Err(err) = writer.write(b"foo\n") {
                return err;
            }
            if let Err(err) = writer.drain().await {
                return err;
            }
        }
    });
    closer.join().unwrap();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
        ),
        "{err:?}"
    );
}

/// test_async_writer_api_exception_after_close: after `close`, a write is
/// refused and `drain` reports the connection lost.
fn drain_and_write_after_close(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (_reader, writer, _peer) = connected(lp).await;
        writer.write(b"data").unwrap();
        writer.close();
        assert!(writer.is_closing());
        assert_eq!(writer.write(b"more").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        let err = writer.drain().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(err.to_string(), "connection lost");
    });
}

/// test_wait_closed_on_close.
fn wait_closed_after_close(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, writer, mut peer) = connected(lp).await;
        writer.write(b"ping\n").unwrap();
        let mut line = [0u8; 5];
        peer.read_exact(&mut line).unwrap();
        peer.write_all(b"pong\n").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"pong\n");
        assert!(!writer.is_closing());
        writer.close();
        assert!(writer.is_closing());
        writer.wait_closed().await.unwrap();
        writer.wait_closed().await.unwrap(); // again: at once
        assert_eq!(peer.read(&mut line).unwrap(), 0, "the peer sees the end");
    });
}

/// test_wait_closed_on_close_with_unread_data and
/// test_eof_feed_when_closing_writer: closing with bytes unread; after
/// `wait_closed` the reader is at its end.
fn wait_closed_with_unread_data_and_eof_after_it(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, writer, mut peer) = connected(lp).await;
        peer.write_all(b"HTTP/1.0 200 OK\r\nmore, never read").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"HTTP/1.0 200 OK\r\n");
        until_buffered(lp, &reader, 16).await;
        writer.close();
        writer.wait_closed().await.unwrap();
        // Closed cleanly: what came is still there to read, then the end.
        assert!(!reader.at_eof());
        assert_eq!(reader.read(100).await.unwrap(), b"more, never read");
        assert!(reader.at_eof());
        let (mut reader2, writer2, _peer2) = connected(lp).await;
        writer2.close();
        writer2.wait_closed().await.unwrap();
        assert!(reader2.at_eof());
        assert_eq!(reader2.read(10).await.unwrap(), b"");
    });
}

/// Cancellation safety: a `readline` that times out (and is dropped) in
/// the middle of a line loses none of it.
fn a_dropped_readline_loses_no_data(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, _writer, mut peer) = connected(lp).await;
        peer.write_all(b"hel").unwrap();
        for _ in 0..3 {
            let timed_out = tulip::wait_for(lp, reader.readline(), Duration::from_millis(10)).await;
            assert_eq!(timed_out.unwrap_err().kind(), io::ErrorKind::TimedOut);
        }
        assert_eq!(reader.buffered(), 3);
        peer.write_all(b"lo\nwor").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"hello\n");
        let timed_out = tulip::wait_for(lp, reader.readexactly(10), Duration::from_millis(10)).await;
        assert!(timed_out.is_err());
        peer.write_all(b"ld\n").unwrap();
        assert_eq!(reader.readuntil(b"\n").await.unwrap(), b"world\n");
    });
}

/// test_exception_cancel: a task cancelled while it waits in `readline`
/// drops its read; the next read gets every byte, the ones that came
/// before the cancellation included.
fn a_cancelled_read_task_loses_no_data(event_loop: DynSelectorEventLoop) {
    let lp = Rc::new(event_loop);
    let event_loop = &*lp;
    run(event_loop, async {
        let (reader, _writer, mut peer) = connected(event_loop).await;
        let reader = Rc::new(RefCell::new(reader));
        let shared = Rc::clone(&reader);
        // The task borrows the reader for as long as its read waits; its
        // cancellation drops the read, and the borrow with it.
        #[allow(clippy::await_holding_refcell_ref)]
        let task = lp.create_task(async move { shared.borrow_mut().readline().await });
        peer.write_all(b"partial ").unwrap();
        sleep_ms(event_loop, 20).await;
        assert!(!task.done());
        task.cancel();
        assert!(tulip::is_cancelled(&task.await.unwrap_err()));
        peer.write_all(b"line\n").unwrap();
        // The cancelled task let go of its clone: the reader is ours again.
        let mut reader = Rc::try_unwrap(reader).expect("the task dropped its reader").into_inner();
        let line = reader.readline().await.unwrap();
        assert_eq!(line, b"partial line\n");
    });
}

/// A reset from the peer reaches a waiting read, later reads and
/// `wait_closed` as the connection's error.
fn a_reset_reaches_reads_and_wait_closed(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (mut reader, writer, peer) = connected(lp).await;
        let mut read = Box::pin(reader.read(100));
        let waited = tulip::wait_for(lp, read.as_mut(), Duration::from_millis(10)).await;
        assert!(waited.is_err());
        common::reset(peer);
        let err = read.await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
        assert_eq!(reader.readline().await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(writer.wait_closed().await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(writer.drain().await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    });
}

/// The peer's EOF leaves our side open for writing (asyncio's
/// `eof_received` returns true); `write_eof` half-closes ours.
fn half_close_with_write_eof(event_loop: DynSelectorEventLoop) {
    let server = event_loop
        .start_server(localhost(), |mut reader, writer| async move {
            let all = reader.read_to_end().await?;
            assert!(!writer.is_closing(), "still open for writing after the client's EOF");
            writer.write(format!("got {} bytes", all.len()).as_bytes())?;
            writer.drain().await?;
            writer.close();
            Ok(())
        })
        .unwrap();
    let addr = port_of(&server);
    let reply = run(&event_loop, async {
        let (mut reader, writer) = event_loop.open_connection(addr).await?;
        writer.write(b"hello, ")?;
        writer.write(b"world")?;
        assert!(writer.can_write_eof());
        writer.write_eof()?;
        assert!(!writer.is_closing());
        assert_eq!(writer.write(b"late").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let reply = reader.read_to_end().await?;
        writer.close();
        writer.wait_closed().await?;
        io::Result::Ok(reply)
    })
    .unwrap();
    assert_eq!(reply, b"got 12 bytes");
    server.close();
}

/// A handler that returns without closing: its reader and writer are
/// dropped, and the connection closes after what was written.
fn dropping_reader_and_writer_closes_the_connection(event_loop: DynSelectorEventLoop) {
    let server = event_loop
        .start_server(localhost(), |_reader, writer| async move {
            writer.write(b"bye")?;
            Ok(())
        })
        .unwrap();
    let addr = port_of(&server);
    let got = run(&event_loop, async {
        let (mut reader, _writer) = event_loop.open_connection(addr).await?;
        reader.read_to_end().await
    })
    .unwrap();
    assert_eq!(got, b"bye");
    server.close();
}

/// A handler's error goes to the loop's exception handler, with the peer.
fn a_failing_handler_is_reported(event_loop: DynSelectorEventLoop) {
    let reports: Rc<RefCell<Vec<tulip::ExceptionContext>>> = Rc::default();
    let seen = Rc::clone(&reports);
    event_loop
        .set_exception_handler(Some(Box::new(move |_, context| seen.borrow_mut().push(context.clone()))));
    let server = event_loop
        .start_server(localhost(), |mut reader, _writer| async move {
            reader.readexactly(10).await?;
            Ok(())
        })
        .unwrap();
    let addr = port_of(&server);
    let local = run(&event_loop, async {
        let (mut reader, writer) = event_loop.open_connection(addr).await?;
        writer.write(b"short")?;
        writer.write_eof()?;
        assert_eq!(reader.read_to_end().await?, b"");
        sleep_ms(&event_loop, 10).await;
        writer.local_addr()
    })
    .unwrap();
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let message = &reports[0].message;
    assert!(message.starts_with(&format!("stream handler for {local} failed: 5 bytes read")), "{message}");
    assert!(reports[0].origin.unwrap().file().ends_with("tests/streams.rs"), "the start_server call");
    server.close();
}

/// `peer_addr` and `local_addr` (asyncio's `get_extra_info`).
fn addresses(event_loop: DynSelectorEventLoop) {
    let server = event_loop
        .start_server(localhost(), |_reader, writer| async move {
            let peer = writer.peer_addr()?.to_string();
            writer.write(peer.as_bytes())?;
            writer.close();
            Ok(())
        })
        .unwrap();
    let addr = port_of(&server);
    run(&event_loop, async {
        let (mut reader, writer) = event_loop.open_connection(addr).await.unwrap();
        assert_eq!(writer.peer_addr().unwrap().as_inet(), Some(addr));
        let local = writer.local_addr().unwrap().to_string();
        assert_eq!(reader.read_to_end().await.unwrap(), local.as_bytes());
        // The peer's EOF leaves our side open (eof_received keeps it, as
        // asyncio's): closing is ours.
        assert!(!writer.is_closing());
        writer.close();
        writer.wait_closed().await.unwrap();
    });
    server.close();
}

fn writelines_sends_in_order(event_loop: DynSelectorEventLoop) {
    let lp = &event_loop;
    run(lp, async {
        let (_reader, writer, mut peer) = connected(lp).await;
        writer.writelines([&b"one\n"[..], b"two\n", b"", b"three\n"]).unwrap();
        writer.writelines(vec![b"four\n".to_vec()]).unwrap();
        writer.drain().await.unwrap();
        let mut got = vec![0u8; 19];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, b"one\ntwo\nthree\nfour\n");
        assert!(format!("{writer:?}").starts_with("StreamWriter"));
    });
}

#[test]
fn the_default_limit_is_64_kib() {
    assert_eq!(DEFAULT_LIMIT, 65_536);
}

/// Closing the loop with a handler waiting in a read: the handler's task
/// ends (its reader and writer dropped), the connection and the listener
/// close, and the client's writer sees its transport closed.
fn closing_the_loop_ends_handlers_and_connections(event_loop: DynSelectorEventLoop) {
    let (dropped, guard) = common::drop_flag();
    let guard = Rc::new(RefCell::new(Some(guard)));
    let server = event_loop
        .start_server(localhost(), move |mut reader, writer| {
            let guard = guard.borrow_mut().take();
            async move {
                let _guard = guard;
                let _writer = writer;
                reader.read(1).await?; // never: the client sends nothing
                Ok(())
            }
        })
        .unwrap();
    let addr = port_of(&server);
    let (_reader, writer) = run(&event_loop, async {
        let pair = event_loop.open_connection(addr).await.unwrap();
        sleep_ms(&event_loop, 20).await; // the handler waits in its read
        pair
    });
    assert!(!dropped.get());
    event_loop.close().unwrap();
    assert!(dropped.get(), "the handler's task was dropped with the loop");
    assert!(writer.is_closing());
    assert_eq!(writer.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    let refused = TcpStream::connect(addr).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(io::ErrorKind::ConnectionRefused), "the listener is closed");
}
