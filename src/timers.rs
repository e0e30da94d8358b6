//! The timer heap: ordered by (deadline, scheduling order), with cancelled
//! timers purged lazily from the top and by a rebuild when they dominate
//! (asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` / `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`),
//! so scheduling and cancelling millions of timers keeps memory flat.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::Instant;

use crate::callbacks::{Once, ReadyCallback, TimerBook, TimerMark};

/// Below this many timers, cancelled ones are only purged from the top.
const MIN_TIMERS_FOR_REBUILD: usize = 100;

/// Scheduling itself purges only past this many timers. Below it the heap
/// behaves exactly as asyncio's (purged by `run_once` alone, which asyncio's
/// own tests count on); above it, a program that schedules and cancels
/// millions of timers before the loop runs an iteration stays bounded too.
const MIN_TIMERS_FOR_PURGE_ON_SCHEDULE: usize = 1 << 16;

/// One scheduled timer. `entry` is the same allocation its handle shares.
struct Timer<L> {
    when: Instant,
    sequence: u64,
    entry: ReadyCallback<L>,
}

impl<L> PartialEq for Timer<L> {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.sequence) == (other.when, other.sequence)
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
        (other.when, other.sequence).cmp(&(self.when, self.sequence))
    }
}

pub(crate) struct TimerHeap<L> {
    heap: BinaryHeap<Timer<L>>,
    next_sequence: u64,
    pub(crate) book: Rc<TimerBook>,
    pub(crate) fired: u64,
}

impl<L: 'static> TimerHeap<L> {
    pub(crate) fn new() -> Self {
        TimerHeap { heap: BinaryHeap::new(), next_sequence: 0, book: Rc::default(), fired: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Adds a timer whose entry was created with this heap's book.
    pub(crate) fn push<F: FnOnce(&L) + 'static>(&mut self, when: Instant, entry: Rc<Once<F, TimerMark>>) {
        // Purge here too, not only in run_once, once the heap is huge: a
        // program may schedule and cancel timers for a long time before the
        // loop runs an iteration.
        if self.heap.len() > MIN_TIMERS_FOR_PURGE_ON_SCHEDULE && self.cancelled_dominate() {
            self.purge_cancelled();
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.heap.push(Timer { when, sequence, entry });
    }

    /// Forgets one timer leaving the heap, keeping the cancelled count right.
    fn leave(&self, timer: &Timer<L>) {
        timer.entry.left_heap();
        if timer.entry.cancelled() {
            let book = &self.book;
            book.cancelled_in_heap.set(book.cancelled_in_heap.get().saturating_sub(1));
        }
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
            timers.retain(|timer| {
                let keep = !timer.entry.cancelled();
                if !keep {
                    timer.entry.left_heap();
                }
                keep
            });
            self.heap = BinaryHeap::from(timers);
            self.book.cancelled_in_heap.set(0);
            return;
        }
        while self.heap.peek().is_some_and(|top| top.entry.cancelled()) {
            if let Some(timer) = self.heap.pop() {
                self.leave(&timer);
            }
        }
    }

    /// The earliest deadline, if any timer is scheduled.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|timer| timer.when)
    }

    /// Moves every timer due at `now` (deadline ≤ now: never early) to `ready`.
    pub(crate) fn pop_due(&mut self, now: Instant, mut ready: impl FnMut(ReadyCallback<L>)) {
        while self.heap.peek().is_some_and(|top| top.when <= now) {
            let Some(timer) = self.heap.pop() else { break };
            self.leave(&timer);
            if !timer.entry.cancelled() {
                self.fired += 1;
                ready(timer.entry);
            }
        }
    }

    /// Empties the heap, handing back its entries so the caller can drop
    /// them outside any borrow of the heap.
    pub(crate) fn take_all(&mut self) -> Vec<ReadyCallback<L>> {
        let timers = std::mem::take(&mut self.heap).into_vec();
        timers
            .into_iter()
            .map(|timer| {
                self.leave(&timer);
                timer.entry
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Cancel;
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
}
