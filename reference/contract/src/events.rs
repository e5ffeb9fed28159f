//! Frames the event stream (`GET /v1/events`, a WebSocket) sends, told apart by `type`.

use serde::{Deserialize, Serialize};

use crate::audit::AuditRecord;

/// One text frame of the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EventFrame {
    /// The first frame, once the socket is accepted.
    #[serde(rename_all = "camelCase")]
    Connected {
        tenant_id: String,
        key_id: String,
        timestamp: i64,
    },
    /// An audit record, pushed as it is written.
    Event { record: AuditRecord },
    /// The answer to `{"type":"ping"}`.
    Pong { timestamp: i64 },
    /// The answer to a frame the stream does not understand.
    Error { error: String },
}
