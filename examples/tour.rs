//! The seed talk, slide by slide, with the system calls on screen: polling
//! in three steps on every backend, the event loop and its hierarchy,
//! coroutines, and the closing demo (a server on 127.0.0.1:8888 registered
//! for reading, which this program also connects to). It runs to the end
//! by itself in a second or two.
//!
//! ```text
//! cargo run --example tour
//! ```
//!
//! Lines that look like `epoll_wait(5, max=1, timeout=100) = 1 [fd 4 EPOLLIN]`
//! are the selector's transcript: each system call, in the kernel's words,
//! beside the selector operation it serves. Blocks that start with `#N` are
//! the loop's record of one iteration.

mod common;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use tulip::selectors::transcript::WriteTranscript;
use tulip::selectors::{Backend, Events, Selector};
use tulip::trace::WriteObserver;
use tulip::{AbstractEventLoop, BaseEventLoop, BaseSelectorEventLoop, SelectorEventLoop};

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = "usage: tour\n\n\
Walks the seed talk: polling on every backend, the event loop, coroutines,\n\
and the closing demo server, printing the system calls as they are made.\n  \
-h, --help        show this help";

fn slide(title: &str) {
    println!("\n== {title} ==\n");
}

fn main() -> io::Result<()> {
    let mut cli = common::Cli::new("tour", USAGE);
    if let Some(arg) = cli.next() {
        cli.unknown(&arg);
    }
    polling()?;
    event_loop()?;
    coroutines()?;
    closing_demo()
}

/// "Polling: create a poller, register a descriptor, call poll(). It is
/// our job to keep calling, to add and remove events, to go through the
/// events." Once per backend this machine has.
fn polling() -> io::Result<()> {
    slide("1. Polling: select, poll, epoll, kqueue");
    for backend in Backend::available() {
        println!("-- {}", backend.capabilities());
        // 1. Create the poller.
        let mut poller = backend.open::<&str>()?;
        poller.set_observer(Some(Box::new(WriteTranscript::new(io::stdout()))));
        // 2. Register a descriptor, with the events we want and our own data.
        let (mut client, server) = UnixStream::pair()?;
        poller.register_fd(server.as_fd(), Events::READ, "the server end")?;
        // 3. Poll: nothing yet, so it waits the whole timeout...
        let ready = poller.select(Some(Duration::from_millis(20)))?.count();
        println!("   nothing to read yet: {ready} ready after the timeout");
        // ...and it is our job to keep calling, and to go through the events.
        client.write_all(b"hello")?;
        for (key, events) in poller.select(Some(Duration::from_millis(20)))? {
            println!("   {} is ready for {events}", key.data);
        }
        // Adding and removing events is our job too.
        poller.unregister_fd(server.as_fd())?;
        println!();
    }
    Ok(())
}

/// The event loop: run_forever, stop, call_soon, call_later, add_reader,
/// add_writer; and Tulip's hierarchy, from the real types.
fn event_loop() -> io::Result<()> {
    slide("2. The event loop");
    // The names below are the compiler's own (`std::any::type_name`),
    // shortened to the last path segment of each type.
    println!("AbstractEventLoop                 the trait users program against");
    println!(
        "  BaseEventLoop<L>                {}",
        short(std::any::type_name::<BaseEventLoop<SelectorEventLoop>>())
    );
    println!(
        "    BaseSelectorEventLoop<S>      {}",
        short(std::any::type_name::<BaseSelectorEventLoop<()>>())
    );
    println!("      SelectorEventLoop           {}", short(std::any::type_name::<SelectorEventLoop>()));
    println!();

    let lp = SelectorEventLoop::new()?;
    lp.set_syscall_observer(Some(Box::new(WriteTranscript::new(io::stdout()))));
    lp.set_observer(Some(Box::new(WriteObserver::new(io::stdout()))));
    let (client, server) = UnixStream::pair()?;
    let client = Rc::new(client);
    // call_soon: on the next iteration. call_later: never early.
    lp.call_soon(|_| println!("     (call_soon ran)"));
    let writer = Rc::clone(&client);
    lp.call_later(Duration::from_millis(10), move |lp| {
        println!("     (call_later(10 ms) ran: the client writes)");
        let _ = (&*writer).write_all(b"ping");
        // add_writer: called while the fd is writable (a socket nearly
        // always is: so it removes itself at once).
        let again = Rc::clone(&writer);
        let _ = lp.add_writer_fd(&*writer, move |lp| {
            println!("     (the client is writable)");
            let _ = lp.remove_writer_fd(&*again);
        });
    });
    // add_reader: called while the fd is readable.
    let server = Rc::new(server);
    let reader = Rc::clone(&server);
    lp.add_reader_fd(&*server, move |lp| {
        let mut buf = [0; 16];
        let n = (&*reader).read(&mut buf).unwrap_or(0);
        println!("     (the server read {:?})", String::from_utf8_lossy(&buf[..n]));
        let _ = lp.remove_reader_fd(&*reader);
        lp.stop(); // run_forever returns once this iteration is done
    })?;
    lp.run_forever()?;
    lp.close()
}

/// `a::b::C<d::E>` as `C<E>`.
fn short(type_name: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in type_name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out += word.rsplit("::").next().unwrap_or("");
            word.clear();
            out.push(c);
        }
    }
    out + word.rsplit("::").next().unwrap_or("")
}

/// Coroutines: Tulip wrote `data = yield from reader.read()`; Rust writes
/// `.await`. A task waits for a socket with no callback in sight.
fn coroutines() -> io::Result<()> {
    slide("3. Coroutines: yield from then, async/await now");
    println!("Tulip (2013):   data = yield from loop.sock_recv(sock, 1024)");
    println!("tulip-rs:       let n = event_loop.sock_recv(&sock, &mut buf).await?;\n");
    let lp = SelectorEventLoop::new()?;
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let received = lp.run_until_complete(async {
        lp.sock_sendall(&a, b"hello from a coroutine").await?;
        let mut buf = [0; 64];
        let n = lp.sock_recv(&b, &mut buf).await?;
        io::Result::Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })??;
    println!("the coroutine received {received:?}");
    lp.close()
}

/// The closing demo: a server listening on 127.0.0.1:8888 (or a free port
/// if that one is taken), registered for reading; a client connects and
/// the accept callback runs.
fn closing_demo() -> io::Result<()> {
    slide("4. The closing demo: a server registered for reading");
    let listener = TcpListener::bind(("127.0.0.1", 8888)).or_else(|_| TcpListener::bind(("127.0.0.1", 0)))?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    let lp = SelectorEventLoop::new()?;
    lp.set_syscall_observer(Some(Box::new(WriteTranscript::new(io::stdout()))));
    let accepted = Rc::new(Cell::new(0));
    let (count, listener) = (Rc::clone(&accepted), Rc::new(listener));
    let server = Rc::clone(&listener);
    lp.add_reader_fd(&*listener, move |lp| {
        if let Ok((mut conn, peer)) = server.accept() {
            count.set(count.get() + 1);
            println!("     accepted {peer}: greeting it");
            let _ = conn.write_all(b"hello from the seed server\n");
            let _ = lp.remove_reader_fd(&*server);
            lp.stop();
        }
    })?;
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    lp.run_forever()?;
    let mut greeting = String::new();
    client.read_to_string(&mut greeting)?;
    println!("the client read {:?}", greeting.trim_end());
    println!("\n{} connection accepted; the tour is over.", accepted.get());
    lp.close()
}
