//! Which instances stay in memory. Each live instance holds a SQLite connection and its own
//! memory, so both are capped ([`super::MAX_LIVE_OBJECTS`], [`super::MAX_LIVE_OBJECT_BYTES`]):
//! past a cap the least recently used idle instances are dropped, as the platform does under
//! memory pressure, and rebuilt with [`DurableObject::load`] on next use.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use auth_core::objects::DurableObject;
use auth_core::ports::Clock;

use super::{lock, Live, Runtime, Slot};

impl<O: DurableObject + Send + 'static> Runtime<O> {
    /// Drops the instance (its memory may no longer match storage); the next call rebuilds
    /// it with [`DurableObject::load`].
    pub(super) fn drop_instance(&self, slot: &Slot<O>, live: &mut Live<O>) {
        live.instance = None;
        self.account_memory(slot, 0);
    }

    /// Closes the instance's connection (which rolls back whatever it left open).
    pub(super) fn drop_connection(&self, live: &mut Live<O>) {
        if live.conn.take().is_some() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Records an instance's new memory estimate in its slot and in the runtime's sum.
    pub(super) fn account_memory(&self, slot: &Slot<O>, bytes: usize) {
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

    /// Past either cap (live instances, their memory), evicts idle instances down to nine
    /// tenths of it, so that eviction runs once per burst rather than on every call.
    pub(super) fn evict_past_caps(&self) {
        let budget = self.memory_budget.load(Ordering::Relaxed);
        let live_cap = self.live_cap.load(Ordering::Relaxed);
        if self.live.load(Ordering::Relaxed) > live_cap
            || self.memory.load(Ordering::Relaxed) > budget
        {
            self.evict_least_recently_used(live_cap * 9 / 10, budget / 10 * 9);
        }
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use auth_core::objects::{DurableObject, ObjectEnv};
    use auth_core::ports::StorageError;

    use super::super::{start_for_test, Runtime};
    use crate::HostClock;

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
        let clock = Arc::new(HostClock::default());
        let rt: Arc<Runtime<Heavy>> = start_for_test(dir.path(), Arc::clone(&clock));
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
        let clock = Arc::new(HostClock::default());
        let rt: Arc<Runtime<Heavy>> = start_for_test(dir.path(), Arc::clone(&clock));
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
}
