//! A Durable Object runtime with the platform's semantics, on tokio and SQLite.
//!
//! - One live instance per object id. Each object has a gate (an async mutex): its requests,
//!   alarms and socket messages run one at a time, and because handlers are synchronous
//!   nothing interleaves with them (the input gate).
//! - Write coalescing with an output gate, as the platform does: an object's runner runs its
//!   queued calls back to back inside one transaction of the object's own SQLite file and
//!   commits once (when the queue is empty, or after a bounded number of calls or time, see
//!   [`BatchLimits`]); each call runs in a savepoint of its own. Nothing a call produced (its
//!   answer, the WebSocket frames it sent) leaves before that commit: nothing a client has been
//!   told is lost. A failed commit answers every held call with
//!   [`StorageError::Unavailable`] (a 503) and rebuilds the instance from storage.
//! - The alarm of each object is persisted in the class's `metadata.sqlite3`, fired by a
//!   scheduler at or after its time, also after a restart (past-due alarms fire at start), at
//!   least once, and retried with backoff when the handler fails.
//! - An idle instance is evicted: its memory is dropped and rebuilt with
//!   [`DurableObject::load`] on next use.
//! - WebSockets belong to the runtime, not the instance, with the attachment the object gave
//!   them, so they survive eviction the way hibernatable sockets do. Each socket has a bounded
//!   outgoing queue; a consumer too slow to drain it is closed instead of buffered forever.

mod batch;
#[cfg(test)]
mod gates;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use auth_core::objects::{DurableObject, ObjectEnv, ObjectStorage, SocketHub, SocketId};
use auth_core::ports::{Clock, Sql, StorageError};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, Notify};

use batch::{Answers, Batch, Held, Outbox, Output, Savepoint};
pub use batch::{BatchLimits, DEFAULT_BATCH_CALLS, DEFAULT_BATCH_WAIT};

use crate::sqlite::{open_connection, open_object_connection, SqliteSql};
use crate::{Database, HostClock, OsEntropy};

/// Most object instances held in memory at once, by default (`MAX_LIVE_OBJECTS`). Each holds a
/// SQLite connection (three file descriptors in WAL mode), so without a cap a burst over many
/// tenants would exhaust them; past the cap the least recently used idle instances are
/// evicted, as the platform does under memory pressure. Raise it together with the open-file
/// limit when more tenants are active at once than this.
pub const MAX_LIVE_OBJECTS: usize = 1024;

/// Most memory the instances held at once may take, by their own estimate
/// ([`DurableObject::memory_estimate`]): a count alone would let a thousand large graphs (up to
/// about 300 MB each) stay in memory. Past it, least recently used idle instances are evicted
/// the same way. One graph at its edge cap fits.
pub const MAX_LIVE_OBJECT_BYTES: usize = 512 * 1024 * 1024;

/// Frames queued per socket before the consumer counts as too slow.
pub const SOCKET_QUEUE: usize = 256;
/// Close code for a consumer that fell too far behind ("try again later").
pub const CLOSE_TOO_SLOW: u16 = 1013;

/// Tells a socket's writer to close, with a code and reason. Kept apart from the frame queue so
/// a close still gets through when the queue is full (the slow-consumer case).
#[derive(Debug, Default)]
pub struct CloseSignal {
    frame: Mutex<Option<(u16, String)>>,
    notify: Notify,
}

impl CloseSignal {
    /// Asks for a close; the first request wins.
    pub fn close(&self, code: u16, reason: &str) {
        let mut frame = lock(&self.frame);
        if frame.is_none() {
            *frame = Some((code, reason.to_owned()));
        }
        drop(frame);
        self.notify.notify_one();
    }

    /// The requested close, if any.
    pub fn requested(&self) -> Option<(u16, String)> {
        lock(&self.frame).clone()
    }

    /// Waits until a close is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested().is_some() {
                return;
            }
            notified.await;
        }
    }
}

struct SocketEntry {
    tx: mpsc::Sender<String>,
    close: Arc<CloseSignal>,
    attachment: String,
}

/// A socket accepted during a call: its id, its outgoing frames and its close signal.
pub struct Accepted {
    pub socket: SocketId,
    pub frames: mpsc::Receiver<String>,
    pub close: Arc<CloseSignal>,
}

/// The alarm a call fires: its time, and how to tell from the handler's result that it
/// succeeded (then the alarm is done and the one the handler set replaces it).
type Firing<R> = (i64, fn(&R) -> bool);

/// One call waiting for its turn on an object. Run inside the batch's open transaction (or
/// told why none could be opened), it answers how to hand its result to the caller once the
/// batch's commit is known; `None` when it was not run.
type Run<O> = Box<
    dyn FnOnce(&Runtime<O>, &Slot<O>, &mut Live<O>, Result<&Batch, StorageError>) -> Option<Held>
        + Send,
>;

struct Job<O> {
    run: Run<O>,
    /// An alarm's call: it runs in a batch of its own, so the bookkeeping of the fired alarm
    /// (see [`Runtime::fire`]) stays that of one call.
    solo: bool,
}

/// The calls waiting for one object. A single runner at a time takes the gate and drains them
/// in order on one blocking thread, so the calls of a busy object follow each other without a
/// task wake-up and a blocking-pool hand-off between every two of them.
struct Queue<O> {
    jobs: VecDeque<Job<O>>,
    running: bool,
}

/// The parts of an object that outlive its instance.
struct Slot<O> {
    name: String,
    gate: Arc<tokio::sync::Mutex<Live<O>>>,
    queue: Mutex<Queue<O>>,
    sockets: Mutex<HashMap<SocketId, SocketEntry>>,
    last_used_ms: AtomicI64,
    /// The instance's memory estimate after its last call; 0 when evicted.
    memory: AtomicUsize,
}

/// The instance and its storage connection; both dropped on eviction.
pub struct Live<O> {
    instance: Option<O>,
    conn: Option<Connection>,
}

/// A runtime for one object class.
pub struct Runtime<O> {
    dir: PathBuf,
    slots: Mutex<HashMap<String, Arc<Slot<O>>>>,
    metadata: Mutex<Connection>,
    schedule: Mutex<BTreeSet<(i64, String)>>,
    wake: Notify,
    db: Arc<Database>,
    clock: Arc<HostClock>,
    next_socket: AtomicU64,
    /// Instances currently in memory (with an open connection).
    live: AtomicUsize,
    /// The sum of the instances' memory estimates, and its cap.
    memory: AtomicUsize,
    memory_budget: AtomicUsize,
    /// The cap on instances in memory ([`MAX_LIVE_OBJECTS`] by default).
    live_cap: AtomicUsize,
    /// Set when the service stops: the scheduler ends and sockets close.
    stopping: tokio::sync::watch::Sender<bool>,
    /// How runners coalesce calls: most calls, and most microseconds, per transaction.
    batch_calls: AtomicUsize,
    batch_wait_us: AtomicU64,
    /// Batches committed (each a transaction of one object's storage).
    commits: AtomicU64,
    /// Test control: runs before each commit; answering true fails the commit.
    #[cfg(test)]
    commit_hook: Mutex<Option<Arc<dyn Fn() -> bool + Send + Sync>>>,
}

/// The object's alarm as seen during one call: read from, and written back to, metadata.
struct CallStorage<'a> {
    sql: SqliteSql<'a>,
    alarm: Mutex<Option<i64>>,
}

impl ObjectStorage for CallStorage<'_> {
    fn sql(&self) -> &dyn Sql {
        &self.sql
    }
    fn set_alarm(&self, at_ms: Option<i64>) {
        *self.alarm.lock().unwrap_or_else(|p| p.into_inner()) = at_ms;
    }
    fn alarm(&self) -> Option<i64> {
        *self.alarm.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The shared database as one call sees it: locked on first use and then held until the call
/// ends, exactly as if it had been locked for the whole call. Until then the call has touched
/// only its own object's storage (behind the object's gate), so the order of events is the
/// same as with the lock taken up front; calls that never read it (the rate-limit hot path,
/// answered from the object's cache) leave the connection to the front and to other objects
/// meanwhile.
///
/// It is let go at the end of each call, not of the batch: the front and every other object
/// need the connection, and a batch may stay open for up to [`BatchLimits::max_wait`]. That is
/// safe because the shared connection is in autocommit mode between calls: each statement a
/// call runs on it, or each [`Sql::transaction`] (`BEGIN IMMEDIATE` .. `COMMIT` there), is
/// durable on its own when it returns, independently of the object's batch. So if the
/// object's batch commit then fails, the shared writes of its calls stay while the object's
/// own writes are rolled back and the callers get 503: the same outcome as a commit failure
/// after a shared write had when each call committed alone (say a key row inserted with its
/// audit record lost). The client was not told of success, so nothing it was told is lost.
/// [`Sql::pause`] lets it go before a password hash (between statements, outside any
/// transaction): a login must not stop every other request for the length of an argon2 run.
struct SharedOnDemand<'a> {
    db: &'a Database,
    conn: RefCell<Option<MutexGuard<'a, Connection>>>,
}

impl<'a> SharedOnDemand<'a> {
    fn new(db: &'a Database) -> Self {
        Self {
            db,
            conn: RefCell::new(None),
        }
    }

    fn with_sql<R>(&self, f: impl FnOnce(&SqliteSql) -> R) -> R {
        let mut held = self.conn.borrow_mut();
        let guard = held.get_or_insert_with(|| self.db.lock());
        f(&SqliteSql(guard))
    }
}

impl Sql for SharedOnDemand<'_> {
    fn execute(
        &self,
        sql: &str,
        params: &[auth_core::ports::SqlValue],
    ) -> Result<usize, StorageError> {
        self.with_sql(|s| s.execute(sql, params))
    }
    fn query(
        &self,
        sql: &str,
        params: &[auth_core::ports::SqlValue],
    ) -> Result<Vec<auth_core::ports::Row>, StorageError> {
        self.with_sql(|s| s.query(sql, params))
    }
    fn transaction(
        &self,
        work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.with_sql(|s| s.transaction(work))
    }
    fn pause(&self) {
        // Busy only if called from inside a statement, which the port rules out: then keep it.
        if let Ok(mut held) = self.conn.try_borrow_mut() {
            held.take();
        }
    }
}

/// The socket hub of one call. `pending` receives the queue of a socket accepted by this call.
/// Frames and closes go to the batch's outbox and reach the sockets only after its commit.
struct CallHub<'a, O> {
    slot: &'a Slot<O>,
    next_socket: &'a AtomicU64,
    pending: Option<&'a Mutex<Option<Accepted>>>,
    outbox: &'a RefCell<Outbox>,
}

impl<O> CallHub<'_, O> {
    /// Open, and not closed by a call of this batch.
    fn is_open(&self, socket: SocketId) -> bool {
        lock(&self.slot.sockets).contains_key(&socket)
            && !self.outbox.borrow().closed.contains(&socket)
    }
}

impl<O> SocketHub for CallHub<'_, O> {
    fn accept(&self, attachment: &str) -> Option<SocketId> {
        let pending = self.pending?;
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, frames) = mpsc::channel(SOCKET_QUEUE);
        let close = Arc::new(CloseSignal::default());
        lock(&self.slot.sockets).insert(
            id,
            SocketEntry {
                tx,
                close: Arc::clone(&close),
                attachment: attachment.to_owned(),
            },
        );
        *lock(pending) = Some(Accepted {
            socket: id,
            frames,
            close,
        });
        self.outbox.borrow_mut().accepted.push(id);
        Some(id)
    }

    fn sockets(&self) -> Vec<(SocketId, String)> {
        let outbox = self.outbox.borrow();
        lock(&self.slot.sockets)
            .iter()
            .filter(|(id, _)| !outbox.closed.contains(id))
            .map(|(id, e)| (*id, e.attachment.clone()))
            .collect()
    }

    /// Held until the batch commits; a consumer too slow for it then is closed (see
    /// [`Outbox::send`]).
    fn send(&self, socket: SocketId, text: &str) -> bool {
        if !self.is_open(socket) {
            return false;
        }
        let mut outbox = self.outbox.borrow_mut();
        outbox.outputs.push(Output::Frame(socket, text.to_owned()));
        true
    }

    /// Held like frames, in order with them: a frame sent before a close still arrives.
    fn close(&self, socket: SocketId, code: u16, reason: &str) {
        if !self.is_open(socket) {
            return;
        }
        let mut outbox = self.outbox.borrow_mut();
        outbox
            .outputs
            .push(Output::Close(socket, code, reason.to_owned()));
        outbox.closed.push(socket);
    }
}

/// Resets an object's queue if its runner is dropped before draining it (the tokio runtime
/// shutting down): the waiting callers then get an error instead of waiting forever, and the
/// next call starts a new runner.
struct Runner<O> {
    slot: Arc<Slot<O>>,
    finished: bool,
}

impl<O> Runner<O> {
    /// The queue was drained: a later runner owns whatever is queued from now on.
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl<O> Drop for Runner<O> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let abandoned = {
            let mut queue = lock(&self.slot.queue);
            queue.running = false;
            std::mem::take(&mut queue.jobs)
        };
        drop(abandoned);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// File name of an object's database: the name is hashed so any string is a safe file name.
fn object_file(dir: &Path, name: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    dir.join(format!("{}.sqlite3", auth_core::keys::hex(&digest)))
}

impl<O: DurableObject + Send + 'static> Runtime<O> {
    /// Opens the class's directory and its alarm metadata, and starts the scheduler.
    pub fn start(
        data_dir: &Path,
        db: Arc<Database>,
        clock: Arc<HostClock>,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = data_dir.join("objects").join(O::CLASS);
        crate::blobs::create_private_dir(&dir)?;
        let metadata = open_connection(&dir.join("metadata.sqlite3"))?;
        metadata.execute_batch(
            "CREATE TABLE IF NOT EXISTS alarms (name TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
        )?;
        let mut schedule = BTreeSet::new();
        {
            let mut stmt = metadata.prepare("SELECT at_ms, name FROM alarms")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                schedule.insert(row?);
            }
        }
        let runtime = Arc::new(Self {
            dir,
            slots: Mutex::new(HashMap::new()),
            metadata: Mutex::new(metadata),
            schedule: Mutex::new(schedule),
            wake: Notify::new(),
            db,
            clock,
            next_socket: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            memory: AtomicUsize::new(0),
            memory_budget: AtomicUsize::new(MAX_LIVE_OBJECT_BYTES),
            live_cap: AtomicUsize::new(MAX_LIVE_OBJECTS),
            stopping: tokio::sync::watch::channel(false).0,
            batch_calls: AtomicUsize::new(DEFAULT_BATCH_CALLS),
            batch_wait_us: AtomicU64::new(DEFAULT_BATCH_WAIT.as_micros() as u64),
            commits: AtomicU64::new(0),
            #[cfg(test)]
            commit_hook: Mutex::new(None),
        });
        tokio::spawn(Arc::clone(&runtime).run_alarms());
        Ok(runtime)
    }

    fn slot(&self, name: &str) -> Arc<Slot<O>> {
        Arc::clone(lock(&self.slots).entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Slot {
                name: name.to_owned(),
                gate: Arc::new(tokio::sync::Mutex::new(Live {
                    instance: None,
                    conn: None,
                })),
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    running: false,
                }),
                sockets: Mutex::new(HashMap::new()),
                last_used_ms: AtomicI64::new(0),
                memory: AtomicUsize::new(0),
            })
        }))
    }

    /// Runs `work` on the object `name`: one call at a time per object, inside the runner's
    /// open transaction of its storage, and answered only once that transaction has committed
    /// (see [`Self::drain`]). `accept` lets the call accept a WebSocket. A failed commit
    /// answers [`StorageError::Unavailable`].
    pub async fn call<R: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        accept: bool,
        work: impl FnOnce(&mut O, &ObjectEnv) -> R + Send + 'static,
    ) -> Result<(R, Option<Accepted>), StorageError> {
        self.call_inner(name, accept, None, work)
            .await
            .map(|(r, accepted, _)| (r, accepted))
    }

    /// [`Self::call`], or, with `firing: Some((at, succeeded))`, the call of the alarm
    /// scheduled at `at`: the handler then sees no alarm set (as on the platform), and once it
    /// has succeeded the alarm it set (or none) replaces the fired one in metadata, before the
    /// next queued call runs (the call runs in a batch of its own, see [`Self::end_batch`]).
    async fn call_inner<R: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        accept: bool,
        firing: Option<Firing<R>>,
        work: impl FnOnce(&mut O, &ObjectEnv) -> R + Send + 'static,
    ) -> Result<(R, Option<Accepted>, Option<i64>), StorageError> {
        let slot = self.slot(name);
        let (done, result) = oneshot::channel();
        let solo = firing.is_some();
        let run: Run<O> = Box::new(move |this, slot, live, batch| {
            // A caller that went away before its turn (its client hung up) is not run, as it
            // was not when it was dropped while waiting for the gate.
            if done.is_closed() {
                return None;
            }
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    let _ = done.send(Err(e));
                    return None;
                }
            };
            let result = this.run_locked(slot, live, batch, accept, firing, work);
            Some(Box::new(move |committed: Result<(), StorageError>| {
                // Output gate: the result leaves only with the batch's commit.
                let _ = done.send(committed.and(result));
            }) as Held)
        });
        let start_runner = {
            let mut queue = lock(&slot.queue);
            queue.jobs.push_back(Job { run, solo });
            !std::mem::replace(&mut queue.running, true)
        };
        if start_runner {
            self.start_runner(Arc::clone(&slot));
        }
        // The job's sender is dropped unsent only when the handler panicked (or the runtime is
        // shutting down).
        let joined = result
            .await
            .map_err(|_| StorageError::Other("object handler panicked".into()))?;
        slot.last_used_ms
            .store(self.clock.now_ms(), Ordering::Relaxed);
        let budget = self.memory_budget.load(Ordering::Relaxed);
        let live_cap = self.live_cap.load(Ordering::Relaxed);
        if self.live.load(Ordering::Relaxed) > live_cap
            || self.memory.load(Ordering::Relaxed) > budget
        {
            self.evict_least_recently_used(live_cap * 9 / 10, budget / 10 * 9);
        }
        joined
    }

    /// Starts the runner of an object whose queue was idle. Nothing here awaits, so the runner
    /// cannot be cancelled with this caller while other callers' jobs wait in the queue.
    fn start_runner(self: &Arc<Self>, slot: Arc<Slot<O>>) {
        let runner = Runner {
            slot,
            finished: false,
        };
        match Arc::clone(&runner.slot.gate).try_lock_owned() {
            // The usual case: straight to a blocking thread, no task in between.
            Ok(live) => {
                let this = Arc::clone(self);
                tokio::task::spawn_blocking(move || this.drain(runner, live));
            }
            // The previous runner is still letting go of the gate, or an eviction holds it.
            Err(_) => {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let live = Arc::clone(&runner.slot.gate).lock_owned().await;
                    tokio::task::spawn_blocking(move || this.drain(runner, live));
                });
            }
        }
    }

    /// How runners batch calls from now on (the `OBJECT_BATCH_*` settings).
    pub fn set_batch_limits(&self, limits: BatchLimits) {
        self.batch_calls
            .store(limits.max_calls.max(1), Ordering::Relaxed);
        self.batch_wait_us
            .store(limits.max_wait.as_micros() as u64, Ordering::Relaxed);
    }

    fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_calls: self.batch_calls.load(Ordering::Relaxed),
            max_wait: Duration::from_micros(self.batch_wait_us.load(Ordering::Relaxed)),
        }
    }

    /// Batches committed so far, over every object of the class.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The runner of one object: holding the gate, runs queued calls back to back inside one
    /// transaction, and commits it when the queue is empty or the batch is full
    /// ([`BatchLimits`]), then hands out the answers the batch held. An alarm's call gets a
    /// batch of its own.
    fn drain(&self, mut runner: Runner<O>, mut live: tokio::sync::OwnedMutexGuard<Live<O>>) {
        let slot = Arc::clone(&runner.slot);
        let limits = self.batch_limits();
        let mut batch = Batch::default();
        loop {
            let next = lock(&slot.queue).jobs.pop_front();
            let Some(job) = next else {
                let mut answers = self.end_batch(&slot, &mut live, &mut batch);
                // Taken before the gate is let go and held until the frames are out, so a
                // runner started meanwhile sends its frames after these.
                let mut sockets = lock(&slot.sockets);
                let mut queue = lock(&slot.queue);
                if queue.jobs.is_empty() {
                    queue.running = false;
                    drop(queue);
                    runner.finish();
                    // The gate is free before anyone hears back (frames or answers), as it
                    // was when each call took the gate itself: an object is idle (evictable)
                    // once its last call has answered.
                    drop(live);
                    answers.send_outputs(&slot.name, &mut sockets);
                    drop(sockets);
                    answers.release(&slot.name, &slot.sockets);
                    return;
                }
                drop(queue);
                drop(sockets);
                answers.release(&slot.name, &slot.sockets);
                continue;
            };
            let solo = job.solo;
            if solo {
                self.end_batch(&slot, &mut live, &mut batch)
                    .release(&slot.name, &slot.sockets);
            }
            self.run_job(job, &slot, &mut live, &mut batch);
            if solo || batch.full(&limits) {
                self.end_batch(&slot, &mut live, &mut batch)
                    .release(&slot.name, &slot.sockets);
            }
        }
    }

    /// Runs one job in the batch (opening it first if needed). A panicking handler fails its
    /// own call only: its answer's sender is dropped while unwinding, its writes are rolled
    /// back to its savepoint ([`Savepoint`]), its held frames are dropped here, and its
    /// instance, whose memory may be half-updated, is dropped, to be rebuilt from storage by
    /// the next call, inside the open transaction (so it sees the batch's earlier writes).
    fn run_job(&self, job: Job<O>, slot: &Slot<O>, live: &mut Live<O>, batch: &mut Batch) {
        let opened = self.open_batch(slot, live, batch);
        let mark = batch.outbox.borrow().mark();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (job.run)(self, slot, live, opened.map(|()| &*batch))
        }));
        match ran {
            Ok(Some(held)) => {
                batch.calls += 1;
                batch.held.push(held);
            }
            Ok(None) => {}
            Err(_) => {
                tracing::error!(object = %slot.name, "an object handler panicked");
                let accepted = batch.outbox.borrow_mut().truncate(mark);
                let mut sockets = lock(&slot.sockets);
                for id in accepted {
                    sockets.remove(&id);
                }
                drop(sockets);
                self.drop_instance(slot, live);
            }
        }
    }

    /// Opens the object's connection if needed and begins the batch's transaction. A failed
    /// `BEGIN` is treated as a failed commit: the call gets [`StorageError::Unavailable`] and
    /// the instance and connection are rebuilt.
    fn open_batch(
        &self,
        slot: &Slot<O>,
        live: &mut Live<O>,
        batch: &mut Batch,
    ) -> Result<(), StorageError> {
        if batch.open {
            return Ok(());
        }
        if live.conn.is_none() {
            let conn = open_object_connection(&object_file(&self.dir, &slot.name))
                .map_err(|e| StorageError::Unavailable(e.to_string()))?;
            live.conn = Some(conn);
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        let conn = live.conn.as_ref().expect("opened above");
        if !conn.is_autocommit() {
            // Left open by a runner that did not get to finish its batch (a panic outside
            // any handler): nobody was told of its calls, so roll it back.
            let _ = conn.execute_batch("ROLLBACK");
            self.drop_instance(slot, live);
        }
        let conn = live.conn.as_ref().expect("opened above");
        if let Err(e) = conn.execute_batch("BEGIN") {
            tracing::error!(object = %slot.name, error = %e, "could not begin a transaction");
            self.drop_instance(slot, live);
            self.drop_connection(live);
            return Err(StorageError::Unavailable(e.to_string()));
        }
        batch.open = true;
        batch.calls = 0;
        batch.started = std::time::Instant::now();
        batch.stored_alarm = self.stored_alarm(&slot.name);
        batch.alarm.set(batch.stored_alarm);
        Ok(())
    }

    /// Commits the batch and answers how to release its held calls. Its frames and closes go
    /// to the sockets only after the commit, with the answers. A failed commit rolls everything back, drops the
    /// instance (rebuilt from storage by the next call) and answers every held call with
    /// [`StorageError::Unavailable`].
    ///
    /// The alarm the batch leaves is stored so that the alarm in metadata is never later than
    /// the one the durable data needs: an earlier alarm is stored before the commit, a later
    /// one (or none) after it. A crash in between, or a failed commit, then leaves an alarm
    /// that fires early, which is harmless (handlers run at least once and re-arm); the other
    /// order could leave data that needs an alarm with none, and a flush would be lost.
    fn end_batch(&self, slot: &Slot<O>, live: &mut Live<O>, batch: &mut Batch) -> Answers {
        let held = std::mem::take(&mut batch.held);
        let outbox = batch.outbox.take();
        if !batch.open {
            return Answers {
                held,
                failure: None,
                outbox: Outbox::default(),
            };
        }
        batch.open = false;
        let (stored, alarm) = (batch.stored_alarm, batch.alarm.get());
        let early = alarm != stored && alarm.is_some_and(|a| stored.is_none_or(|s| a < s));
        let conn = live
            .conn
            .as_ref()
            .expect("an open batch has its connection");
        let committed = (|| {
            if early {
                self.store_alarm(&slot.name, stored, alarm)?;
            }
            self.commit_hook_fails()?;
            conn.execute_batch("COMMIT")
                .map_err(|e| StorageError::Unavailable(e.to_string()))
        })();
        match committed {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                if alarm != stored && !early {
                    if let Err(e) = self.store_alarm(&slot.name, stored, alarm) {
                        // The stored alarm is the earlier one: it fires, harmlessly, and the
                        // handler sets the alarm again.
                        tracing::warn!(object = %slot.name, error = %e, "could not store a later alarm");
                    }
                }
                // Sent by the runner when it releases the answers.
                Answers {
                    held,
                    failure: None,
                    outbox,
                }
            }
            Err(e) => {
                tracing::error!(object = %slot.name, error = %e, calls = held.len(),
                    "an object's batch did not commit: its calls are answered 503");
                if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
                    // Closing the connection rolls back what is left.
                    self.drop_connection(live);
                }
                self.drop_instance(slot, live);
                let mut sockets = lock(&slot.sockets);
                for id in outbox.accepted {
                    sockets.remove(&id);
                }
                Answers {
                    held,
                    failure: Some(e.to_string()),
                    outbox: Outbox::default(),
                }
            }
        }
    }

    /// The test control that fails (or holds) a commit; never fails outside tests.
    fn commit_hook_fails(&self) -> Result<(), StorageError> {
        #[cfg(test)]
        {
            let hook = lock(&self.commit_hook).clone();
            if hook.is_some_and(|h| h()) {
                return Err(StorageError::Unavailable("injected commit failure".into()));
            }
        }
        Ok(())
    }

    /// Drops the instance (its memory may no longer match storage); the next call rebuilds
    /// it with [`DurableObject::load`].
    fn drop_instance(&self, slot: &Slot<O>, live: &mut Live<O>) {
        live.instance = None;
        self.account_memory(slot, 0);
    }

    fn drop_connection(&self, live: &mut Live<O>) {
        if live.conn.take().is_some() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Runs one call in its own savepoint of the batch's open transaction.
    fn run_locked<R>(
        &self,
        slot: &Slot<O>,
        live: &mut Live<O>,
        batch: &Batch,
        accept: bool,
        firing: Option<Firing<R>>,
        work: impl FnOnce(&mut O, &ObjectEnv) -> R,
    ) -> Result<(R, Option<Accepted>, Option<i64>), StorageError> {
        let conn = live.conn.as_ref().expect("the batch opened it");
        let alarm_before = match firing {
            Some(_) => None,
            None => batch.alarm.get(),
        };
        let storage = CallStorage {
            sql: SqliteSql(conn),
            alarm: Mutex::new(alarm_before),
        };
        let pending = Mutex::new(None);
        let hub = CallHub {
            slot,
            next_socket: &self.next_socket,
            pending: accept.then_some(&pending),
            outbox: &batch.outbox,
        };
        let shared = SharedOnDemand::new(&self.db);
        let env = ObjectEnv {
            name: &slot.name,
            storage: &storage,
            db: &shared,
            clock: &*self.clock,
            entropy: &OsEntropy,
            sockets: &hub,
        };
        let savepoint = Savepoint::begin(conn)?;
        if live.instance.is_none() {
            live.instance = Some(O::load(&env)?);
        }
        let instance = live.instance.as_mut().expect("loaded above");
        let result = work(instance, &env);
        // The shared connection goes back to the front and the other objects now, not at
        // the batch's commit (see `SharedOnDemand`).
        drop(shared);
        self.account_memory(slot, instance.memory_estimate());
        if let Err(e) = savepoint.release() {
            // Rolled back to the savepoint: the instance's memory has the call's changes.
            self.drop_instance(slot, live);
            return Err(e);
        }
        let alarm_after = storage.alarm();
        // The alarm is tracked here, on the object's runner and behind its gate, so the next
        // call of the batch reads it as this call left it; the batch stores it with its
        // commit (see `Self::end_batch`).
        match firing {
            None => batch.alarm.set(alarm_after),
            Some((_, succeeded)) if succeeded(&result) => batch.alarm.set(alarm_after),
            // A failed alarm stays set in metadata, for the retry (see `Self::fire`).
            Some(_) => {}
        }
        let accepted = pending.into_inner().unwrap_or_else(|p| p.into_inner());
        Ok((result, accepted, alarm_after))
    }

    /// Records an instance's new memory estimate in its slot and in the runtime's sum.
    fn account_memory(&self, slot: &Slot<O>, bytes: usize) {
        let before = slot.memory.swap(bytes, Ordering::Relaxed);
        if bytes >= before {
            self.memory.fetch_add(bytes - before, Ordering::Relaxed);
        } else {
            self.memory.fetch_sub(before - bytes, Ordering::Relaxed);
        }
    }

    /// Sets the cap on the instances' summed memory estimates ([`MAX_LIVE_OBJECT_BYTES`] by
    /// default).
    pub fn set_memory_budget(&self, bytes: usize) {
        self.memory_budget.store(bytes, Ordering::Relaxed);
    }

    /// Sets the cap on instances held in memory at once ([`MAX_LIVE_OBJECTS`] by default).
    pub fn set_live_cap(&self, objects: usize) {
        self.live_cap.store(objects.max(1), Ordering::Relaxed);
    }

    fn stored_alarm(&self, name: &str) -> Option<i64> {
        // Runs on every call: a cached statement spares the SQL parse each time.
        let meta = lock(&self.metadata);
        let mut stmt = meta
            .prepare_cached("SELECT at_ms FROM alarms WHERE name = ?1")
            .ok()?;
        stmt.query_row([name], |r| r.get(0)).ok()
    }

    fn store_alarm(
        &self,
        name: &str,
        before: Option<i64>,
        after: Option<i64>,
    ) -> Result<(), StorageError> {
        let meta = lock(&self.metadata);
        self.store_alarm_locked(&meta, name, before, after)
    }

    /// [`Self::store_alarm`] if the stored alarm is still the failed one at `at`: a call that
    /// ran since and set or cleared the alarm has the last word, not the retry of the old one.
    /// `retry: None` puts the failed alarm back in the schedule as it is.
    fn reschedule_failed(&self, name: &str, at: i64, retry: Option<i64>) {
        let meta = lock(&self.metadata);
        let stored: Option<i64> = meta
            .prepare_cached("SELECT at_ms FROM alarms WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)))
            .ok();
        if stored != Some(at) {
            return;
        }
        let result = match retry {
            Some(r) => self.store_alarm_locked(&meta, name, Some(at), Some(r)),
            None => {
                lock(&self.schedule).insert((at, name.to_owned()));
                self.wake.notify_one();
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(object = %name, error = %e, "could not reschedule a failed alarm");
        }
    }

    /// Writes the alarm to metadata and the schedule; `meta` is the held metadata lock, which
    /// orders every alarm write and read.
    fn store_alarm_locked(
        &self,
        meta: &Connection,
        name: &str,
        before: Option<i64>,
        after: Option<i64>,
    ) -> Result<(), StorageError> {
        let mut schedule = lock(&self.schedule);
        if let Some(b) = before {
            schedule.remove(&(b, name.to_owned()));
        }
        let res = match after {
            Some(at) => {
                schedule.insert((at, name.to_owned()));
                meta.prepare_cached(
                    "INSERT INTO alarms (name, at_ms) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET at_ms = excluded.at_ms",
                )
                .and_then(|mut stmt| stmt.execute(rusqlite::params![name, at]))
            }
            None => meta
                .prepare_cached("DELETE FROM alarms WHERE name = ?1")
                .and_then(|mut stmt| stmt.execute([name])),
        };
        drop(schedule);
        self.wake.notify_one();
        res.map(drop)
            .map_err(|e| StorageError::Other(e.to_string()))
    }

    /// The scheduler: sleeps until the earliest alarm, fires it, retries failures.
    async fn run_alarms(self: Arc<Self>) {
        let mut failures: HashMap<String, u32> = HashMap::new();
        let mut stopping = self.stopping.subscribe();
        loop {
            if *stopping.borrow() {
                return;
            }
            let next = lock(&self.schedule).iter().next().cloned();
            let now = self.clock.now_ms();
            match next {
                None => {
                    tokio::select! {
                        _ = self.wake.notified() => {},
                        _ = stopping.changed() => {},
                    }
                }
                Some((at, _)) if at > now => {
                    let wait = Duration::from_millis((at - now).min(60_000) as u64);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {},
                        _ = self.wake.notified() => {},
                        _ = stopping.changed() => {},
                    }
                }
                Some((at, name)) => {
                    let ok = self.fire(&name, at).await;
                    if ok {
                        failures.remove(&name);
                    } else {
                        // At least once: keep it, and retry with exponential backoff (capped).
                        let n = failures.entry(name.clone()).or_insert(0);
                        *n += 1;
                        let delay = 1000i64 << (*n).min(6);
                        self.reschedule_failed(&name, at, Some(self.clock.now_ms() + delay));
                    }
                }
            }
        }
    }

    /// Fires the alarm scheduled at `at` for `name`. Answers false when the handler failed.
    async fn fire(self: &Arc<Self>, name: &str, at: i64) -> bool {
        // Off the in-memory schedule so it is not picked twice, but kept in metadata until the
        // handler has succeeded: a crash before then fires it again after a restart (at least
        // once). On success the alarm the handler set (or none) replaces it in one write, made
        // by the call itself.
        lock(&self.schedule).remove(&(at, name.to_owned()));
        let succeeded: fn(&Result<(), StorageError>) -> bool = Result::is_ok;
        match self
            .call_inner(name, false, Some((at, succeeded)), |o: &mut O, env| {
                o.alarm(env)
            })
            .await
        {
            Ok((Ok(()), _, _)) => true,
            Ok((Err(e), _, _)) | Err(e) => {
                tracing::warn!(object = %name, error = %e, "alarm failed; will retry");
                self.reschedule_failed(name, at, None);
                false
            }
        }
    }

    /// Fires every alarm that is due by the runtime's clock now, before returning (used after
    /// the test clock moves).
    pub async fn fire_due(self: &Arc<Self>) -> usize {
        let now = self.clock.now_ms();
        let due: Vec<(i64, String)> = lock(&self.schedule)
            .iter()
            .take_while(|(at, _)| *at <= now)
            .cloned()
            .collect();
        let mut fired = 0;
        for (at, name) in due {
            if self.fire(&name, at).await {
                fired += 1;
            }
        }
        fired
    }

    /// The objects that have an alarm scheduled.
    pub fn scheduled_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.schedule)
            .iter()
            .map(|(_, n)| n.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Fires every scheduled alarm now, whatever its time (a test control).
    pub async fn fire_all_now(self: &Arc<Self>, only: Option<&str>) -> usize {
        let due: Vec<(i64, String)> = lock(&self.schedule)
            .iter()
            .filter(|(_, n)| only.is_none_or(|o| o == n))
            .cloned()
            .collect();
        let mut fired = 0;
        for (at, name) in due {
            if self.fire(&name, at).await {
                fired += 1;
            }
        }
        fired
    }

    /// Drops the in-memory instances idle for at least `idle_ms` (all of them with 0) whose
    /// gate is free. Sockets stay. Answers how many were evicted.
    pub fn evict_idle(&self, idle_ms: i64, only: Option<&str>) -> usize {
        let now = self.clock.now_ms();
        let slots: Vec<Arc<Slot<O>>> = lock(&self.slots).values().cloned().collect();
        let mut evicted = 0;
        for slot in slots {
            if only.is_some_and(|o| o != slot.name) {
                continue;
            }
            if idle_ms > 0 && now - slot.last_used_ms.load(Ordering::Relaxed) < idle_ms {
                continue;
            }
            if self.try_evict(&slot) {
                evicted += 1;
            }
        }
        evicted
    }

    /// Drops one slot's instance and connection if its gate is free.
    fn try_evict(&self, slot: &Slot<O>) -> bool {
        let Ok(mut live) = slot.gate.try_lock() else {
            return false;
        };
        live.instance = None;
        self.account_memory(slot, 0);
        if live.conn.take().is_some() {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Evicts idle instances, least recently used first, until at most `keep` remain and
    /// their memory estimates sum to at most `keep_bytes`.
    fn evict_least_recently_used(&self, keep: usize, keep_bytes: usize) {
        let mut slots: Vec<Arc<Slot<O>>> = lock(&self.slots).values().cloned().collect();
        slots.sort_by_key(|s| s.last_used_ms.load(Ordering::Relaxed));
        for slot in slots {
            if self.live.load(Ordering::Relaxed) <= keep
                && self.memory.load(Ordering::Relaxed) <= keep_bytes
            {
                break;
            }
            self.try_evict(&slot);
        }
    }

    /// Instances in memory and the sum of their memory estimates.
    pub fn live_usage(&self) -> (usize, usize) {
        (
            self.live.load(Ordering::Relaxed),
            self.memory.load(Ordering::Relaxed),
        )
    }

    /// Stops the runtime: the alarm scheduler ends and every socket is closed with 1001
    /// ("going away"). Alarms stay persisted and fire after the next start.
    pub fn stop(&self) {
        let _ = self.stopping.send(true);
        for slot in lock(&self.slots).values() {
            for (_, e) in lock(&slot.sockets).drain() {
                e.close.close(1001, "service stopping");
            }
        }
    }

    /// A receiver that turns true when the runtime stops.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Forgets a socket whose connection ended.
    pub fn remove_socket(&self, name: &str, socket: SocketId) {
        if let Some(slot) = lock(&self.slots).get(name) {
            lock(&slot.sockets).remove(&socket);
        }
    }

    /// The attachment of a socket, if it is still open.
    pub fn socket_attachment(&self, name: &str, socket: SocketId) -> Option<String> {
        let slots = lock(&self.slots);
        let slot = slots.get(name)?;
        let sockets = lock(&slot.sockets);
        sockets.get(&socket).map(|e| e.attachment.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc as std_mpsc;

    /// When the alarm fires, the test holds it inside its handler; the alarm then sets its
    /// next round far in the future (as a recurring job would).
    const NEXT_ROUND: i64 = 9_000_000_000_000;
    /// The earlier alarm a call queued behind the firing one asks for (a grace end).
    const GRACE_END: i64 = 8_000_000_000_000;

    static STARTED: Mutex<Option<std_mpsc::Sender<()>>> = Mutex::new(None);
    static RELEASE: Mutex<Option<std_mpsc::Receiver<()>>> = Mutex::new(None);

    struct Probe;

    impl DurableObject for Probe {
        const CLASS: &'static str = "AlarmRaceProbe";

        fn load(_: &ObjectEnv) -> Result<Self, StorageError> {
            Ok(Probe)
        }

        fn alarm(&mut self, env: &ObjectEnv) -> Result<(), StorageError> {
            if let Some(started) = lock(&STARTED).take() {
                started.send(()).unwrap();
                let release = lock(&RELEASE).take().unwrap();
                release.recv().unwrap();
            }
            env.storage.set_alarm(Some(NEXT_ROUND));
            Ok(())
        }
    }

    /// An object whose memory estimate the test sets.
    struct Heavy(usize);

    impl DurableObject for Heavy {
        const CLASS: &'static str = "HeavyProbe";

        fn load(_: &ObjectEnv) -> Result<Self, StorageError> {
            Ok(Heavy(0))
        }

        fn memory_estimate(&self) -> usize {
            self.0
        }
    }

    /// The live-object cap counts memory, not only instances: a few large objects under the
    /// count cap are evicted (least recently used first) once their estimates pass the budget.
    #[tokio::test]
    async fn large_instances_are_evicted_past_the_memory_budget() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(&dir.path().join("auth.sqlite3")).unwrap());
        let clock = Arc::new(HostClock::default());
        let rt: Arc<Runtime<Heavy>> = Runtime::start(dir.path(), db, Arc::clone(&clock)).unwrap();
        rt.set_memory_budget(1000);
        for i in 0..6 {
            clock.advance(1);
            rt.call(&format!("o{i}"), false, |h: &mut Heavy, _| h.0 = 400)
                .await
                .unwrap();
            let (_, bytes) = rt.live_usage();
            assert!(bytes <= 1000, "{bytes} bytes live after object {i}");
        }
        let (live, bytes) = rt.live_usage();
        assert_eq!((live, bytes), (2, 800));
        // The most recent ones stay.
        assert!(rt.evict_idle(0, Some("o5")) == 1 && rt.evict_idle(0, Some("o0")) == 0);
        assert_eq!(rt.live_usage(), (1, 400));
    }

    /// The cap on live instances is a setting: past it, least recently used idle instances go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_instances_are_capped_by_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(&dir.path().join("auth.sqlite3")).unwrap());
        let clock = Arc::new(HostClock::default());
        let rt: Arc<Runtime<Heavy>> = Runtime::start(dir.path(), db, Arc::clone(&clock)).unwrap();
        rt.set_live_cap(10);
        for i in 0..30 {
            clock.advance(1);
            rt.call(&format!("o{i}"), false, |h: &mut Heavy, _| h.0 = 1)
                .await
                .unwrap();
            let (live, _) = rt.live_usage();
            assert!(live <= 10, "{live} instances live after object {i}");
        }
        // The most recent one stays.
        assert_eq!(rt.evict_idle(0, Some("o29")), 1);
    }

    /// Sets the alarm to `at` unless one at or before it is already set: the rule by which the
    /// tenant object schedules a grace end.
    fn keep_earliest(env: &ObjectEnv, at: i64) {
        if env.storage.alarm().is_none_or(|set| set > at) {
            env.storage.set_alarm(Some(at));
        }
    }

    /// A call queued behind a firing alarm sees the alarm as that handler left it, and the
    /// alarm it sets is not overwritten by the fired alarm's bookkeeping. The interleaving is
    /// forced, not waited for: the handler blocks until the second call is queued, and the
    /// test's own (single) runtime thread is kept busy until the object's runner has finished
    /// both calls, so nothing the runtime schedules can run in between.
    #[tokio::test(flavor = "current_thread")]
    async fn a_call_queued_behind_a_firing_alarm_keeps_the_alarm_it_sets() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(&dir.path().join("auth.sqlite3")).unwrap());
        let rt: Arc<Runtime<Probe>> =
            Runtime::start(dir.path(), db, Arc::new(HostClock::default())).unwrap();
        let (started_tx, started_rx) = std_mpsc::channel();
        let (release_tx, release_rx) = std_mpsc::channel();
        *lock(&STARTED) = Some(started_tx);
        *lock(&RELEASE) = Some(release_rx);

        // An alarm far enough ahead that only the test fires it.
        rt.call("obj", false, |_: &mut Probe, env| {
            env.storage.set_alarm(Some(1_000_000_000_000_000))
        })
        .await
        .unwrap();
        let firing = tokio::spawn({
            let rt = Arc::clone(&rt);
            async move { rt.fire_all_now(Some("obj")).await }
        });
        while started_rx.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        let queued = tokio::spawn({
            let rt = Arc::clone(&rt);
            async move {
                rt.call("obj", false, |_: &mut Probe, env| {
                    keep_earliest(env, GRACE_END)
                })
                .await
                .unwrap()
            }
        });
        let slot = rt.slot("obj");
        while lock(&slot.queue).jobs.is_empty() {
            tokio::task::yield_now().await;
        }
        release_tx.send(()).unwrap();
        // Blocks this (the only) runtime thread until the runner is done with both calls.
        while lock(&slot.queue).running {
            std::thread::yield_now();
        }
        assert_eq!(firing.await.unwrap(), 1);
        queued.await.unwrap();
        assert_eq!(
            rt.stored_alarm("obj"),
            Some(GRACE_END),
            "the alarm set by the queued call was lost"
        );
        assert_eq!(rt.scheduled_names(), vec!["obj".to_owned()]);
        let next = lock(&rt.schedule).iter().next().cloned();
        assert_eq!(next, Some((GRACE_END, "obj".to_owned())));
    }
}
