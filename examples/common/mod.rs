//! What every example shares: one way to read the command line, so that
//! each answers `--help` (its usage on stdout, exit status 0) and a mistake
//! (the problem and the usage on stderr, exit status 2) the same way; and
//! one rule for accepting when out of fds.
//!
//! Options are `--flag value` or `--flag=value`; some examples also take a
//! positional word (the seed server's port).

#![allow(dead_code)] // each example uses its own subset

use std::io;
use std::iter::Peekable;
use std::str::FromStr;
use std::time::Duration;

use tulip::selectors::Backend;

/// One word of the command line.
pub enum Arg {
    /// `--flag` (its value, if any, comes from [`Cli::value`]).
    Flag(String),
    /// A word that is not a flag.
    Word(String),
}

/// The command line of an example.
pub struct Cli {
    /// The example's name, which starts every message.
    name: &'static str,
    /// The usage text: a first line `usage: NAME …`, then one line per option.
    usage: &'static str,
    words: Peekable<std::iter::Skip<std::env::Args>>,
    /// The value written `--flag=value` with the last flag, if it was.
    inline: Option<String>,
}

impl Cli {
    /// This process's command line.
    pub fn new(name: &'static str, usage: &'static str) -> Cli {
        Cli { name, usage, words: std::env::args().skip(1).peekable(), inline: None }
    }

    /// The next word; `None` at the end. `--help` and `-h` print the usage
    /// on stdout and end the process with status 0.
    pub fn next(&mut self) -> Option<Arg> {
        let word = self.words.next()?;
        if word == "--help" || word == "-h" {
            println!("{}", self.usage);
            std::process::exit(0);
        }
        if !word.starts_with('-') {
            return Some(Arg::Word(word));
        }
        match word.split_once('=') {
            Some((flag, value)) => {
                self.inline = Some(value.to_owned());
                Some(Arg::Flag(flag.to_owned()))
            }
            None => {
                self.inline = None;
                Some(Arg::Flag(word))
            }
        }
    }

    /// The value of `flag`, the flag just read; a mistake ends the process.
    pub fn value(&mut self, flag: &str) -> String {
        if let Some(value) = self.inline.take() {
            return value;
        }
        match self.words.next() {
            Some(value) => value,
            None => self.fail(&format!("{flag} needs a value")),
        }
    }

    /// The value of `flag` as a number (or any `FromStr` type).
    pub fn parse<T: FromStr>(&mut self, flag: &str) -> T {
        let value = self.value(flag);
        value.parse().unwrap_or_else(|_| self.fail(&format!("bad value for {flag}: {value:?}")))
    }

    /// The value of `flag` as seconds.
    pub fn seconds(&mut self, flag: &str) -> Duration {
        let secs: f64 = self.parse(flag);
        Duration::try_from_secs_f64(secs)
            .unwrap_or_else(|_| self.fail(&format!("{flag} takes seconds, not {secs}")))
    }

    /// The value of `--backend`.
    pub fn backend(&mut self) -> Backend {
        let name = self.value("--backend");
        name.parse().unwrap_or_else(|err: io::Error| self.fail(&err.to_string()))
    }

    /// Reports a flag this example does not have.
    pub fn unknown(&self, arg: &Arg) -> ! {
        match arg {
            Arg::Flag(flag) => self.fail(&format!("unknown option {flag}")),
            Arg::Word(word) => self.fail(&format!("unexpected argument {word:?}")),
        }
    }

    /// Ends the process for a mistake: the problem and the usage on
    /// stderr, exit status 2.
    pub fn fail(&self, problem: &str) -> ! {
        eprintln!("{}: {problem}\n\n{}", self.name, self.usage);
        std::process::exit(2)
    }
}

/// The options of the echo servers: `--port P` (default 8888; 0 picks a
/// free port), `--backend NAME` (default: the best one here) and
/// `--max-conns N` (default: serve forever).
pub struct ServerArgs {
    pub port: u16,
    pub backend: Backend,
    pub max_conns: Option<u64>,
}

/// The option lines of [`ServerArgs`], for a server's usage text.
pub const SERVER_OPTIONS: &str = "  --port P          port on 127.0.0.1 (default 8888; 0 picks a free one)
  --backend NAME    select, poll, epoll or kqueue (default: the best one here)
  --max-conns N     exit once N connections were served (N >= 1)
  -h, --help        show this help";

impl ServerArgs {
    /// Reads the command line of a server (`name`, `usage`); mistakes end
    /// the process as [`Cli::fail`] does.
    pub fn parse(name: &'static str, usage: &'static str) -> ServerArgs {
        let mut args = ServerArgs { port: 8888, backend: Backend::default(), max_conns: None };
        let mut cli = Cli::new(name, usage);
        while let Some(arg) = cli.next() {
            match &arg {
                Arg::Flag(flag) if flag == "--port" => args.port = cli.parse(flag),
                Arg::Flag(flag) if flag == "--backend" => args.backend = cli.backend(),
                Arg::Flag(flag) if flag == "--max-conns" => args.max_conns = Some(cli.parse(flag)),
                _ => cli.unknown(&arg),
            }
        }
        if args.max_conns == Some(0) {
            cli.fail("--max-conns must be at least 1");
        }
        args
    }
}

/// How long a server stops accepting when out of fds (`EMFILE`, `ENFILE`)
/// or memory (`ENOBUFS`, `ENOMEM`), as asyncio's `ACCEPT_RETRY_DELAY`:
/// accepting again at once would fail again, at 100 % CPU.
pub const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// `true` for the accept errors that [`ACCEPT_RETRY`] is for.
pub fn out_of_resources(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
