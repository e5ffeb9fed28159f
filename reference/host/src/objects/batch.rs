//! Write coalescing for one object's runner: the open transaction its queued calls share, what
//! those calls leave for after the commit (answers, WebSocket frames and closes), and the
//! savepoint each call runs in.
//!
//! The runner (`Runtime::drain`, in `runner.rs`) runs calls back to back inside one
//! transaction and commits once; nothing a call produced leaves the process before that commit
//! (the output gate). A failed commit answers every held call with [`StorageError::Unavailable`] instead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use auth_core::objects::SocketId;
use auth_core::ports::StorageError;
use rusqlite::Connection;

use super::sockets::{SocketEntry, CLOSE_TOO_SLOW};

/// Calls a runner puts in one transaction by default before committing.
pub const DEFAULT_BATCH_CALLS: usize = 64;
/// Longest a batch stays open by default, from its first call.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_micros(2_000);

/// How an object's runner coalesces the writes of its queued calls. A batch commits when the
/// object's queue is empty, or after `max_calls` calls, or once `max_wait` has passed since
/// its first call, whichever comes first: a busy object still answers within about
/// `max_wait` plus one call and one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most calls in one transaction (1: a commit per call, as without batching).
    pub max_calls: usize,
    /// Longest a transaction stays open, from its first call.
    pub max_wait: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_calls: DEFAULT_BATCH_CALLS,
            max_wait: DEFAULT_BATCH_WAIT,
        }
    }
}

/// Hands one call's result to its caller: with `Ok(())` once the batch has committed, with
/// the error that failed the batch otherwise (the call's own result is then dropped).
pub type Held = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Something a call sent to a socket, held until the batch commits.
pub enum Output {
    Frame(SocketId, String),
    Close(SocketId, u16, String),
}

/// What the calls of one batch leave for after its commit.
#[derive(Default)]
pub struct Outbox {
    /// Frames and closes, in the order the calls made them.
    pub outputs: Vec<Output>,
    /// Sockets a call of the batch closed: later calls no longer see them.
    pub closed: Vec<SocketId>,
    /// Sockets a call of the batch accepted: forgotten again if the batch fails.
    pub accepted: Vec<SocketId>,
}

/// Where an outbox stood before a call, to drop that call's part if it panics.
pub struct Mark(usize, usize, usize);

impl Outbox {
    pub fn mark(&self) -> Mark {
        Mark(self.outputs.len(), self.closed.len(), self.accepted.len())
    }

    /// Drops what was added since `mark`; answers the sockets accepted since (to forget).
    pub fn truncate(&mut self, mark: Mark) -> Vec<SocketId> {
        self.outputs.truncate(mark.0);
        self.closed.truncate(mark.1);
        self.accepted.split_off(mark.2)
    }

    /// Sends the held frames and closes, in order, to the sockets still open. A socket whose
    /// queue is full is closed rather than buffered without bound.
    pub fn send(&mut self, object: &str, sockets: &mut HashMap<SocketId, SocketEntry>) {
        for output in self.outputs.drain(..) {
            match output {
                Output::Frame(id, text) => {
                    let Some(entry) = sockets.get(&id) else {
                        continue;
                    };
                    if entry.tx.try_send(text).is_err() {
                        tracing::warn!(object, socket = id, "closing a socket that fell behind");
                        if let Some(e) = sockets.remove(&id) {
                            e.close.close(CLOSE_TOO_SLOW, "too slow");
                        }
                    }
                }
                Output::Close(id, code, reason) => {
                    if let Some(e) = sockets.remove(&id) {
                        e.close.close(code, &reason);
                    }
                }
            }
        }
    }
}

/// The open transaction of an object's runner.
pub struct Batch {
    /// `BEGIN` ran: the object's connection is inside the batch's transaction.
    pub open: bool,
    /// Calls run in it so far.
    pub calls: usize,
    pub started: Instant,
    /// The alarm in metadata when the batch began.
    pub stored_alarm: Option<i64>,
    /// The alarm as the batch's calls have left it: what the next call sees.
    pub alarm: Cell<Option<i64>>,
    pub outbox: RefCell<Outbox>,
    /// The answers of the calls run so far.
    pub held: Vec<Held>,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            open: false,
            calls: 0,
            started: Instant::now(),
            stored_alarm: None,
            alarm: Cell::new(None),
            outbox: RefCell::new(Outbox::default()),
            held: Vec::new(),
        }
    }
}

impl Batch {
    /// Whether the batch has reached a limit and must commit before the next call.
    pub fn full(&self, limits: &BatchLimits) -> bool {
        self.calls >= limits.max_calls.max(1) || self.started.elapsed() >= limits.max_wait
    }
}

/// The answers of a batch, to hand out once the runner knows its fate.
pub struct Answers {
    pub held: Vec<Held>,
    /// Why the batch failed; `None` when it committed.
    pub failure: Option<String>,
    /// The frames and closes of a committed batch (empty otherwise).
    pub outbox: Outbox,
}

impl Answers {
    /// Sends the batch's frames and closes (see [`Outbox::send`]). The caller holds the
    /// object's socket map from before it let go of the gate, so frames of consecutive
    /// batches reach a socket in order.
    pub fn send_outputs(&mut self, object: &str, sockets: &mut HashMap<SocketId, SocketEntry>) {
        self.outbox.send(object, sockets);
    }

    /// Hands every held call its answer (frames still held are sent first).
    pub fn release(
        mut self,
        object: &str,
        sockets: &std::sync::Mutex<HashMap<SocketId, SocketEntry>>,
    ) {
        if !self.outbox.outputs.is_empty() {
            self.send_outputs(
                object,
                &mut sockets.lock().unwrap_or_else(|p| p.into_inner()),
            );
        }
        for held in self.held {
            held(match &self.failure {
                None => Ok(()),
                Some(why) => Err(StorageError::Unavailable(why.clone())),
            });
        }
    }
}

/// The savepoint one call runs in. Until released, dropping it rolls the call's writes back:
/// on an error and while a panic unwinds through the handler, so a failing call takes back
/// only its own writes and the batch's other calls keep theirs.
pub struct Savepoint<'c> {
    conn: &'c Connection,
}

impl<'c> Savepoint<'c> {
    pub fn begin(conn: &'c Connection) -> Result<Self, StorageError> {
        conn.execute_batch("SAVEPOINT object_call")
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(Self { conn })
    }

    pub fn release(self) -> Result<(), StorageError> {
        self.conn
            .execute_batch("RELEASE object_call")
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if let Err(e) = self
            .conn
            .execute_batch("ROLLBACK TO object_call; RELEASE object_call")
        {
            tracing::error!(error = %e, "rolling back a failed call's savepoint failed");
        }
    }
}
