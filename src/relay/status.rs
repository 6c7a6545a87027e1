//! The relay's live status line on a terminal: input bitrate, packets,
//! continuity errors, and what each output sent and lost. Nothing is
//! printed when stderr is not a terminal (logs and scripts stay clean).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::input::InputLive;
use crate::output::udp::LiveCounters;

/// How often the line is redrawn.
const EVERY: Duration = Duration::from_secs(1);

/// The status line's state.
pub struct StatusLine {
    enabled: bool,
    outputs: usize,
    last: Instant,
    last_bytes: u64,
    drawn: bool,
}

impl StatusLine {
    /// A status line, drawn only if `wanted` and stderr is a terminal.
    pub fn new(wanted: bool, outputs: usize, now: Instant) -> StatusLine {
        StatusLine {
            enabled: wanted && std::io::stderr().is_terminal(),
            outputs,
            last: now,
            last_bytes: 0,
            drawn: false,
        }
    }

    /// Redraws the line if a second has passed.
    pub fn update(&mut self, now: Instant, input: &InputLive, outputs: &[Arc<LiveCounters>]) {
        let elapsed = now.saturating_duration_since(self.last);
        if !self.enabled || elapsed < EVERY {
            return;
        }
        let bytes = input.bytes.load(Ordering::Relaxed);
        let rate = (bytes - self.last_bytes.min(bytes)) as f64 * 8.0 / elapsed.as_secs_f64();
        self.last = now;
        self.last_bytes = bytes;
        let lag: u64 = outputs.iter().map(|o| o.lag_drops.load(Ordering::Relaxed)).sum();
        let mut line = format!(
            "in {:>8.2} Mbit/s  {:>10} pkts  cc {:>4}  reopens {}  | {} out, lag drops {}",
            rate / 1e6,
            input.packets.load(Ordering::Relaxed),
            input.cc_errors.load(Ordering::Relaxed),
            input.reopens.load(Ordering::Relaxed),
            self.outputs,
            lag
        );
        if outputs.len() <= 4 {
            for (i, o) in outputs.iter().enumerate() {
                line.push_str(&format!(" [{i}: lag {}]", o.lag_drops.load(Ordering::Relaxed)));
            }
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Ends the line so later messages start on their own.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}
