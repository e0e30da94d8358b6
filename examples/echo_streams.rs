//! An echo server written with streams: `start_server` hands each
//! connection's `StreamReader` and `StreamWriter` to an `async fn`, which
//! reads, writes and awaits `drain` (Layer 3, asyncio's streams), all
//! under `tulip::run` (asyncio's `asyncio.run`).
//!
//! ```text
//! cargo run --example echo_streams -- --port 0 --max-conns 1
//! listening on 127.0.0.1:PORT
//! ```
//!
//! Options: `--port P` (0 picks a free port; the first line printed says
//! which), `--backend select|poll|epoll|kqueue|io_uring`, `--max-conns N` (exit once
//! N connections were served), `--help`. Talk to it with `echo_client` or
//! `nc`.
//!
//! It echoes with `read(n)`, not `readline`: an echo must give back bytes
//! that never end a line (the checks send 10 MiB without a newline, and
//! `echo_client` messages have none), which `readline` would hold until a
//! `\n` or the end. `readline` is the right call for a line protocol; the
//! loop is the same:
//!
//! ```text
//! let line = reader.readline().await?;   // b"" at the end
//! writer.write(&line)?;
//! writer.drain().await?;
//! ```

mod common;

use std::cell::Cell;
use std::io::{self, Write};
use std::rc::Rc;

use common::ServerArgs;
use tulip::{StreamReader, StreamWriter};

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: echo_streams [--port P] [--backend NAME] [--max-conns N]\n\n",
    "An echo server written with streams: start_server, read, write, drain.\n",
    "  --port P          port on 127.0.0.1 (default 8888; 0 picks a free one)\n",
    "  --backend NAME    select, poll, epoll, kqueue or io_uring (default: the best one here)\n",
    "  --max-conns N     exit once N connections were served (N >= 1)\n",
    "  -h, --help        show this help"
);

/// Sends back everything the client sends; at its end, closes.
async fn echo(mut reader: StreamReader, writer: StreamWriter) -> io::Result<()> {
    loop {
        let data = reader.read(64 * 1024).await?;
        if data.is_empty() {
            break; // the client closed its side: we close ours
        }
        writer.write(&data)?;
        // Waits while the client is not reading; meanwhile this task reads
        // nothing, and the reader's buffer fills until reading pauses.
        writer.drain().await?;
    }
    writer.close();
    writer.wait_closed().await
}

/// Counts served connections toward `--max-conns`.
struct Finish {
    left: Cell<Option<u64>>,
    done: tulip::Future<()>,
}

impl Finish {
    fn one_served(&self) {
        if let Some(left) = self.left.get() {
            self.left.set(Some(left.saturating_sub(1)));
            if left <= 1 {
                let _ = self.done.set_result(());
            }
        }
    }
}

fn main() -> io::Result<()> {
    let args = ServerArgs::parse("echo_streams", USAGE);
    tulip::run_on(args.backend, |event_loop| async move {
        let finished = Rc::new(Finish { left: Cell::new(args.max_conns), done: event_loop.create_future() });
        let counter = Rc::clone(&finished);
        let server = event_loop.start_server(([127, 0, 0, 1], args.port), move |reader, writer| {
            let counter = Rc::clone(&counter);
            async move {
                let echoed = echo(reader, writer).await;
                counter.one_served();
                echoed // an error goes to the loop's exception handler (stderr)
            }
        })?;
        println!("listening on {}", server.local_addr()?);
        io::stdout().flush()?;
        finished.done.clone().await?; // for ever without --max-conns
        server.close();
        Ok(())
    })?
}
