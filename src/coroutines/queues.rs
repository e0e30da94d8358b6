//! Queues (asyncio's `queues.py`): [`Queue`] (first in, first out),
//! [`LifoQueue`] (last in, first out) and [`PriorityQueue`] (lowest first),
//! for producer and consumer tasks of one loop thread.
//!
//! [`put`](Queue::put) waits while the queue is full, [`get`](Queue::get)
//! while it is empty; [`put_nowait`](Queue::put_nowait) and
//! [`get_nowait`](Queue::get_nowait) never wait and fail with [`QueueFull`]
//! or [`QueueEmpty`] instead. [`task_done`](Queue::task_done) and
//! [`join`](Queue::join) let a producer wait until every item put has been
//! processed.
//!
//! [`LifoQueue`] and [`PriorityQueue`] are a [`Queue`] with another order,
//! as in asyncio where they are its subclasses: they dereference to
//! `Queue<T>`, whose methods they share.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::coroutines::errors::{QueueEmpty, QueueFull};
use crate::coroutines::waiters::{WaitList, Waiter};
use crate::Event;

type HeapPush<T> = fn(&mut BinaryHeap<Reverse<T>>, T);
type HeapPop<T> = fn(&mut BinaryHeap<Reverse<T>>) -> Option<T>;

/// The items, in the order of the queue's kind (asyncio's overridable
/// `_init`, `_put` and `_get`).
enum Items<T> {
    Fifo(VecDeque<T>),
    Lifo(Vec<T>),
    /// A min-heap. Its push and pop need `T: Ord`, which only
    /// [`PriorityQueue::new`] requires: it supplies them.
    Priority {
        heap: BinaryHeap<Reverse<T>>,
        push: HeapPush<T>,
        pop: HeapPop<T>,
    },
}

impl<T> Items<T> {
    fn len(&self) -> usize {
        match self {
            Items::Fifo(items) => items.len(),
            Items::Lifo(items) => items.len(),
            Items::Priority { heap, .. } => heap.len(),
        }
    }

    fn push(&mut self, item: T) {
        match self {
            Items::Fifo(items) => items.push_back(item),
            Items::Lifo(items) => items.push(item),
            Items::Priority { heap, push, .. } => push(heap, item),
        }
    }

    fn pop(&mut self) -> Option<T> {
        match self {
            Items::Fifo(items) => items.pop_front(),
            Items::Lifo(items) => items.pop(),
            Items::Priority { heap, pop, .. } => pop(heap),
        }
    }
}

struct QueueInner<T> {
    items: RefCell<Items<T>>,
    maxsize: usize,
    getters: WaitList,
    putters: WaitList,
    unfinished: Cell<usize>,
    /// Set while no item is unfinished.
    finished: Event,
}

/// A first-in, first-out queue for tasks (asyncio's `Queue`), holding at
/// most `maxsize` items (`0`: no limit).
///
/// A cheap handle (`Clone`, an `Rc` inside): give a clone to each producer
/// and consumer task. Waiting putters and getters are served in the order
/// they came; cancelling one (dropping its future) leaves the line, and a
/// wake-up it had been given goes to the next in line.
///
/// ```
/// use tulip::{selectors::Backend, Queue};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let queue = Queue::new(2);
/// let producer = {
///     let queue = queue.clone();
///     event_loop.create_task(async move {
///         for i in 0..5 {
///             queue.put(i).await; // waits while two items wait
///         }
///     })
/// };
/// let got = event_loop.run_until_complete(async {
///     let mut got = Vec::new();
///     for _ in 0..5 {
///         got.push(queue.get().await);
///         queue.task_done()?;
///     }
///     queue.join().await;
///     Ok::<_, std::io::Error>(got)
/// })??;
/// assert_eq!(got, [0, 1, 2, 3, 4]);
/// event_loop.run_until_complete(producer)??;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Queue<T> {
    inner: Rc<QueueInner<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { inner: Rc::clone(&self.inner) }
    }
}

impl<T> Queue<T> {
    /// A FIFO queue of at most `maxsize` items; `0` means no limit.
    pub fn new(maxsize: usize) -> Queue<T> {
        Queue::with_items(maxsize, Items::Fifo(VecDeque::new()))
    }

    fn with_items(maxsize: usize, items: Items<T>) -> Queue<T> {
        let finished = Event::new();
        finished.set();
        Queue {
            inner: Rc::new(QueueInner {
                items: RefCell::new(items),
                maxsize,
                getters: WaitList::default(),
                putters: WaitList::default(),
                unfinished: Cell::new(0),
                finished,
            }),
        }
    }

    /// The most items it holds (`0`: no limit).
    pub fn maxsize(&self) -> usize {
        self.inner.maxsize
    }

    /// How many items it holds.
    pub fn qsize(&self) -> usize {
        self.inner.items.borrow().len()
    }

    /// `true` if it holds no item.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// `true` if it holds `maxsize` items (never, without a limit).
    pub fn full(&self) -> bool {
        self.inner.maxsize > 0 && self.qsize() >= self.inner.maxsize
    }

    /// Puts `item` in the queue, waiting while the queue is full. Dropping
    /// the future before it is ready drops `item` unqueued.
    pub fn put(&self, item: T) -> QueuePut<T> {
        QueuePut { queue: self.clone(), item: Some(item), waiter: None }
    }

    /// Puts `item` in the queue now, and wakes the first waiting getter.
    ///
    /// # Errors
    ///
    /// A [`QueueFull`] error (kind [`WouldBlock`](io::ErrorKind::WouldBlock))
    /// if the queue is full; `item` is dropped.
    pub fn put_nowait(&self, item: T) -> io::Result<()> {
        if self.full() {
            return Err(QueueFull.into());
        }
        self.inner.items.borrow_mut().push(item);
        self.inner.unfinished.set(self.inner.unfinished.get() + 1);
        self.inner.finished.clear();
        self.inner.getters.wake_next();
        Ok(())
    }

    /// Takes the next item, waiting while the queue is empty.
    pub fn get(&self) -> QueueGet<T> {
        QueueGet { queue: self.clone(), waiter: None }
    }

    /// Takes the next item now, and wakes the first waiting putter.
    ///
    /// # Errors
    ///
    /// A [`QueueEmpty`] error (kind [`WouldBlock`](io::ErrorKind::WouldBlock))
    /// if the queue is empty.
    pub fn get_nowait(&self) -> io::Result<T> {
        let item = self.inner.items.borrow_mut().pop().ok_or(QueueEmpty)?;
        self.inner.putters.wake_next();
        Ok(item)
    }

    /// Says that an item taken from the queue has been processed: once every
    /// item put has had its `task_done`, [`join`](Self::join) returns.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) "task_done() called too
    /// many times" if more calls were made than items put (asyncio's
    /// `ValueError`).
    pub fn task_done(&self) -> io::Result<()> {
        let unfinished = self.inner.unfinished.get();
        if unfinished == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "task_done() called too many times"));
        }
        self.inner.unfinished.set(unfinished - 1);
        if unfinished == 1 {
            self.inner.finished.set();
        }
        Ok(())
    }

    /// Waits until every item put has been taken and processed (each got
    /// its [`task_done`](Self::task_done)); ready at once if none is
    /// unfinished.
    pub fn join(&self) -> impl Future<Output = ()> + 'static {
        let finished = self.inner.finished.clone();
        async move {
            finished.wait().await;
        }
    }

    /// How many items were put and have not had their `task_done` yet.
    pub fn unfinished_tasks(&self) -> usize {
        self.inner.unfinished.get()
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &*self.inner.items.borrow() {
            Items::Fifo(_) => "fifo",
            Items::Lifo(_) => "lifo",
            Items::Priority { .. } => "priority",
        };
        f.debug_struct("Queue")
            .field("kind", &kind)
            .field("maxsize", &self.maxsize())
            .field("qsize", &self.qsize())
            .field("getters", &self.inner.getters.len())
            .field("putters", &self.inner.putters.len())
            .field("unfinished", &self.unfinished_tasks())
            .finish()
    }
}

/// The future of [`Queue::put`].
#[must_use = "a QueuePut does nothing unless awaited"]
pub struct QueuePut<T> {
    queue: Queue<T>,
    item: Option<T>,
    waiter: Option<Rc<Waiter>>,
}

// Nothing in it is pinned: the item is only moved into the queue.
impl<T> Unpin for QueuePut<T> {}

impl<T> Future for QueuePut<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.item.is_none() {
            // Polled after completion: the item is in the queue already.
            return Poll::Ready(());
        }
        let inner = &this.queue.inner;
        if let Some(waiter) = &this.waiter {
            if !waiter.woken() {
                waiter.register(cx);
                return Poll::Pending;
            }
            inner.putters.remove(waiter);
            this.waiter = None;
        }
        if this.queue.full() {
            // Not our turn yet, or someone filled the slot first: wait
            // again, at the back (as asyncio's `while self.full()`).
            this.waiter = Some(inner.putters.push(cx));
            return Poll::Pending;
        }
        if let Some(item) = this.item.take() {
            // Cannot fail: the queue is not full.
            let _ = this.queue.put_nowait(item);
        }
        Poll::Ready(())
    }
}

impl<T> Drop for QueuePut<T> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            self.queue.inner.putters.remove(&waiter);
            // Woken for a free slot we will not use: pass the turn on.
            if waiter.woken() && !self.queue.full() {
                self.queue.inner.putters.wake_next();
            }
        }
    }
}

impl<T> fmt::Debug for QueuePut<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuePut")
            .field("queued", &self.waiter.is_some())
            .field("done", &self.item.is_none())
            .finish()
    }
}

/// The future of [`Queue::get`].
#[must_use = "a QueueGet does nothing unless awaited"]
pub struct QueueGet<T> {
    queue: Queue<T>,
    waiter: Option<Rc<Waiter>>,
}

impl<T> Future for QueueGet<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        let inner = &this.queue.inner;
        if let Some(waiter) = &this.waiter {
            if !waiter.woken() {
                waiter.register(cx);
                return Poll::Pending;
            }
            inner.getters.remove(waiter);
            this.waiter = None;
        }
        match this.queue.get_nowait() {
            Ok(item) => Poll::Ready(item),
            Err(_) => {
                // Empty (again: another getter took the item first): wait,
                // at the back, as asyncio's `while self.empty()`.
                this.waiter = Some(inner.getters.push(cx));
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for QueueGet<T> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            self.queue.inner.getters.remove(&waiter);
            // Woken for an item we will not take: pass the turn on, so the
            // item is not left waiting while another getter sleeps.
            if waiter.woken() && !self.queue.empty() {
                self.queue.inner.getters.wake_next();
            }
        }
    }
}

impl<T> fmt::Debug for QueueGet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueGet").field("queued", &self.waiter.is_some()).finish()
    }
}

/// A [`Queue`] that gives the most recently put item first (asyncio's
/// `LifoQueue`); it dereferences to `Queue<T>` for every method but `new`.
///
/// ```
/// use tulip::{selectors::Backend, LifoQueue};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let stack = LifoQueue::new(0);
/// for i in [1, 3, 2] {
///     stack.put_nowait(i)?;
/// }
/// let popped = event_loop.run_until_complete(async {
///     [stack.get().await, stack.get().await, stack.get().await]
/// })?;
/// assert_eq!(popped, [2, 3, 1]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LifoQueue<T>(Queue<T>);

impl<T> LifoQueue<T> {
    /// A LIFO queue of at most `maxsize` items; `0` means no limit.
    pub fn new(maxsize: usize) -> LifoQueue<T> {
        LifoQueue(Queue::with_items(maxsize, Items::Lifo(Vec::new())))
    }
}

impl<T> Deref for LifoQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

impl<T> Clone for LifoQueue<T> {
    fn clone(&self) -> Self {
        LifoQueue(self.0.clone())
    }
}

impl<T> fmt::Debug for LifoQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LifoQueue").field(&self.0).finish()
    }
}

/// A [`Queue`] that gives its lowest item first (asyncio's
/// `PriorityQueue`, a heap): put `(priority, data)` tuples to order by
/// priority. It dereferences to `Queue<T>` for every method but `new`.
/// Items that compare equal come out in no set order, as with asyncio's
/// `heapq`.
///
/// ```
/// use tulip::{selectors::Backend, PriorityQueue};
///
/// let event_loop = tulip::new_event_loop(Backend::Poll)?;
/// let jobs = PriorityQueue::new(0);
/// jobs.put_nowait((2, "later"))?;
/// jobs.put_nowait((1, "first"))?;
/// jobs.put_nowait((3, "last"))?;
/// let first = event_loop.run_until_complete(jobs.get())?;
/// assert_eq!(first, (1, "first"));
/// assert_eq!(jobs.qsize(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PriorityQueue<T>(Queue<T>);

impl<T: Ord> PriorityQueue<T> {
    /// A priority queue of at most `maxsize` items; `0` means no limit.
    pub fn new(maxsize: usize) -> PriorityQueue<T> {
        let items = Items::Priority {
            heap: BinaryHeap::new(),
            push: |heap, item| heap.push(Reverse(item)),
            pop: |heap| heap.pop().map(|Reverse(item)| item),
        };
        PriorityQueue(Queue::with_items(maxsize, items))
    }
}

impl<T> Deref for PriorityQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

impl<T> Clone for PriorityQueue<T> {
    fn clone(&self) -> Self {
        PriorityQueue(self.0.clone())
    }
}

impl<T> fmt::Debug for PriorityQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PriorityQueue").field(&self.0).finish()
    }
}
