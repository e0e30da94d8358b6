//! Child processes and pipes on the loop, four ways:
//!
//! 1. `communicate`: feed a child's stdin, collect its stdout and stderr,
//!    and its exit status (`tr a-z A-Z`).
//! 2. A child's output line by line, as it comes (`sh` printing slowly),
//!    while the loop does other things.
//! 3. Signals: a `sleep 30` ended by `terminate`, reported as `-15`.
//! 4. The pieces underneath: a child started by std's `Command`, watched
//!    with `add_child_handler`, its stdout read by `connect_read_pipe` and
//!    a `Protocol`.
//!
//! ```text
//! cargo run --example subprocess
//! 1. tr answered "HELLO, CHILD" on stdout, "" on stderr; exit status 0
//! 2.   0 ms  the child started
//! 2. 100 ms  line 1
//! 2. 200 ms  line 2
//! 2. 300 ms  line 3
//! 2. 300 ms  returncode 0
//! 3. sleep 30 ended by SIGTERM after 0 ms: returncode -15
//! 4. connect_read_pipe got 4 lines, then end of file; the child exited with 0
//! ```
//!
//! Options: `--backend select|poll|epoll|kqueue`. The child watcher is the
//! best one here (a pidfd per child on Linux, `SIGCHLD` elsewhere).

mod common;

use std::cell::RefCell;
use std::io;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Instant;

use common::{Arg, Cli};
use tulip::selectors::Backend;
use tulip::{DynSelectorEventLoop, Protocol, Transport};

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = concat!(
    "usage: subprocess [--backend NAME]\n\n",
    "Child processes and pipes on the loop: communicate, output line by line,\n",
    "signals, and connect_read_pipe with add_child_handler.\n",
    "  --backend NAME    select, poll, epoll or kqueue (default: the best one here)\n",
    "  -h, --help        show this help"
);

/// 1. `communicate`: all of stdin in, all of stdout and stderr out.
async fn shout(event_loop: &DynSelectorEventLoop) -> io::Result<()> {
    let mut tr =
        event_loop.subprocess_exec("tr", &["a-z", "A-Z"], Stdio::piped(), Stdio::piped(), Stdio::piped())?;
    let output = tr.communicate(Some(b"hello, child")).await?;
    println!(
        "1. tr answered {:?} on stdout, {:?} on stderr; exit status {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status.code().unwrap_or(-1),
    );
    Ok(())
}

/// 2. Reading a child's stdout as it writes.
async fn follow(event_loop: &DynSelectorEventLoop) -> io::Result<()> {
    let script = "for i in 1 2 3; do sleep 0.1; echo line $i; done";
    let mut child = event_loop.subprocess_shell(script, Stdio::null(), Stdio::piped(), Stdio::inherit())?;
    let start = Instant::now();
    println!("2. {:>3} ms  the child started", start.elapsed().as_millis());
    let mut stdout = child.stdout.take().expect("piped");
    let (mut line, mut buf) = (Vec::new(), [0u8; 256]);
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        for &byte in &buf[..n] {
            if byte == b'\n' {
                println!("2. {:>3} ms  {}", start.elapsed().as_millis(), String::from_utf8_lossy(&line));
                line.clear();
            } else {
                line.push(byte);
            }
        }
    }
    child.wait().await?;
    println!("2. {:>3} ms  returncode {}", start.elapsed().as_millis(), child.returncode().unwrap_or(-1));
    Ok(())
}

/// 3. A signal ends a child that would run for 30 seconds.
async fn stop(event_loop: &DynSelectorEventLoop) -> io::Result<()> {
    let sleeper =
        event_loop.subprocess_exec("sleep", &["30"], Stdio::null(), Stdio::null(), Stdio::null())?;
    let start = Instant::now();
    sleeper.terminate()?;
    sleeper.wait().await?;
    let code = sleeper.returncode().unwrap_or(0);
    println!("3. sleep 30 ended by SIGTERM after {} ms: returncode {code}", start.elapsed().as_millis());
    Ok(())
}

/// 4. Counts the lines that arrive through `connect_read_pipe`.
struct LineCounter {
    lines: Rc<RefCell<usize>>,
    done: tulip::Future<()>,
}

impl Protocol for LineCounter {
    fn connection_made(&mut self, _transport: Transport) {}

    fn data_received(&mut self, data: &[u8]) {
        *self.lines.borrow_mut() += data.iter().filter(|&&b| b == b'\n').count();
    }

    fn connection_lost(&mut self, _error: Option<io::Error>) {
        let _ = self.done.set_result(());
    }
}

/// 4. The Layer 2 and pipe primitives that `subprocess_exec` is made of.
async fn by_hand(event_loop: &DynSelectorEventLoop) -> io::Result<()> {
    let mut child =
        Command::new("sh").args(["-c", "printf 'a\\nb\\nc\\nd\\n'"]).stdout(Stdio::piped()).spawn()?;
    let exited = event_loop.create_future::<i32>();
    let setter = exited.clone();
    event_loop.add_child_handler(child.id(), move |_, status| {
        let _ = setter.set_result(status.code().unwrap_or(-1));
    })?;
    let (lines, done) = (Rc::new(RefCell::new(0)), event_loop.create_future::<()>());
    let counter = LineCounter { lines: Rc::clone(&lines), done: done.clone() };
    let stdout = child.stdout.take().expect("piped");
    let (_transport, _) = event_loop.connect_read_pipe(stdout, move || counter).await?;
    done.await?;
    let code = exited.await?;
    println!(
        "4. connect_read_pipe got {} lines, then end of file; the child exited with {code}",
        lines.borrow()
    );
    Ok(())
}

fn main() -> io::Result<()> {
    let mut backend = Backend::default();
    let mut cli = Cli::new("subprocess", USAGE);
    while let Some(arg) = cli.next() {
        match &arg {
            Arg::Flag(flag) if flag == "--backend" => backend = cli.backend(),
            _ => cli.unknown(&arg),
        }
    }
    let event_loop = tulip::new_event_loop(backend)?;
    let lp = &event_loop;
    event_loop.run_until_complete(async {
        shout(lp).await?;
        follow(lp).await?;
        stop(lp).await?;
        by_hand(lp).await
    })??;
    tulip::AbstractEventLoop::close(&event_loop)
}
