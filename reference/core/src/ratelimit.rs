//! The per-tenant rate limiter: a fixed window counter.
//!
//! Algorithm: time is cut into windows of `windowSeconds`, aligned to multiples of the window
//! length since the Unix epoch. Each window admits exactly `requests` requests; refused requests
//! consume nothing. Because the counter lives in the tenant's Durable Object, whose requests run
//! one at a time, the limit is exact under any concurrency: a burst of any size inside one
//! window yields exactly `requests` successes. The known trade-off of fixed windows, stated
//! here and in `/.well-known/authconf`: a client can get up to twice the limit across the
//! boundary of two windows.

use auth_contract::RateLimit;

use crate::model::Plan;

/// Name of the algorithm in the capabilities document and `GET /v1/rate-limit`.
pub const ALGORITHM: &str = "fixed-window";

/// A quota: `requests` per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub requests: u32,
    pub window_seconds: u32,
}

impl Quota {
    /// The tenant's override, or its plan's default per minute.
    pub fn for_tenant(plan: Plan, over: Option<RateLimit>) -> Self {
        match over {
            Some(r) => Quota {
                requests: r.requests,
                window_seconds: r.window_seconds,
            },
            None => Quota {
                requests: plan.default_requests_per_minute(),
                window_seconds: 60,
            },
        }
    }

    /// `RateLimit-Policy` value (IETF draft syntax): `100;w=60`.
    pub fn policy(&self) -> String {
        format!("{};w={}", self.requests, self.window_seconds)
    }
}

/// What the limiter decided, with the figures the response headers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the window ends (at least 1).
    pub reset_seconds: u64,
}

/// The counter of the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FixedWindow {
    pub window_start_ms: i64,
    pub window_ms: i64,
    pub count: u32,
}

impl FixedWindow {
    fn roll(&mut self, quota: Quota, now_ms: i64) {
        let window_ms = i64::from(quota.window_seconds.max(1)) * 1000;
        let start = now_ms - now_ms.rem_euclid(window_ms);
        if start != self.window_start_ms || window_ms != self.window_ms {
            *self = FixedWindow {
                window_start_ms: start,
                window_ms,
                count: 0,
            };
        }
    }

    fn decision(&self, quota: Quota, now_ms: i64, allowed: bool) -> Decision {
        let end = self.window_start_ms + self.window_ms;
        let reset_ms = (end - now_ms).max(1);
        Decision {
            allowed,
            limit: quota.requests,
            remaining: quota.requests.saturating_sub(self.count),
            reset_seconds: (reset_ms as u64).div_ceil(1000),
        }
    }

    /// Admits one request if the window has room, counting it; a refusal counts nothing.
    pub fn admit(&mut self, quota: Quota, now_ms: i64) -> Decision {
        self.roll(quota, now_ms);
        let allowed = self.count < quota.requests;
        if allowed {
            self.count += 1;
        }
        self.decision(quota, now_ms, allowed)
    }

    /// The current state without counting anything.
    pub fn peek(&mut self, quota: Quota, now_ms: i64) -> Decision {
        self.roll(quota, now_ms);
        self.decision(quota, now_ms, self.count < quota.requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota {
        requests: 3,
        window_seconds: 10,
    };

    #[test]
    fn admits_exactly_the_limit_per_window_and_refusals_count_nothing() {
        let mut w = FixedWindow::default();
        let now = 1_000_000;
        let allowed = (0..10).filter(|_| w.admit(Q, now).allowed).count();
        assert_eq!(allowed, 3);
        assert_eq!(w.count, 3);
        let d = w.peek(Q, now);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_seconds, 10);
    }

    #[test]
    fn a_new_window_starts_empty() {
        let mut w = FixedWindow::default();
        for _ in 0..3 {
            w.admit(Q, 1_000_000);
        }
        assert!(!w.admit(Q, 1_009_999).allowed);
        let d = w.admit(Q, 1_010_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn reset_rounds_up_to_whole_seconds() {
        let mut w = FixedWindow::default();
        let d = w.admit(Q, 1_000_001);
        assert_eq!(d.reset_seconds, 10);
        let d = w.admit(Q, 1_009_500);
        assert_eq!(d.reset_seconds, 1);
    }

    #[test]
    fn plan_defaults() {
        assert_eq!(Quota::for_tenant(Plan::Free, None).requests, 100);
        assert_eq!(Quota::for_tenant(Plan::Pro, None).requests, 1_000);
        assert_eq!(Quota::for_tenant(Plan::Enterprise, None).requests, 10_000);
        let q = Quota::for_tenant(
            Plan::Free,
            Some(RateLimit {
                requests: 5,
                window_seconds: 2,
            }),
        );
        assert_eq!(q.policy(), "5;w=2");
    }
}
