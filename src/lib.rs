//! uringest: an MPEG-TS ingest node for Linux.
//!
//! The transport-stream core ([`ts`]) is sans-IO: bytes in, results out.
//! Inputs ([`input`]) are thin shells around it; [`probe`] is the first
//! command built on both. [`hub`] is the lock-free fan-out every stream
//! goes through. [`bench`] generates paced UDP load for benchmarks.
//! [`config`] checks the `serve` configuration file before anything starts.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

// Uses core_affinity and raw sockets, like the shards; out of the loom build.
#[cfg(not(loom))]
pub mod bench;
pub mod clock;
// Names the shards' IoChoice; out of the loom build with them.
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
pub mod http;
pub mod hub;
pub mod input;
pub mod node;
pub mod output;
// The loom build (`--cfg loom`) checks the hub alone: the shards need
// tokio-uring, which does not build against tokio's loom mode.
#[cfg(not(loom))]
pub mod probe;
#[cfg(not(loom))]
pub mod relay;
#[cfg(not(loom))]
pub mod serve;
#[cfg(not(loom))]
pub mod shard;
pub mod ts;
pub mod url;
