//! The node: what runs one stream on top of inputs, hub and outputs.
//!
//! [`supervisor`] decides, without I/O, which input feeds the stream;
//! [`splice`] keeps the output one valid stream across its switches;
//! [`api`] is what the HTTP side sees of it.

// Names the UDP outputs' counters; out of the loom build with them.
#[cfg(not(loom))]
pub mod api;
#[cfg(not(loom))]
pub mod directory;
// Runs on the shards; out of the loom build with them.
#[cfg(not(loom))]
pub mod registry;
pub mod splice;
#[cfg(not(loom))]
pub mod stream;
pub mod supervisor;
