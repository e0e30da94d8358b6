//! The command line of the Layer 3 echo examples (`echo_async`,
//! `echo_protocol`, `echo_client`): every option is a `--flag value` pair,
//! and a mistake is an `InvalidInput` error that ends with the example's
//! usage line.

use std::io;
use std::str::FromStr;

use tulip::selectors::Backend;

/// Reads the command line as `--flag value` pairs.
pub struct Flags {
    usage: &'static str,
    words: std::iter::Skip<std::env::Args>,
}

impl Flags {
    /// The command line of this process; `usage` is the line shown after
    /// any mistake (`usage: NAME [--flag …]`).
    pub fn new(usage: &'static str) -> Flags {
        Flags { usage, words: std::env::args().skip(1) }
    }

    /// The next flag and its value, `None` at the end.
    ///
    /// # Errors
    ///
    /// A flag without a value.
    pub fn next_flag(&mut self) -> io::Result<Option<(String, String)>> {
        let Some(flag) = self.words.next() else { return Ok(None) };
        match self.words.next() {
            Some(value) => Ok(Some((flag, value))),
            None => Err(self.error(&format!("{flag} needs a value"))),
        }
    }

    /// `value` read as a number (or any `FromStr` type) for `flag`.
    ///
    /// # Errors
    ///
    /// `bad FLAG` when `value` does not parse.
    pub fn parse<T: FromStr>(&self, flag: &str, value: &str) -> io::Result<T> {
        value.parse().map_err(|_| self.error(&format!("bad {flag}")))
    }

    /// The error for a flag this example does not have.
    pub fn unknown(&self, flag: &str) -> io::Error {
        self.error(&format!("unknown option {flag}"))
    }

    /// The error for `problem`, followed by the usage line.
    pub fn error(&self, problem: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{problem}\n{}", self.usage))
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

impl ServerArgs {
    /// Reads the command line; `usage` is the server's usage line.
    ///
    /// # Errors
    ///
    /// An unknown flag, a flag without a value, or a value that does not parse.
    pub fn parse(usage: &'static str) -> io::Result<ServerArgs> {
        let mut args = ServerArgs { port: 8888, backend: Backend::default(), max_conns: None };
        let mut flags = Flags::new(usage);
        while let Some((flag, value)) = flags.next_flag()? {
            match flag.as_str() {
                "--port" => args.port = flags.parse(&flag, &value)?,
                "--backend" => args.backend = value.parse()?,
                "--max-conns" => args.max_conns = Some(flags.parse(&flag, &value)?),
                _ => return Err(flags.unknown(&flag)),
            }
        }
        if args.max_conns == Some(0) {
            return Err(flags.error("--max-conns must be at least 1"));
        }
        Ok(args)
    }
}

/// Ends the process for a command-line mistake: the message (with the usage
/// line) on stderr and exit status 2, as the other examples do.
pub fn usage_exit<T>(err: io::Error) -> T {
    eprintln!("{err}");
    std::process::exit(2)
}
