//! Outputs: hub readers that send, write or print a stream.

pub mod entry;
