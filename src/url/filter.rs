//! The stream filter options every input scheme takes:
//! `program=N` (1..=65535), `si=0|1|true|false` and `pids=256,257,...`
//! (each 0..=8191, decimal or `0x` hex, at most [`MAX_ALLOWED_PIDS`]
//! distinct; the key may repeat and repeats of a PID are merged).
//!
//! What it does not: check that the program or the PIDs exist in the
//! stream; the filter counts what it drops instead.

use std::fmt;

use super::{MAX_ALLOWED_PIDS, UrlError, bad_option, parse_bool, set_once};
use crate::ts::filter::FilterSpec;
use crate::ts::packet::Pid;

/// Filter options as they are read, checked as they come.
#[derive(Debug, Default)]
pub(super) struct FilterOptions {
    program: Option<u16>,
    si: Option<bool>,
    /// Sorted, without repeats, never more than [`MAX_ALLOWED_PIDS`].
    pids: Option<Vec<Pid>>,
}

impl FilterOptions {
    /// Takes `key=value` when `key` is a filter option (`Ok(true)`); leaves
    /// other keys to the scheme (`Ok(false)`).
    pub(super) fn take(&mut self, key: &str, value: &str) -> Result<bool, UrlError> {
        match key {
            "program" => set_once(&mut self.program, "program", parse_program(value)?)?,
            "si" => set_once(&mut self.si, "si", parse_bool("si", value)?)?,
            "pids" => {
                let pids = self.pids.get_or_insert_with(Vec::new);
                for item in value.split(',') {
                    let pid = parse_pid(item)?;
                    if let Err(at) = pids.binary_search(&pid) {
                        if pids.len() == MAX_ALLOWED_PIDS {
                            return Err(bad_option("pids", item, &format!("more than {MAX_ALLOWED_PIDS} PIDs")));
                        }
                        pids.insert(at, pid);
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The checked spec; `si` defaults to true.
    pub(super) fn finish(self) -> FilterSpec {
        FilterSpec { program: self.program, si: self.si.unwrap_or(true), pids: self.pids }
    }
}

fn parse_program(value: &str) -> Result<u16, UrlError> {
    match value.parse::<u16>() {
        Ok(0) if value.bytes().all(|b| b.is_ascii_digit()) => {
            Err(bad_option("program", value, "program 0 is the network PID entry of the PAT, not a program"))
        }
        Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(bad_option("program", value, "expected a program number, 1 to 65535")),
    }
}

fn parse_pid(item: &str) -> Result<Pid, UrlError> {
    let (digits, radix) = match item.strip_prefix("0x").or_else(|| item.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (item, 10),
    };
    let number = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(digits, radix).ok()
    } else {
        None
    };
    match number {
        Some(n) if n < 8192 => Ok(Pid::new(n as u16)),
        Some(_) => Err(bad_option("pids", item, "PIDs are 0 to 8191 (0x1FFF)")),
        None => Err(bad_option("pids", item, "expected a PID, decimal or 0x hex")),
    }
}

/// Writes the filter options of `spec` as `key=value` pairs through `opt`,
/// defaults left out, PIDs in decimal.
pub(super) fn write_options(
    spec: &FilterSpec,
    f: &mut fmt::Formatter<'_>,
    opt: &mut dyn FnMut(&mut fmt::Formatter<'_>, &str, &dyn fmt::Display) -> fmt::Result,
) -> fmt::Result {
    if let Some(program) = spec.program {
        opt(f, "program", &program)?;
    }
    if !spec.si {
        opt(f, "si", &0)?;
    }
    if let Some(pids) = &spec.pids {
        let list: Vec<String> = pids.iter().map(|p| p.value().to_string()).collect();
        opt(f, "pids", &list.join(","))?;
    }
    Ok(())
}
