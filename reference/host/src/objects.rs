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
//!
//! The rooms, each an `impl` block of [`Runtime`] or the types one job needs:
//! - this file: the registry (one [`Slot`] per object name, what outlives an instance), the
//!   class's directory and metadata, start and stop;
//! - [`runner`]: the per-object queue and its runner, which batches calls into one
//!   transaction and answers them after the commit (the output gate);
//! - [`batch`]: what a batch holds until its commit (answers, frames, closes) and the
//!   savepoint each call runs in;
//! - [`call`]: what one call sees: its object's storage and alarm, the shared database taken on
//!   demand, its socket hub;
//! - [`alarms`]: the alarm of each object, persisted, scheduled, fired and retried;
//! - [`eviction`]: which instances stay in memory (count and memory caps, idle eviction);
//! - [`sockets`]: the WebSockets the runtime owns for its objects (queues, close signals).

mod alarms;
mod batch;
mod call;
mod eviction;
#[cfg(test)]
mod gates;
mod runner;
mod sockets;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use auth_core::objects::{DurableObject, SocketId};
use auth_core::ports::StorageError;
use rusqlite::Connection;
use tokio::sync::Notify;

use batch::{Batch, Held};
pub use batch::{BatchLimits, DEFAULT_BATCH_CALLS, DEFAULT_BATCH_WAIT};
use sockets::SocketEntry;
pub use sockets::{Accepted, CLOSE_TOO_SLOW};

use crate::sqlite::open_connection;
use crate::{Database, HostClock};

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

/// A runtime of class `O` over a fresh database in `dir` (for the runtime's own tests).
#[cfg(test)]
fn start_for_test<O: DurableObject + Send + 'static>(
    dir: &Path,
    clock: Arc<HostClock>,
) -> Arc<Runtime<O>> {
    let db = Arc::new(Database::open(&dir.join("auth.sqlite3")).unwrap());
    Runtime::start(dir, db, clock).unwrap()
}
