//! The runtime's gates under write coalescing: calls queued together commit once, no answer
//! or frame leaves before its commit, a failed commit answers every held call with
//! `Unavailable` and the object comes back as storage has it, and a panicking call fails alone.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_core::objects::{DurableObject, ObjectEnv};
use auth_core::ports::{SqlValue, StorageError};
use rusqlite::Connection;

use super::{lock, object_file, start_for_test, Accepted, BatchLimits, Runtime};
use crate::HostClock;

/// A counter kept both in memory and as rows of its storage: the two agree unless a failed
/// call or batch left memory ahead of storage.
struct Counter {
    count: i64,
}

fn stored_rows(env: &ObjectEnv) -> i64 {
    let rows = env
        .storage
        .sql()
        .query("SELECT COUNT(*) FROM t", &[])
        .expect("count");
    match rows.first().and_then(|r| r.first()) {
        Some(SqlValue::Integer(n)) => *n,
        other => panic!("odd count {other:?}"),
    }
}

impl DurableObject for Counter {
    const CLASS: &'static str = "GateCounter";

    fn load(env: &ObjectEnv) -> Result<Self, StorageError> {
        env.storage
            .sql()
            .execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)", &[])?;
        Ok(Counter {
            count: stored_rows(env),
        })
    }
}

impl Counter {
    /// One write, one step in memory: answers the new count.
    fn bump(&mut self, env: &ObjectEnv) -> i64 {
        env.storage
            .sql()
            .execute("INSERT INTO t (v) VALUES (1)", &[])
            .expect("insert");
        self.count += 1;
        self.count
    }
}

const NAME: &str = "counter";
type Answer<R> = tokio::task::JoinHandle<Result<(R, Option<Accepted>), StorageError>>;

/// A runtime whose batches close only when the queue is empty (no time limit in the way of a
/// test that holds a call), warmed with one committed call.
async fn runtime(dir: &Path) -> Arc<Runtime<Counter>> {
    let rt: Arc<Runtime<Counter>> = start_for_test(dir, Arc::new(HostClock::default()));
    rt.set_batch_limits(BatchLimits {
        max_calls: 64,
        max_wait: Duration::from_secs(60),
    });
    rt.call(NAME, false, |c: &mut Counter, env| c.bump(env))
        .await
        .unwrap();
    rt
}

fn spawn_call<R: Send + 'static>(
    rt: &Arc<Runtime<Counter>>,
    work: impl FnOnce(&mut Counter, &ObjectEnv) -> R + Send + 'static,
) -> Answer<R> {
    let rt = Arc::clone(rt);
    tokio::spawn(async move { rt.call(NAME, false, work).await })
}

/// Starts a call that holds the object's runner until the answered sender is used, and
/// waits until it runs: calls made meanwhile queue up behind it, into one batch.
async fn hold_runner(rt: &Arc<Runtime<Counter>>) -> (Answer<i64>, std_mpsc::Sender<()>) {
    let (started_tx, started_rx) = std_mpsc::channel();
    let (release_tx, release_rx) = std_mpsc::channel::<()>();
    let held = spawn_call(rt, move |c, env| {
        started_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        c.bump(env)
    });
    while started_rx.try_recv().is_err() {
        tokio::task::yield_now().await;
    }
    (held, release_tx)
}

async fn wait_queued(rt: &Arc<Runtime<Counter>>, n: usize) {
    let slot = rt.slot(NAME);
    while lock(&slot.queue).jobs.len() < n {
        tokio::task::yield_now().await;
    }
}

/// The rows committed in the object's file, as another connection sees them.
fn committed_rows(rt: &Runtime<Counter>) -> i64 {
    let conn = Connection::open(object_file(&rt.dir, NAME)).unwrap();
    conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

/// N calls queued together run in one transaction: one commit, every answer in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_together_commit_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path()).await;
    let before = rt.commits();
    let (first, release) = hold_runner(&rt).await;
    let rest: Vec<_> = (0..31)
        .map(|_| spawn_call(&rt, |c: &mut Counter, env| c.bump(env)))
        .collect();
    wait_queued(&rt, 31).await;
    release.send(()).unwrap();
    let mut counts = vec![first.await.unwrap().unwrap().0];
    for r in rest {
        counts.push(r.await.unwrap().unwrap().0);
    }
    counts.sort_unstable();
    assert_eq!(counts, (2..=33).collect::<Vec<i64>>());
    assert_eq!(rt.commits() - before, 1, "32 calls, one commit");
    assert_eq!(committed_rows(&rt), 33);
}

/// While a batch's commit is held, none of its callers has an answer, no frame has reached
/// its socket and another connection sees none of its writes; all arrive once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_or_frame_leaves_before_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path()).await;
    let (_, Some(mut socket)) = rt
        .call(NAME, true, |_: &mut Counter, env| env.sockets.accept("a"))
        .await
        .unwrap()
    else {
        panic!("no socket accepted");
    };
    let (entered_tx, entered_rx) = std_mpsc::channel();
    let (release_tx, release_rx) = std_mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let hold = AtomicBool::new(true);
    *lock(&rt.commit_hook) = Some(Arc::new(move || {
        if hold.swap(false, Ordering::SeqCst) {
            entered_tx.send(()).unwrap();
            lock(&release_rx).recv().unwrap();
        }
        false
    }));
    let id = socket.socket;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            spawn_call(&rt, move |c: &mut Counter, env| {
                assert!(env.sockets.send(id, &format!("frame {i}")));
                c.bump(env)
            })
        })
        .collect();
    while entered_rx.try_recv().is_err() {
        tokio::task::yield_now().await;
    }
    // The commit is held: give any early answer time to arrive, then look.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        calls.iter().all(|c| !c.is_finished()),
        "an answer left before its commit"
    );
    assert!(
        socket.frames.try_recv().is_err(),
        "a frame left before its commit"
    );
    assert_eq!(committed_rows(&rt), 1, "uncommitted writes are visible");
    release_tx.send(()).unwrap();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(committed_rows(&rt), 9);
    let mut frames = Vec::new();
    while let Ok(f) = socket.frames.try_recv() {
        frames.push(f);
    }
    assert_eq!(frames.len(), 8, "{frames:?}");
}

/// A failed commit answers every call of the batch with `Unavailable`, and the next call sees
/// the object as storage has it: the batch's writes are gone, from memory too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_every_held_call_and_storage_wins() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path()).await;
    let fail = Arc::new(AtomicBool::new(true));
    let hook_fail = Arc::clone(&fail);
    *lock(&rt.commit_hook) = Some(Arc::new(move || hook_fail.swap(false, Ordering::SeqCst)));
    let (first, release) = hold_runner(&rt).await;
    let rest: Vec<_> = (0..9)
        .map(|_| spawn_call(&rt, |c: &mut Counter, env| c.bump(env)))
        .collect();
    wait_queued(&rt, 9).await;
    release.send(()).unwrap();
    let mut answers = vec![first.await.unwrap().map(|(n, _)| n)];
    for r in rest {
        answers.push(r.await.unwrap().map(|(n, _)| n));
    }
    for a in &answers {
        assert!(
            matches!(a, Err(StorageError::Unavailable(_))),
            "held call answered {a:?}"
        );
    }
    assert!(!fail.load(Ordering::SeqCst), "the hook ran");
    let (memory, stored) = rt
        .call(NAME, false, |c: &mut Counter, env| {
            (c.count, stored_rows(env))
        })
        .await
        .unwrap()
        .0;
    assert_eq!((memory, stored), (1, 1), "the failed batch left traces");
    assert_eq!(committed_rows(&rt), 1);
}

/// A call that panics in the middle of a batch fails alone: its writes and frames are
/// dropped, its half-updated instance is rebuilt, and the other calls commit and answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_call_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path()).await;
    let (_, accepted) = rt
        .call(NAME, true, |_: &mut Counter, env| env.sockets.accept("a"))
        .await
        .unwrap();
    let mut socket = accepted.expect("a socket");
    let id = socket.socket;
    let before = rt.commits();
    let (first, release) = hold_runner(&rt).await;
    // Each queued before the next is made, so they run in this order.
    let good = spawn_call(&rt, |c: &mut Counter, env| c.bump(env));
    wait_queued(&rt, 1).await;
    let bad = spawn_call(&rt, move |c: &mut Counter, env| {
        env.sockets.send(id, "from the panicking call");
        c.bump(env);
        panic!("a handler bug");
    });
    wait_queued(&rt, 2).await;
    let after = spawn_call(&rt, move |c: &mut Counter, env| {
        env.sockets.send(id, "after");
        (c.bump(env), stored_rows(env))
    });
    wait_queued(&rt, 3).await;
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap().0, 2);
    assert_eq!(good.await.unwrap().unwrap().0, 3);
    assert!(bad.await.unwrap().is_err(), "the panicking call failed");
    // Rebuilt from storage inside the open batch: the two earlier writes, not the panicked one.
    assert_eq!(after.await.unwrap().unwrap().0, (4, 4));
    assert_eq!(rt.commits() - before, 1, "one batch for the four calls");
    assert_eq!(committed_rows(&rt), 4);
    assert_eq!(socket.frames.try_recv().as_deref(), Ok("after"));
    assert!(socket.frames.try_recv().is_err());
}
