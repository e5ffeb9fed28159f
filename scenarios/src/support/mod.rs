//! Everything the World and the steps share that needs no World: the run context, tolerant
//! readers of answers, failure classes, the contract's shapes, the HTTP transport, and small
//! helpers (text, key material, JWTs, mail, audit records, internal-text patterns).

pub mod context;
pub mod extract;
pub(crate) mod http;
pub(crate) mod internals;
pub(crate) mod jwt;
pub(crate) mod keys;
pub(crate) mod mail;
pub(crate) mod records;
pub mod shapes;
pub(crate) mod text;
pub mod verdict;
