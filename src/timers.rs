//! The timer heap: ordered by (deadline, scheduling order), with cancelled
//! timers purged lazily from the top and by a rebuild when they dominate
//! (asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` / `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`),
//! so scheduling and cancelling millions of timers keeps memory flat.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::Instant;

use crate::callbacks::{Once, ReadyCallback, TimerBook};

/// Below this many timers, cancelled ones are only purged from the top.
const MIN_TIMERS_FOR_REBUILD: usize = 100;

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
    pub(crate) fn push<F: FnOnce(&L) + 'static>(&mut self, when: Instant, entry: Rc<Once<F>>) {
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

    /// Drops cancelled timers: all of them if they are over half the heap,
    /// otherwise those at the top (which would delay the next deadline).
    pub(crate) fn purge_cancelled(&mut self) {
        let cancelled = self.book.cancelled_in_heap.get();
        if self.heap.len() > MIN_TIMERS_FOR_REBUILD && cancelled * 2 > self.heap.len() {
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
