//! The report `probe` prints, as plain serialisable data.

use serde::Serialize;

/// What `probe --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The input as given.
    pub url: String,
    /// Bytes read.
    pub bytes: u64,
    /// Complete packets accounted.
    pub ts_packets: u64,
    /// 188, 192 or 204; null when no packet was found.
    pub packet_size: Option<usize>,
    /// Bits per second timed by the first program's PCRs.
    pub bitrate_bps: Option<u64>,
    /// Seconds covered by the first program's valid PCR intervals.
    pub duration_secs: Option<f64>,
    /// The scanner kernel that ran.
    pub scanner: &'static str,
    /// Programs in PAT order.
    pub programs: Vec<ProgramReport>,
    /// Every PID seen, ascending; packets add up to `ts_packets`.
    pub pids: Vec<PidReport>,
    /// Stream-wide error counters.
    pub errors: ErrorReport,
}

/// One program.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramReport {
    /// program_number.
    pub number: u16,
    /// PID of its PMT.
    pub pmt_pid: u16,
    /// PID of its PCR; null until the PMT arrives.
    pub pcr_pid: Option<u16>,
    /// Elementary streams in PMT order.
    pub streams: Vec<StreamReport>,
}

/// One elementary stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Its PID.
    pub pid: u16,
    /// stream_type.
    pub stream_type: u8,
    /// ffprobe's codec name, or `unknown`.
    pub codec: &'static str,
    /// ISO 639 language, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Counters of one PID.
#[derive(Clone, Debug, Serialize)]
pub struct PidReport {
    /// The PID.
    pub pid: u16,
    /// Packets.
    pub packets: u64,
    /// Continuity errors.
    pub cc_errors: u64,
    /// Packets flagged by transport_error_indicator.
    pub transport_errors: u64,
    /// Packets with discontinuity_indicator.
    pub discontinuities: u64,
    /// Scrambled packets.
    pub scrambled: u64,
    /// This PID's share of the stream bitrate.
    pub bitrate_bps: Option<u64>,
    /// PCR statistics when the PID carries PCRs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcr: Option<PcrReport>,
}

/// PCR statistics of one PID.
#[derive(Clone, Debug, Serialize)]
pub struct PcrReport {
    /// PCRs seen.
    pub count: u64,
    /// Shortest valid interval.
    pub interval_min_ms: Option<f64>,
    /// Longest valid interval.
    pub interval_max_ms: Option<f64>,
    /// Valid intervals above 40 ms.
    pub interval_violations: u64,
}

/// Stream-wide errors.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    /// Losses of sync (see `framing`).
    pub sync_losses: u64,
    /// Continuity errors over all PIDs.
    pub cc_errors: u64,
    /// transport_error_indicator over all PIDs.
    pub transport_errors: u64,
    /// Bytes outside any packet (garbage).
    pub skipped_bytes: u64,
    /// Bytes of a packet cut short by the end of input.
    pub truncated_bytes: u64,
    /// PSI sections dropped for a bad CRC.
    pub psi_crc_errors: u64,
    /// PSI sections dropped as malformed.
    pub psi_malformed_sections: u64,
}
