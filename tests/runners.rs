//! The entry point: `tulip::run` / `run_on` (asyncio's `asyncio.run`) and
//! `get_running_loop`, on every backend.

#[macro_use]
mod common;

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tulip::selectors::Backend;
use tulip::AbstractEventLoop;

backend_tests!(
    with_backend:
    returns_the_main_futures_output,
    pending_tasks_are_cancelled_before_the_loop_closes,
    what_cancelled_tasks_queue_as_they_end_runs,
    the_loop_is_closed_afterwards,
    get_running_loop_inside_and_outside,
    run_inside_run_is_refused,
    a_panic_in_main_reaches_the_caller_after_the_clean_up,
    stopping_the_loop_first_is_an_error,
    a_streams_program,
);

fn returns_the_main_futures_output(backend: Backend) {
    let got = tulip::run_on(backend, |event_loop| async move {
        tulip::sleep(&event_loop, Duration::from_millis(1)).await;
        (event_loop.backend().unwrap(), event_loop.is_running())
    })
    .unwrap();
    assert_eq!(got, (backend, true));
    // The main future may borrow what the caller owns.
    let words = String::from("ab");
    let n = tulip::run_on(backend, |_| async { words.len() }).unwrap();
    assert_eq!(n, 2);
}

/// As asyncio's `_cancel_all_tasks`: each task still pending is cancelled
/// (a `Future` it awaits is cancelled with it) and has ended before `run`
/// closes the loop; finished tasks keep their results.
fn pending_tasks_are_cancelled_before_the_loop_closes(backend: Backend) {
    let kept: Rc<RefCell<Vec<tulip::Task<()>>>> = Rc::default();
    let awaited: Rc<RefCell<Option<tulip::Future<()>>>> = Rc::default();
    let (dropped, guard) = common::drop_flag();
    let (k, a) = (Rc::clone(&kept), Rc::clone(&awaited));
    let output = tulip::run_on(backend, move |event_loop| async move {
        let never = event_loop.create_future::<()>();
        *a.borrow_mut() = Some(never.clone());
        let waiting = event_loop.create_task(async move {
            let _guard = guard;
            let _ = never.await;
        });
        let lp = Rc::clone(&event_loop);
        let sleeping =
            event_loop.create_task(async move { tulip::sleep(&lp, Duration::from_secs(3600)).await });
        let finished = event_loop.create_task(async {});
        tulip::sleep(&event_loop, Duration::from_millis(5)).await;
        assert!(finished.done() && !waiting.done() && !sleeping.done());
        assert_eq!(event_loop.pending_tasks(), 2);
        k.borrow_mut().extend([waiting, sleeping, finished]);
        "main done"
    })
    .unwrap();
    assert_eq!(output, "main done");
    assert!(dropped.get(), "the waiting task's future was dropped");
    let kept = kept.borrow();
    assert!(kept[0].cancelled() && kept[1].cancelled());
    assert!(kept[2].done() && !kept[2].cancelled());
    // Cancelled through the task (asyncio's task.cancel()), not dropped by
    // close: the future it awaited was cancelled too.
    assert!(awaited.borrow().as_ref().unwrap().cancelled());
}

/// A task whose future, dropped, queues a callback: the callback runs
/// before the loop closes (one more iteration after the cancellations).
fn what_cancelled_tasks_queue_as_they_end_runs(backend: Backend) {
    let ran = Rc::new(Cell::new(false));
    let r = Rc::clone(&ran);
    tulip::run_on(backend, move |event_loop| async move {
        let lp = Rc::clone(&event_loop);
        let on_drop = common::OnDrop(move || {
            let r = Rc::clone(&r);
            lp.call_soon(move |_| r.set(true));
        });
        event_loop.create_task(async move {
            let _on_drop = on_drop;
            std::future::pending::<()>().await;
        });
        tulip::sleep(&event_loop, Duration::from_millis(1)).await;
    })
    .unwrap();
    assert!(ran.get());
}

fn the_loop_is_closed_afterwards(backend: Backend) {
    let kept: Rc<RefCell<Option<Rc<tulip::DynSelectorEventLoop>>>> = Rc::default();
    let k = Rc::clone(&kept);
    tulip::run_on(backend, move |event_loop| async move {
        let server = event_loop.start_server("127.0.0.1:0", |_, _| async { Ok(()) }).unwrap();
        assert!(server.is_serving());
        *k.borrow_mut() = Some(event_loop);
    })
    .unwrap();
    let event_loop = kept.borrow_mut().take().unwrap();
    assert!(event_loop.is_closed());
    assert!(!event_loop.is_running());
}

fn get_running_loop_inside_and_outside(backend: Backend) {
    let err = tulip::get_running_loop().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    tulip::run_on(backend, |event_loop| async move {
        let found = tulip::get_running_loop().unwrap();
        assert!(Rc::ptr_eq(&found, &event_loop));
        // Deep inside a task, with no loop handed down.
        let task = event_loop.create_task(async {
            let lp = tulip::get_running_loop()?;
            tulip::sleep(&lp, Duration::from_millis(1)).await;
            lp.backend()
        });
        assert_eq!(task.await.unwrap().unwrap(), backend);
    })
    .unwrap();
    assert_eq!(tulip::get_running_loop().unwrap_err().kind(), io::ErrorKind::NotFound);
    // A loop run without tulip::run is not seen.
    let event_loop = tulip::new_event_loop(backend).unwrap();
    let seen = event_loop.run_until_complete(async { tulip::get_running_loop().is_ok() }).unwrap();
    assert!(!seen);
}

fn run_inside_run_is_refused(backend: Backend) {
    let inner = tulip::run_on(backend, |_| async move { tulip::run_on(backend, |_| async {}) }).unwrap();
    let err = inner.unwrap_err();
    assert!(err.to_string().contains("cannot be called from a running"), "{err}");
    // And the outer run let go: the next one works.
    tulip::run_on(backend, |_| async {}).unwrap();
}

fn a_panic_in_main_reaches_the_caller_after_the_clean_up(backend: Backend) {
    let (dropped, guard) = common::drop_flag();
    let kept: Rc<RefCell<Option<Rc<tulip::DynSelectorEventLoop>>>> = Rc::default();
    let k = Rc::clone(&kept);
    common::assert_panics_with("main failed", move || {
        let _ = tulip::run_on(backend, move |event_loop| async move {
            event_loop.create_task(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            });
            *k.borrow_mut() = Some(Rc::clone(&event_loop));
            tulip::sleep(&event_loop, Duration::from_millis(1)).await;
            panic!("main failed");
        });
    });
    assert!(dropped.get(), "the pending task was cancelled");
    assert!(kept.borrow().as_ref().unwrap().is_closed());
    assert!(tulip::get_running_loop().is_err());
}

fn stopping_the_loop_first_is_an_error(backend: Backend) {
    let err = tulip::run_on(backend, |event_loop| async move {
        event_loop.stop();
        std::future::pending::<()>().await;
    })
    .unwrap_err();
    assert!(err.to_string().contains("stopped before the future completed"), "{err}");
}

/// The asyncio program of the streams docs, whole: a server and a client
/// under `tulip::run`.
fn a_streams_program(backend: Backend) {
    let reply = tulip::run_on(backend, |event_loop| async move {
        let server = event_loop.start_server("127.0.0.1:0", |mut reader, writer| async move {
            let line = reader.readline().await?;
            writer.write(&line.to_ascii_uppercase())?;
            writer.drain().await
        })?;
        let addr = server.local_addr()?.as_inet().unwrap();
        let (mut reader, writer) = event_loop.open_connection(addr).await?;
        writer.write(b"hello\n")?;
        let reply = reader.readline().await?;
        server.close();
        io::Result::Ok(reply)
    })
    .unwrap()
    .unwrap();
    assert_eq!(reply, b"HELLO\n");
}
