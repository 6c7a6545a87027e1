//! Inputs: thin shells that move bytes from a file or socket to the TS core.

pub mod chunks;
pub mod file;
pub mod framer;
#[cfg(not(loom))]
pub mod hls;
pub mod playout;
#[cfg(not(loom))]
pub mod read;
#[cfg(not(loom))]
pub mod udp;
