//! `bench send`: the thin socket shell around [`Schedule`] and
//! [`PayloadRing`]. It checks the options, opens and connects one UDP
//! socket ([`super::socket`]), then loops: ask the schedule, wait or send
//! one batch with one `sendmmsg` (one message per datagram, or with `--gso`
//! one message per run of up to [`MAX_GSO_SEGMENTS`] datagrams, at most
//! 65507 bytes, that the kernel cuts up), and count.
//!
//! Waiting is a hybrid: while the next batch is more than [`SLEEP_AHEAD`]
//! away, sleep until [`SLEEP_MARGIN`] before it (with 1 ns timer slack a
//! sleep overshoots by some tens of µs), then yield the core until it is
//! due. Send errors the kernel may clear by itself (ENOBUFS, EAGAIN, and
//! ECONNREFUSED from an ICMP port unreachable when nobody listens on
//! loopback) are counted and the same datagrams retried, so the stream
//! stays contiguous; a batch that keeps failing for [`RETRY_FOR`] ends the
//! run, as do other errors.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::Socket;
use thiserror::Error;

use super::payload::{PayloadRing, TsPattern};
use super::rate::{Rate, Schedule, Step};
use super::socket::{self, Destination};
use super::sys;
use crate::clock::Clock;
use crate::ts::packet::PACKET_LEN;

/// Largest UDP payload over IPv4 (65535 − 20 − 8); used for IPv6 too.
pub const MAX_DATAGRAM_BYTES: usize = 65_507;
/// Default datagram size: seven transport packets.
pub const DEFAULT_DATAGRAM_BYTES: usize = 7 * PACKET_LEN;
/// Most datagrams the kernel cuts one GSO send into (`UDP_MAX_SEGMENTS`
/// is 64 on older kernels; newer ones allow more).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most messages per `sendmmsg` call.
pub const MAX_MESSAGES: usize = 64;
/// Sleep only while the next batch is further away than this.
pub const SLEEP_AHEAD: Duration = Duration::from_micros(50);
/// Wake this long before a deadline, to absorb the sleep's overshoot.
pub const SLEEP_MARGIN: Duration = Duration::from_micros(35);
/// How long one batch may keep failing with a retryable error.
pub const RETRY_FOR: Duration = Duration::from_secs(1);
/// The rate PCRs are stamped at when the run is unpaced (`--rate max`).
const UNPACED_PCR_RATE_BPS: u64 = 1_000_000_000;

/// Why `bench send` cannot start or had to stop.
#[derive(Debug, Error)]
pub enum SendError {
    /// The destination URL is not a usable `udp://` destination.
    #[error("bad destination: {problem}")]
    Destination {
        /// The offending part.
        problem: String,
    },
    /// `--pkt` is not a multiple of 188 in range.
    #[error("--pkt {0}: must be a positive multiple of 188 up to 65424 bytes (7 x 188 = 1316 is usual)")]
    DatagramSize(usize),
    /// `--core` names no core this process may run on.
    #[error("--core {0}: no such core (available: {1})")]
    Core(usize, String),
    /// Socket setup failed.
    #[error("cannot set up a UDP socket to {dest}: {step}: {source}")]
    Socket {
        /// The destination.
        dest: SocketAddr,
        /// Which step failed.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused UDP segmentation offload.
    #[error("--gso: UDP GSO (UDP_SEGMENT) is not supported here: {0}")]
    GsoUnsupported(io::Error),
    /// A send failed in a way retrying cannot fix.
    #[error("send to {dest} failed at datagram {datagram}: {source}")]
    Send {
        /// The destination.
        dest: SocketAddr,
        /// Index of the first datagram of the failed call.
        datagram: u64,
        /// The OS error.
        source: io::Error,
    },
}

/// The operator's choices for one run.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// Where to send.
    pub dest: Destination,
    /// UDP payload bits per second, or unpaced.
    pub rate: Rate,
    /// How long to send.
    pub duration: Duration,
    /// UDP payload bytes per datagram, a multiple of 188.
    pub datagram_bytes: usize,
    /// Let the kernel cut large sends into datagrams (UDP GSO).
    pub gso: bool,
    /// Multicast TTL / hop limit (default 1), or unicast TTL when given.
    pub ttl: Option<u32>,
    /// Pin the sending thread to this core.
    pub core: Option<usize>,
}

/// What one run sent. Rates count UDP payload bits only.
#[derive(Clone, Debug, Serialize)]
pub struct SendReport {
    /// Destination address.
    pub dest: String,
    /// Datagrams the kernel accepted.
    pub datagrams: u64,
    /// UDP payload bytes in them.
    pub bytes: u64,
    /// 188-byte transport packets in them.
    pub packets: u64,
    /// From the first send to the end of the run.
    pub seconds: f64,
    /// Achieved rate: `bytes × 8 / seconds`.
    pub bits_per_sec: f64,
    /// Requested rate; `None` (JSON null) for `--rate max`.
    pub target_bits_per_sec: Option<u64>,
    /// Datagrams a sender that keeps up sends at the requested rate.
    pub planned_datagrams: Option<u64>,
    /// The latest a batch left after its first datagram was due, in µs.
    pub max_lag_us: u64,
    /// Whether UDP GSO was used.
    pub gso: bool,
    /// UDP payload bytes per datagram.
    pub pkt: usize,
    /// Datagrams per on-time batch.
    pub batch: usize,
    /// `sendmmsg` calls, failed ones included.
    pub send_calls: u64,
    /// Failed calls that were retried: `enobufs + eagain + refused`.
    pub send_errors: u64,
    /// Calls that failed with ENOBUFS.
    pub enobufs: u64,
    /// Calls that failed with EAGAIN.
    pub eagain: u64,
    /// Calls that failed with ECONNREFUSED (nobody listening).
    pub refused: u64,
    /// User CPU time of the process.
    pub user_secs: f64,
    /// System CPU time of the process.
    pub sys_secs: f64,
}

/// Checks a datagram size: a multiple of 188 from 188 to the largest that
/// fits in a UDP datagram (348 × 188 = 65424).
pub fn check_datagram_bytes(bytes: usize) -> Result<usize, SendError> {
    if (PACKET_LEN..=MAX_DATAGRAM_BYTES).contains(&bytes) && bytes % PACKET_LEN == 0 {
        Ok(bytes)
    } else {
        Err(SendError::DatagramSize(bytes))
    }
}

/// Datagrams one GSO message may carry at `datagram_bytes` each: at most
/// [`MAX_GSO_SEGMENTS`], and at most 65507 bytes in all.
pub fn gso_segments(datagram_bytes: usize) -> usize {
    (MAX_DATAGRAM_BYTES / datagram_bytes.max(1)).clamp(1, MAX_GSO_SEGMENTS)
}

/// Send errors counted and retried.
#[derive(Default)]
struct Counters {
    calls: u64,
    enobufs: u64,
    eagain: u64,
    refused: u64,
}

/// One batch on its way out: its bytes and where they belong.
struct Batch<'a> {
    bytes: &'a [u8],
    message_bytes: usize,
    first: u64,
    datagram_bytes: usize,
}

/// Sends one batch, retrying what the kernel may clear, for at most
/// [`RETRY_FOR`] without progress.
fn send_batch(
    sender: &mut sys::MmsgSender,
    socket: &Socket,
    dest: SocketAddr,
    batch: Batch<'_>,
    clock: &dyn Clock,
    counters: &mut Counters,
) -> Result<(), SendError> {
    let mut done = 0;
    let mut failing_since: Option<Instant> = None;
    while done < batch.bytes.len() {
        counters.calls += 1;
        let datagram = batch.first + (done / batch.datagram_bytes) as u64;
        let e = match sender.send(socket.as_fd(), &batch.bytes[done..], batch.message_bytes) {
            Ok(messages) => {
                done = (done + messages * batch.message_bytes).min(batch.bytes.len());
                failing_since = None;
                continue;
            }
            Err(e) => e,
        };
        match e.raw_os_error() {
            Some(libc::ENOBUFS) => counters.enobufs += 1,
            Some(libc::EAGAIN) => counters.eagain += 1,
            // The error of an earlier datagram's ICMP; this one was not sent.
            Some(libc::ECONNREFUSED) => counters.refused += 1,
            Some(libc::EINTR) => {}
            Some(libc::EIO | libc::EINVAL) if batch.message_bytes > batch.datagram_bytes => {
                return Err(SendError::GsoUnsupported(e));
            }
            _ => return Err(SendError::Send { dest, datagram, source: e }),
        }
        let now = clock.now();
        if now - *failing_since.get_or_insert(now) >= RETRY_FOR {
            return Err(SendError::Send { dest, datagram, source: e });
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// Waits until `deadline`: sleeps while it is more than [`SLEEP_AHEAD`]
/// away, waking [`SLEEP_MARGIN`] early, then yields the core until it passes.
fn wait_until(clock: &dyn Clock, deadline: Instant) {
    // Bounded: each pass either sleeps towards the deadline or yields; the
    // cap only guards against a clock that never moves.
    for _ in 0..100_000_000u64 {
        let now = clock.now();
        if now >= deadline {
            return;
        }
        let ahead = deadline - now;
        if ahead > SLEEP_AHEAD {
            std::thread::sleep(ahead - SLEEP_MARGIN);
        } else {
            std::thread::yield_now();
        }
    }
}

/// Runs `bench send` to the end and reports what was sent.
pub fn run(opts: &SendOptions, clock: &dyn Clock) -> Result<SendReport, SendError> {
    let datagram_bytes = check_datagram_bytes(opts.datagram_bytes)?;
    if let Some(core) = opts.core {
        socket::pin(core)?;
    }
    let segments = if opts.gso { gso_segments(datagram_bytes) } else { 1 };
    // check_datagram_bytes bounds it by 65507, so it fits.
    let gso_segment = opts.gso.then(|| u16::try_from(datagram_bytes).unwrap_or(u16::MAX));
    let (socket, dest) = socket::open(&opts.dest, opts.ttl, gso_segment)?;
    sys::tighten_timer_slack();

    let message_bytes = segments * datagram_bytes;
    let mut sender = sys::MmsgSender::new(MAX_MESSAGES);
    let max_batch = segments * sender.max_messages();
    let start = clock.now();
    let mut schedule = match opts.rate {
        Rate::Bps(bps) => Schedule::new(start, opts.duration, bps, datagram_bytes, max_batch),
        Rate::Max => Schedule::unpaced(start, opts.duration, datagram_bytes, max_batch),
    };
    let pcr_rate = opts.rate.bps().unwrap_or(UNPACED_PCR_RATE_BPS);
    let mut ring = PayloadRing::new(TsPattern::new(pcr_rate), datagram_bytes, max_batch);

    let mut counters = Counters::default();
    // Bounded: every Send advances the schedule, every wait moves time
    // forward, and the schedule is Done at its end.
    loop {
        match schedule.poll(clock.now()) {
            Step::Send { first, count } => {
                let bytes = ring.fill(first, count);
                let batch = Batch { bytes, message_bytes, first, datagram_bytes };
                send_batch(&mut sender, &socket, dest, batch, clock, &mut counters)?;
            }
            Step::WaitUntil(t) => wait_until(clock, t),
            Step::Done => break,
        }
    }
    let seconds = (clock.now() - start).as_secs_f64();
    let (user, sys) = sys::cpu_times();
    let datagrams = schedule.sent();
    let bytes = datagrams * datagram_bytes as u64;
    Ok(SendReport {
        dest: dest.to_string(),
        datagrams,
        bytes,
        packets: bytes / PACKET_LEN as u64,
        seconds,
        bits_per_sec: if seconds > 0.0 { bytes as f64 * 8.0 / seconds } else { 0.0 },
        target_bits_per_sec: opts.rate.bps(),
        planned_datagrams: schedule.planned(),
        max_lag_us: u64::try_from(schedule.max_lag().as_micros()).unwrap_or(u64::MAX),
        gso: opts.gso,
        pkt: datagram_bytes,
        batch: schedule.batch(),
        send_calls: counters.calls,
        send_errors: counters.enobufs + counters.eagain + counters.refused,
        enobufs: counters.enobufs,
        eagain: counters.eagain,
        refused: counters.refused,
        user_secs: user.as_secs_f64(),
        sys_secs: sys.as_secs_f64(),
    })
}

/// `1234567` → `"1.23 M"`, for bits per second.
fn si(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.3} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0} "),
    }
}

/// A short human-readable summary of a run.
pub fn render_text(r: &SendReport) -> String {
    let target = match r.target_bits_per_sec {
        Some(bps) => format!("{}bit/s requested", si(bps as f64)),
        None => "unpaced (--rate max)".to_owned(),
    };
    let behind = match r.planned_datagrams {
        Some(planned) if r.datagrams < planned => format!(" (FELL BEHIND: {planned} planned)"),
        _ => String::new(),
    };
    format!(
        "sent {} datagrams of {} B{} to {} in {:.3} s: {}bit/s, {target}{behind}\n\
         {} TS packets, {} bytes; {} sendmmsg calls, {} send errors retried \
         (ENOBUFS {}, EAGAIN {}, ECONNREFUSED {}); max lag {} us; cpu {:.3} s user + {:.3} s sys\n",
        r.datagrams,
        r.pkt,
        if r.gso { " with GSO" } else { "" },
        r.dest,
        r.seconds,
        si(r.bits_per_sec),
        r.packets,
        r.bytes,
        r.send_calls,
        r.send_errors,
        r.enobufs,
        r.eagain,
        r.refused,
        r.max_lag_us,
        r.user_secs,
        r.sys_secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_sizes_are_whole_packets() {
        assert!(check_datagram_bytes(1316).is_ok());
        assert!(check_datagram_bytes(188).is_ok());
        assert!(check_datagram_bytes(348 * 188).is_ok());
        for bad in [0, 100, 187, 1315, 1317, 349 * 188] {
            assert!(check_datagram_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(gso_segments(1316), 49);
        assert_eq!(gso_segments(188), 64);
        assert_eq!(gso_segments(348 * 188), 1);
        assert!(gso_segments(1316) * 1316 <= MAX_DATAGRAM_BYTES);
    }
}
