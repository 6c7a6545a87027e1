//! `/metrics`: the node's snapshot in the Prometheus text exposition format
//! 0.0.4. A pure function of the snapshot, so it is tested without a node.
//!
//! Each family gets `# HELP` and `# TYPE` once, followed by all its samples
//! (the format wants a family's lines together). Units are base units
//! (bytes, bits per second); counters end in `_total`. Label values are
//! escaped as the format requires (`\\`, `\"`, `\n`).

use std::fmt::{self, Write};

use crate::node::api::{InputStatus, OutputStatus, ShardStatus, StreamDetail};
use crate::ts::monitor::PidCounters;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A sample value.
#[derive(Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Num::U(n) => write!(f, "{n}"),
            Num::I(n) => write!(f, "{n}"),
            // The format spells these as Go's ParseFloat reads them.
            Num::F(x) if x.is_nan() => f.write_str("NaN"),
            Num::F(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Num::F(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            Num::F(x) => write!(f, "{x}"),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One family: name (without the `uringest_` prefix), kind, help, value.
type Family<T> = (&'static str, Kind, &'static str, fn(&T) -> Num);

const STREAM: &[Family<StreamDetail>] = &[
    ("bytes_total", Kind::Counter, "Bytes sent out by the stream.", |s| Num::U(s.counters.bytes_total)),
    ("packets_total", Kind::Counter, "TS packets sent out by the stream.", |s| Num::U(s.counters.packets_total)),
    ("bitrate_bits_per_second", Kind::Gauge, "Output bitrate over the last second.", |s| Num::F(s.bitrate_bps)),
    ("cc_errors_total", Kind::Counter, "TR 101 290 1.4 continuity count errors.", |s| {
        Num::U(s.counters.cc_errors_total)
    }),
    ("sync_losses_total", Kind::Counter, "TR 101 290 1.1 sync losses.", |s| Num::U(s.counters.sync_losses_total)),
    ("sync_byte_errors_total", Kind::Counter, "TR 101 290 1.2 sync byte errors.", |s| {
        Num::U(s.counters.sync_byte_errors_total)
    }),
    ("tei_packets_total", Kind::Counter, "Packets with transport_error_indicator set.", |s| {
        Num::U(s.counters.tei_packets_total)
    }),
    ("pat_errors_total", Kind::Counter, "TR 101 290 1.3 PAT errors.", |s| Num::U(s.counters.pat_errors_total)),
    ("pmt_errors_total", Kind::Counter, "TR 101 290 1.5 PMT errors.", |s| Num::U(s.counters.pmt_errors_total)),
    ("pid_errors_total", Kind::Counter, "TR 101 290 1.6 PID errors.", |s| Num::U(s.counters.pid_errors_total)),
    ("pcr_interval_violations_total", Kind::Counter, "PCR intervals over 40 ms.", |s| {
        Num::U(s.counters.pcr_interval_violations_total)
    }),
    ("switches_total", Kind::Counter, "Active input switches.", |s| Num::U(s.switches_total)),
    ("active_input", Kind::Gauge, "Index of the active input, -1 when none.", |s| {
        Num::I(s.active_input.and_then(|i| i64::try_from(i).ok()).unwrap_or(-1))
    }),
    ("http_clients", Kind::Gauge, "HTTP-TS clients connected.", |s| Num::U(s.http_clients)),
];

const INPUT: &[Family<InputStatus>] = &[
    ("input_opens_total", Kind::Counter, "Successful input opens.", |i| Num::U(i.opens_total)),
    ("input_failures_total", Kind::Counter, "Failed opens, failures and timeouts of the input.", |i| {
        Num::U(i.failures_total)
    }),
    ("input_bytes_total", Kind::Counter, "Bytes of TS read from the input.", |i| Num::U(i.bytes_total)),
    ("input_kernel_drops_total", Kind::Counter, "Datagrams the kernel dropped before they were read.", |i| {
        Num::U(i.kernel_drops_total)
    }),
    ("input_rtp_gaps_total", Kind::Counter, "RTP sequence gaps.", |i| Num::U(i.rtp_gaps_total)),
    ("input_lag_drops_total", Kind::Counter, "Upstream items a copy or mixer input missed by falling behind.", |i| {
        Num::U(i.lag_drops_total)
    }),
    ("input_segments_missed_total", Kind::Counter, "HLS segments that left the live window unfetched.", |i| {
        Num::U(i.segments_missed_total)
    }),
    (
        "input_mix_dropped_total",
        Kind::Counter,
        "AV packets a mixer dropped (wrong kind, extra track, before start).",
        |i| Num::U(i.mix_dropped_total),
    ),
    ("input_mix_realigned_total", Kind::Counter, "Times a mixer re-anchored an upstream's jumping timestamps.", |i| {
        Num::U(i.mix_realigned_total)
    }),
    ("input_active", Kind::Gauge, "1 when the input feeds the outputs.", |i| Num::U(u64::from(i.active))),
];

const OUTPUT: &[Family<OutputStatus>] = &[
    ("output_bytes_total", Kind::Counter, "Bytes sent or written by the output.", |o| Num::U(o.bytes_total)),
    ("output_lag_drops_total", Kind::Counter, "Hub items the output missed by falling behind.", |o| {
        Num::U(o.lag_drops_total)
    }),
];

const PID: &[Family<PidCounters>] = &[
    ("pid_packets_total", Kind::Counter, "TS packets on the PID.", |p| Num::U(p.packets_total)),
    ("pid_cc_errors_total", Kind::Counter, "Continuity count errors on the PID.", |p| Num::U(p.cc_errors_total)),
    ("pid_bitrate_bits_per_second", Kind::Gauge, "PID bitrate over the last second.", |p| Num::F(p.bitrate_bps)),
];

const SHARD: &[Family<ShardStatus>] = &[
    ("shard_streams", Kind::Gauge, "Streams placed on the shard.", |s| Num::U(s.streams)),
    ("shard_pool_in_use", Kind::Gauge, "Pool buffers lent out now.", |s| Num::U(s.pool_in_use)),
    ("shard_pool_fallbacks_total", Kind::Counter, "Datagrams received into a fallback buffer.", |s| {
        Num::U(s.pool_fallbacks_total)
    }),
    ("shard_pool_drops_total", Kind::Counter, "Datagrams dropped for want of a buffer.", |s| {
        Num::U(s.pool_drops_total)
    }),
];

/// Appends `value` to `out`, escaped as a label value.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The text being built.
struct Page {
    out: String,
}

impl Page {
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP uringest_{name} {help}");
        let _ = writeln!(self.out, "# TYPE uringest_{name} {}", kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Num) {
        self.out.push_str("uringest_");
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_into(&mut self.out, val);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// One family over `items`, each with its labels.
    fn family<'a, T: 'a>(
        &mut self,
        (name, kind, help, value): &Family<T>,
        items: impl Iterator<Item = (Vec<(&'static str, String)>, &'a T)>,
    ) {
        self.header(name, *kind, help);
        for (labels, item) in items {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.sample(name, &labels, value(item));
        }
    }
}

/// The exposition text for `streams` and `shards`.
pub fn render(streams: &[StreamDetail], shards: &[ShardStatus]) -> String {
    let mut page = Page { out: String::with_capacity(4096) };
    for family in STREAM {
        page.family(family, streams.iter().map(|s| (vec![("stream", s.id.clone())], s)));
    }
    for family in INPUT {
        page.family(
            family,
            streams.iter().flat_map(|s| {
                s.inputs.iter().map(|i| {
                    (vec![("stream", s.id.clone()), ("input", i.index.to_string()), ("url", i.url.clone())], i)
                })
            }),
        );
    }
    for family in OUTPUT {
        page.family(
            family,
            streams
                .iter()
                .flat_map(|s| s.outputs.iter().map(|o| (vec![("stream", s.id.clone()), ("url", o.url.clone())], o))),
        );
    }
    for family in PID {
        page.family(
            family,
            streams
                .iter()
                .flat_map(|s| s.pids.iter().map(|p| (vec![("stream", s.id.clone()), ("pid", p.pid.to_string())], p))),
        );
    }
    for family in SHARD {
        page.family(
            family,
            shards.iter().map(|s| (vec![("shard", s.index.to_string()), ("backend", s.backend.to_owned())], s)),
        );
    }
    page.out
}
