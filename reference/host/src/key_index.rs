//! Which tenant owns a key, by the key's hash, kept in memory so the hot path reads no shared
//! database.
//!
//! Sound without invalidation: a key's tenant never changes, and the index only says which
//! tenant's object to ask. That object holds the key records and refuses a revoked, expired,
//! rotated-out or foreign key, and a deleted or suspended tenant, whatever the index says.
//! Only keys that exist are remembered (a flood of unknown keys cannot fill it), and it is
//! bounded (`KEY_INDEX_ENTRIES`; quick_cache evicts the coldest entries).

use quick_cache::sync::Cache;

pub struct KeyIndex {
    owners: Cache<String, String>,
}

impl KeyIndex {
    pub fn new(entries: usize) -> Self {
        Self {
            owners: Cache::new(entries.max(1)),
        }
    }

    /// The tenant of the key with this hash, if remembered.
    pub fn get(&self, key_hash: &str) -> Option<String> {
        self.owners.get(key_hash)
    }

    /// Remembers the tenant of a key found in the database.
    pub fn remember(&self, key_hash: &str, tenant_id: &str) {
        self.owners
            .insert(key_hash.to_owned(), tenant_id.to_owned());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_owners_within_its_bound() {
        let index = KeyIndex::new(100);
        index.remember("h1", "tenant:a");
        assert_eq!(index.get("h1").as_deref(), Some("tenant:a"));
        assert_eq!(index.get("h2"), None);
        for i in 0..10_000 {
            index.remember(&format!("k{i}"), "tenant:b");
        }
        assert!(index.len() <= 200, "bounded: {}", index.len());
    }
}
