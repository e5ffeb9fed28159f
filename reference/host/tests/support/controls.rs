//! The test controls of a service started with `--test-hooks` (`/_test/*`).

use serde_json::{json, Value};

use super::service::Service;

/// `{"tenantId": t}`, or `{}` for every tenant.
fn scope(tenant: Option<&str>) -> Value {
    match tenant {
        Some(t) => json!({"tenantId": t}),
        None => json!({}),
    }
}

impl Service {
    /// `POST /_test/clock`: answers the new time in ms.
    pub async fn advance(&self, ms: i64) -> i64 {
        let r = self
            .admin("POST", "/_test/clock", Some(json!({"advanceMs": ms})))
            .await;
        r.ok(200)["nowMs"].as_i64().expect("nowMs")
    }

    pub async fn now_ms(&self) -> i64 {
        self.advance(0).await
    }

    /// Moves the clock to 1 ms past the start of the next window of `seconds`, so a whole
    /// window lies ahead.
    pub async fn start_of_next_window(&self, seconds: i64) {
        let w = seconds * 1000;
        let now = self.now_ms().await;
        let after = self.advance(w - now.rem_euclid(w) + 1).await;
        assert!(after.rem_euclid(w) < 1000, "at the start of a window");
    }

    /// `POST /_test/evict` for one tenant or all: answers how many objects were evicted.
    pub async fn evict(&self, tenant: Option<&str>) -> i64 {
        let r = self
            .admin("POST", "/_test/evict", Some(scope(tenant)))
            .await;
        r.ok(200)["evicted"].as_i64().expect("evicted")
    }

    /// `POST /_test/alarms/fire` for one tenant or all: answers how many alarms fired.
    pub async fn fire_alarms(&self, tenant: Option<&str>) -> i64 {
        let r = self
            .admin("POST", "/_test/alarms/fire", Some(scope(tenant)))
            .await;
        r.ok(200)["fired"].as_i64().expect("fired")
    }
}
