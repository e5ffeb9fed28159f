//! The test support of `in_workerd.rs`, in layers with no loop: `workerd.rs` (the process) <-
//! `stack.rs` (workerd beside binding-services on a data dir of its own: [`Stack`]) <- `api.rs`
//! (keyed requests whose [`Answer`] names method, path, expected and got when a status is
//! wrong) <- `tenants.rs` (the tenant, key and graph calls the tests share) and `directory.rs`
//! (the directory's test controls and the key index the Worker reads); `raw.rs` reads answers
//! off a raw TCP stream.

mod api;
mod directory;
mod raw;
mod stack;
mod tenants;
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
