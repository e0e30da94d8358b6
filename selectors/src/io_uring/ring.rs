//! The kernel's side of io_uring, and nothing more: the parts of
//! `<linux/io_uring.h>` this backend uses (declared here; their layout is
//! checked by the tests at the bottom), `io_uring_setup` and the `mmap`s of
//! its rings, `io_uring_enter`, and `IORING_REGISTER_PROBE`. What goes into
//! the rings, and what comes out of them means, is `io_uring.rs`'s business.
//!
//! Two rings are shared with the kernel. The **submission queue** (SQ) is an
//! array of 64-byte request entries (SQEs) plus a ring of indices into it;
//! we write entries at our tail, and the kernel consumes them from its head
//! when we call `io_uring_enter`. No kernel thread polls it (no
//! `IORING_SETUP_SQPOLL`), so nothing past the head is read by the kernel
//! until we enter: entries queued there may still be rewritten or taken
//! back. The **completion queue** (CQ) is a ring of 16-byte results (CQEs)
//! that the kernel writes at its tail and we consume from our head.

use std::fmt;
use std::io;
use std::mem;
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::syscall::cvt;
use crate::timeout::clamped;

/// `IORING_OP_POLL_ADD`: wait for poll events on an fd (Linux 5.1).
pub(super) const OP_POLL_ADD: u8 = 6;
/// `IORING_OP_POLL_REMOVE`: cancel a `POLL_ADD` named by its `user_data` (Linux 5.1).
pub(super) const OP_POLL_REMOVE: u8 = 7;
/// `IOSQE_CQE_SKIP_SUCCESS`: post a completion only if the request fails.
const SQE_CQE_SKIP_SUCCESS: u8 = 1 << 6;
/// `IORING_POLL_ADD_MULTI`, in a `POLL_ADD`'s `len`: stay armed after each event.
pub(super) const POLL_ADD_MULTI: u32 = 1 << 0;
/// `IORING_CQE_F_MORE`: the request that posted this completion is still armed.
pub(super) const CQE_F_MORE: u32 = 1 << 1;

const SETUP_CQSIZE: u32 = 1 << 3;
const SETUP_SUBMIT_ALL: u32 = 1 << 7;
const SETUP_COOP_TASKRUN: u32 = 1 << 8;
const SETUP_TASKRUN_FLAG: u32 = 1 << 9;
const FEAT_SINGLE_MMAP: u32 = 1 << 0;
const FEAT_NODROP: u32 = 1 << 1;
const FEAT_EXT_ARG: u32 = 1 << 8;
const FEAT_CQE_SKIP: u32 = 1 << 11;
const ENTER_GETEVENTS: u32 = 1 << 0;
const ENTER_EXT_ARG: u32 = 1 << 3;
/// In the SQ ring's flags: completions are waiting in the kernel's overflow list.
const SQ_CQ_OVERFLOW: u32 = 1 << 1;
/// In the SQ ring's flags (with `IORING_SETUP_TASKRUN_FLAG`): woken polls
/// wait to be finished by the next `io_uring_enter`.
const SQ_TASKRUN: u32 = 1 << 2;
const OFF_SQ_RING: libc::off_t = 0;
const OFF_CQ_RING: libc::off_t = 0x800_0000;
const OFF_SQES: libc::off_t = 0x1000_0000;
const REGISTER_PROBE: libc::c_uint = 8;
const PROBE_OP_SUPPORTED: u16 = 1 << 0;

/// `struct io_sqring_offsets`: where each part of the SQ ring is in its mapping.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct SqRingOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_cqring_offsets`: where each part of the CQ ring is in its mapping.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CqRingOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_uring_params`: what we ask of `io_uring_setup`, and what it answers.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqRingOffsets,
    cq_off: CqRingOffsets,
}

/// `struct io_uring_sqe`: one request. The kernel's unions are flattened to
/// the one member of each that this backend uses.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sqe {
    pub(super) opcode: u8,
    pub(super) flags: u8,
    ioprio: u16,
    pub(super) fd: i32,
    off: u64,
    /// For `POLL_REMOVE`: the `user_data` of the poll to cancel.
    pub(super) addr: u64,
    /// For `POLL_ADD`: its flags (`POLL_ADD_MULTI`).
    pub(super) len: u32,
    /// For `POLL_ADD`: `poll32_events`, the poll mask (half-words swapped on
    /// big-endian machines, see [`poll_mask`]).
    pub(super) op_flags: u32,
    pub(super) user_data: u64,
    buf_index: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: u64,
    pad2: u64,
}

impl Sqe {
    /// `IORING_OP_POLL_ADD` on `fd` for the poll bits `events` (with `len`'s
    /// flags: `POLL_ADD_MULTI` or 0).
    #[inline]
    pub(super) fn poll_add(fd: RawFd, events: u32, len: u32, user_data: u64) -> Sqe {
        Sqe { opcode: OP_POLL_ADD, fd, op_flags: poll_mask(events), len, user_data, ..Sqe::default() }
    }

    /// `IORING_OP_POLL_REMOVE` of the poll whose `user_data` is `target`.
    #[inline]
    pub(super) fn poll_remove(target: u64, flags: u8, user_data: u64) -> Sqe {
        Sqe { opcode: OP_POLL_REMOVE, flags, fd: -1, addr: target, user_data, ..Sqe::default() }
    }
}

/// `struct io_uring_cqe`: one completion.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Cqe {
    pub(super) user_data: u64,
    /// The request's result: a poll mask, or a negated errno.
    pub(super) res: i32,
    pub(super) flags: u32,
}

/// `struct __kernel_timespec`: 64-bit seconds on every architecture.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// `struct io_uring_getevents_arg`, passed with `IORING_ENTER_EXT_ARG`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// `struct io_uring_probe_op`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ProbeOp {
    op: u8,
    resv: u8,
    flags: u16,
    resv2: u32,
}

/// How many opcodes one probe asks about (the kernel's limit is 256).
const PROBE_OPS: usize = 256;

/// `struct io_uring_probe` with room for [`PROBE_OPS`] entries.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Probe {
    last_op: u8,
    ops_len: u8,
    resv: u16,
    resv2: [u32; 3],
    ops: [ProbeOp; PROBE_OPS],
}

impl Probe {
    fn supports(&self, opcode: u8) -> bool {
        opcode <= self.last_op
            && usize::from(opcode) < usize::from(self.ops_len)
            && self.ops[usize::from(opcode)].flags & PROBE_OP_SUPPORTED != 0
    }
}

/// A poll mask as `poll32_events` wants it: the kernel swaps the two
/// half-words of that field on big-endian machines (it once held 16 bits).
#[inline]
pub(super) fn poll_mask(mask: u32) -> u32 {
    if cfg!(target_endian = "big") {
        mask.rotate_left(16)
    } else {
        mask
    }
}

/// One shared mapping of the ring fd, unmapped on drop.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, offset: libc::off_t) -> io::Result<Mapping> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_SHARED | libc::MAP_POPULATE;
        // SAFETY: a new mapping chosen by the kernel (null hint): no memory we
        // hold is touched. `cvt` sees MAP_FAILED, which is -1 as an isize.
        let address = cvt(unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, fd, offset) } as isize)?;
        let base = NonNull::new(address as *mut u8)
            .ok_or_else(|| io::Error::other("mmap of an io_uring ring returned a null address"))?;
        Ok(Mapping { base, len })
    }

    /// A pointer `offset` bytes into the mapping, which the caller checked
    /// leaves room for a `T`.
    fn at<T>(&self, offset: u32) -> *mut T {
        debug_assert!(offset as usize + mem::size_of::<T>() <= self.len);
        // SAFETY: the kernel's offsets lie inside the mapping it sized for them.
        unsafe { self.base.as_ptr().add(offset as usize) }.cast()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is a mapping this value made and owns;
        // every pointer into it belongs to the `Ring` being dropped with it.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One io_uring instance: the close-on-exec ring fd (io_uring fds are always
/// made with `O_CLOEXEC`), its three mappings, and our cursors into them.
pub(super) struct Ring {
    /// `None` once [`close`](Self::close)d.
    fd: Option<OwnedFd>,
    /// Made with `IORING_SETUP_TASKRUN_FLAG`: see [`is_idle`](Self::is_idle).
    taskrun_flag: bool,
    /// The SQ ring (and, with `IORING_FEAT_SINGLE_MMAP`, the CQ ring too).
    _sq_map: Mapping,
    /// The CQ ring, where the kernel does not share one mapping for both.
    _cq_map: Option<Mapping>,
    _sqe_map: Mapping,
    features: u32,
    sq_head: *const AtomicU32,
    sq_tail: *const AtomicU32,
    sq_flags: *const AtomicU32,
    sq_mask: u32,
    sq_entries: u32,
    sqes: *mut Sqe,
    /// The next SQ position we fill; the kernel sees it at the next enter.
    sq_tail_local: u32,
    /// How far the kernel had consumed the SQ when we last looked.
    sq_head_seen: u32,
    cq_head: *const AtomicU32,
    cq_tail: *const AtomicU32,
    cq_mask: u32,
    cqes: *const Cqe,
    /// The next CQ position we read.
    cq_head_local: u32,
}

// SAFETY: the raw pointers point into mappings owned by this `Ring` (they
// live and die with it) and the kernel reaches the same memory only through
// the ring fd, which is not tied to a thread. Moving the whole ring to
// another thread moves exclusive access with it.
unsafe impl Send for Ring {}
// SAFETY: through `&Ring` the rings are only read (atomic loads) or not
// touched at all; every write needs `&mut Ring`.
unsafe impl Sync for Ring {}

/// `true` if `TULIP_IO_URING` is `0` or `off`: this process then acts as
/// if its kernel had no io_uring. For tools that cannot follow it: under
/// valgrind (3.19), a thread waiting in `io_uring_enter` keeps every other
/// thread from running, so a wait for another thread never ends.
fn turned_off_by_environment() -> bool {
    std::env::var_os("TULIP_IO_URING").is_some_and(|value| value == "0" || value == "off")
}

/// `io_uring_setup(2)`.
fn setup(entries: u32, params: &mut Params) -> io::Result<OwnedFd> {
    // Miri stops the whole run at a syscall it does not emulate; answer as a
    // kernel without io_uring would, so the backend is simply unavailable.
    if cfg!(miri) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    // SAFETY: io_uring_setup reads and writes one io_uring_params, which
    // `params` is, for the duration of the call.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, params as *mut Params) })?;
    // SAFETY: the syscall returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What an error of `io_uring_setup` means for this process.
fn setup_error(err: io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(libc::ENOSYS) => io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring_setup: this kernel has no io_uring (ENOSYS), or a seccomp filter hides it",
        ),
        Some(libc::EPERM) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            "io_uring_setup: not permitted (EPERM): kernel.io_uring_disabled is set, \
             the process is outside kernel.io_uring_group, or a seccomp filter refuses it",
        ),
        _ => err,
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("this kernel's io_uring lacks {what}"))
}

impl Ring {
    /// Sets up a ring of `sq_entries` submissions and `cq_entries`
    /// completions (powers of two), maps it, and checks that the kernel
    /// has what this backend needs.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a kernel without io_uring (or with one too old:
    /// `IORING_FEAT_EXT_ARG` and `IORING_FEAT_NODROP`, Linux 5.11, and the
    /// poll opcodes); `PermissionDenied` where io_uring is disabled or
    /// filtered, or turned off by the environment variable
    /// `TULIP_IO_URING=0`; otherwise the error of `io_uring_setup`, `mmap`
    /// or the probe.
    pub(super) fn new(sq_entries: u32, cq_entries: u32) -> io::Result<Ring> {
        if turned_off_by_environment() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring_setup: not tried, the environment variable TULIP_IO_URING=0 turns io_uring off",
            ));
        }
        // Newest first; an older kernel refuses flags it does not know with
        // EINVAL. SUBMIT_ALL (Linux 5.18) keeps a batch going past an entry
        // that fails to prepare (ours never do). COOP_TASKRUN (5.19) spares
        // the interrupt the kernel otherwise sends this thread, when it is
        // running, to finish a poll another thread woke (it is finished at
        // our next syscall instead; a thread asleep is still woken), and
        // TASKRUN_FLAG says in the ring when such polls are waiting.
        let attempts = [
            SETUP_CQSIZE | SETUP_SUBMIT_ALL | SETUP_COOP_TASKRUN | SETUP_TASKRUN_FLAG,
            SETUP_CQSIZE | SETUP_SUBMIT_ALL,
            SETUP_CQSIZE,
        ];
        let mut params = Params::default();
        let mut made = Err(io::Error::from_raw_os_error(libc::EINVAL));
        for flags in attempts {
            params = Params { flags, cq_entries, ..Params::default() };
            made = setup(sq_entries, &mut params);
            if !matches!(&made, Err(err) if err.raw_os_error() == Some(libc::EINVAL)) {
                break;
            }
        }
        let fd = made.map_err(setup_error)?;
        let taskrun_flag = params.flags & SETUP_TASKRUN_FLAG != 0;
        if params.features & FEAT_EXT_ARG == 0 {
            return Err(unsupported("IORING_FEAT_EXT_ARG (timeouts without an SQE, Linux 5.11)"));
        }
        if params.features & FEAT_NODROP == 0 {
            return Err(unsupported("IORING_FEAT_NODROP (Linux 5.5)"));
        }
        check_opcodes(fd.as_raw_fd())?;

        let (sq_off, cq_off) = (params.sq_off, params.cq_off);
        let sq_len = sq_off.array as usize + params.sq_entries as usize * mem::size_of::<u32>();
        let cq_len = cq_off.cqes as usize + params.cq_entries as usize * mem::size_of::<Cqe>();
        let single = params.features & FEAT_SINGLE_MMAP != 0;
        let sq_map =
            Mapping::new(fd.as_raw_fd(), if single { sq_len.max(cq_len) } else { sq_len }, OFF_SQ_RING)?;
        let cq_map = if single { None } else { Some(Mapping::new(fd.as_raw_fd(), cq_len, OFF_CQ_RING)?) };
        let sqe_len = params.sq_entries as usize * mem::size_of::<Sqe>();
        let sqe_map = Mapping::new(fd.as_raw_fd(), sqe_len, OFF_SQES)?;
        let cq_ring = cq_map.as_ref().unwrap_or(&sq_map);

        let sq_mask_ptr: *const u32 = sq_map.at(sq_off.ring_mask);
        let cq_mask_ptr: *const u32 = cq_ring.at(cq_off.ring_mask);
        // SAFETY: both masks are aligned u32s inside live mappings, written
        // by the kernel at setup and never changed.
        let sq_mask = unsafe { sq_mask_ptr.read() };
        // SAFETY: as above.
        let cq_mask = unsafe { cq_mask_ptr.read() };
        // The index array maps ring positions to SQE slots: the identity,
        // set once, so position `p` always uses slot `p & mask`.
        let array: *mut u32 = sq_map.at(sq_off.array);
        for slot in 0..params.sq_entries {
            let entry = array.wrapping_add(slot as usize);
            // SAFETY: `entry` is one of the array's `sq_entries` aligned u32s;
            // nothing reads the array until the first enter.
            unsafe { entry.write(slot) };
        }
        Ok(Ring {
            taskrun_flag,
            features: params.features,
            sq_head: sq_map.at(sq_off.head),
            sq_tail: sq_map.at(sq_off.tail),
            sq_flags: sq_map.at(sq_off.flags),
            sq_mask,
            sq_entries: params.sq_entries,
            sqes: sqe_map.at(0),
            sq_tail_local: 0,
            sq_head_seen: 0,
            cq_head: cq_ring.at(cq_off.head),
            cq_tail: cq_ring.at(cq_off.tail),
            cq_mask,
            cqes: cq_ring.at(cq_off.cqes),
            cq_head_local: 0,
            fd: Some(fd),
            _sq_map: sq_map,
            _cq_map: cq_map,
            _sqe_map: sqe_map,
        })
    }

    /// One of the kernel's shared ring counters.
    #[inline]
    fn counter(&self, counter: *const AtomicU32) -> &AtomicU32 {
        // SAFETY: every counter pointer points at an aligned u32 inside a
        // mapping this ring owns, which lives as long as `&self`; the kernel
        // touches it only atomically (READ_ONCE/WRITE_ONCE, acquire/release).
        unsafe { &*counter }
    }

    /// The ring fd (-1 once closed).
    #[inline]
    pub(super) fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// `true` once [`close`](Self::close)d.
    pub(super) fn is_closed(&self) -> bool {
        self.fd.is_none()
    }

    /// The SQE flags that spare a completion when the request succeeds, if
    /// this kernel has them (Linux 5.17); otherwise none.
    #[inline]
    pub(super) fn skip_success(&self) -> u8 {
        if self.features & FEAT_CQE_SKIP != 0 {
            SQE_CQE_SKIP_SUCCESS
        } else {
            0
        }
    }

    /// How many SQ entries are written but not yet consumed by the kernel.
    #[inline]
    pub(super) fn unsubmitted(&self) -> u32 {
        self.sq_tail_local.wrapping_sub(self.sq_head_seen)
    }

    /// `true` when no SQ entry is free until the kernel consumes some.
    #[inline]
    pub(super) fn is_full(&self) -> bool {
        self.unsubmitted() >= self.sq_entries
    }

    /// Writes `sqe` at the SQ's tail and returns its position, or `None` if
    /// the queue is full.
    #[inline]
    pub(super) fn push(&mut self, sqe: Sqe) -> Option<u32> {
        if self.is_full() {
            return None;
        }
        let position = self.sq_tail_local;
        *self.sqe_mut(position) = sqe;
        self.sq_tail_local = position.wrapping_add(1);
        Some(position)
    }

    /// `true` if `position` holds an entry the kernel has not consumed.
    #[inline]
    fn is_queued(&self, position: u32) -> bool {
        position.wrapping_sub(self.sq_head_seen) < self.unsubmitted()
    }

    #[inline]
    fn slot(&self, position: u32) -> usize {
        (position & self.sq_mask) as usize
    }

    /// The entry at `position`: one not yet consumed, or one consumed since
    /// the last [`take_submitted`](Self::take_submitted) and not overwritten.
    #[inline]
    pub(super) fn sqe(&self, position: u32) -> &Sqe {
        let entry = self.sqes.wrapping_add(self.slot(position));
        // SAFETY: the slot index is masked to the SQE array's length, and
        // the kernel only reads SQEs (during an enter, which needs `&mut`),
        // so nothing writes the entry while this borrow of `self` lives.
        unsafe { &*entry }
    }

    /// The entry at `position`, to rewrite it before the kernel reads it.
    #[inline]
    pub(super) fn sqe_mut(&mut self, position: u32) -> &mut Sqe {
        let entry = self.sqes.wrapping_add(self.slot(position));
        // SAFETY: masked index into the SQE array; entries past the kernel's
        // head are ours until the next enter, which needs `&mut self`.
        unsafe { &mut *entry }
    }

    /// Forgets every entry not yet consumed by the kernel.
    pub(super) fn discard_unsubmitted(&mut self) {
        self.sq_tail_local = self.sq_head_seen;
    }

    /// Takes back the queued entry at `position`: the last queued entry moves
    /// into its place and is returned (`None` if it was the last itself, or
    /// if `position` holds no queued entry).
    pub(super) fn unqueue(&mut self, position: u32) -> Option<Sqe> {
        if !self.is_queued(position) {
            return None;
        }
        let last = self.sq_tail_local.wrapping_sub(1);
        self.sq_tail_local = last;
        if position == last {
            return None;
        }
        let moved = *self.sqe(last);
        *self.sqe_mut(position) = moved;
        Some(moved)
    }

    /// `io_uring_enter(2)`: hands every queued entry to the kernel and, with
    /// `wait`, waits until `min_complete` completions are in the CQ or
    /// `timeout` has passed (an `IORING_ENTER_EXT_ARG` timespec, so the
    /// timeout costs no SQE and posts no completion). Returns how many
    /// entries the kernel consumed; see [`take_submitted`](Self::take_submitted).
    ///
    /// # Errors
    ///
    /// The kernel's: `ETIME` when the timeout passed with nothing submitted,
    /// `EINTR` when a signal arrived first, `EBUSY`/`EAGAIN`/`ENOMEM` when it
    /// could take nothing, `EBADR` when completions were lost.
    #[inline]
    pub(super) fn enter(
        &mut self,
        wait: bool,
        min_complete: u32,
        timeout: Option<Duration>,
    ) -> io::Result<u32> {
        // Release: the entries' contents are visible before the new tail.
        self.counter(self.sq_tail).store(self.sq_tail_local, Ordering::Release);
        let to_submit = self.unsubmitted();
        let mut flags = if wait { ENTER_GETEVENTS } else { 0 };
        let mut timespec = KernelTimespec::default();
        let mut arg = GeteventsArg::default();
        let (arg_ptr, arg_len) = match timeout {
            Some(timeout) if wait => {
                let timeout = clamped(timeout);
                timespec.tv_sec = timeout.as_secs() as i64;
                timespec.tv_nsec = i64::from(timeout.subsec_nanos());
                arg.ts = ptr::addr_of!(timespec) as usize as u64;
                flags |= ENTER_EXT_ARG;
                (ptr::addr_of!(arg).cast::<libc::c_void>(), mem::size_of::<GeteventsArg>())
            }
            _ => (ptr::null(), 0),
        };
        // SAFETY: the fd is our ring; the SQ entries up to the published tail
        // are initialised; `arg_ptr` is null or points at a live
        // io_uring_getevents_arg whose `ts` points at a live timespec, both
        // outliving the call.
        let consumed = cvt(unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.fd(),
                to_submit,
                min_complete,
                flags,
                arg_ptr,
                arg_len,
            )
        })?;
        Ok(consumed as u32)
    }

    /// The positions the kernel consumed since the last call: `from..to`
    /// (wrapping). Their entries can be read with [`sqe`](Self::sqe) until
    /// new ones are pushed.
    #[inline]
    pub(super) fn take_submitted(&mut self) -> (u32, u32) {
        let head = self.counter(self.sq_head).load(Ordering::Acquire);
        let from = mem::replace(&mut self.sq_head_seen, head);
        (from, head)
    }

    /// `true` if the CQ holds completions we have not read.
    #[inline]
    pub(super) fn has_completions(&self) -> bool {
        self.counter(self.cq_tail).load(Ordering::Acquire) != self.cq_head_local
    }

    /// The CQ positions holding unread completions: `head..tail` (wrapping).
    #[inline]
    pub(super) fn completions(&self) -> (u32, u32) {
        (self.cq_head_local, self.counter(self.cq_tail).load(Ordering::Acquire))
    }

    /// The completion at `position`, which [`completions`](Self::completions) returned.
    #[inline]
    pub(super) fn cqe(&self, position: u32) -> Cqe {
        let entry = self.cqes.wrapping_add((position & self.cq_mask) as usize);
        // SAFETY: masked index into the CQE array; the acquire load of the
        // tail in `completions` ordered the kernel's write before this read.
        unsafe { entry.read() }
    }

    /// Gives the CQ entries before `head` back to the kernel.
    #[inline]
    pub(super) fn release(&mut self, head: u32) {
        self.cq_head_local = head;
        // Release: our reads of the entries happen before the kernel reuses them.
        self.counter(self.cq_head).store(head, Ordering::Release);
    }

    /// `true` if an `io_uring_enter` would find nothing: no request queued,
    /// no completion in the ring or in the overflow list, and (as
    /// `IORING_SETUP_TASKRUN_FLAG` tells) no woken poll waiting to be
    /// finished. Always `false` where the kernel lacks that flag (before
    /// Linux 5.19): there only an enter can tell.
    #[inline]
    pub(super) fn is_idle(&self) -> bool {
        self.taskrun_flag
            && self.unsubmitted() == 0
            && !self.has_completions()
            && self.counter(self.sq_flags).load(Ordering::Acquire) & (SQ_TASKRUN | SQ_CQ_OVERFLOW) == 0
    }

    /// `true` if the kernel holds completions the CQ had no room for; an
    /// enter with `wait` (and `min_complete` 0) moves them into the ring.
    #[inline]
    pub(super) fn overflowed(&self) -> bool {
        self.counter(self.sq_flags).load(Ordering::Acquire) & SQ_CQ_OVERFLOW != 0
    }

    /// Closes the ring fd, reporting the error of `close` (the rings are
    /// unmapped when the `Ring` is dropped). The kernel cancels whatever
    /// requests are still in flight.
    ///
    /// # Errors
    ///
    /// The error of `close(2)`.
    pub(super) fn close(&mut self) -> io::Result<()> {
        let Some(fd) = self.fd.take() else { return Ok(()) };
        let fd = fd.into_raw_fd();
        // SAFETY: we owned `fd` and give up ownership here; nobody else closes it.
        cvt(unsafe { libc::close(fd) })?;
        Ok(())
    }
}

/// Asks the kernel (`IORING_REGISTER_PROBE`, Linux 5.6) whether it knows the
/// two opcodes this backend is made of.
fn check_opcodes(ring_fd: RawFd) -> io::Result<()> {
    let mut probe =
        Probe { last_op: 0, ops_len: 0, resv: 0, resv2: [0; 3], ops: [ProbeOp::default(); PROBE_OPS] };
    // SAFETY: the probe has room for PROBE_OPS entries, the count we pass,
    // and the kernel writes at most that much into it.
    let probed = cvt(unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            REGISTER_PROBE,
            ptr::addr_of_mut!(probe),
            PROBE_OPS as libc::c_uint,
        )
    });
    match probed {
        Ok(_) if probe.supports(OP_POLL_ADD) && probe.supports(OP_POLL_REMOVE) => Ok(()),
        Ok(_) => Err(unsupported("IORING_OP_POLL_ADD or IORING_OP_POLL_REMOVE")),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            Err(unsupported("IORING_REGISTER_PROBE (Linux 5.6)"))
        }
        Err(err) => Err(err),
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.fd)
            .field("sq_entries", &self.sq_entries)
            .field("unsubmitted", &self.unsubmitted())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Sizes and offsets as in `<linux/io_uring.h>`: a wrong one here would
    /// make the kernel read or write the wrong bytes.
    #[test]
    fn kernel_structs_have_the_kernels_layout() {
        assert_eq!(size_of::<Sqe>(), 64);
        assert_eq!(offset_of!(Sqe, opcode), 0);
        assert_eq!(offset_of!(Sqe, flags), 1);
        assert_eq!(offset_of!(Sqe, ioprio), 2);
        assert_eq!(offset_of!(Sqe, fd), 4);
        assert_eq!(offset_of!(Sqe, off), 8);
        assert_eq!(offset_of!(Sqe, addr), 16);
        assert_eq!(offset_of!(Sqe, len), 24);
        assert_eq!(offset_of!(Sqe, op_flags), 28);
        assert_eq!(offset_of!(Sqe, user_data), 32);
        assert_eq!(offset_of!(Sqe, buf_index), 40);
        assert_eq!(offset_of!(Sqe, personality), 42);
        assert_eq!(offset_of!(Sqe, splice_fd_in), 44);
        assert_eq!(offset_of!(Sqe, addr3), 48);
        assert_eq!(offset_of!(Sqe, pad2), 56);

        assert_eq!(size_of::<Cqe>(), 16);
        assert_eq!(offset_of!(Cqe, user_data), 0);
        assert_eq!(offset_of!(Cqe, res), 8);
        assert_eq!(offset_of!(Cqe, flags), 12);

        assert_eq!(size_of::<SqRingOffsets>(), 40);
        assert_eq!(offset_of!(SqRingOffsets, array), 24);
        assert_eq!(offset_of!(SqRingOffsets, user_addr), 32);
        assert_eq!(size_of::<CqRingOffsets>(), 40);
        assert_eq!(offset_of!(CqRingOffsets, cqes), 20);
        assert_eq!(offset_of!(CqRingOffsets, flags), 24);
        assert_eq!(offset_of!(CqRingOffsets, user_addr), 32);

        assert_eq!(size_of::<Params>(), 120);
        assert_eq!(offset_of!(Params, features), 20);
        assert_eq!(offset_of!(Params, wq_fd), 24);
        assert_eq!(offset_of!(Params, sq_off), 40);
        assert_eq!(offset_of!(Params, cq_off), 80);

        assert_eq!(size_of::<GeteventsArg>(), 24);
        assert_eq!(offset_of!(GeteventsArg, sigmask_sz), 8);
        assert_eq!(offset_of!(GeteventsArg, min_wait_usec), 12);
        assert_eq!(offset_of!(GeteventsArg, ts), 16);
        assert_eq!(size_of::<KernelTimespec>(), 16);

        assert_eq!(size_of::<ProbeOp>(), 8);
        assert_eq!(offset_of!(ProbeOp, flags), 2);
        assert_eq!(offset_of!(Probe, ops), 16);
        assert_eq!(size_of::<Probe>(), 16 + 8 * PROBE_OPS);
    }

    #[test]
    fn setup_refusals_say_why() {
        let err = setup_error(io::Error::from_raw_os_error(libc::ENOSYS));
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("ENOSYS"), "{err}");
        let err = setup_error(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("io_uring_disabled"), "{err}");
        let err = setup_error(io::Error::from_raw_os_error(libc::ENOMEM));
        assert_eq!(err.raw_os_error(), Some(libc::ENOMEM), "other errors pass through");
    }

    #[test]
    fn poll_masks_are_word_swapped_only_on_big_endian() {
        let mask = libc::POLLIN as u32;
        if cfg!(target_endian = "big") {
            assert_eq!(poll_mask(mask), mask << 16);
        } else {
            assert_eq!(poll_mask(mask), mask);
        }
    }

    #[test]
    fn probe_reads_the_supported_flag() {
        let mut probe =
            Probe { last_op: 7, ops_len: 8, resv: 0, resv2: [0; 3], ops: [ProbeOp::default(); PROBE_OPS] };
        probe.ops[6].flags = PROBE_OP_SUPPORTED;
        assert!(probe.supports(OP_POLL_ADD));
        assert!(!probe.supports(OP_POLL_REMOVE));
        probe.ops[7].flags = PROBE_OP_SUPPORTED;
        assert!(probe.supports(OP_POLL_REMOVE));
        probe.last_op = 6;
        assert!(!probe.supports(OP_POLL_REMOVE), "beyond last_op nothing is supported");
    }

    fn ring(entries: u32) -> Option<Ring> {
        match Ring::new(entries, entries * 2) {
            Ok(ring) => Some(ring),
            Err(err) => {
                println!("skipped: no io_uring here ({err})");
                None
            }
        }
    }

    fn nop(user_data: u64) -> Sqe {
        Sqe { opcode: 0, user_data, ..Sqe::default() }
    }

    #[test]
    fn entries_can_be_taken_back_until_submitted() {
        let Some(mut ring) = ring(4) else { return };
        let positions: Vec<u32> = (0..4).map(|i| ring.push(nop(i)).expect("room")).collect();
        assert_eq!(positions, [0, 1, 2, 3]);
        assert!(ring.is_full());
        assert_eq!(ring.push(nop(9)), None, "a full ring takes nothing");
        // Taking back the second moves the last into its place.
        assert_eq!(ring.unqueue(1), Some(nop(3)));
        assert_eq!(*ring.sqe(1), nop(3));
        assert_eq!(ring.unsubmitted(), 3);
        // Taking back the last moves nothing.
        assert_eq!(ring.unqueue(2), None);
        assert_eq!(ring.unsubmitted(), 2);
        assert_eq!(ring.unqueue(7), None, "not a queued position");

        // NOPs complete with 0, one completion each, in the CQ.
        assert_eq!(ring.enter(true, 2, None).expect("enter"), 2);
        assert_eq!(ring.take_submitted(), (0, 2));
        assert_eq!(ring.unqueue(0), None, "a submitted entry cannot be taken back");
        let (head, tail) = ring.completions();
        assert_eq!(tail.wrapping_sub(head), 2);
        let mut seen: Vec<u64> = (0..2).map(|i| ring.cqe(head + i).user_data).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 3]);
        ring.release(tail);
        assert!(!ring.has_completions());
        assert!(!ring.overflowed());
    }

    #[test]
    fn enter_times_out_with_etime() {
        let Some(mut ring) = ring(4) else { return };
        let started = std::time::Instant::now();
        let err = ring.enter(true, 1, Some(Duration::from_millis(20))).expect_err("nothing can complete");
        assert_eq!(err.raw_os_error(), Some(libc::ETIME), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
