//! Producers and consumers over a bounded `Queue`, in a `TaskGroup`, with a
//! `Semaphore` and a `Lock`: asyncio's everyday tools working together.
//!
//! ```text
//! cargo run --example producer_consumer [-- --backend select|poll|epoll|kqueue]
//! ```
//!
//! Three producers put five jobs each into a queue that holds at most four,
//! so they wait whenever it is full. Three consumers take jobs and "store"
//! each one; a `Semaphore` lets at most two store at once, and a `Lock`
//! keeps each two-part ledger entry whole although the entry awaits in the
//! middle. Once the producers are done and `join` says every job was
//! processed, the consumers are cancelled (a cancelled child is no failure
//! of the group). It finishes on its own in a few tens of milliseconds.

mod common;

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulip::selectors::Backend;
use tulip::{DynSelectorEventLoop, Lock, Queue, Semaphore, TaskGroup};

const PRODUCERS: u64 = 3;
const JOBS_EACH: u64 = 5;
const CONSUMERS: u64 = 3;
const QUEUE_SIZE: usize = 4;
const STORE_SLOTS: usize = 2;

/// What the tasks share.
struct Shop {
    event_loop: Rc<DynSelectorEventLoop>,
    jobs: Queue<(u64, u64)>,
    store_slots: Semaphore,
    ledger_lock: Lock,
    ledger: RefCell<Vec<String>>,
    storing: Cell<usize>,
    most_storing: Cell<usize>,
    most_queued: Cell<usize>,
    start: Instant,
}

impl Shop {
    fn say(&self, what: &str) {
        println!("{:>4} ms  {what}", self.start.elapsed().as_millis());
    }

    async fn sleep_ms(&self, ms: u64) {
        tulip::sleep(&self.event_loop, Duration::from_millis(ms)).await;
    }
}

async fn producer(shop: Rc<Shop>, id: u64) -> io::Result<()> {
    for n in 1..=JOBS_EACH {
        shop.sleep_ms(1 + (id + n) % 3).await;
        shop.jobs.put((id, n)).await; // waits while the queue is full
        shop.most_queued.set(shop.most_queued.get().max(shop.jobs.qsize()));
        shop.say(&format!("producer {id} put job {id}.{n} ({} queued)", shop.jobs.qsize()));
    }
    Ok(())
}

async fn consumer(shop: Rc<Shop>, id: u64) -> io::Result<()> {
    loop {
        let (producer, n) = shop.jobs.get().await;
        {
            let _slot = shop.store_slots.acquire().await;
            shop.storing.set(shop.storing.get() + 1);
            shop.most_storing.set(shop.most_storing.get().max(shop.storing.get()));
            shop.sleep_ms(2).await;
            shop.storing.set(shop.storing.get() - 1);
        }
        {
            // Two parts with an await between: the lock keeps other
            // consumers from writing in the middle.
            let _ledger = shop.ledger_lock.acquire().await;
            let entry = format!("job {producer}.{n}");
            shop.sleep_ms(1).await;
            shop.ledger.borrow_mut().push(format!("{entry} by consumer {id}"));
        }
        shop.say(&format!("consumer {id} processed job {producer}.{n}"));
        shop.jobs.task_done()?;
    }
}

/// Shown by `--help`, and after a mistake on the command line.
const USAGE: &str = "usage: producer_consumer [--backend NAME]\n\n\
Producers and consumers over a bounded Queue, in a TaskGroup, with a Semaphore\n\
and a Lock; it ends by itself.\n  \
--backend NAME    select, poll, epoll or kqueue (default: the best one here)\n  \
-h, --help        show this help";

fn backend_from_args() -> Backend {
    let mut backend = Backend::default();
    let mut cli = common::Cli::new("producer_consumer", USAGE);
    while let Some(arg) = cli.next() {
        match &arg {
            common::Arg::Flag(flag) if flag == "--backend" => backend = cli.backend(),
            _ => cli.unknown(&arg),
        }
    }
    backend
}

fn main() -> io::Result<()> {
    let backend = backend_from_args();
    let event_loop = Rc::new(tulip::new_event_loop(backend)?);
    let shop = Rc::new(Shop {
        event_loop: Rc::clone(&event_loop),
        jobs: Queue::new(QUEUE_SIZE),
        store_slots: Semaphore::new(STORE_SLOTS),
        ledger_lock: Lock::new(),
        ledger: RefCell::default(),
        storing: Cell::new(0),
        most_storing: Cell::new(0),
        most_queued: Cell::new(0),
        start: Instant::now(),
    });
    shop.say(&format!("{PRODUCERS} producers, {CONSUMERS} consumers, on {backend}"));

    let group = TaskGroup::new();
    event_loop.run_until_complete(group.run(async {
        let producers = (1..=PRODUCERS)
            .map(|id| group.create_task(&event_loop, producer(Rc::clone(&shop), id)))
            .collect::<io::Result<Vec<_>>>()?;
        let consumers = (1..=CONSUMERS)
            .map(|id| group.create_task(&event_loop, consumer(Rc::clone(&shop), id)))
            .collect::<io::Result<Vec<_>>>()?;
        for produced in tulip::gather(producers).await {
            produced??;
        }
        shop.jobs.join().await; // every job processed
        for consumer in &consumers {
            consumer.cancel();
        }
        Ok::<_, io::Error>(())
    }))???;

    let ledger = shop.ledger.borrow();
    shop.say(&format!(
        "done: {} jobs produced, {} processed, at most {} storing at once, at most {} queued, in {} ms",
        PRODUCERS * JOBS_EACH,
        ledger.len(),
        shop.most_storing.get(),
        shop.most_queued.get(),
        shop.start.elapsed().as_millis(),
    ));
    drop(ledger);
    tulip::AbstractEventLoop::close(&*event_loop)
}
