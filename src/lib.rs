//! uringest: an MPEG-TS ingest node for Linux.
//!
//! The transport-stream core ([`ts`]) is sans-IO: bytes in, results out.
//! Inputs ([`input`]) are thin shells around it; [`probe`] is the first
//! command built on both. [`hub`] is the lock-free fan-out every stream
//! goes through.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod clock;
pub mod hub;
pub mod input;
pub mod probe;
pub mod ts;
pub mod url;
