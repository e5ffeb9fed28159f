//! What one call on an object sees, and how it runs: its object's storage inside the batch's
//! transaction (in a savepoint of its own) and its alarm, the shared database taken only when
//! the call first uses it, and a socket hub whose frames wait in the batch's outbox for the
//! commit. Kept apart from the runner, which decides when calls run and commit.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use auth_core::objects::{DurableObject, ObjectEnv, ObjectStorage, SocketHub, SocketId};
use auth_core::ports::{Sql, StorageError};
use rusqlite::Connection;
use tokio::sync::mpsc;

use super::batch::{Batch, Outbox, Output, Savepoint};
use super::sockets::{Accepted, CloseSignal, SocketEntry, SOCKET_QUEUE};
use super::{lock, Firing, Live, Runtime, Slot};
use crate::sqlite::SqliteSql;
use crate::{Database, OsEntropy};

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

impl<O: DurableObject + Send + 'static> Runtime<O> {
    /// Runs one call in its own savepoint of the batch's open transaction.
    pub(super) fn run_locked<R>(
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
}
