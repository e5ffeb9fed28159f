//! What the tests see of the directory object on a tenant's path (issue #15): its count of
//! client requests and the Worker's cache of key owners (both test controls), and the key
//! index in binding-services' KV store that the Worker reads.

use std::path::PathBuf;
use std::time::Duration;

use super::{Stack, ADMIN_KEY, PEPPER};

fn key_hash(key: &str) -> String {
    auth_core::keys::KeyHasher::new(PEPPER.as_bytes()).hash(key)
}

impl Stack {
    /// How many client requests the directory object has handled (its test control).
    pub async fn directory_calls(&self) -> u64 {
        let r = self
            .get(ADMIN_KEY, "/_test/directory-calls")
            .await
            .expect(200);
        r.body["clientRequests"].as_u64().expect("clientRequests")
    }

    /// Sends `n` requests of `key` to the hot path, each answered `status`; answers how many
    /// client requests the directory handled meanwhile.
    pub async fn directory_calls_for(&self, key: &str, n: usize, status: u16) -> u64 {
        let before = self.directory_calls().await;
        for _ in 0..n {
            self.get(key, "/v1/rate-limit").await.expect(status);
        }
        self.directory_calls().await - before
    }

    /// Empties the Worker's in-memory cache of key owners, so the next request reads the index.
    pub async fn forget_key_owners(&self) {
        self.call(ADMIN_KEY, "POST", "/_test/forget-key-owners", None)
            .await
            .expect(200);
    }

    /// binding-services' KV store, where the key index lives.
    fn index_path(&self) -> PathBuf {
        self.data().join("bindings/kv.sqlite")
    }

    /// The key index entry of `key`: the id of the tenant it names.
    pub fn index_entry(&self, key: &str) -> Option<String> {
        let db = rusqlite::Connection::open(self.index_path()).expect("kv.sqlite");
        db.query_row(
            "SELECT value FROM kv WHERE ns = 'KEY_INDEX' AND key = ?",
            [key_hash(key)],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .ok()
        .map(|v| String::from_utf8(v).expect("a tenant id"))
    }

    /// Sets (`Some`) or removes the index entry of `key`, as a lagging or wrong index would
    /// hold it.
    pub fn set_index_entry(&self, key: &str, tenant: Option<&str>) {
        let db = rusqlite::Connection::open(self.index_path()).expect("kv.sqlite");
        db.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        match tenant {
            Some(t) => db.execute(
                "UPDATE kv SET value = ? WHERE ns = 'KEY_INDEX' AND key = ?",
                rusqlite::params![t.as_bytes(), key_hash(key)],
            ),
            None => db.execute(
                "DELETE FROM kv WHERE ns = 'KEY_INDEX' AND key = ?",
                [key_hash(key)],
            ),
        }
        .expect("change the index");
    }
}
