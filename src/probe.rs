//! `uringest probe`: one input read to its end (or for a duration),
//! summarised.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::input::file::{FileError, MappedFile};
use crate::input::read::{FileMethod, ReadChunks, ReadOptions, resolve};
use crate::input::udp::UdpStats;
use crate::input::udp::listen::{ListenError, listen_for};
use crate::shard::backend::{self, BackendError, IoChoice};
use crate::shard::{Backend, ShardError, Shards};
use crate::ts::analyze::{Analyzer, Report};
use crate::url::{InputSpec, UdpSpec, UrlError, parse_input};

/// How long a live input is read when no `--duration` is given.
pub const DEFAULT_LIVE_SECS: f64 = 5.0;

/// Why a probe failed; every variant is the operator's input at fault.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// The URL was refused.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The file could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// The asked-for I/O backend is unavailable.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The shard could not run the input.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The UDP input failed.
    #[error(transparent)]
    Udp(#[from] ListenError),
    /// A live input delivered no transport packets in the time given.
    #[error("{url}: no MPEG-TS received in {secs} s ({datagrams} datagrams, {non_ts} of them not TS)")]
    NoData {
        /// The input as given.
        url: String,
        /// Seconds waited.
        secs: f64,
        /// Datagrams received.
        datagrams: u64,
        /// Datagrams dropped as not TS.
        non_ts: u64,
    },
    /// A filter option on a probe, which always shows the whole stream.
    #[error("{url}: program=, pids= and si= filter what relay passes on; probe shows the whole stream (drop them)")]
    FilterOption {
        /// The input.
        url: String,
    },
    /// A file read into buffers (a FIFO) gave no bytes in the time given.
    #[error("{url}: nothing read in {secs} s (no writer on the FIFO?)")]
    Silent {
        /// The input as given.
        url: String,
        /// Seconds waited.
        secs: f64,
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

/// What `probe` prints: the stream analysis and how the input was read.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    /// The stream analysis.
    #[serde(flatten)]
    pub stream: Report,
    /// How the input was read: `mmap` for mapped files, `io_uring` or
    /// `epoll` (the shard backend) for live inputs, `io_uring read` or
    /// `epoll read` for files read into buffers (FIFOs, `read=uring`).
    pub io: &'static str,
    /// Receive and loss counters of a live input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<UdpStats>,
}

/// How to probe.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeOptions {
    /// Mapped files: stream time to read, by PCR. Live inputs: wall-clock
    /// seconds to listen ([`DEFAULT_LIVE_SECS`] when `None`). Files read
    /// into buffers (a FIFO may never end): wall-clock seconds, or to the
    /// end when `None`.
    pub duration_secs: Option<f64>,
    /// The I/O backend for live inputs.
    pub io: IoChoice,
}

/// Probes `url`: a file to its end (or for a duration of stream time), a
/// live input for a wall-clock duration.
///
/// A file is refused as not MPEG-TS when accepted packets cover less than
/// half of the bytes read: three sync bytes at packet spacing occur by
/// chance in text or compressed data, a transport stream with that much
/// garbage is better reported as broken than summarised.
pub fn probe(url: &str, options: ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let spec = parse_input(url)?.standalone("probe")?;
    if !spec.filter().is_passthrough() {
        return Err(ProbeError::FilterOption { url: url.to_owned() });
    }
    match spec {
        InputSpec::File { path, read, .. } => {
            if resolve(&path, read)? == FileMethod::Read {
                return probe_read(url, path, options);
            }
            let file = MappedFile::open(&path)?;
            let mut analyzer = Analyzer::new();
            match options.duration_secs {
                None => analyzer.analyze_parallel(file.bytes()),
                // A duration usually stops early, within the first half.
                Some(_) => analyzer.analyze(file.bytes(), options.duration_secs),
            };
            Ok(ProbeReport { stream: file_report(url, &analyzer)?, io: "mmap", input: None })
        }
        InputSpec::Udp(spec) => probe_udp(url, spec, options),
        InputSpec::Hls(_) => Err(UrlError::NotForCommand { what: "HLS", command: "probe" }.into()),
        // `standalone` refused these above.
        other => Err(other.standalone("probe").err().unwrap_or(UrlError::Empty).into()),
    }
}

/// The report of a file, refused when it is not MPEG-TS.
fn file_report(url: &str, analyzer: &Analyzer) -> Result<Report, ProbeError> {
    let stream = analyzer.report(url);
    let packet_bytes = stream.ts_packets * stream.packet_size.unwrap_or(188) as u64;
    if packet_bytes == 0 || packet_bytes < stream.bytes / 2 {
        return Err(ProbeError::NotTs { url: url.to_owned(), bytes: stream.bytes, packet_bytes });
    }
    Ok(stream)
}

/// Reads a file into buffers on one shard (io_uring fixed-buffer reads, or
/// plain reads on epoll) and analyzes its chunks there.
fn probe_read(url: &str, path: PathBuf, options: ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let backend = backend::detect(options.io)?;
    let limit = options.duration_secs.map(Duration::from_secs_f64);
    let shards = Shards::start(1, backend, false)?;
    let done = shards.spawn(move || async move {
        let mut reader = ReadChunks::open(&path, backend, ReadOptions::default())?;
        let mut analyzer = Analyzer::new();
        let deadline = tokio::time::sleep(limit.unwrap_or(Duration::MAX / 4));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                chunk = reader.next_chunk() => match chunk? {
                    Some(chunk) => analyzer.push_chunk(&chunk),
                    None => break,
                },
                () = &mut deadline, if limit.is_some() => break,
            }
        }
        Ok::<_, FileError>(analyzer)
    })?;
    let outcome = done.blocking_recv().map_err(|_| ShardError::Stopped(0))?;
    shards.shutdown();
    let analyzer = outcome?;
    if let (Some(secs), 0) = (options.duration_secs, analyzer.report(url).bytes) {
        return Err(ProbeError::Silent { url: url.to_owned(), secs });
    }
    let io = match backend {
        Backend::Uring => "io_uring read",
        Backend::Epoll => "epoll read",
    };
    Ok(ProbeReport { stream: file_report(url, &analyzer)?, io, input: None })
}

/// Listens to a UDP input on one shard for the duration and analyzes what
/// arrives there, on the shard's thread.
fn probe_udp(url: &str, spec: UdpSpec, options: ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let backend = backend::detect(options.io)?;
    let secs = options.duration_secs.unwrap_or(DEFAULT_LIVE_SECS);
    let (analyzer, stats) =
        listen_for(spec, backend, Duration::from_secs_f64(secs), Analyzer::new(), |analyzer, chunks| {
            for chunk in chunks {
                analyzer.push_chunk(chunk);
            }
        })?;
    let stream = analyzer.report(url);
    if stream.ts_packets == 0 {
        return Err(ProbeError::NoData {
            url: url.to_owned(),
            secs,
            datagrams: stats.datagrams.datagrams,
            non_ts: stats.datagrams.non_ts_dropped,
        });
    }
    Ok(ProbeReport { stream, io: backend.name(), input: Some(stats) })
}

/// The human-readable summary.
pub fn render_text(p: &ProbeReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_text(&mut out, &p.stream);
    let _ = write_input(&mut out, p);
    out
}

fn write_input(out: &mut String, p: &ProbeReport) -> std::fmt::Result {
    let Some(s) = &p.input else { return Ok(()) };
    let (d, r) = (&s.datagrams, &s.recv);
    writeln!(out, "  input ({}): {} datagrams, {} bytes, {} TS packets", p.io, d.datagrams, d.bytes, d.ts_packets)?;
    writeln!(
        out,
        "  losses: kernel drops {}, RTP gaps {}, not TS {}, odd sizes {}, pool fallbacks {}, pool drops {}",
        r.kernel_drops, d.rtp_seq_gaps, d.non_ts_dropped, d.odd_size, r.pool_fallbacks, r.pool_drops
    )
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
