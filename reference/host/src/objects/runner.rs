//! The runner of one object: its calls queue up and a single runner at a time takes the
//! object's gate and drains them on one blocking thread, back to back inside one transaction
//! of the object's storage, committing once per batch ([`BatchLimits`]). Nothing a call
//! produced leaves before that commit (the output gate); a failed commit answers every held
//! call with [`StorageError::Unavailable`] and rebuilds the instance from storage.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use auth_core::objects::{DurableObject, ObjectEnv};
use auth_core::ports::{Clock, StorageError};
use tokio::sync::oneshot;

use super::batch::{Answers, Batch, BatchLimits, Held, Outbox};
use super::sockets::Accepted;
use super::{lock, object_file, Firing, Job, Live, Run, Runtime, Slot};
use crate::sqlite::open_object_connection;

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

impl<O: DurableObject + Send + 'static> Runtime<O> {
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
    pub(super) async fn call_inner<R: Send + 'static>(
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
        self.evict_past_caps();
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
}
