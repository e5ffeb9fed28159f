//! The alarm of each object: persisted in the class's `metadata.sqlite3`, fired by a scheduler
//! at or after its time (also after a restart: past-due alarms fire at start), at least once,
//! and retried with backoff when the handler fails. A batch stores the alarm its calls leave
//! with its commit (see `Runtime::end_batch`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use auth_core::objects::DurableObject;
use auth_core::ports::{Clock, StorageError};
use rusqlite::Connection;

use super::{lock, Runtime};

impl<O: DurableObject + Send + 'static> Runtime<O> {
    pub(super) fn stored_alarm(&self, name: &str) -> Option<i64> {
        // Runs on every call: a cached statement spares the SQL parse each time.
        let meta = lock(&self.metadata);
        let mut stmt = meta
            .prepare_cached("SELECT at_ms FROM alarms WHERE name = ?1")
            .ok()?;
        stmt.query_row([name], |r| r.get(0)).ok()
    }

    pub(super) fn store_alarm(
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
    pub(super) async fn run_alarms(self: Arc<Self>) {
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
        self.fire_each(due).await
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
        self.fire_each(due).await
    }

    /// Fires the given alarms one after the other; answers how many handlers succeeded.
    async fn fire_each(self: &Arc<Self>, due: Vec<(i64, String)>) -> usize {
        let mut fired = 0;
        for (at, name) in due {
            if self.fire(&name, at).await {
                fired += 1;
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;
    use std::sync::{Arc, Mutex};

    use auth_core::objects::{DurableObject, ObjectEnv};
    use auth_core::ports::StorageError;

    use super::super::{lock, start_for_test, Runtime};
    use crate::HostClock;

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
        let rt: Arc<Runtime<Probe>> = start_for_test(dir.path(), Arc::new(HostClock::default()));
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
