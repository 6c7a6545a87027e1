//! A multicast sink for `perf/serve.sh`: one process, one thread, joined to
//! many multicast groups on one interface, saying per group what arrived and
//! exactly which transport packets of a looped reference file never did.
//! Not a uringest command; build it with
//! `cargo build --release --example mcast_sink`.
//!
//! ```text
//! mcast_sink --group-base 239.255.1.1 --groups 64 --port 5000 --duration 20 \
//!            --reference clip.ts [--iface 127.0.0.1] [--rcvbuf 4194304] [--poll-us 1000]
//! ```
//!
//! Groups are consecutive addresses from `--group-base`, all on `--port`;
//! each gets its own socket bound to the group (so it sees that group
//! only) and joined on `--iface`. Non-blocking sockets are swept in turn
//! with `recvmmsg` of up to 64 until empty, then the thread sleeps
//! `--poll-us`, as in `udp_sink`: nothing the players send wakes it.
//!
//! Loss is counted exactly, in packets, against the reference file every
//! group plays in a loop: each packet of the file is keyed by its bytes
//! with the continuity counter, PCR and PES PTS/DTS masked (what a seamless
//! loop rewrites on later passes, see `uringest::ts::seam`), so a received
//! packet names its position in the file. Packets whose key occurs more
//! than once in the file (null packets, repeated PAT/PMT) name no position
//! and are skipped; every other packet is "identifiable". Per group, moving
//! from position `a` to position `b` skips the identifiable packets between
//! them (across the end of the file when `b <= a`: a new pass, a seam), and
//! those are `missing_packets`. The same walk gives the count of all
//! packets, null ones included, that belong between the first and the last
//! identified packet (`expected_packets`: the file's own layout, so exact),
//! against those that came (`span_packets`): their difference also catches
//! a lost datagram of padding alone. A whole lost pass would not show; the
//! script's windows are shorter than that. Continuity errors (`cc_errors`,
//! per PID, a packet with discontinuity_indicator excused) are counted too:
//! a player that replays the file raw adds one per PID at each seam.
//!
//! Arrival times come from kernel receive timestamps (`SO_TIMESTAMPNS`):
//! `first_ns`/`last_ns` give the span a group was heard over, and
//! `max_gap_us` the longest silence between two of its datagrams.
//!
//! Prints one JSON object on stdout: totals and `groups`, one object per
//! group.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use uringest::clock::{Clock, SystemClock};

#[path = "support/mod.rs"]
mod support;
use support::{BATCH, RecvBatch, RxOptions, SYNC, TS_PACKET};

const NAME: &str = "mcast_sink";
/// Buffer per message: a 1316-byte datagram fits; anything larger is cut
/// and counted as not TS.
const BUF: usize = 2048;
/// Most groups one sink joins (the kernel's default igmp_max_memberships
/// is 20 per socket; one socket per group stays under it).
const MAX_GROUPS: u32 = 1024;
/// Largest reference file read, in bytes.
const MAX_REFERENCE: u64 = 1 << 30;
/// recvmmsg calls on one socket per sweep (a bound, not a pace).
const CALLS_PER_SWEEP: usize = 1 << 16;
/// Null PID: padding, never identifiable nor CC-checked.
const NULL_PID: u16 = 0x1FFF;
/// Position of a key seen more than once in the reference.
const AMBIGUOUS: u32 = u32::MAX;

/// Joins multicast groups and counts, per group, datagrams and lost packets.
#[derive(Parser, Debug)]
struct Args {
    /// First group address.
    #[arg(long)]
    group_base: Ipv4Addr,
    /// Number of consecutive groups from --group-base.
    #[arg(long)]
    groups: u32,
    /// UDP port every group is sent to.
    #[arg(long)]
    port: u16,
    /// Address of the interface to join on.
    #[arg(long, default_value = "127.0.0.1")]
    iface: Ipv4Addr,
    /// Seconds to listen.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// The TS file every group plays (looped).
    #[arg(long)]
    reference: PathBuf,
    /// Receive buffer per socket to ask for, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    rcvbuf: usize,
    /// Sleep between sweeps over the sockets, in µs.
    #[arg(long, default_value_t = 1000)]
    poll_us: u64,
}

/// The reference file: a position per identifiable packet key.
struct Reference {
    /// Masked-packet hash -> index in the file, or [`AMBIGUOUS`].
    index: HashMap<u64, u32>,
    /// `before[i]`: identifiable packets at positions `< i`; `len + 1`
    /// entries.
    before: Vec<u32>,
}

/// Positions from `a` forward to `b` in a file of `n` packets (through its
/// end when `b <= a`).
fn advance(a: u32, b: u32, n: u32) -> u64 {
    if b > a { u64::from(b - a) } else { u64::from(n - a) + u64::from(b) }
}

impl Reference {
    fn load(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() || bytes.len() % TS_PACKET != 0 {
            return Err(format!("{} bytes is not a whole number of TS packets", bytes.len()));
        }
        let mut index: HashMap<u64, u32> = HashMap::new();
        for (i, p) in bytes.chunks_exact(TS_PACKET).enumerate() {
            if p[0] != SYNC {
                return Err(format!("packet {i} has no sync byte"));
            }
            if pid(p) == NULL_PID {
                continue;
            }
            let at = u32::try_from(i).map_err(|_| "too many packets".to_owned())?;
            index.entry(key(p)).and_modify(|v| *v = AMBIGUOUS).or_insert(at);
        }
        let identified: std::collections::HashSet<u32> = index.values().copied().filter(|&v| v != AMBIGUOUS).collect();
        let n = bytes.len() / TS_PACKET;
        let mut before = Vec::with_capacity(n + 1);
        let mut count = 0u32;
        for i in 0..n {
            before.push(count);
            if identified.contains(&(i as u32)) {
                count += 1;
            }
        }
        before.push(count);
        Ok(Reference { index, before })
    }

    fn packets(&self) -> u32 {
        (self.before.len() - 1) as u32
    }

    fn identifiable(&self) -> u32 {
        self.before.last().copied().unwrap_or(0)
    }

    /// Identifiable packets strictly between positions `a` and `b`, going
    /// forward (through the end of the file when `b <= a`).
    fn skipped(&self, a: u32, b: u32) -> u64 {
        let at = |i: u32| u64::from(self.before[i as usize]);
        if b > a { at(b) - at(a + 1) } else { (u64::from(self.identifiable()) - at(a + 1)) + at(b) }
    }
}

fn pid(p: &[u8]) -> u16 {
    (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])
}

/// A hash of packet `p` with what a seamless loop rewrites masked: the CC
/// nibble, the PCR and OPCR, and the PTS/DTS of a PES header starting here.
fn key(p: &[u8]) -> u64 {
    let mut m = [0u8; TS_PACKET];
    m.copy_from_slice(&p[..TS_PACKET]);
    m[3] &= 0xF0;
    let afc = (m[3] >> 4) & 0x3;
    let mut payload = 4;
    if afc & 0x2 != 0 {
        let len = usize::from(m[4]);
        payload = 5 + len;
        if len >= 1 {
            let flags = m[5];
            let mut at = 6;
            for bit in [0x10u8, 0x08] {
                if flags & bit != 0 && at + 6 <= 5 + len {
                    m[at..at + 6].fill(0);
                    at += 6;
                }
            }
        }
    }
    let pusi = m[1] & 0x40 != 0;
    if pusi && afc & 0x1 != 0 && payload + 14 <= TS_PACKET && m[payload..payload + 3] == [0, 0, 1] {
        let stream_id = m[payload + 3];
        // Streams with the optional PES header (ISO/IEC 13818-1 2.4.3.7).
        let has_header = !matches!(stream_id, 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF);
        if has_header {
            let pts_dts = (m[payload + 7] >> 6) & 0x3;
            let n = match pts_dts {
                0x2 => 5,
                0x3 => 10,
                _ => 0,
            };
            let at = payload + 9;
            if n > 0 && at + n <= TS_PACKET {
                m[at..at + n].fill(0);
            }
        }
    }
    if payload > TS_PACKET {
        // A bad adaptation length: key the packet as it is.
        m.copy_from_slice(&p[..TS_PACKET]);
    }
    let mut h = DefaultHasher::new();
    m.hash(&mut h);
    h.finish()
}

/// Everything known about one group.
struct Group {
    group: Ipv4Addr,
    datagrams: u64,
    packets: u64,
    null_packets: u64,
    identified: u64,
    unknown: u64,
    not_ts: u64,
    missing: u64,
    seams: u64,
    cc_errors: u64,
    /// Last continuity counter per PID; 0xFF: not seen yet.
    cc: Vec<u8>,
    last_pos: Option<u32>,
    /// Packets from the first identified one to the last, both included.
    expected: u64,
    /// `packets` when the first and the last identified packet came.
    packets_at_first: u64,
    packets_at_last: u64,
    kernel_drops: u32,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
    max_gap_ns: u64,
}

impl Group {
    fn new(group: Ipv4Addr) -> Self {
        Group {
            group,
            datagrams: 0,
            packets: 0,
            null_packets: 0,
            identified: 0,
            unknown: 0,
            not_ts: 0,
            missing: 0,
            seams: 0,
            cc_errors: 0,
            cc: vec![0xFF; 8192],
            last_pos: None,
            expected: 0,
            packets_at_first: 0,
            packets_at_last: 0,
            kernel_drops: 0,
            first_ns: None,
            last_ns: None,
            max_gap_ns: 0,
        }
    }

    fn datagram(&mut self, d: &[u8], ns: Option<u64>, r: &Reference) {
        self.datagrams += 1;
        if let Some(ns) = ns {
            if let Some(last) = self.last_ns {
                self.max_gap_ns = self.max_gap_ns.max(ns.saturating_sub(last));
            }
            self.first_ns.get_or_insert(ns);
            self.last_ns = Some(ns);
        }
        if d.is_empty() || d.len() % TS_PACKET != 0 || d.chunks_exact(TS_PACKET).any(|p| p[0] != SYNC) {
            self.not_ts += 1;
            return;
        }
        for p in d.chunks_exact(TS_PACKET) {
            self.packet(p, r);
        }
    }

    fn packet(&mut self, p: &[u8], r: &Reference) {
        self.packets += 1;
        let pid = pid(p);
        if pid == NULL_PID {
            self.null_packets += 1;
            return;
        }
        let afc = (p[3] >> 4) & 0x3;
        let cc = p[3] & 0x0F;
        let discontinuity = afc & 0x2 != 0 && p[4] > 0 && p[5] & 0x80 != 0;
        // CC counts packets with payload only (ISO/IEC 13818-1 2.4.3.3).
        if afc & 0x1 != 0 {
            let last = &mut self.cc[usize::from(pid)];
            if *last != 0xFF && !discontinuity && cc != (*last + 1) & 0x0F {
                self.cc_errors += 1;
            }
            *last = cc;
        }
        match r.index.get(&key(p)) {
            Some(&pos) if pos != AMBIGUOUS => {
                self.identified += 1;
                if let Some(last) = self.last_pos {
                    if pos <= last {
                        self.seams += 1;
                    }
                    self.missing += r.skipped(last, pos);
                    self.expected += advance(last, pos, r.packets());
                } else {
                    self.expected = 1;
                    self.packets_at_first = self.packets;
                }
                self.packets_at_last = self.packets;
                self.last_pos = Some(pos);
            }
            Some(_) => {}
            None => self.unknown += 1,
        }
    }

    /// Packets that came from the first identified one to the last, both
    /// included.
    fn span_packets(&self) -> u64 {
        if self.expected == 0 { 0 } else { self.packets_at_last - self.packets_at_first + 1 }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "group": self.group.to_string(),
            "datagrams": self.datagrams,
            "packets": self.packets,
            "null_packets": self.null_packets,
            "identified_packets": self.identified,
            "unknown_packets": self.unknown,
            "not_ts": self.not_ts,
            "missing_packets": self.missing,
            "expected_packets": self.expected,
            "span_packets": self.span_packets(),
            "seams": self.seams,
            "cc_errors": self.cc_errors,
            "kernel_drops": self.kernel_drops,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "max_gap_us": self.max_gap_ns as f64 / 1e3,
        })
    }
}

fn main() -> ExitCode {
    let args = match support::parse_args::<Args>(NAME, |a| a.duration) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if !(1..=MAX_GROUPS).contains(&args.groups) {
        return support::fail(NAME, "--groups", format!("{} is not in 1..={MAX_GROUPS}", args.groups));
    }
    let base = u32::from(args.group_base);
    let Some(last) = base.checked_add(args.groups - 1) else {
        return support::fail(NAME, "--group-base/--groups", "the groups run past 255.255.255.255");
    };
    let groups: Vec<Ipv4Addr> = (base..=last).map(Ipv4Addr::from).collect();
    if let Some(g) = groups.iter().find(|g| !g.is_multicast()) {
        return support::fail(NAME, "--group-base/--groups", format!("{g} is not a multicast address"));
    }
    let reference = match std::fs::metadata(&args.reference) {
        Ok(m) if m.len() > MAX_REFERENCE => {
            return support::fail(NAME, "--reference", format!("{} bytes is over {MAX_REFERENCE}", m.len()));
        }
        Ok(_) => match std::fs::read(&args.reference).map_err(|e| e.to_string()).and_then(|b| Reference::load(&b)) {
            Ok(r) => r,
            Err(e) => return support::fail(NAME, "--reference", format!("{}: {e}", args.reference.display())),
        },
        Err(e) => return support::fail(NAME, "--reference", format!("{}: {e}", args.reference.display())),
    };
    let opts = RxOptions { timestamps: true, nonblocking: true, ..RxOptions::default() };
    let mut sockets = Vec::with_capacity(groups.len());
    for &g in &groups {
        let socket = match support::open_rx(SocketAddr::from((g, args.port)), args.rcvbuf, &opts) {
            Ok(s) => s,
            Err(e) => return support::fail(NAME, "setup", e),
        };
        if let Err(e) = socket.join_multicast_v4(&g, &args.iface) {
            return support::fail(NAME, "join", format!("{g} on {}: {e}", args.iface));
        }
        sockets.push(socket);
    }
    let mut stats: Vec<Group> = groups.iter().map(|&g| Group::new(g)).collect();
    let mut batch = RecvBatch::new(BUF);
    let poll = Duration::from_micros(args.poll_us.min(1_000_000));
    let clock = SystemClock;
    let start = clock.now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    while clock.now() < deadline {
        for (socket, group) in sockets.iter().zip(stats.iter_mut()) {
            for _ in 0..CALLS_PER_SWEEP {
                let got = match batch.receive(socket.as_raw_fd(), libc::MSG_DONTWAIT) {
                    Ok(got) => got,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => break,
                    Err(e) => return support::fail(NAME, "recvmmsg", format!("{}: {e}", group.group)),
                };
                for j in 0..got {
                    let (bytes, meta) = batch.message(j);
                    if let Some(d) = meta.drops {
                        group.kernel_drops = group.kernel_drops.max(d);
                    }
                    group.datagram(bytes, meta.ns, &reference);
                }
                if got < BATCH {
                    break;
                }
            }
        }
        std::thread::sleep(poll);
    }
    let seconds = (clock.now() - start).as_secs_f64();
    let sum = |f: fn(&Group) -> u64| stats.iter().map(f).sum::<u64>();
    let report = serde_json::json!({
        "seconds": seconds,
        "reference_packets": reference.packets(),
        "reference_identifiable": reference.identifiable(),
        "datagrams": sum(|g| g.datagrams),
        "missing_packets": sum(|g| g.missing),
        "expected_packets": sum(|g| g.expected),
        "span_packets": sum(Group::span_packets),
        "cc_errors": sum(|g| g.cc_errors),
        "unknown_packets": sum(|g| g.unknown),
        "not_ts": sum(|g| g.not_ts),
        "kernel_drops": sum(|g| u64::from(g.kernel_drops)),
        "groups": stats.iter().map(Group::json).collect::<Vec<_>>(),
    });
    println!("{report}");
    ExitCode::SUCCESS
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A packet of `pid` with payload byte `fill`, CC `cc`, and a PCR in an
    /// adaptation field when `pcr` is given.
    fn packet(pid: u16, cc: u8, fill: u8, pcr: Option<u64>) -> Vec<u8> {
        let mut p = vec![SYNC, (pid >> 8) as u8, pid as u8, 0x10 | cc];
        if let Some(pcr) = pcr {
            p[3] |= 0x20;
            p.extend_from_slice(&[7, 0x10]);
            p.extend_from_slice(&(pcr << 16).to_be_bytes()[..6]);
        }
        p.resize(TS_PACKET, fill);
        p
    }

    /// `n` packets on PID 0x100 with distinct payloads and a PCR on every
    /// fourth, CC from `cc0`, PCR moved by `shift`.
    fn pass(n: u8, cc0: u8, shift: u64) -> Vec<Vec<u8>> {
        (0..n).map(|i| packet(0x100, (cc0 + i) & 0xF, i, (i % 4 == 0).then_some(u64::from(i) * 1000 + shift))).collect()
    }

    #[test]
    fn losses_across_a_rewritten_seam_are_counted_exactly() {
        let file: Vec<u8> = pass(40, 0, 0).concat();
        let r = Reference::load(&file).unwrap();
        assert_eq!((r.packets(), r.identifiable()), (40, 40));
        let mut g = Group::new(Ipv4Addr::new(239, 1, 1, 1));
        // Pass 0, then pass 1 with CC and PCR moved on as a seamless loop
        // does; lose packets 5..8 of pass 0 and 0..2 of pass 1.
        let mut sent = pass(40, 0, 0);
        sent.extend(pass(40, 40 % 16, 123_456));
        for (i, p) in sent.iter().enumerate() {
            if !(5..8).contains(&i) && !(40..42).contains(&i) {
                g.packet(p, &r);
            }
        }
        assert_eq!((g.identified, g.missing, g.seams, g.unknown), (75, 5, 1, 0));
        assert_eq!((g.expected, g.span_packets()), (80, 75));
        // Two CC jumps: one per hole.
        assert_eq!(g.cc_errors, 2);
    }

    #[test]
    fn a_raw_replay_shows_a_seam_jump_but_no_loss() {
        let file: Vec<u8> = pass(20, 0, 0).concat();
        let r = Reference::load(&file).unwrap();
        let mut g = Group::new(Ipv4Addr::new(239, 1, 1, 1));
        for p in pass(20, 0, 0).iter().chain(pass(20, 0, 0).iter()) {
            g.packet(p, &r);
        }
        // 20 packets end at CC 3; the replay restarts at 0.
        assert_eq!((g.missing, g.seams, g.cc_errors), (0, 1, 1));
        assert_eq!((g.expected, g.span_packets()), (40, 40));
    }

    #[test]
    fn repeated_and_null_packets_are_not_identifiable() {
        let mut file = packet(0, 0, 9, None);
        file.extend(packet(0, 1, 9, None));
        file.extend(packet(NULL_PID, 0, 0xFF, None));
        file.extend(packet(0x100, 0, 1, None));
        let r = Reference::load(&file).unwrap();
        assert_eq!((r.packets(), r.identifiable()), (4, 1));
        assert_eq!(r.skipped(3, 3), 0);
        let mut g = Group::new(Ipv4Addr::new(239, 1, 1, 1));
        g.datagram(&file, Some(5), &r);
        g.datagram(&packet(0x200, 0, 1, None), Some(2_005), &r);
        assert_eq!((g.null_packets, g.identified, g.unknown, g.datagrams), (1, 1, 1, 2));
        assert_eq!((g.first_ns, g.last_ns, g.max_gap_ns), (Some(5), Some(2_005), 2_000));
    }

    #[test]
    fn a_lost_datagram_of_padding_alone_shows_in_the_span_count() {
        // A, 7 nulls, B, C: the nulls' loss leaves the identifiable
        // packets whole but the span short by 7.
        let mut file = packet(0x100, 0, 1, None);
        for _ in 0..7 {
            file.extend(packet(NULL_PID, 0, 0xFF, None));
        }
        file.extend(packet(0x100, 1, 2, None));
        file.extend(packet(0x100, 2, 3, None));
        let r = Reference::load(&file).unwrap();
        assert_eq!((r.packets(), r.identifiable()), (10, 3));
        let mut g = Group::new(Ipv4Addr::new(239, 1, 1, 1));
        let all: Vec<&[u8]> = file.chunks_exact(TS_PACKET).collect();
        for pass in 0..2 {
            for (i, p) in all.iter().enumerate() {
                if !(pass == 1 && (1..8).contains(&i)) {
                    g.packet(p, &r);
                }
            }
        }
        assert_eq!((g.missing, g.cc_errors, g.seams), (0, 1, 1));
        assert_eq!((g.expected, g.span_packets()), (20, 13));
    }
}
