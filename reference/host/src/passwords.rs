//! The password workers: argon2 runs on at most `workers` threads at once, each with a working
//! memory it keeps (19 MiB each), so the CPU and memory that logins, registrations and resets
//! can take are bounded whatever the number of callers. A call that finds every worker busy
//! waits its turn in a bounded queue for a bounded time, then gets a 503 problem.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use auth_core::users::password::{Memory, PasswordWork};
use auth_core::ApiError;

/// Seconds a refused caller is told to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: u64 = 1;

struct Slots {
    /// Working memories not in use.
    free: Vec<Memory>,
    /// Memories made so far (at most `workers`).
    made: usize,
    /// Callers waiting for a memory.
    waiting: usize,
}

pub struct PasswordPool {
    workers: usize,
    queue: usize,
    wait: Duration,
    slots: Mutex<Slots>,
    freed: Condvar,
    jobs: AtomicU64,
}

impl PasswordPool {
    /// `workers` concurrent hashes (at least 1), `queue` callers waiting at most, each for at
    /// most `wait`.
    pub fn new(workers: usize, queue: usize, wait: Duration) -> Self {
        Self {
            workers: workers.max(1),
            queue,
            wait,
            slots: Mutex::new(Slots {
                free: Vec::new(),
                made: 0,
                waiting: 0,
            }),
            freed: Condvar::new(),
            jobs: AtomicU64::new(0),
        }
    }

    /// Hashes run so far (the abuse test checks every login failure costs one).
    pub fn jobs(&self) -> u64 {
        self.jobs.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Result<Memory, ApiError> {
        let busy = ApiError::Busy(RETRY_AFTER_SECONDS);
        let mut slots = self.lock();
        if let Some(m) = slots.free.pop() {
            return Ok(m);
        }
        if slots.made < self.workers {
            slots.made += 1;
            drop(slots);
            return Ok(Memory::new());
        }
        if slots.waiting >= self.queue {
            return Err(busy);
        }
        slots.waiting += 1;
        let deadline = Instant::now() + self.wait;
        let got = loop {
            if let Some(m) = slots.free.pop() {
                break Some(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            slots = self
                .freed
                .wait_timeout(slots, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        slots.waiting -= 1;
        got.ok_or(busy)
    }

    fn give_back(&self, memory: Memory) {
        self.lock().free.push(memory);
        self.freed.notify_one();
    }
}

/// Returns the memory to the pool also when the job panics.
struct Lease<'a> {
    pool: &'a PasswordPool,
    memory: Option<Memory>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.memory.take() {
            self.pool.give_back(m);
        }
    }
}

impl PasswordWork for PasswordPool {
    fn run(&self, job: &mut dyn FnMut(&mut Memory)) -> Result<(), ApiError> {
        let mut lease = Lease {
            pool: self,
            memory: Some(self.take()?),
        };
        self.jobs.fetch_add(1, Ordering::Relaxed);
        job(lease.memory.as_mut().expect("taken above"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_pool_refuses_after_its_queue_and_wait() {
        let pool = Arc::new(PasswordPool::new(1, 1, Duration::from_millis(200)));
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let p = Arc::clone(&pool);
        let holder = std::thread::spawn(move || {
            p.run(&mut |_| {
                started_tx.send(()).unwrap();
                hold_rx.recv().unwrap();
            })
        });
        started_rx.recv().unwrap();
        // One waiter fits the queue and times out; a second one is refused at once.
        let p = Arc::clone(&pool);
        let waiter = std::thread::spawn(move || p.run(&mut |_| {}));
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        assert_eq!(pool.run(&mut |_| {}), Err(ApiError::Busy(1)));
        assert!(t.elapsed() < Duration::from_millis(150));
        assert_eq!(waiter.join().unwrap(), Err(ApiError::Busy(1)));
        hold_tx.send(()).unwrap();
        holder.join().unwrap().unwrap();
        // Free again: the memory came back.
        assert!(pool.run(&mut |_| {}).is_ok());
        assert_eq!(pool.jobs(), 2);
    }
}
