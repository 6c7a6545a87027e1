//! Outputs: hub readers that send, write or print a stream.
//!
//! Every output reads the stream's hub on its own, passes what it reads
//! through an [`entry::EntryGate`] (so it starts, and restarts after
//! falling behind, at a clean entry point), and counts what it loses.
//! [`udp`] outputs run on the shards, paced; [`writer`] outputs (files,
//! stdout) run on threads of their own.

pub mod entry;
pub mod gaps;
pub mod pace;
pub mod spec;
pub mod tail;
#[cfg(not(loom))]
pub mod udp;
#[cfg(not(loom))]
pub mod writer;
