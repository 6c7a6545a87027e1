//! `uringest probe`: one input read to its end (or for a duration),
//! summarised.

use std::fmt::Write as _;

use thiserror::Error;

use crate::input::file::{FileError, MappedFile};
use crate::ts::analyze::{Analyzer, Report};
use crate::url::{InputSpec, UrlError, parse_input};

/// Why a probe failed; every variant is the operator's input at fault.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// The URL was refused.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The file could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// A live input: probe reads files only, for now.
    #[error("{url}: probing a live input is not supported yet (probe reads files only)")]
    NotAFile {
        /// The input as given.
        url: String,
    },
    /// Packets cover less than half of the input (see [`probe`]).
    #[error(
        "{url}: not an MPEG-TS stream (packets at 188, 192 or 204-byte spacing cover {packet_bytes} of {bytes} bytes)"
    )]
    NotTs {
        /// The input as given.
        url: String,
        /// Bytes read.
        bytes: u64,
        /// Bytes inside accepted packets.
        packet_bytes: u64,
    },
}

/// Probes `url`, reading at most `duration_secs` of stream time (by PCR).
///
/// An input is refused as not MPEG-TS when accepted packets cover less than
/// half of the bytes read: three sync bytes at packet spacing occur by
/// chance in text or compressed data, a transport stream with that much
/// garbage is better reported as broken than summarised.
pub fn probe(url: &str, duration_secs: Option<f64>) -> Result<Report, ProbeError> {
    let InputSpec::File { path, .. } = parse_input(url)? else {
        return Err(ProbeError::NotAFile { url: url.to_owned() });
    };
    let file = MappedFile::open(&path)?;
    let mut analyzer = Analyzer::new();
    match duration_secs {
        None => analyzer.analyze_parallel(file.bytes()),
        // A duration usually stops early, within the first half.
        Some(_) => analyzer.analyze(file.bytes(), duration_secs),
    };
    let report = analyzer.report(url);
    let packet_bytes = report.ts_packets * report.packet_size.unwrap_or(188) as u64;
    if packet_bytes == 0 || packet_bytes < report.bytes / 2 {
        return Err(ProbeError::NotTs { url: url.to_owned(), bytes: report.bytes, packet_bytes });
    }
    Ok(report)
}

/// The human-readable summary.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_text(&mut out, r);
    out
}

fn write_text(out: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(out, "{}", r.url)?;
    let size = r.packet_size.map_or_else(|| "?".to_owned(), |s| s.to_string());
    writeln!(out, "  {} bytes, {} packets of {} bytes, scanner {}", r.bytes, r.ts_packets, size, r.scanner)?;
    match (r.bitrate_bps, r.duration_secs) {
        (Some(b), Some(d)) => writeln!(out, "  bitrate {:.3} Mbit/s over {:.3} s (PCR)", b as f64 / 1e6, d)?,
        _ => writeln!(out, "  bitrate unknown (no usable PCR pair)")?,
    }
    for p in &r.programs {
        let pcr = p.pcr_pid.map_or_else(|| "?".to_owned(), |pid| format!("0x{pid:04x}"));
        writeln!(out, "  program {} (PMT 0x{:04x}, PCR {})", p.number, p.pmt_pid, pcr)?;
        for s in &p.streams {
            let lang = s.language.as_deref().map(|l| format!(" [{l}]")).unwrap_or_default();
            writeln!(out, "    0x{:04x}  type 0x{:02x}  {}{}", s.pid, s.stream_type, s.codec, lang)?;
        }
    }
    writeln!(out, "  {:>6}  {:>10}  {:>9}  {:>5}  {:>5}", "PID", "packets", "kbit/s", "CC", "TEI")?;
    for p in &r.pids {
        let kbps = p.bitrate_bps.map_or_else(|| "-".to_owned(), |b| format!("{:.1}", b as f64 / 1e3));
        writeln!(
            out,
            "  0x{:04x}  {:>10}  {:>9}  {:>5}  {:>5}",
            p.pid, p.packets, kbps, p.cc_errors, p.transport_errors
        )?;
    }
    let e = &r.errors;
    writeln!(
        out,
        "  errors: sync losses {}, CC {}, TEI {}, skipped bytes {}, truncated bytes {}, PSI CRC {}",
        e.sync_losses, e.cc_errors, e.transport_errors, e.skipped_bytes, e.truncated_bytes, e.psi_crc_errors
    )
}
