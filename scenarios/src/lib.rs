//! Black-box steps of the `authconf` conformance suite.
//!
//! The steps speak HTTP to a target URL and never depend on any crate of the reference
//! implementation: the same steps judge the reference, a deployed Worker, or any other
//! implementation of docs/contract.md. They read responses tolerantly ([`extract`]: the
//! contract's shapes or the public cf-auth deployment's envelope) and judge shapes strictly
//! only in `@contract` scenarios ([`shapes`]).
//!
//! Run-wide state (target, capabilities, secrets seen, tenant ledger, latencies) lives in a
//! [`RunContext`]; the harness installs it with [`with_context`] around the cucumber run, and
//! every [`AuthWorld`] picks it up when cucumber builds it.
//!
//! The modules form a stack: `support` (no World) <- `world` (the World and its state) <-
//! `steps` (one module per domain, each depending on the World only).

mod steps;
mod support;
pub mod world;

pub use support::{context, extract, shapes, verdict};

pub use context::{
    Capabilities, CapturedMail, Ledger, MailCapture, Propagation, RunContext, Secret,
    SecretRegistry,
};
pub use verdict::{split_marker, Deviation, FailureClass};
pub use world::{with_context, AuthWorld, Exchange};

/// Every tenant the suite creates has a slug starting with this, then the run id.
pub const SLUG_PREFIX: &str = "authconf-";
