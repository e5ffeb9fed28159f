//! The bodies of the test controls' answers (`/_test/*`, only with test hooks on, only for the
//! platform admin). Both hosts, the native one and the Worker, build them from these types, so
//! the two cannot drift apart; the conformance steps read them as untyped JSON like every
//! other body.

use serde::{Deserialize, Serialize};

/// The 200 body of a test control the core parses (`advance-clock`, `fire-alarms`, `evict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TestControlAnswer {
    /// `POST /_test/advance-clock`: the test clock's time after the step.
    Clock {
        #[serde(rename = "nowMs")]
        now_ms: i64,
    },
    /// `POST /_test/fire-alarms`: how many objects' alarms ran.
    Fired { fired: u64 },
    /// `POST /_test/evict`: how many objects dropped their in-memory state.
    Evicted { evicted: u64 },
}

/// `POST /_test/forget-key-owners` (the Worker only): how many cached key owners the isolate
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOwnersForgotten {
    pub forgotten: u64,
}

/// `GET /_test/directory-calls` (the Worker only): how many client requests and internal
/// calls this directory instance handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryCalls {
    pub client_requests: u64,
    pub internal_calls: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_answers_keep_their_wire_names() {
        let cases = [
            (TestControlAnswer::Clock { now_ms: 5 }, json!({"nowMs": 5})),
            (TestControlAnswer::Fired { fired: 2 }, json!({"fired": 2})),
            (
                TestControlAnswer::Evicted { evicted: 1 },
                json!({"evicted": 1}),
            ),
        ];
        for (answer, wire) in cases {
            assert_eq!(serde_json::to_value(answer).expect("serialises"), wire);
            assert_eq!(
                serde_json::from_value::<TestControlAnswer>(wire).expect("parses"),
                answer
            );
        }
        assert_eq!(
            serde_json::to_value(KeyOwnersForgotten { forgotten: 3 }).expect("serialises"),
            json!({"forgotten": 3})
        );
        assert_eq!(
            serde_json::to_value(DirectoryCalls {
                client_requests: 1,
                internal_calls: 2
            })
            .expect("serialises"),
            json!({"clientRequests": 1, "internalCalls": 2})
        );
    }
}
