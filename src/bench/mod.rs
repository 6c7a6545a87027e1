//! `uringest bench`: load generators and measurements run from the CLI.
//!
//! - [`send`]: `bench send` paces valid MPEG-TS over UDP at a fixed bit
//!   rate (or as fast as it can), so a receiver can measure throughput and
//!   count loss exactly; [`rate`] (rate and duration parsing, the deadline
//!   schedule), [`payload`] (the transport stream in the datagrams) and
//!   [`socket`] (the destination URL and socket options) serve it.
//! - [`recv`]: `bench recv` receives a `udp://` input and drops what it
//!   gets, to measure the receive path alone.
//! - [`pace`]: `bench pace` plays many looped files by PCR on the shards and
//!   measures CPU and pacing error.
//!
//! The raw system calls of `bench send` live in one private module (`sys`),
//! the only place here with `unsafe` besides `pace`'s `getrusage`.

pub mod pace;
pub mod payload;
pub mod rate;
pub mod recv;
pub mod send;
pub mod socket;
pub(crate) mod sys;
