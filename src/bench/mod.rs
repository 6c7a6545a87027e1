//! `uringest bench`: load generators and measurements run from the CLI.

pub mod pace;
