//! An echo server written with coroutines: an `async fn` per connection,
//! on `sock_accept`, `sock_recv` and `sock_sendall` (Layer 3).
//!
//! ```text
//! cargo run --example echo_async -- --port 0 --max-conns 1
//! listening on 127.0.0.1:PORT
//! ```
//!
//! Options: `--port P` (0 picks a free port; the first line printed says
//! which), `--backend select|poll|epoll|kqueue`, `--max-conns N` (exit once
//! N connections were served). Talk to it with `echo_client` or `nc`.

mod common;

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;

use common::ServerArgs;
use tulip::DynSelectorEventLoop;

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: echo_async [--port P] [--backend NAME] [--max-conns N]\n\n",
    "An echo server written with coroutines: a task per connection.\n",
    "  --port P          port on 127.0.0.1 (default 8888; 0 picks a free one)\n",
    "  --backend NAME    select, poll, epoll or kqueue (default: the best one here)\n",
    "  --max-conns N     exit once N connections were served (N >= 1)\n",
    "  -h, --help        show this help"
);

fn main() -> io::Result<()> {
    let args = ServerArgs::parse("echo_async", USAGE);
    let event_loop = Rc::new(tulip::new_event_loop(args.backend)?);
    let listener = TcpListener::bind(("127.0.0.1", args.port))?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    event_loop.run_until_complete(serve(Rc::clone(&event_loop), listener, args.max_conns))??;
    tulip::AbstractEventLoop::close(&*event_loop)
}

/// Accepts connections, each echoed by its own task; with a limit, waits
/// for those connections to finish and returns.
async fn serve(
    event_loop: Rc<DynSelectorEventLoop>,
    listener: TcpListener,
    max_conns: Option<u64>,
) -> io::Result<()> {
    let mut handlers = Vec::new();
    let mut accepted = 0;
    while max_conns.is_none_or(|max| accepted < max) {
        let (conn, peer) = match event_loop.sock_accept(&listener).await {
            Ok(accepted) => accepted,
            // Out of fds: accepting again at once would fail again, at 100 %
            // CPU. Wait, as asyncio's servers do, and go on serving.
            Err(err) if common::out_of_resources(&err) => {
                eprintln!("accept: {err}; accepting again in {:?}", common::ACCEPT_RETRY);
                tulip::sleep(&*event_loop, common::ACCEPT_RETRY).await;
                continue;
            }
            Err(err) => {
                eprintln!("accept: {err}");
                continue;
            }
        };
        accepted += 1;
        let lp = Rc::clone(&event_loop);
        let handler = event_loop.create_task(async move {
            if let Err(err) = echo(&lp, &conn).await {
                eprintln!("{peer}: {err}");
            }
        });
        if max_conns.is_some() {
            handlers.push(handler);
        }
    }
    tulip::gather(handlers).await;
    Ok(())
}

/// Sends back everything `conn` sends, until it closes.
async fn echo(event_loop: &DynSelectorEventLoop, conn: &TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = event_loop.sock_recv(conn, &mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        event_loop.sock_sendall(conn, &buf[..n]).await?;
    }
}
