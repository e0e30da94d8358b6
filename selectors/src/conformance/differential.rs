//! Backends checked against each other, and against a plain model of the
//! contract: a seeded random sequence of operations (register, modify,
//! unregister, `select` with a zero timeout, a write or a read on a socket,
//! filling its send buffer, hanging up its peer, closing its fd, `dup2` of
//! a new socket over its number) is applied to every candidate selector
//! and to the model side by side. After each operation every candidate's
//! answer (the key or the error, the ready entries, the key table) must be
//! the model's.
//!
//! Where the contract lets backends differ, the model follows the
//! candidate's declared [`Capabilities`]: whether `register` and `modify`
//! ask the kernel (a closed fd is refused there), what a closed registered
//! fd does at `select` ([`ClosedFd`]), whether the kernel watches the fd
//! number or the open file (after `dup2` over a registered number, epoll
//! and kqueue watch nothing, select and poll watch the new file), and the
//! fd limit. io_uring's one-shot polls are followed one by one: submitted
//! at a `select`, armed (holding the file, even once its fd is closed) until
//! the file is ready, then reported at the next `select`. Because such a
//! poll keeps a closed socket alive for everyone, and epoll would go on
//! watching it, io_uring gets a world of its own: the same sequence, after
//! the others.
//!
//! A divergence names the seed, the candidate, the operation, what the
//! model expected and what came back, and a shortened sequence that still
//! diverges (removing operations while the divergence stays):
//!
//! ```no_run
//! use tulip_selectors::conformance::differential::{self, Candidate};
//! use tulip_selectors::{Backend, PollSelector};
//!
//! let candidates = [
//!     Candidate::new("poll", PollSelector::<String>::new),
//!     Candidate::new("select", || Backend::Select.open::<String>()),
//! ];
//! match differential::run(42, 10_000, &candidates) {
//!     Ok(summary) => println!("{summary}"),
//!     Err(divergence) => panic!("{divergence}"),
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::io::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::support::{fd, high_fds, is_open, pair, raise_fd_limit, shared, HIGH_BASE};
use super::Subject;
use crate::mechanism::{cvt, Readiness};
use crate::{Backend, Capabilities, ClosedFd, Events, FdLimit, Selector, Watches};

/// How many sockets the operations play with below `FD_SETSIZE` (one
/// more sits above it when the fd limit allows).
const LOW_SLOTS: usize = 6;
/// Where the slot above `FD_SETSIZE` sits, past `FD_SETSIZE`.
const ABOVE_SETSIZE: RawFd = 16;
/// The most replays a shortening may make.
const SHRINK_REPLAYS: usize = 4_000;

type Open<'a> = dyn Fn() -> io::Result<Box<dyn Selector<String>>> + 'a;

/// A selector to check: a name for the report, how to make one, and the
/// capabilities the model follows for it.
pub struct Candidate<'a> {
    name: String,
    capabilities: Capabilities,
    open: Box<Open<'a>>,
}

impl<'a> Candidate<'a> {
    /// A candidate made by `new`, with the capabilities of the backend its
    /// selectors report (`selector.backend().capabilities()`).
    ///
    /// # Panics
    ///
    /// If `new` fails.
    pub fn new<S, F>(name: impl Into<String>, new: F) -> Candidate<'a>
    where
        S: Selector<String> + 'static,
        F: Fn() -> io::Result<S> + 'a,
    {
        let name = name.into();
        let probe = new().unwrap_or_else(|err| panic!("{name}: cannot make a selector: {err}"));
        let capabilities = probe.backend().capabilities();
        drop(probe);
        let open = move || new().map(|selector| Box::new(selector) as Box<dyn Selector<String>>);
        Candidate { name, capabilities, open: Box::new(open) }
    }

    /// A candidate of each backend this target has (`Backend::open`).
    pub fn every_backend() -> Vec<Candidate<'static>> {
        Backend::available()
            .into_iter()
            .map(|backend| Candidate::new(backend.name(), move || backend.open::<String>()))
            .collect()
    }

    /// The same candidate, the model following `capabilities` instead.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Candidate<'a> {
        self.capabilities = capabilities;
        self
    }

    /// A candidate from a boxed maker, for the kit's rules.
    pub(crate) fn boxed(name: String, capabilities: Capabilities, open: Box<Open<'a>>) -> Candidate<'a> {
        Candidate { name, capabilities, open }
    }

    /// The name in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> Box<dyn Selector<String>> {
        (self.open)().unwrap_or_else(|err| panic!("{}: cannot make a selector: {err}", self.name))
    }
}

/// What a run that found no divergence did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The seed of the sequence.
    pub seed: u64,
    /// How many operations were applied (to each candidate).
    pub operations: usize,
    /// The candidates, by name.
    pub candidates: Vec<String>,
    /// How many of the operations were `select`s.
    pub selects: usize,
    /// Ready entries the candidates reported, all as the model predicted.
    pub entries: usize,
    /// Errors the candidates returned, all as the model predicted.
    pub errors: usize,
    /// The fd numbers the sockets sat on.
    pub fds: Vec<RawFd>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {:#x}: {} operations on {} (fds {:?}): 0 divergences; {} selects, {} ready entries and {} \
             errors, each as the model said, in {:.2?}",
            self.seed,
            self.operations,
            self.candidates.join(", "),
            self.fds,
            self.selects,
            self.entries,
            self.errors,
            self.elapsed,
        )
    }
}

/// A candidate that answered otherwise than the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The seed of the sequence that found it.
    pub seed: u64,
    /// The candidate that diverged.
    pub candidate: String,
    /// Its capabilities, as the model followed them.
    pub capabilities: String,
    /// The shortened sequence that still diverges, one operation a line;
    /// the divergence is at its last operation.
    pub operations: Vec<String>,
    /// What the model expected at the last operation.
    pub expected: String,
    /// What the candidate did.
    pub actual: String,
    /// Where in the seeded sequence it first diverged (0-based).
    pub first_step: usize,
    /// `false` if replaying the sequence alone did not diverge again (then
    /// `operations` is the whole sequence up to the divergence, unshortened).
    pub reproduced: bool,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} diverged from the model at operation {} of the sequence of seed {:#x}",
            self.candidate, self.first_step, self.seed
        )?;
        writeln!(f, "  capabilities: {}", self.capabilities)?;
        if self.reproduced {
            writeln!(f, "  shortened to {} operations:", self.operations.len())?;
        } else {
            writeln!(f, "  NOT reproduced by a replay of its {} operations alone:", self.operations.len())?;
        }
        for (i, operation) in self.operations.iter().enumerate() {
            writeln!(f, "    {i:>3}. {operation}")?;
        }
        writeln!(f, "  expected: {}", self.expected)?;
        write!(f, "  got:      {}", self.actual)
    }
}

/// Applies `operations` operations made from `seed` to every candidate and
/// to the model, side by side.
///
/// Takes the kit's fd locks ([`shared`] and
/// [`high_fds`]): its sockets sit at fixed numbers from
/// [`HIGH_BASE`] (and one above `FD_SETSIZE` when the fd limit allows).
///
/// # Errors
///
/// The first [`Divergence`], shortened.
///
/// # Panics
///
/// If a socket cannot be made or placed at its number (out of fds), or a
/// candidate's selector cannot be made.
pub fn run(seed: u64, operations: usize, candidates: &[Candidate<'_>]) -> Result<Summary, Box<Divergence>> {
    let _shared = shared();
    let _high = high_fds();
    let started = Instant::now();
    let numbers = slot_numbers();
    let mut rng = Rng::new(seed);
    let ops: Vec<Op> = (0..operations).map(|label| Op::random(&mut rng, numbers.len(), label)).collect();
    // A poll that holds a closed fd's file open (io_uring) keeps it alive
    // for everyone, and epoll would go on watching it: such a candidate
    // gets a world of its own.
    let (holders, others): (Vec<&Candidate<'_>>, Vec<&Candidate<'_>>) =
        candidates.iter().partition(|c| c.capabilities.closed_fd == ClosedFd::ReportedUntilArmed);
    let mut counts = Counts::default();
    let groups = std::iter::once(others).chain(holders.into_iter().map(|holder| vec![holder]));
    for group in groups.filter(|group| !group.is_empty()) {
        run_together(seed, &numbers, &ops, &group, &mut counts)?;
    }
    Ok(Summary {
        seed,
        operations,
        candidates: candidates.iter().map(|c| c.name.clone()).collect(),
        selects: ops.iter().filter(|op| op.kind == Kind::Select).count(),
        entries: counts.entries,
        errors: counts.errors,
        fds: numbers,
        elapsed: started.elapsed(),
    })
}

/// Applies `ops` to one world and to every candidate of `group` side by
/// side, adding to `counts`.
fn run_together(
    seed: u64,
    numbers: &[RawFd],
    ops: &[Op],
    group: &[&Candidate<'_>],
    counts: &mut Counts,
) -> Result<(), Box<Divergence>> {
    let mut world = World::new(numbers);
    let mut runs: Vec<Run<'_, '_>> = group.iter().map(|candidate| Run::new(candidate)).collect();
    for (step, op) in ops.iter().enumerate() {
        world.apply(op);
        for run in &mut runs {
            if let Err(mismatch) = run.step(op, &world, counts) {
                let candidate = run.candidate;
                drop(runs);
                drop(world);
                return Err(Box::new(shrink(seed, candidate, numbers, &ops[..=step], step, mismatch)));
            }
        }
    }
    Ok(())
}

/// The fd numbers of the slots: [`HIGH_BASE`] onwards, and one above
/// `FD_SETSIZE` if the fd limit allows it.
fn slot_numbers() -> Vec<RawFd> {
    let mut numbers: Vec<RawFd> = (0..LOW_SLOTS as RawFd).map(|i| HIGH_BASE + i).collect();
    let above = libc::FD_SETSIZE as RawFd + ABOVE_SETSIZE;
    if raise_fd_limit() > above as libc::rlim_t + 1 {
        numbers.push(above);
    }
    numbers
}

/// The last rule: a short seeded random sequence of every operation,
/// checked against the model after each (this module).
pub(crate) fn random_sequences_match_the_model(s: &Subject<'_>) {
    const SEED: u64 = 0x7u64 << 60 | 0x1ee7;
    const OPERATIONS: usize = 2_000;
    let candidate =
        Candidate::boxed(s.capabilities.backend.name().to_owned(), s.capabilities, Box::new(|| (s.new)()));
    if let Err(divergence) = run(SEED, OPERATIONS, &[candidate]) {
        panic!("{divergence}");
    }
}

// ------------------------------------------------------------------ operations

/// A small, seeded pseudo-random generator (SplitMix64): the same seed
/// gives the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound`.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Register,
    Modify,
    Unregister,
    Select,
    /// The peer writes a byte: the slot's socket becomes readable.
    Write,
    /// The socket reads all it has.
    Read,
    /// The socket writes until its send buffer is full: not writable.
    Fill,
    /// The peer reads all it has: the socket is writable again.
    DrainPeer,
    /// The peer is closed: the socket hangs up.
    HangUp,
    /// The socket's fd is closed.
    Close,
    /// A new socket is put on the number with `dup2` (over the old one if
    /// it is open: the old file closes with it).
    Replace,
}

/// How often each kind is drawn, out of the sum.
const WEIGHTS: [(Kind, usize); 11] = [
    (Kind::Register, 14),
    (Kind::Modify, 12),
    (Kind::Unregister, 7),
    (Kind::Select, 22),
    (Kind::Write, 8),
    (Kind::Read, 6),
    (Kind::Fill, 4),
    (Kind::DrainPeer, 5),
    (Kind::HangUp, 2),
    (Kind::Close, 3),
    (Kind::Replace, 5),
];

/// One operation. Every operation means something in every state (a write
/// to a closed socket does nothing), so any subsequence is a valid test:
/// that is what lets a divergence be shortened.
#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    slot: usize,
    events: Events,
    /// Its position in the seeded sequence: the data it registers is
    /// `"op{label}"`, the same when the sequence is shortened.
    label: usize,
}

impl Op {
    fn random(rng: &mut Rng, slots: usize, label: usize) -> Op {
        let total: usize = WEIGHTS.iter().map(|(_, weight)| weight).sum();
        let mut draw = rng.below(total);
        let mut kind = Kind::Select;
        for (candidate, weight) in WEIGHTS {
            if draw < weight {
                kind = candidate;
                break;
            }
            draw -= weight;
        }
        let slot = rng.below(slots);
        let events = Events::from_bits_truncate(rng.below(3) as u8 + 1);
        Op { kind, slot, events, label }
    }

    fn data(&self) -> String {
        format!("op{}", self.label)
    }

    fn describe(&self, numbers: &[RawFd]) -> String {
        let fd = numbers[self.slot];
        match self.kind {
            Kind::Register => format!("register(fd {fd}, {}, \"{}\")", self.events, self.data()),
            Kind::Modify => format!("modify(fd {fd}, {}, \"{}\")", self.events, self.data()),
            Kind::Unregister => format!("unregister(fd {fd})"),
            Kind::Select => "select(Some(ZERO))".to_owned(),
            Kind::Write => format!("the peer of fd {fd} writes a byte"),
            Kind::Read => format!("fd {fd} reads all it has"),
            Kind::Fill => format!("fd {fd} writes until its send buffer is full"),
            Kind::DrainPeer => format!("the peer of fd {fd} reads all it has"),
            Kind::HangUp => format!("the peer of fd {fd} is closed"),
            Kind::Close => format!("close(fd {fd})"),
            Kind::Replace => format!("dup2(a new socket, fd {fd})"),
        }
    }
}

// ------------------------------------------------------------------ the world

/// One socket the operations play with, at a fixed fd number, and what the
/// model knows of it.
struct Slot {
    number: RawFd,
    /// The socket on `number`, if the number is open.
    socket: Option<UnixStream>,
    /// Its peer, until hung up.
    peer: Option<UnixStream>,
    /// Which socket this is: a new one on the same number gets the next.
    generation: u64,
    /// Bytes from the peer are waiting.
    readable: bool,
    /// Its send buffer is full.
    full: bool,
}

/// A hang-up is an error condition: reported for every registered event.
const HUNG_UP: Readiness = Readiness { readable: true, writable: true, error: true };

impl Slot {
    /// What the kernel says of the socket on the number, if one is open.
    fn readiness(&self) -> Option<Readiness> {
        self.socket.as_ref()?;
        Some(self.held_readiness(self.generation))
    }

    /// What the kernel says of the file of `generation`, open on the
    /// number or not (a file closed while an io_uring poll is armed on it
    /// lives on in that poll).
    fn held_readiness(&self, generation: u64) -> Readiness {
        if generation != self.generation || self.peer.is_none() {
            // Replaced since: `dup2` closed its peer with it.
            HUNG_UP
        } else {
            Readiness { readable: self.readable, writable: !self.full, error: false }
        }
    }
}

/// The sockets, and the truth the model reads.
struct World {
    slots: Vec<Slot>,
}

impl World {
    /// The slot on fd `number`.
    fn slot(&self, number: RawFd) -> &Slot {
        self.slots.iter().find(|slot| slot.number == number).expect("a key of a slot")
    }

    fn new(numbers: &[RawFd]) -> World {
        let mut world = World { slots: Vec::new() };
        for &number in numbers {
            assert!(!is_open(number), "fd {number} is in use: the kit needs it free");
            world.slots.push(Slot {
                number,
                socket: None,
                peer: None,
                generation: 0,
                readable: false,
                full: false,
            });
            world.replace(world.slots.len() - 1);
        }
        world
    }

    /// Puts a new socket on slot `i`'s number (closing the old one, if any).
    fn replace(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let (socket, peer) = pair();
        shrink_send_buffer(&socket);
        // The old socket's number is about to be reused by dup2, which
        // closes the old file: it must not be closed again by its owner.
        let _old = slot.socket.take().map(IntoRawFd::into_raw_fd);
        // SAFETY: dup2 takes two fd numbers; `socket` is open, and
        // `slot.number` is ours (the old socket's, given up above, or
        // closed and reserved for this slot).
        cvt(unsafe { libc::dup2(fd(&socket), slot.number) })
            .unwrap_or_else(|err| panic!("dup2 onto fd {}: {err}", slot.number));
        // SAFETY: the number now holds a duplicate that nothing else owns.
        slot.socket = Some(unsafe { UnixStream::from_raw_fd(slot.number) });
        drop(socket);
        slot.peer = Some(peer);
        slot.generation += 1;
        slot.readable = false;
        slot.full = false;
    }

    fn apply(&mut self, op: &Op) {
        let i = op.slot;
        let slot = &mut self.slots[i];
        match op.kind {
            Kind::Register | Kind::Modify | Kind::Unregister | Kind::Select => {}
            Kind::Write => {
                if let (Some(_), Some(peer)) = (&slot.socket, &slot.peer) {
                    // Would-block means bytes are waiting already.
                    let _ = write_some(peer, b"w");
                    slot.readable = true;
                }
            }
            Kind::Read => {
                if let Some(socket) = &slot.socket {
                    read_all(socket);
                    slot.readable = false;
                }
            }
            Kind::Fill => {
                if let (Some(socket), Some(_)) = (&slot.socket, &slot.peer) {
                    while write_some(socket, &[0; 4096]) {}
                    slot.full = true;
                }
            }
            Kind::DrainPeer => {
                if let Some(peer) = &slot.peer {
                    read_all(peer);
                    slot.full = false;
                }
            }
            Kind::HangUp => slot.peer = None,
            // The file may live on, held by an armed io_uring poll: what
            // it had to read stays (`held_readiness`).
            Kind::Close => slot.socket = None,
            Kind::Replace => self.replace(i),
        }
    }
}

/// Makes `socket`'s send buffer as small as the kernel allows, so that
/// filling it takes a write or two.
fn shrink_send_buffer(socket: &UnixStream) {
    let size: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&size`.
    let set = cvt(unsafe {
        libc::setsockopt(
            fd(socket),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    });
    set.unwrap_or_else(|err| panic!("setsockopt(SO_SNDBUF): {err}"));
}

/// One write; `false` once the socket would block.
fn write_some(mut socket: &UnixStream, bytes: &[u8]) -> bool {
    loop {
        match socket.write(bytes) {
            Ok(_) => return true,
            Err(err) if err.kind() == ErrorKind::WouldBlock => return false,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!("write: {err}"),
        }
    }
}

/// Reads until the socket would block, or its end. A reset (the other end
/// was closed with bytes unread) is an end too: reading it clears it.
fn read_all(mut socket: &UnixStream) {
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::ConnectionReset) => return,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!("read: {err}"),
        }
    }
}

// ------------------------------------------------------------------ the model

/// The model's key: the contract's, and which socket a kernel that watches
/// open files would be watching.
#[derive(Debug, Clone)]
struct ModelKey {
    events: Events,
    data: String,
    /// The generation of the socket registered, if the number was open.
    watched: Option<u64>,
    /// Its one-shot poll, on io_uring (`ClosedFd::ReportedUntilArmed`).
    poll: OneShot,
}

/// An io_uring key's one-shot poll, as the model follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OneShot {
    /// Written in the submission ring by `register` (or by a `modify` that
    /// replaced an armed poll): sent at the next `select`, or earlier if an
    /// `unregister` flushes the ring.
    Queued,
    /// Reported: armed again at the next `select`.
    Rearm,
    /// Held by the kernel, with the file of this generation.
    Armed(u64),
    /// Completed with these events, when its file became ready (the kernel
    /// finishes a woken poll as the waking syscall returns), and not yet
    /// reported.
    Completed(Events),
}

/// An error as the model predicts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Kind(ErrorKind),
    Errno(libc::c_int),
}

impl Failure {
    fn matches(self, err: &io::Error) -> bool {
        match self {
            Failure::Kind(kind) => err.kind() == kind,
            Failure::Errno(errno) => err.raw_os_error() == Some(errno),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Kind(kind) => write!(f, "Err({kind:?})"),
            Failure::Errno(errno) => write!(f, "Err({})", io::Error::from_raw_os_error(*errno)),
        }
    }
}

type Entries = Vec<(RawFd, Events, String)>;

/// What an operation answered, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    None,
    Key(RawFd, Events, String),
    Entries(Entries),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::None => f.write_str("nothing"),
            Answer::Key(fd, events, data) => write!(f, "Ok(key fd {fd}, {events}, {data:?})"),
            Answer::Entries(entries) => {
                let entries: Vec<String> =
                    entries.iter().map(|(fd, events, data)| format!("fd {fd} {events} {data:?}")).collect();
                write!(f, "Ok([{}])", entries.join(", "))
            }
        }
    }
}

/// The model of one candidate: its keys, read against the world.
struct Model {
    capabilities: Capabilities,
    keys: BTreeMap<RawFd, ModelKey>,
}

/// What the model predicts: an answer, or an error.
enum Predicted {
    Ok(Answer),
    Err(Failure),
}

impl Model {
    fn register(&mut self, slot: &Slot, events: Events, data: String) -> Predicted {
        let number = slot.number;
        if let FdLimit::Below(limit) = self.capabilities.fd_limit {
            if number >= limit as RawFd {
                return Predicted::Err(Failure::Kind(ErrorKind::InvalidInput));
            }
        }
        if self.keys.contains_key(&number) {
            return Predicted::Err(Failure::Kind(ErrorKind::AlreadyExists));
        }
        if self.capabilities.register_syscall && slot.socket.is_none() {
            return Predicted::Err(Failure::Errno(libc::EBADF));
        }
        let watched = slot.socket.as_ref().map(|_| slot.generation);
        self.keys.insert(number, ModelKey { events, data: data.clone(), watched, poll: OneShot::Queued });
        Predicted::Ok(Answer::Key(number, events, data))
    }

    fn modify(&mut self, slot: &Slot, events: Events, data: String) -> Predicted {
        let number = slot.number;
        let Some(key) = self.keys.get_mut(&number) else {
            return Predicted::Err(Failure::Kind(ErrorKind::NotFound));
        };
        if events != key.events && self.capabilities.register_syscall {
            // The kernel is asked; it refuses a closed fd, and (watching
            // open files) a number whose file it no longer watches. The key
            // goes (bpo-30014).
            let refusal = if slot.socket.is_none() {
                Some(libc::EBADF)
            } else if self.capabilities.watches == Watches::OpenFile && key.watched != Some(slot.generation) {
                Some(libc::ENOENT)
            } else {
                None
            };
            if let Some(errno) = refusal {
                self.keys.remove(&number);
                return Predicted::Err(Failure::Errno(errno));
            }
        }
        if events != key.events {
            if let OneShot::Armed(_) | OneShot::Completed(_) = key.poll {
                // Cancelled, and a new poll queued.
                key.poll = OneShot::Queued;
            }
        }
        key.events = events;
        key.data = data.clone();
        Predicted::Ok(Answer::Key(number, events, data))
    }

    fn unregister(&mut self, slot: &Slot, world: &World) -> Predicted {
        match self.keys.remove(&slot.number) {
            Some(key) => {
                if let OneShot::Armed(_) | OneShot::Completed(_) = key.poll {
                    // Its poll is cancelled at once, and the queued polls
                    // go to the kernel with the cancel.
                    for (&number, key) in &mut self.keys {
                        if key.poll == OneShot::Queued {
                            let events = submit_one_shot(key, world.slot(number));
                            if !events.is_empty() {
                                key.poll = OneShot::Completed(events);
                            }
                        }
                    }
                }
                Predicted::Ok(Answer::Key(slot.number, key.events, key.data))
            }
            None => Predicted::Err(Failure::Kind(ErrorKind::NotFound)),
        }
    }

    fn select(&mut self, world: &World) -> Predicted {
        let mut entries = Vec::new();
        for (&number, key) in &mut self.keys {
            let slot = world.slot(number);
            let events = match slot.readiness() {
                _ if self.capabilities.closed_fd == ClosedFd::ReportedUntilArmed => one_shot_poll(key, slot),
                None => match self.capabilities.closed_fd {
                    ClosedFd::ReportedReady | ClosedFd::ReportedUntilArmed => key.events,
                    ClosedFd::SelectFails => return Predicted::Err(Failure::Errno(libc::EBADF)),
                    ClosedFd::Forgotten => Events::empty(),
                },
                // The kernel watches the file registered, which is gone.
                Some(_)
                    if self.capabilities.watches == Watches::OpenFile
                        && key.watched != Some(slot.generation) =>
                {
                    Events::empty()
                }
                Some(readiness) => readiness.reported(key.events),
            };
            if !events.is_empty() {
                entries.push((number, events, key.data.clone()));
            }
        }
        Predicted::Ok(Answer::Entries(entries))
    }

    /// After a change in the world: an armed io_uring poll completes if the
    /// file it holds, open or not, now has what it waits for.
    fn world_changed(&mut self, world: &World) {
        for (&number, key) in &mut self.keys {
            if let OneShot::Armed(generation) = key.poll {
                let slot = world.slot(number);
                let events = slot.held_readiness(generation).reported(key.events);
                if !events.is_empty() {
                    key.poll = OneShot::Completed(events);
                }
            }
        }
    }

    fn keys(&self) -> Entries {
        self.keys.iter().map(|(&fd, key)| (fd, key.events, key.data.clone())).collect()
    }
}

/// What a `select` reports of `key` on io_uring, whose one-shot polls are
/// submitted at a `select` and then held by the kernel until they complete.
fn one_shot_poll(key: &mut ModelKey, slot: &Slot) -> Events {
    match key.poll {
        OneShot::Queued | OneShot::Rearm => submit_one_shot(key, slot),
        OneShot::Armed(_) => Events::empty(),
        // Reported now, and re-armed at the next `select`.
        OneShot::Completed(events) => {
            key.poll = OneShot::Rearm;
            events
        }
    }
}

/// `key`'s poll reaching the kernel: a closed fd fails with EBADF (ready
/// for every registered event), an open one completes at once if ready
/// (both to be re-armed), else the poll is armed on its file. Returns the
/// events it completed with.
fn submit_one_shot(key: &mut ModelKey, slot: &Slot) -> Events {
    let events = match slot.readiness() {
        None => key.events,
        Some(readiness) => readiness.reported(key.events),
    };
    key.poll = if events.is_empty() { OneShot::Armed(slot.generation) } else { OneShot::Rearm };
    events
}

// ------------------------------------------------------------------ side by side

#[derive(Default)]
struct Counts {
    entries: usize,
    errors: usize,
}

/// Where a candidate and the model parted.
struct Mismatch {
    expected: String,
    actual: String,
}

/// One candidate's selector and its model.
struct Run<'c, 'a> {
    candidate: &'c Candidate<'a>,
    selector: Box<dyn Selector<String>>,
    model: Model,
}

impl<'c, 'a> Run<'c, 'a> {
    fn new(candidate: &'c Candidate<'a>) -> Run<'c, 'a> {
        Run {
            candidate,
            selector: candidate.open(),
            model: Model { capabilities: candidate.capabilities, keys: BTreeMap::new() },
        }
    }

    /// Applies `op` (the world has already changed) and compares.
    fn step(&mut self, op: &Op, world: &World, counts: &mut Counts) -> Result<(), Mismatch> {
        let slot = &world.slots[op.slot];
        let number = slot.number;
        let sel = &mut self.selector;
        let (predicted, actual) = match op.kind {
            Kind::Register => (
                self.model.register(slot, op.events, op.data()),
                sel.register(number, op.events, op.data()).map(key_answer),
            ),
            Kind::Modify => (
                self.model.modify(slot, op.events, op.data()),
                sel.modify(number, op.events, op.data()).map(key_answer),
            ),
            Kind::Unregister => {
                (self.model.unregister(slot, world), sel.unregister(number).map(|key| key_answer(&key)))
            }
            Kind::Select => {
                let actual = sel.select(Some(Duration::ZERO)).map(|ready| {
                    let mut entries: Entries =
                        ready.map(|(key, events)| (key.fd, events, key.data.clone())).collect();
                    entries.sort_by_key(|entry| entry.0);
                    Answer::Entries(entries)
                });
                (self.model.select(world), actual)
            }
            _ => {
                self.model.world_changed(world);
                (Predicted::Ok(Answer::None), Ok(Answer::None))
            }
        };
        match (predicted, actual) {
            (Predicted::Ok(expected), Ok(actual)) if expected == actual => {
                if let Answer::Entries(entries) = &actual {
                    counts.entries += entries.len();
                }
            }
            (Predicted::Err(failure), Err(err)) if failure.matches(&err) => counts.errors += 1,
            (predicted, actual) => {
                let expected = match predicted {
                    Predicted::Ok(answer) => answer.to_string(),
                    Predicted::Err(failure) => failure.to_string(),
                };
                let actual = match actual {
                    Ok(answer) => answer.to_string(),
                    Err(err) => format!("Err({err})"),
                };
                return Err(Mismatch { expected, actual });
            }
        }
        // The key table, after every operation.
        let mut keys: Entries =
            self.selector.keys().map(|key| (key.fd, key.events, key.data.clone())).collect();
        keys.sort_by_key(|entry| entry.0);
        let expected = self.model.keys();
        if keys != expected || self.selector.len() != expected.len() {
            return Err(Mismatch {
                expected: format!("keys {expected:?}"),
                actual: format!("keys {keys:?}, len() {}", self.selector.len()),
            });
        }
        Ok(())
    }
}

fn key_answer(key: &crate::SelectorKey<String>) -> Answer {
    Answer::Key(key.fd, key.events, key.data.clone())
}

/// Runs `ops` on a fresh world with `candidate` alone; the first mismatch
/// and where it came.
fn replay(candidate: &Candidate<'_>, numbers: &[RawFd], ops: &[Op]) -> Option<(usize, Mismatch)> {
    let mut world = World::new(numbers);
    let mut run = Run::new(candidate);
    let mut counts = Counts::default();
    for (step, op) in ops.iter().enumerate() {
        world.apply(op);
        if let Err(mismatch) = run.step(op, &world, &mut counts) {
            return Some((step, mismatch));
        }
    }
    None
}

/// Removes operations from `ops` (which diverged at its last one) while
/// the candidate still diverges: chunks of halving size, as delta
/// debugging does, within [`SHRINK_REPLAYS`] replays.
fn shrink(
    seed: u64,
    candidate: &Candidate<'_>,
    numbers: &[RawFd],
    ops: &[Op],
    first_step: usize,
    mismatch: Mismatch,
) -> Divergence {
    let mut best: Vec<Op> = ops.to_vec();
    let mut last = mismatch;
    let reproduced = replay(candidate, numbers, &best).is_some();
    let mut replays = if reproduced { 0 } else { SHRINK_REPLAYS };
    let mut chunk = best.len().div_ceil(2).max(1);
    'shrinking: loop {
        let mut start = 0;
        let mut removed_any = false;
        while start < best.len() {
            if replays >= SHRINK_REPLAYS {
                break 'shrinking;
            }
            replays += 1;
            let end = (start + chunk).min(best.len());
            let attempt: Vec<Op> = best[..start].iter().chain(&best[end..]).copied().collect();
            match replay(candidate, numbers, &attempt) {
                Some((step, mismatch)) => {
                    best = attempt[..=step].to_vec();
                    last = mismatch;
                    removed_any = true;
                }
                None => start += chunk,
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        if !removed_any {
            chunk = chunk.div_ceil(2);
        }
        chunk = chunk.min(best.len().div_ceil(2)).max(1);
    }
    Divergence {
        seed,
        candidate: candidate.name.clone(),
        capabilities: candidate.capabilities.to_string(),
        operations: best.iter().map(|op| op.describe(numbers)).collect(),
        expected: last.expected,
        actual: last.actual,
        first_step,
        reproduced,
    }
}
