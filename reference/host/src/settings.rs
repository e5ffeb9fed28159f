//! The limits of the native host: each a setting with a safe default, on the command line
//! and in the environment (`auth-service --help` lists them).

use std::time::Duration;

/// Every limit the host enforces. [`Limits::default`] is what `auth-service` runs with when
/// no flag is given.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A client must send a request's whole head within this, also while a kept-alive
    /// connection waits for its next request.
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this once its head is in (else 408).
    pub body_read_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// How long a body refused unread (too large, no valid key) is still read and thrown
    /// away, so the client can finish sending and read the refusal instead of a reset.
    pub linger: Duration,
    /// Connections served at once; more wait in the listen backlog until one ends.
    pub max_connections: usize,
    /// Serve HTTP/2 (prior knowledge) as well as HTTP/1.1.
    pub http2: bool,
    /// Password hashes (argon2, 19 MiB each) computed at once.
    pub password_workers: usize,
    /// Callers waiting for a password worker; more are refused with 503.
    pub password_queue: usize,
    /// Longest wait for a password worker before a 503.
    pub password_wait: Duration,
    /// End-user auth requests without a tenant key per client address per minute, over all
    /// tenants.
    pub keyless_auth_per_address: u32,
    /// Largest inbound WebSocket message (and frame).
    pub ws_message_bytes: usize,
    /// The core's limits: keyless end-user auth per tenant, WebSockets per tenant and key.
    pub core: auth_core::limits::Limits,
    /// The graph object's limits: edges per graph, versions the mutation log keeps.
    pub graph: auth_core::graph::GraphLimits,
    /// Memory the live object instances may hold together, by their own estimates, before
    /// the least recently used idle ones are evicted.
    pub object_memory_bytes: usize,
    /// Most object instances of one class held in memory at once (each keeps a SQLite
    /// connection: three file descriptors).
    pub max_live_objects: usize,
    /// How an object's runner coalesces the writes of its queued calls: most calls and
    /// longest time per transaction (answers wait for the commit).
    pub object_batch: crate::objects::BatchLimits,
    /// Entries of the in-memory index from a key's hash to its tenant (positive entries
    /// only; a miss reads the database). About 200 bytes each.
    pub key_index_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            linger: Duration::from_secs(2),
            max_connections: 512,
            http2: false,
            password_workers: 2,
            password_queue: 64,
            password_wait: Duration::from_secs(5),
            keyless_auth_per_address: 600,
            ws_message_bytes: 16 * 1024,
            core: auth_core::limits::Limits::default(),
            graph: auth_core::graph::GraphLimits::default(),
            object_memory_bytes: crate::objects::MAX_LIVE_OBJECT_BYTES,
            max_live_objects: crate::objects::MAX_LIVE_OBJECTS,
            object_batch: crate::objects::BatchLimits::default(),
            key_index_entries: 100_000,
        }
    }
}

/// The limits as command-line flags (each also read from the environment variable named).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Seconds a client has to send a request head (also between kept-alive requests).
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body has to arrive once the head is in.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub body_read_timeout_secs: u64,
    /// Seconds after which a connection with no request in flight is closed.
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Milliseconds a refused, unread body is still read and discarded (memory stays flat).
    #[arg(long, env = "LINGER_MS", default_value_t = 2000)]
    pub linger_ms: u64,
    /// Connections served at once (keep it below the open-file limit).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Serve HTTP/2 too (off by default).
    #[arg(long, env = "HTTP2")]
    pub http2: bool,
    /// Password hashes computed at once (19 MiB of memory each).
    #[arg(long, env = "PASSWORD_WORKERS", default_value_t = 2)]
    pub password_workers: usize,
    /// Callers waiting for a password worker before 503.
    #[arg(long, env = "PASSWORD_QUEUE", default_value_t = 64)]
    pub password_queue: usize,
    /// Milliseconds a caller waits for a password worker before 503.
    #[arg(long, env = "PASSWORD_WAIT_MS", default_value_t = 5000)]
    pub password_wait_ms: u64,
    /// Keyless end-user auth requests per client address per minute.
    #[arg(long, env = "KEYLESS_AUTH_PER_ADDRESS", default_value_t = 600)]
    pub keyless_auth_per_address: u32,
    /// Keyless end-user auth requests per tenant per window (capped at the tenant's quota).
    #[arg(long, env = "KEYLESS_AUTH_PER_TENANT", default_value_t = 60)]
    pub keyless_auth_per_tenant: u32,
    /// Largest inbound WebSocket message in bytes.
    #[arg(long, env = "WS_MESSAGE_BYTES", default_value_t = 16384)]
    pub ws_message_bytes: usize,
    /// Open WebSockets per tenant.
    #[arg(long, env = "WS_SOCKETS_PER_TENANT", default_value_t = 64)]
    pub ws_sockets_per_tenant: usize,
    /// Open WebSockets per API key.
    #[arg(long, env = "WS_SOCKETS_PER_KEY", default_value_t = 8)]
    pub ws_sockets_per_key: usize,
    /// Most edges (live and revoked) one tenant's graph holds, at most 200000.
    #[arg(long, env = "GRAPH_MAX_EDGES", default_value_t = auth_core::graph::MAX_EDGES)]
    pub graph_max_edges: usize,
    /// Versions the graph mutation log keeps; `since` before them is 410.
    #[arg(long, env = "GRAPH_LOG_WINDOW", default_value_t = auth_core::graph::DEFAULT_LOG_WINDOW)]
    pub graph_log_window: i64,
    /// MiB the live object instances may hold together (by estimate) before eviction.
    #[arg(long, env = "OBJECT_MEMORY_MIB", default_value_t = 512)]
    pub object_memory_mib: usize,
    /// Object instances of one class held in memory at once (3 open files each) before the least
    /// recently used idle ones are evicted.
    #[arg(long, env = "MAX_LIVE_OBJECTS", default_value_t = crate::objects::MAX_LIVE_OBJECTS)]
    pub max_live_objects: usize,
    /// Most calls of one object committed in one transaction (1: a commit per call).
    #[arg(long, env = "OBJECT_BATCH_CALLS", default_value_t = crate::objects::DEFAULT_BATCH_CALLS)]
    pub object_batch_calls: usize,
    /// Microseconds an object's transaction stays open at most before it commits (its
    /// callers wait for the commit; at most 1000000).
    #[arg(long, env = "OBJECT_BATCH_MICROS",
          default_value_t = crate::objects::DEFAULT_BATCH_WAIT.as_micros() as u64)]
    pub object_batch_micros: u64,
    /// Keys whose tenant is remembered in memory (hash to tenant id; a miss reads the database).
    #[arg(long, env = "KEY_INDEX_ENTRIES", default_value_t = 100_000)]
    pub key_index_entries: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            linger: Duration::from_millis(self.linger_ms),
            max_connections: self.max_connections.max(1),
            http2: self.http2,
            password_workers: self.password_workers.max(1),
            password_queue: self.password_queue,
            password_wait: Duration::from_millis(self.password_wait_ms),
            keyless_auth_per_address: self.keyless_auth_per_address.max(1),
            ws_message_bytes: self.ws_message_bytes.max(1024),
            core: auth_core::limits::Limits {
                keyless_auth_requests: self.keyless_auth_per_tenant.max(1),
                sockets_per_tenant: self.ws_sockets_per_tenant.max(1),
                sockets_per_key: self.ws_sockets_per_key.max(1),
            },
            graph: auth_core::graph::GraphLimits {
                max_edges: self.graph_max_edges.clamp(1, auth_core::graph::MAX_EDGES),
                log_window: self.graph_log_window.max(1),
            },
            object_memory_bytes: self.object_memory_mib.max(1) * 1024 * 1024,
            max_live_objects: self.max_live_objects.max(1),
            object_batch: crate::objects::BatchLimits {
                max_calls: self.object_batch_calls.max(1),
                max_wait: Duration::from_micros(self.object_batch_micros.min(1_000_000)),
            },
            key_index_entries: self.key_index_entries.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let from_flags = Cli::parse_from(["x"]).limits.limits();
        let d = Limits::default();
        assert_eq!(format!("{from_flags:?}"), format!("{d:?}"));
    }
}
