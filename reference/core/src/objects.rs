//! Durable Objects, platform-free: the storage and socket ports an object sees, and the trait
//! an object implements.
//!
//! The shape follows SQLite-backed Durable Objects on Cloudflare, so the Worker adapter can map
//! it one to one:
//! - one live instance per object id, its requests run one at a time;
//! - storage is transactional SQL (plus a key-value area) private to the object, and a
//!   request's writes are durable before its response leaves;
//! - an alarm per object, persisted, fired at least once;
//! - an instance can be evicted whenever it is idle and is rebuilt from storage by [`DurableObject::load`];
//! - WebSockets are held by the platform, not the instance (hibernation), so they outlive an
//!   eviction; each carries a small attachment the object gave it.
//!
//! Handlers are synchronous: the platform's object storage is synchronous, and a handler that
//! never awaits cannot interleave with another request of the same object, which is what makes
//! the rate limiter exact.

use crate::ports::{Clock, Entropy, Sql, StorageError};

/// The storage private to one object.
pub trait ObjectStorage {
    /// The object's own SQLite database.
    fn sql(&self) -> &dyn Sql;
    /// Schedules the object's single alarm (replacing any), or clears it with `None`.
    fn set_alarm(&self, at_ms: Option<i64>);
    /// The scheduled alarm, if any.
    fn alarm(&self) -> Option<i64>;
}

/// Identifies one accepted WebSocket of an object.
pub type SocketId = u64;

/// The WebSockets the platform holds for an object.
pub trait SocketHub {
    /// Accepts the WebSocket the current request asks to open, with an attachment that stays
    /// with it across evictions. `None` when the request is not a WebSocket upgrade.
    fn accept(&self, attachment: &str) -> Option<SocketId>;
    /// Every open socket with the attachment it was accepted with.
    fn sockets(&self) -> Vec<(SocketId, String)>;
    /// Queues a text frame. A socket whose queue is full is closed rather than buffered
    /// without bound; answers false when the frame was not queued.
    fn send(&self, socket: SocketId, text: &str) -> bool;
    /// Closes a socket with a close code and reason.
    fn close(&self, socket: SocketId, code: u16, reason: &str);
}

/// The hub of an object that holds no sockets (the graph object, tests, benches).
pub struct NoSockets;

impl SocketHub for NoSockets {
    fn accept(&self, _: &str) -> Option<SocketId> {
        None
    }
    fn sockets(&self) -> Vec<(SocketId, String)> {
        Vec::new()
    }
    fn send(&self, _: SocketId, _: &str) -> bool {
        false
    }
    fn close(&self, _: SocketId, _: u16, _: &str) {}
}

/// What an object's handler may touch.
pub struct ObjectEnv<'a> {
    /// Name the object was addressed by (a tenant id, say).
    pub name: &'a str,
    pub storage: &'a dyn ObjectStorage,
    /// The service's relational tables (tenants, keys).
    pub db: &'a dyn Sql,
    pub clock: &'a dyn Clock,
    pub entropy: &'a dyn Entropy,
    pub sockets: &'a dyn SocketHub,
}

/// A Durable Object class.
pub trait DurableObject: Sized {
    /// The class name, which also names its storage.
    const CLASS: &'static str;

    /// Builds the in-memory instance from storage: at first use and after every eviction.
    fn load(env: &ObjectEnv) -> Result<Self, StorageError>;

    /// The alarm fired. An error makes the platform retry it later.
    fn alarm(&mut self, env: &ObjectEnv) -> Result<(), StorageError> {
        let _ = env;
        Ok(())
    }

    /// A text frame arrived on one of the object's sockets.
    fn websocket_message(
        &mut self,
        env: &ObjectEnv,
        socket: SocketId,
        attachment: &str,
        text: &str,
    ) {
        let _ = (env, socket, attachment, text);
    }

    /// A socket closed.
    fn websocket_closed(&mut self, env: &ObjectEnv, socket: SocketId) {
        let _ = (env, socket);
    }

    /// About how many bytes of memory the instance holds, for a host that caps the memory of
    /// its live instances (the platform evicts under memory pressure). Called after each call,
    /// so it must be cheap. Small instances keep the default.
    fn memory_estimate(&self) -> usize {
        0
    }
}
