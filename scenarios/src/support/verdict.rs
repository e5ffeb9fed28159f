//! What kind of failure a step reports, so that a report can tell "a security property is
//! broken" from "the error format differs" from "the setup could not run".
//!
//! A step fails by panicking (cucumber's model). The panic message may start with a marker
//! (`[authconf:security] `) naming its [`FailureClass`]; the harness reads it back with
//! [`split_marker`]. Format deviations inside behavioural scenarios do not panic at all: the
//! World records them as [`Deviation`]s in the run context and the scenario goes on to its
//! behavioural steps; the harness then fails a scenario that passed otherwise as
//! `conformance`.

use std::fmt;

/// The class of a failed scenario, decided by the step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureClass {
    /// An isolation, secrecy, revocation, rate-limit or token property is broken.
    Security,
    /// The target answers in another format or shape than docs/contract.md (or behaves
    /// otherwise than the contract in a way that is not a security property).
    Conformance,
    /// A setup step could not run: a route is missing, a capability is absent.
    Blocked,
    /// The harness could not read or reach something: its own problem, not the target's.
    Harness,
}

impl FailureClass {
    /// Every class, most severe first (the order `--fail-on` and reports use).
    pub const ALL: [FailureClass; 4] = [
        FailureClass::Security,
        FailureClass::Conformance,
        FailureClass::Blocked,
        FailureClass::Harness,
    ];

    /// The class's name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Security => "security",
            FailureClass::Conformance => "conformance",
            FailureClass::Blocked => "blocked",
            FailureClass::Harness => "harness",
        }
    }

    /// The class named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        FailureClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The marker a step's panic message starts with.
    pub fn marker(self) -> String {
        format!("[authconf:{}] ", self.name())
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Splits a step's failure message into its class (when marked) and the message proper.
pub fn split_marker(message: &str) -> (Option<FailureClass>, &str) {
    let trimmed = message.trim_start();
    if let Some(rest) = trimmed.strip_prefix("[authconf:") {
        if let Some((name, tail)) = rest.split_once(']') {
            if let Some(class) = FailureClass::from_name(name) {
                return (Some(class), tail.trim_start());
            }
        }
    }
    (None, message)
}

/// A format deviation recorded without stopping the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    /// `METHOD path` of the exchange that deviated.
    pub request: String,
    /// What the contract expects and what the target sent, in words its owner can act on.
    pub message: String,
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.request, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_message_gives_its_class_and_the_rest() {
        let msg = format!(
            "{}GET /v1/tenant: expected 401, got 200",
            FailureClass::Security.marker()
        );
        assert_eq!(
            split_marker(&msg),
            (
                Some(FailureClass::Security),
                "GET /v1/tenant: expected 401, got 200"
            )
        );
    }

    #[test]
    fn an_unmarked_or_unknown_marker_is_left_alone() {
        assert_eq!(split_marker("plain"), (None, "plain"));
        assert_eq!(
            split_marker("[authconf:nope] x"),
            (None, "[authconf:nope] x")
        );
    }
}
