//! Load generation for benchmarks. `bench send` paces valid MPEG-TS over
//! UDP at a fixed bit rate (or as fast as it can), so a receiver can
//! measure throughput and count loss exactly.
//!
//! - [`rate`]: rate and duration parsing, and the deadline schedule (pure).
//! - [`payload`]: the transport stream in the datagrams (pure).
//! - [`socket`]: the destination URL and the socket options.
//! - [`send`]: the loop that runs a schedule on the socket, and its report.
//!
//! The raw system calls live in one private module (`sys`), the only place
//! here with `unsafe`.

pub mod payload;
pub mod rate;
pub mod send;
pub mod socket;
mod sys;
