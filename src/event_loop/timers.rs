//! The timer heap: ordered by (deadline, scheduling order), with cancelled
//! timers purged lazily from the top and by a rebuild when they dominate
//! (asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` / `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`),
//! so scheduling and cancelling millions of timers keeps memory flat.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::panic::Location;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::event_loop::ready::{new_rc, Once, OnceKind, ReadyCallback};

/// Below this many timers, cancelled ones are only purged from the top.
const MIN_TIMERS_FOR_REBUILD: usize = 100;

/// Scheduling itself purges only past this many timers. Below it the heap
/// behaves exactly as asyncio's (purged by `run_once` alone, which asyncio's
/// own tests count on); above it, a program that schedules and cancels
/// millions of timers before the loop runs an iteration stays bounded too.
const MIN_TIMERS_FOR_PURGE_ON_SCHEDULE: usize = 1 << 16;

/// `pop_due` switches to bulk once it has popped this many timers one by
/// one, and at least `1 / BULK_SHARE` of those still in the heap. Then the
/// pops so far have cost about as much as the one pass of the bulk path
/// (a pop of a large heap is dozens of times a step of the pass), so the
/// switch at most doubles the cost even when few more are due.
const BULK_AFTER: usize = 64;
const BULK_SHARE: usize = 32;

/// Moves the entries of `timers` to `keyed`, each with a `u64` key that
/// sorts as its order does, if such keys fit; `false` (and nothing moved)
/// if they do not.
///
/// Timers due together have nearby deadlines and sequence numbers, so
/// `(deadline - earliest) * sequences + (sequence - first)` is small. A
/// `u64` key and the entry (24 bytes) sort faster than a timer by its
/// `u128` order (32 bytes): this is most of the bulk path's time.
fn compact_keys<L>(timers: &mut Vec<Timer<L>>, keyed: &mut Vec<(u64, ReadyCallback<L>)>) -> bool {
    let split = |order: u128| ((order >> 64) as u64, order as u64);
    let (mut first, mut last) = ((u64::MAX, u64::MAX), (0, 0));
    for (nanos, sequence) in timers.iter().map(|timer| split(timer.order)) {
        first = (first.0.min(nanos), first.1.min(sequence));
        last = (last.0.max(nanos), last.1.max(sequence));
    }
    let Some(sequences) = last.1.checked_sub(first.1).and_then(|d| d.checked_add(1)) else { return false };
    let fits = (last.0 - first.0).checked_add(1).and_then(|span| span.checked_mul(sequences)).is_some();
    if !fits {
        return false;
    }
    keyed.extend(timers.drain(..).map(|timer| {
        let (nanos, sequence) = split(timer.order);
        ((nanos - first.0) * sequences + (sequence - first.1), timer.entry)
    }));
    true
}

/// Counts shared by a loop's timer heap and its timers' entries, so a
/// timer cancelled while it sits in the heap is counted at once, without a
/// search (asyncio's `_timer_cancelled_count`).
#[derive(Debug, Default)]
pub(crate) struct TimerBook {
    /// Cancelled timers still in the heap.
    pub(crate) cancelled_in_heap: Cell<usize>,
    /// Every timer cancelled before it ran.
    pub(crate) cancelled_total: Cell<u64>,
    /// Timers whose callback ran.
    pub(crate) fired: Cell<u64>,
}

impl TimerBook {
    /// One cancelled timer fewer in the heap (it left it).
    fn one_cancelled_left(&self) {
        self.cancelled_in_heap.set(self.cancelled_in_heap.get().saturating_sub(1));
    }
}

/// What a timer's entry carries besides its closure: the shared book, and
/// whether this timer still counts as in the heap. The heap hands a due
/// timer to the ready queue without looking at it (a look is a cache miss
/// per timer when many are due), so a due timer leaves the books when it
/// runs, or is skipped as cancelled, in the same iteration; one the heap
/// drops (purged, or the loop closing) leaves them then.
pub(crate) struct TimerMark {
    book: Rc<TimerBook>,
    in_heap: Cell<bool>,
}

impl TimerMark {
    pub(crate) fn new(book: Rc<TimerBook>) -> Self {
        TimerMark { book, in_heap: Cell::new(true) }
    }
}

impl OnceKind for TimerMark {
    fn cancelled(&self, pending: bool) {
        if pending {
            self.book.cancelled_total.set(self.book.cancelled_total.get() + 1);
        }
        if self.in_heap.get() {
            self.book.cancelled_in_heap.set(self.book.cancelled_in_heap.get() + 1);
        }
    }

    fn left_heap(&self) {
        self.in_heap.set(false);
    }

    #[inline]
    fn run_called(&self, ran: bool) {
        if ran {
            self.book.fired.set(self.book.fired.get() + 1);
        }
        // Cancelled after it became due, it was counted in the heap then.
        if self.in_heap.replace(false) && !ran {
            self.book.one_cancelled_left();
        }
    }
}

/// One scheduled timer. `entry` is the same allocation its handle shares.
struct Timer<L> {
    /// Its place in the order: see [`Clock::order`].
    order: u128,
    entry: ReadyCallback<L>,
}

impl<L> PartialEq for Timer<L> {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}
impl<L> Eq for Timer<L> {}
impl<L> PartialOrd for Timer<L> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<L> Ord for Timer<L> {
    /// Reversed, so std's max-heap pops the earliest deadline, and among
    /// equal deadlines the first scheduled.
    fn cmp(&self, other: &Self) -> Ordering {
        other.order.cmp(&self.order)
    }
}

/// Deadlines as plain numbers: nanoseconds from an epoch (the heap's
/// creation), offset by 2^63 so that instants before it keep their order.
/// A deadline and a sequence number make one `u128` to compare, and a timer
/// of 32 bytes rather than 40 with an `Instant`: the heap and the bulk sort
/// move and compare less.
///
/// Deadlines over 292 years from the epoch all become the largest number:
/// such timers stay in scheduling order among themselves, and are never due
/// before then (the wait computed from them is shorter than theirs, never longer).
#[derive(Debug, Clone, Copy)]
struct Clock {
    epoch: Instant,
}

const MIDDLE: u64 = 1 << 63;

impl Clock {
    /// `when` as nanoseconds from the epoch, offset by 2^63, saturating.
    #[inline]
    fn nanos(self, when: Instant) -> u64 {
        let clamp = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match when.checked_duration_since(self.epoch) {
            Some(after) => MIDDLE.saturating_add(clamp(after)),
            None => MIDDLE.saturating_sub(clamp(self.epoch.duration_since(when))),
        }
    }

    /// The order of a timer due at `when`, scheduled `sequence`-th.
    #[inline]
    fn order(self, when: Instant, sequence: u64) -> u128 {
        (u128::from(self.nanos(when)) << 64) | u128::from(sequence)
    }

    /// The smallest order that is not due at `now`.
    #[inline]
    fn not_due(self, now: Instant) -> u128 {
        match self.nanos(now) {
            u64::MAX => u128::MAX,
            nanos => u128::from(nanos + 1) << 64,
        }
    }

    /// The deadline of `order` (exact, unless it saturated).
    fn deadline(self, order: u128) -> Instant {
        let nanos = (order >> 64) as u64;
        let far = |offset: u64, later: bool| {
            let d = Duration::from_nanos(offset);
            let moved = if later { self.epoch.checked_add(d) } else { self.epoch.checked_sub(d) };
            moved.unwrap_or(self.epoch)
        };
        if nanos >= MIDDLE {
            far(nanos - MIDDLE, true)
        } else {
            far(MIDDLE - nanos, false)
        }
    }
}

pub(crate) struct TimerHeap<L> {
    heap: BinaryHeap<Timer<L>>,
    /// Where `pop_due_in_bulk` puts the due timers, and their sort keys;
    /// kept for their allocations.
    due: Vec<Timer<L>>,
    keyed: Vec<(u64, ReadyCallback<L>)>,
    clock: Clock,
    next_sequence: u64,
    pub(crate) book: Rc<TimerBook>,
}

impl<L> TimerHeap<L> {
    pub(crate) fn new() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            due: Vec::new(),
            keyed: Vec::new(),
            clock: Clock { epoch: Instant::now() },
            next_sequence: 0,
            book: Rc::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Schedules `callback` at `when`; returns its entry, which the timer's
    /// handle shares.
    pub(crate) fn schedule<F: FnOnce(&L) + 'static>(
        &mut self,
        when: Instant,
        callback: F,
        origin: &'static Location<'static>,
    ) -> Rc<Once<F, TimerMark>> {
        let mark = TimerMark::new(Rc::clone(&self.book));
        let entry = new_rc(move || Once::new(callback, origin, mark));
        self.push(when, Rc::clone(&entry));
        entry
    }

    /// Adds a timer whose entry was created with this heap's book.
    fn push<F: FnOnce(&L) + 'static>(&mut self, when: Instant, entry: Rc<Once<F, TimerMark>>) {
        // Purge here too, not only in run_once, once the heap is huge: a
        // program may schedule and cancel timers for a long time before the
        // loop runs an iteration.
        if self.heap.len() > MIN_TIMERS_FOR_PURGE_ON_SCHEDULE && self.cancelled_dominate() {
            self.purge_cancelled();
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.heap.push(Timer { order: self.clock.order(when, sequence), entry });
    }

    /// Forgets one timer leaving the heap, keeping the cancelled count right.
    /// Returns whether it was cancelled.
    #[inline]
    fn leave(&self, entry: &ReadyCallback<L>) -> bool {
        let cancelled = entry.left_heap();
        if cancelled {
            self.book.one_cancelled_left();
        }
        cancelled
    }

    /// Over half the (not tiny) heap is cancelled timers.
    fn cancelled_dominate(&self) -> bool {
        self.heap.len() > MIN_TIMERS_FOR_REBUILD && self.book.cancelled_in_heap.get() * 2 > self.heap.len()
    }

    /// Drops cancelled timers: all of them if they are over half the heap,
    /// otherwise those at the top (which would delay the next deadline).
    /// Free when none is cancelled: `run_once` calls it every iteration.
    #[inline]
    pub(crate) fn purge_cancelled(&mut self) {
        if self.book.cancelled_in_heap.get() > 0 {
            self.purge_some();
        }
    }

    #[inline(never)]
    fn purge_some(&mut self) {
        if self.cancelled_dominate() {
            let mut timers = std::mem::take(&mut self.heap).into_vec();
            let before = timers.len();
            timers.retain(|timer| !timer.entry.cancelled() || !timer.entry.left_heap());
            // Not zero: cancelled due timers in the ready queue still count.
            let book = &self.book;
            book.cancelled_in_heap.set(book.cancelled_in_heap.get().saturating_sub(before - timers.len()));
            self.heap = BinaryHeap::from(timers);
            return;
        }
        while self.heap.peek().is_some_and(|top| top.entry.cancelled()) {
            if let Some(timer) = self.heap.pop() {
                self.leave(&timer.entry);
            }
        }
    }

    /// The earliest deadline, if any timer is scheduled.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|timer| self.clock.deadline(timer.order))
    }

    /// Moves every timer due at `now` (deadline ≤ now: never early) to
    /// `ready`, in (deadline, scheduling) order, without looking at the
    /// entries: one cancelled since the last purge is skipped when run,
    /// and each leaves the books then (see `TimerMark`).
    ///
    /// One by one off the heap as long as few are due; once a good share
    /// of the heap has come off that way and more are due, the rest go in
    /// bulk (see [`pop_due_in_bulk`](Self::pop_due_in_bulk)).
    pub(crate) fn pop_due(&mut self, now: Instant, mut ready: impl FnMut(ReadyCallback<L>)) {
        let not_due = self.clock.not_due(now);
        let mut popped = 0;
        while self.heap.peek().is_some_and(|top| top.order < not_due) {
            if popped >= BULK_AFTER && popped * BULK_SHARE >= self.heap.len() {
                return self.pop_due_in_bulk(not_due, ready);
            }
            let Some(timer) = self.heap.pop() else { break };
            popped += 1;
            ready(timer.entry);
        }
    }

    /// Takes the due timers out in one pass over the heap's array, sorts
    /// them, and rebuilds the heap from the rest: O(n + k log k) with
    /// sequential memory access, where k pops would cost O(k log n), each
    /// of them a walk down the heap that misses the cache once the heap
    /// is large.
    #[cold]
    #[inline(never)]
    fn pop_due_in_bulk(&mut self, not_due: u128, mut ready: impl FnMut(ReadyCallback<L>)) {
        let mut pending = std::mem::take(&mut self.heap).into_vec();
        let mut due = std::mem::take(&mut self.due);
        let mut i = 0;
        while i < pending.len() {
            if pending[i].order < not_due {
                due.push(pending.swap_remove(i));
            } else {
                i += 1;
            }
        }
        self.heap = BinaryHeap::from(pending);
        let mut keyed = std::mem::take(&mut self.keyed);
        if compact_keys(&mut due, &mut keyed) {
            keyed.sort_unstable_by_key(|&(key, _)| key);
            for (_, entry) in keyed.drain(..) {
                ready(entry);
            }
        } else {
            due.sort_unstable_by_key(|timer| timer.order);
            for timer in due.drain(..) {
                ready(timer.entry);
            }
        }
        self.due = due;
        self.keyed = keyed;
    }

    /// Empties the heap, handing back its entries so the caller can drop
    /// them outside any borrow of the heap.
    pub(crate) fn take_all(&mut self) -> Vec<ReadyCallback<L>> {
        let timers = std::mem::take(&mut self.heap).into_vec();
        timers
            .into_iter()
            .map(|timer| {
                self.leave(&timer.entry);
                timer.entry
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::events::Cancel;
    use std::panic::Location;
    use std::time::Duration;

    type Heap = TimerHeap<()>;
    type Entry = Rc<Once<fn(&()), TimerMark>>;

    fn schedule(heap: &mut Heap, when: Instant) -> Entry {
        let mark = TimerMark::new(Rc::clone(&heap.book));
        let entry = Rc::new(Once::new((|_| {}) as fn(&()), Location::caller(), mark));
        heap.push(when, Rc::clone(&entry));
        entry
    }

    #[test]
    fn scheduling_and_cancelling_without_running_stays_bounded() {
        let mut heap = Heap::new();
        let when = Instant::now() + Duration::from_secs(3600);
        for _ in 0..1_000_000 {
            schedule(&mut heap, when).cancel();
        }
        let bound = 2 * MIN_TIMERS_FOR_PURGE_ON_SCHEDULE + 2;
        assert!(heap.len() <= bound, "heap grew to {}", heap.len());
        assert_eq!(heap.book.cancelled_total.get(), 1_000_000);
    }

    #[test]
    fn small_heaps_are_purged_only_by_run_once_as_in_asyncio() {
        let mut heap = Heap::new();
        let when = Instant::now() + Duration::from_secs(3600);
        for _ in 0..150 {
            schedule(&mut heap, when).cancel();
        }
        assert_eq!(heap.len(), 150);
        assert_eq!(heap.book.cancelled_in_heap.get(), 150);
        heap.purge_cancelled();
        assert_eq!(heap.len(), 0);
    }

    #[test]
    fn due_timers_leave_in_deadline_then_scheduling_order() {
        let mut heap = Heap::new();
        let now = Instant::now();
        let late = schedule(&mut heap, now + Duration::from_millis(2));
        let first = schedule(&mut heap, now);
        let second = schedule(&mut heap, now);
        let future = schedule(&mut heap, now + Duration::from_secs(60));
        let mut order = Vec::new();
        heap.pop_due(now + Duration::from_millis(5), |entry| order.push(Rc::as_ptr(&entry) as *const ()));
        let expected: Vec<*const ()> =
            [&first, &second, &late].iter().map(|e| Rc::as_ptr(e) as *const ()).collect();
        assert_eq!(order, expected);
        assert_eq!(heap.earliest(), Some(now + Duration::from_secs(60)));
        future.cancel();
        heap.purge_cancelled();
        assert_eq!(heap.len(), 0);
        assert_eq!(heap.book.cancelled_in_heap.get(), 0);
    }

    /// Schedules timers at `offsets` (nanoseconds from `base`, repeats
    /// allowed), pops those due at `base + due`, and checks that they came
    /// out in (deadline, scheduling) order and that the rest stayed.
    fn check_order(base: Instant, offsets: &[i64], due: i64) {
        let at = |offset: i64| {
            let d = Duration::from_nanos(offset.unsigned_abs());
            if offset >= 0 {
                base + d
            } else {
                base - d
            }
        };
        let mut heap = Heap::new();
        let entries: Vec<Entry> = offsets.iter().map(|&offset| schedule(&mut heap, at(offset))).collect();
        let mut expected: Vec<usize> = (0..offsets.len()).filter(|&i| offsets[i] <= due).collect();
        expected.sort_by_key(|&i| (offsets[i], i));
        let position = |entry: &ReadyCallback<()>| {
            entries.iter().position(|e| Rc::as_ptr(e) as *const () == Rc::as_ptr(entry) as *const ())
        };
        let mut popped = Vec::new();
        heap.pop_due(at(due), |entry| popped.push(position(&entry).unwrap()));
        assert_eq!(popped, expected);
        assert_eq!(heap.len(), offsets.len() - expected.len());
        let next = offsets.iter().filter(|&&offset| offset > due).min().map(|&offset| at(offset));
        assert_eq!(heap.earliest(), next);
    }

    /// Deterministic pseudo-random numbers for the tests.
    fn lcg(state: &mut u64) -> u64 {
        *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    #[test]
    fn many_due_timers_leave_in_order_through_the_bulk_path() {
        let base = Instant::now();
        let mut state = 1;
        // Spread over 2 ms, with repeated deadlines; three quarters due.
        let offsets: Vec<i64> = (0..20_000).map(|_| (lcg(&mut state) % 2_000_000 / 7 * 7) as i64).collect();
        check_order(base, &offsets, 1_500_000);
        // All due, every deadline the same: scheduling order alone.
        check_order(base, &[5; 3000], 5);
    }

    #[test]
    fn bulk_order_holds_for_deadlines_too_far_apart_for_compact_keys() {
        // Deadlines ~100 years apart and 5000 timers: (span * sequences)
        // overflows a u64, so the bulk path sorts the timers themselves.
        let base = Instant::now();
        let mut state = 2;
        let year = 365 * 24 * 3600 * 1_000_000_000_i64;
        let offsets: Vec<i64> = (0..5000)
            .map(|i| if i % 2 == 0 { (lcg(&mut state) % 1000) as i64 } else { 100 * year })
            .collect();
        check_order(base, &offsets, 100 * year);
    }

    #[test]
    fn deadlines_before_the_heap_was_made_keep_their_order() {
        let base = Instant::now();
        let second = Duration::from_secs(1).as_nanos() as i64;
        if base.checked_sub(Duration::from_secs(10)).is_none() {
            return; // the clock has not run that long
        }
        check_order(base, &[-second, -3 * second, 0, -2 * second, -3 * second, second], 0);
    }

    #[test]
    fn a_due_timer_cancelled_before_it_runs_leaves_the_books_when_skipped() {
        let mut heap = Heap::new();
        let now = Instant::now();
        let entry = schedule(&mut heap, now);
        let mut ready = Vec::new();
        heap.pop_due(now, |entry| ready.push(entry));
        assert_eq!(heap.len(), 0);
        // Cancelled while in the ready queue: counted, then uncounted when skipped.
        entry.cancel();
        assert_eq!(heap.book.cancelled_in_heap.get(), 1);
        assert_eq!(ready[0].run(&()), crate::event_loop::ready::Ran::Skipped);
        assert_eq!(heap.book.cancelled_in_heap.get(), 0);
        assert_eq!(heap.book.fired.get(), 0);
        // One that runs counts as fired.
        let entry = schedule(&mut heap, now);
        heap.pop_due(now, |entry| assert_eq!(entry.run(&()), crate::event_loop::ready::Ran::UsedUp));
        entry.cancel();
        assert_eq!((heap.book.fired.get(), heap.book.cancelled_in_heap.get()), (1, 0));
    }

    #[test]
    fn the_clock_saturates_far_deadlines_and_never_makes_them_due_early() {
        let clock = Clock { epoch: Instant::now() };
        let far = clock.epoch.checked_add(Duration::from_secs(300 * 365 * 24 * 3600));
        if let Some(far) = far {
            let order = clock.order(far, 0);
            assert_eq!(order >> 64, u128::from(u64::MAX));
            assert!(clock.deadline(order) <= far);
            assert!(order >= clock.not_due(clock.epoch + Duration::from_secs(290 * 365 * 24 * 3600)));
        }
        let soon = clock.epoch + Duration::from_nanos(1234);
        assert_eq!(clock.deadline(clock.order(soon, 7)), soon);
        assert!(clock.order(soon, 7) < clock.not_due(soon));
        assert!(clock.order(soon, 7) >= clock.not_due(soon - Duration::from_nanos(1)));
    }
}
