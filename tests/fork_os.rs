//! The loop's worker threads and child processes across `fork()`: a forked
//! child's loop, after `after_fork`, has a fresh executor (the parent's
//! threads are not in it, and the futures of the parent's jobs are
//! cancelled) and watches no child of the parent's; the parent goes on as
//! before. One test, so no other test thread runs while the process forks
//! (the executor's own workers do: that is the case under test). A child
//! reports by its exit status and never unwinds.

mod common;

use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use tulip::selectors::Backend;
use tulip::AbstractEventLoop;

use common::in_child;

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

/// The parent's pool has a worker blocked in a job when it forks.
fn the_executor_starts_afresh_in_the_child(backend: Backend) -> Result<(), String> {
    let lp = tulip::new_event_loop(backend).unwrap();
    let first = lp.run_until_complete(lp.run_in_executor(|| 1)).unwrap().unwrap();
    assert_eq!(first, 1);
    let (release, gate) = mpsc::channel::<()>();
    let parent_job = lp.run_in_executor(move || gate.recv_timeout(Duration::from_secs(10)).is_ok());
    in_child(|| {
        let early = lp.run_in_executor(|| 2);
        let refused = early.result().err().map(|err| err.to_string()).unwrap_or_default();
        check(refused.contains("after_fork"), &format!("before after_fork: {refused:?}"))?;
        lp.after_fork().map_err(|err| format!("after_fork: {err}"))?;
        check(parent_job.cancelled(), "the parent's job is cancelled in the child")?;
        check(lp.executor_workers() == 0, "the parent's workers are not the child's")?;
        let fresh = lp.run_in_executor(|| 3);
        let got = lp.run_until_complete(tulip::wait_for(&lp, fresh, Duration::from_secs(5)));
        check(matches!(got, Ok(Ok(Ok(3)))), &format!("a job in the child: {got:?}"))?;
        lp.close().map_err(|err| err.to_string())
    })?;
    release.send(()).unwrap();
    let done = lp.run_until_complete(tulip::wait_for(&lp, parent_job, Duration::from_secs(10))).unwrap();
    check(matches!(done, Ok(Ok(true))), &format!("the parent's job: {done:?}"))?;
    lp.close().map_err(|err| err.to_string())
}

/// The parent watches a child when it forks.
fn the_parents_children_are_not_the_childs(backend: Backend) -> Result<(), String> {
    let lp = tulip::new_event_loop(backend).unwrap();
    let sleeper = lp.subprocess_exec("sleep", &["0.3"], Stdio::null(), Stdio::null(), Stdio::null()).unwrap();
    in_child(|| {
        lp.after_fork().map_err(|err| format!("after_fork: {err}"))?;
        check(lp.watched_children() == 0, "the parent's child is forgotten")?;
        let own = lp
            .subprocess_exec("sh", &["-c", "exit 4"], Stdio::null(), Stdio::null(), Stdio::null())
            .map_err(|err| format!("spawn in the child: {err}"))?;
        let status = lp.run_until_complete(tulip::wait_for(&lp, own.wait(), Duration::from_secs(5)));
        let code = match status {
            Ok(Ok(Ok(status))) => status.code(),
            other => return Err(format!("the child's own child: {other:?}")),
        };
        check(code == Some(4), &format!("exit code {code:?}"))?;
        lp.close().map_err(|err| err.to_string())
    })?;
    let status =
        lp.run_until_complete(tulip::wait_for(&lp, sleeper.wait(), Duration::from_secs(10))).unwrap();
    check(matches!(&status, Ok(Ok(status)) if status.success()), &format!("the parent's child: {status:?}"))?;
    check(lp.watched_children() == 0, "reaped in the parent")?;
    lp.close().map_err(|err| err.to_string())
}

#[test]
fn worker_threads_and_children_across_fork() {
    type Case = fn(Backend) -> Result<(), String>;
    let cases: [(&str, Case); 2] = [
        ("the_executor_starts_afresh_in_the_child", the_executor_starts_afresh_in_the_child),
        ("the_parents_children_are_not_the_childs", the_parents_children_are_not_the_childs),
    ];
    for backend in Backend::available() {
        for (name, case) in cases {
            if let Err(err) = case(backend) {
                panic!("{backend}: {name}: {err}");
            }
        }
    }
}
