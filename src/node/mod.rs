//! The node: what runs one stream on top of inputs, hub and outputs.
//!
//! [`supervisor`] decides, without I/O, which input feeds the stream.

pub mod supervisor;
