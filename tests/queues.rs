//! Queue, LifoQueue and PriorityQueue, checked the way CPython's
//! `test_asyncio/test_queues.py` checks asyncio's: waiting put and get,
//! the nowait errors, cancelled getters and putters that neither lose an
//! item nor keep a turn, task_done/join; on every backend.

#[macro_use]
mod common;
mod sync_common;

use std::cell::Cell;
use std::io;
use std::ops::Deref;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sync_common::{iterations, one_iteration, run, run_until, yield_now, Log, SLACK};
use tulip::{
    is_cancelled, is_queue_empty, is_queue_full, AbstractEventLoop, DynSelectorEventLoop, LifoQueue,
    PriorityQueue, Queue, Task, TaskGroup,
};

backend_tests!(
    run_on_thread:
    queue_empty,
    queue_full,
    queue_order,
    queue_maxsize,
    blocking_get,
    get_wakes_a_waiting_putter,
    blocking_get_wait,
    nonblocking_get,
    nonblocking_get_error,
    get_cancelled_race,
    get_with_waiting_putters,
    why_are_getters_waiting,
    cancelled_getters_not_held,
    blocking_put,
    blocking_put_wait,
    nonblocking_put,
    get_cancel_drop_one_pending_reader,
    get_cancel_drop_many_pending_readers,
    put_cancel_drop,
    nonblocking_put_error,
    put_with_waiting_getters_resumes_them,
    put_cancelled_race,
    why_are_putters_waiting,
    cancelled_puts_not_held,
    cancelled_put_after_its_slot_was_taken,
    put_cancelled_after_wake_passes_the_turn_on,
    lifo_order,
    priority_order,
    task_done_underflow,
    task_done_and_join_fifo,
    task_done_and_join_lifo,
    task_done_and_join_priority,
    join_empty_queue,
    debug_shows_the_state,
);

type Lp = DynSelectorEventLoop;

fn assert_cancelled<T: std::fmt::Debug>(outcome: io::Result<T>) {
    let err = outcome.expect_err("cancelled");
    assert!(is_cancelled(&err), "{err}");
}

/// The number of waiting getters and putters, from the queue's Debug.
fn waiting<T>(queue: &Queue<T>) -> (usize, usize) {
    let text = format!("{queue:?}");
    let field = |name: &str| -> usize {
        let at =
            text.find(&format!("{name}: ")).unwrap_or_else(|| panic!("{name} in {text}")) + name.len() + 2;
        text[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (field("getters"), field("putters"))
}

fn queue_empty(lp: Lp) {
    let q = Queue::new(0);
    assert!(q.empty());
    run(&lp, q.put(1));
    assert!(!q.empty());
    assert_eq!(run(&lp, q.get()), 1);
    assert!(q.empty());
}

fn queue_full(lp: Lp) {
    let q = Queue::<u8>::new(0);
    assert!(!q.full(), "no limit: never full");
    let q = Queue::new(1);
    run(&lp, q.put(1));
    assert!(q.full());
    assert_eq!(q.maxsize(), 1);
}

fn queue_order(lp: Lp) {
    let q = Queue::new(0);
    for i in [1, 3, 2] {
        run(&lp, q.put(i));
    }
    let items: Vec<i32> = (0..3).map(|_| run(&lp, q.get())).collect();
    assert_eq!(items, [1, 3, 2]);
}

fn queue_maxsize(lp: Lp) {
    // test_maxsize: the putter blocks after two items.
    let q = Queue::new(2);
    let put = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (queue, log) = (q.clone(), Rc::clone(&put));
    let putter = lp.create_task(async move {
        for i in 0..3 {
            queue.put(i).await;
            log.borrow_mut().push(i);
        }
    });
    iterations(&lp, 2);
    assert_eq!(*put.borrow(), [0, 1]);
    assert_eq!(q.get_nowait().unwrap(), 0);
    one_iteration(&lp);
    assert_eq!(*put.borrow(), [0, 1, 2]);
    assert_eq!(q.get_nowait().unwrap(), 1);
    assert_eq!(q.get_nowait().unwrap(), 2);
    assert!(putter.done());
}

fn blocking_get(lp: Lp) {
    let q = Queue::new(0);
    q.put_nowait(1).unwrap();
    assert_eq!(run(&lp, q.get()), 1);
}

fn get_wakes_a_waiting_putter(lp: Lp) {
    // test_get_with_putters
    let q = Queue::new(1);
    run(&lp, q.put(1));
    let putter = lp.create_task(q.put(2));
    one_iteration(&lp);
    assert_eq!(waiting(&q), (0, 1));
    assert_eq!(run(&lp, q.get()), 1);
    one_iteration(&lp);
    assert!(putter.done(), "the get woke the putter, which put its item");
    assert_eq!(q.get_nowait().unwrap(), 2);
}

fn blocking_get_wait(lp: Lp) {
    let q = Queue::new(0);
    let finished = Rc::new(Cell::new(false));
    let (queue, flag) = (q.clone(), Rc::clone(&finished));
    let getter = lp.create_task(async move {
        let item = queue.get().await;
        flag.set(true);
        item
    });
    one_iteration(&lp);
    assert!(!finished.get());
    let setter = q.clone();
    lp.call_later(Duration::from_millis(10), move |_| setter.put_nowait(1).unwrap());
    let start = Instant::now();
    assert_eq!(run(&lp, getter).unwrap(), 1);
    assert!(finished.get());
    assert!(start.elapsed() >= Duration::from_millis(10));
}

fn nonblocking_get(_lp: Lp) {
    let q = Queue::new(0);
    q.put_nowait(1).unwrap();
    assert_eq!(q.get_nowait().unwrap(), 1);
}

fn nonblocking_get_error(_lp: Lp) {
    let q = Queue::<u8>::new(0);
    let err = q.get_nowait().unwrap_err();
    assert!(is_queue_empty(&err) && !is_queue_full(&err));
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(err.to_string(), "queue is empty");
}

fn get_cancelled_race(lp: Lp) {
    let q = Queue::new(0);
    let t1 = lp.create_task(q.get());
    let t2 = lp.create_task(q.get());
    one_iteration(&lp);
    t1.cancel();
    one_iteration(&lp);
    assert!(t1.done());
    run(&lp, q.put("a"));
    one_iteration(&lp);
    assert_eq!(run(&lp, t2).unwrap(), "a");
    assert_cancelled(run(&lp, t1));
}

fn get_with_waiting_putters(lp: Lp) {
    let q = Queue::new(1);
    let a = lp.create_task(q.put("a"));
    let b = lp.create_task(q.put("b"));
    assert_eq!(run(&lp, q.get()), "a");
    assert_eq!(run(&lp, q.get()), "b");
    run(&lp, a).unwrap();
    run(&lp, b).unwrap();
}

fn why_are_getters_waiting(lp: Lp) {
    // A producer and a consumer over a queue of one, in a TaskGroup.
    let lp = Rc::new(lp);
    let q = Queue::new(1);
    let group = TaskGroup::new();
    let got = Rc::new(Cell::new(0));
    let outcome = run(
        &lp,
        group.run(async {
            let producer = q.clone();
            group.create_task(&lp, async move {
                for i in 0..5 {
                    producer.put(i).await;
                }
            })?;
            let (consumer, got) = (q.clone(), Rc::clone(&got));
            group.create_task(&lp, async move {
                for _ in 0..5 {
                    got.set(got.get() + consumer.get().await);
                }
            })?;
            Ok::<_, io::Error>(())
        }),
    );
    outcome.unwrap().unwrap();
    assert_eq!(got.get(), 10);
}

fn cancelled_getters_not_held(lp: Lp) {
    let q = Queue::<u8>::new(5);
    let err = run(&lp, tulip::wait_for(&lp, q.get(), Duration::from_millis(20))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(waiting(&q), (0, 0));
}

fn blocking_put(lp: Lp) {
    let q = Queue::new(0);
    run(&lp, q.put(1));
    assert_eq!(run(&lp, q.get()), 1);
}

fn blocking_put_wait(lp: Lp) {
    let q = Queue::new(1);
    let finished = Rc::new(Cell::new(false));
    let getter = q.clone();
    lp.call_later(Duration::from_millis(10), move |_| {
        getter.get_nowait().unwrap();
    });
    let (queue, flag) = (q.clone(), Rc::clone(&finished));
    let putter = lp.create_task(async move {
        queue.put(1).await;
        queue.put(2).await;
        flag.set(true);
    });
    one_iteration(&lp);
    assert!(!finished.get());
    let start = Instant::now();
    run(&lp, putter).unwrap();
    assert!(finished.get());
    assert!(start.elapsed() >= Duration::from_millis(5), "waited for the get");
}

fn nonblocking_put(_lp: Lp) {
    let q = Queue::new(0);
    q.put_nowait(1).unwrap();
    assert_eq!(q.get_nowait().unwrap(), 1);
}

fn get_cancel_drop_one_pending_reader(lp: Lp) {
    // A getter woken for an item and cancelled before it takes it does not
    // lose the item: the next get has it.
    let q = Queue::new(0);
    let reader = lp.create_task(q.get());
    one_iteration(&lp);
    q.put_nowait(1).unwrap();
    q.put_nowait(2).unwrap();
    reader.cancel();
    let result = match run(&lp, reader) {
        Ok(item) => item,
        Err(err) => {
            assert!(is_cancelled(&err));
            run(&lp, lp.create_task(q.get())).unwrap()
        }
    };
    assert_eq!(result, 1, "if we get 2, 1 got dropped");
}

fn get_cancel_drop_many_pending_readers(lp: Lp) {
    // Three getters; two items; the first getter is cancelled: the other
    // two get both items (the woken, cancelled one passes its turn on).
    let q = Queue::new(0);
    let readers: Vec<Task<u32>> = (0..3).map(|_| lp.create_task(q.get())).collect();
    one_iteration(&lp);
    q.put_nowait(1).unwrap();
    q.put_nowait(2).unwrap();
    readers[0].cancel();
    run_until(&lp, "the other readers", || readers[1].done() && readers[2].done());
    let mut got = [run(&lp, readers[1].clone()).unwrap(), run(&lp, readers[2].clone()).unwrap()];
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
    assert_cancelled(run(&lp, readers[0].clone()));
}

fn put_cancel_drop(lp: Lp) {
    let q = Queue::new(1);
    q.put_nowait(1).unwrap();
    let writer = lp.create_task(q.put(2));
    one_iteration(&lp);
    assert_eq!(q.get_nowait().unwrap(), 1);
    writer.cancel();
    if run(&lp, writer).is_err() {
        // Cancelled before it put: try again.
        run(&lp, lp.create_task(q.put(2))).unwrap();
    }
    assert_eq!(q.get_nowait().unwrap(), 2);
    assert_eq!(q.qsize(), 0);
}

fn nonblocking_put_error(_lp: Lp) {
    let q = Queue::new(1);
    q.put_nowait(1).unwrap();
    let err = q.put_nowait(2).unwrap_err();
    assert!(is_queue_full(&err) && !is_queue_empty(&err));
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(err.to_string(), "queue is full");
    assert_eq!(q.qsize(), 1);
}

fn put_with_waiting_getters_resumes_them(lp: Lp) {
    // test_put_cancelled and test_put_with_waiting_getters
    let q = Queue::new(0);
    let getter = lp.create_task(q.get());
    one_iteration(&lp);
    run(&lp, q.put("a"));
    assert_eq!(run(&lp, getter).unwrap(), "a");
}

fn put_cancelled_race(lp: Lp) {
    let q = Queue::new(1);
    let put_a = lp.create_task(q.put("a"));
    let put_b = lp.create_task(q.put("b"));
    let put_c = lp.create_task(q.put("X"));
    one_iteration(&lp);
    assert!(put_a.done() && !put_b.done());
    put_c.cancel();
    one_iteration(&lp);
    assert!(put_c.done());
    assert_eq!(q.get_nowait().unwrap(), "a");
    one_iteration(&lp);
    assert_eq!(q.get_nowait().unwrap(), "b");
    run(&lp, put_b).unwrap();
    assert!(q.empty(), "the cancelled put never put its X");
}

fn why_are_putters_waiting(lp: Lp) {
    let lp = Rc::new(lp);
    let q = Queue::new(2);
    let group = TaskGroup::new();
    run(
        &lp,
        group.run(async {
            let getter = q.clone();
            group.create_task(&lp, async move {
                yield_now().await;
                for _ in 0..getter.qsize() {
                    getter.get_nowait()?;
                }
                Ok::<_, io::Error>(())
            })?;
            for i in 0..4 {
                group.create_task(&lp, q.put(i))?;
            }
            Ok::<_, io::Error>(())
        }),
    )
    .unwrap()
    .unwrap();
    assert_eq!(q.qsize(), 2, "the last two waited for room, then put");
}

fn cancelled_puts_not_held(lp: Lp) {
    let q = Queue::new(1);
    q.put_nowait(1).unwrap();
    let put = lp.create_task(q.put(1));
    one_iteration(&lp);
    assert_eq!(waiting(&q), (0, 1));
    put.cancel();
    assert_cancelled(run(&lp, put));
    assert_eq!(waiting(&q), (0, 0));
}

fn cancelled_put_after_its_slot_was_taken(lp: Lp) {
    // test_cancelled_put_silence_value_error_exception: the get woke the
    // putter, which is cancelled before it runs: cancelled, quietly, and
    // no item of it in the queue.
    let q = Queue::new(1);
    q.put_nowait(1).unwrap();
    let put = lp.create_task(q.put(2));
    one_iteration(&lp);
    q.get_nowait().unwrap();
    put.cancel();
    assert_cancelled(run(&lp, put));
    assert!(q.empty());
    assert_eq!(waiting(&q), (0, 0));
}

fn put_cancelled_after_wake_passes_the_turn_on(lp: Lp) {
    // Two slots free up and wake the first two putters; the first is
    // cancelled before it runs: the third putter gets its slot.
    let q = Queue::new(2);
    q.put_nowait(0).unwrap();
    q.put_nowait(0).unwrap();
    let putters: Vec<Task<()>> = (1..=3).map(|i| lp.create_task(q.put(i))).collect();
    one_iteration(&lp);
    assert_eq!(waiting(&q), (0, 3));
    q.get_nowait().unwrap();
    q.get_nowait().unwrap();
    putters[0].cancel();
    run_until(&lp, "the second and third putters", || putters[1].done() && putters[2].done());
    assert_eq!([q.get_nowait().unwrap(), q.get_nowait().unwrap()], [2, 3]);
    assert!(putters[0].cancelled());
    assert_eq!(waiting(&q), (0, 0));
}

fn lifo_order(lp: Lp) {
    let q = LifoQueue::new(0);
    for i in [1, 3, 2] {
        run(&lp, q.put(i));
    }
    let items: Vec<i32> = (0..3).map(|_| run(&lp, q.get())).collect();
    assert_eq!(items, [2, 3, 1]);
}

fn priority_order(lp: Lp) {
    let q = PriorityQueue::new(0);
    for i in [1, 3, 2] {
        run(&lp, q.put(i));
    }
    let items: Vec<i32> = (0..3).map(|_| run(&lp, q.get())).collect();
    assert_eq!(items, [1, 2, 3]);
    // Bounded, too.
    let q = PriorityQueue::new(1);
    q.put_nowait((5, "five")).unwrap();
    assert!(q.full());
    assert!(is_queue_full(&q.put_nowait((1, "one")).unwrap_err()));
}

fn task_done_underflow(_lp: Lp) {
    for q in [Queue::<u8>::new(0), LifoQueue::new(0).deref().clone(), PriorityQueue::new(0).deref().clone()] {
        let err = q.task_done().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), "task_done() called too many times");
    }
}

/// test_task_done: two workers take 100 items and mark each done; join
/// returns once all are processed.
fn task_done_and_join(lp: Lp, q: Queue<u64>) {
    let lp = Rc::new(lp);
    for i in 0..100 {
        q.put_nowait(i).unwrap();
    }
    let total = Rc::new(Cell::new(0));
    let running = Rc::new(Cell::new(true));
    let group = TaskGroup::new();
    run(
        &lp,
        group.run(async {
            for _ in 0..2 {
                let (q, total, running) = (q.clone(), Rc::clone(&total), Rc::clone(&running));
                group.create_task(&lp, async move {
                    while running.get() {
                        let item = q.get().await;
                        total.set(total.get() + item);
                        q.task_done()?;
                    }
                    Ok::<_, io::Error>(())
                })?;
            }
            q.join().await;
            assert_eq!(total.get(), (0..100).sum::<u64>());
            assert_eq!(q.unfinished_tasks(), 0);
            // Let the workers end.
            running.set(false);
            q.put_nowait(0)?;
            q.put_nowait(0)?;
            Ok::<_, io::Error>(())
        }),
    )
    .unwrap()
    .unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
}

fn task_done_and_join_fifo(lp: Lp) {
    task_done_and_join(lp, Queue::new(0));
}

fn task_done_and_join_lifo(lp: Lp) {
    task_done_and_join(lp, LifoQueue::new(0).deref().clone());
}

fn task_done_and_join_priority(lp: Lp) {
    task_done_and_join(lp, PriorityQueue::new(0).deref().clone());
}

fn join_empty_queue(lp: Lp) {
    for q in [Queue::<u8>::new(0), LifoQueue::new(0).deref().clone(), PriorityQueue::new(0).deref().clone()] {
        let start = Instant::now();
        run(&lp, q.join());
        run(&lp, q.join());
        assert!(start.elapsed() < SLACK);
    }
    // join waits for the last task_done, not for the last get.
    let q = Queue::new(0);
    q.put_nowait(1).unwrap();
    let joiner = lp.create_task(q.join());
    assert_eq!(run(&lp, q.get()), 1);
    iterations(&lp, 2);
    assert!(!joiner.done(), "taken but not processed");
    q.task_done().unwrap();
    run(&lp, joiner).unwrap();
}

fn debug_shows_the_state(lp: Lp) {
    let q = Queue::new(3);
    q.put_nowait(1).unwrap();
    let log = Log::default();
    log.push(format!("{q:?}"));
    let getter = lp.create_task(Queue::<u8>::new(0).get());
    one_iteration(&lp);
    getter.cancel();
    assert_eq!(
        log.get()[0],
        "Queue { kind: \"fifo\", maxsize: 3, qsize: 1, getters: 0, putters: 0, unfinished: 1 }"
    );
    assert!(format!("{:?}", LifoQueue::<u8>::new(0)).starts_with("LifoQueue(Queue { kind: \"lifo\""));
    assert!(format!("{:?}", PriorityQueue::<u8>::new(0)).contains("\"priority\""));
    assert_cancelled(run(&lp, getter));
}
