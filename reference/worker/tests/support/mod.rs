//! The test support of `in_workerd.rs`: workerd serving the built Worker beside
//! binding-services on a data dir of its own ([`Stack`]), requests whose answers name method,
//! path, expected and got when a status is wrong ([`Answer`]), the tenant, key and graph calls
//! the tests share, and the directory's test controls with the key index the Worker reads
//! (`directory.rs`).

mod api;
mod directory;
mod raw;
mod stack;
mod workerd;

pub use api::Answer;
pub use raw::{answer_while_withholding, find};
pub use stack::Stack;

pub const ADMIN_KEY: &str = "sk_test_0123456789abcdefghijABCDEFGHIJ0123456789";
pub const JWT_SECRET: &str = "a-jwt-secret-for-the-workerd-restart-test-0123456789";
pub const PEPPER: &str = "a-key-pepper-for-the-workerd-restart-test-0123456789";

/// A small graph: alice views the readme, bob edits the plan.
pub const CSV: &str = "subject_type,subject_id,relation,object_type,object_id\n\
                       user,alice,viewer,doc,readme\n\
                       user,bob,editor,doc,plan\n";
