//! TS demux to access units: 188-byte packets in, [`AvPacket`]s out.
//!
//! Built on mpeg2ts-reader: its `Demultiplex` follows the PAT and each PMT
//! (ISO/IEC 13818-1 §2.4.4) and tells us which PIDs carry which streams.
//! The packet loop is ours: a PID table sends each elementary stream's
//! packets straight to its track, which assembles PES packets (§2.4.3.6) in
//! its buffer (see `track.rs`, `gather.rs`); only table packets (and PIDs
//! we know nothing of) go through the reader. Hand-written because the
//! loop has to prefetch: the demux waits on memory, not on parsing, and
//! the hardware prefetcher falls behind a file read at this rate. In
//! `cargo bench --bench demux` (512 MiB): 28 ms, against 42 ms without the
//! prefetch and 53 ms through the reader's loop with a plain `BytesMut`.
//!
//! What comes out:
//! - **One [`AvPacket`] per PES packet.** Video muxers write one access unit
//!   per PES, so a video packet is one access unit (H.264 / H.265 in
//!   Annex B). Audio muxers often pack several frames in one PES (ffmpeg
//!   does, up to ~2.9 KB): an audio packet is then all the frames of that
//!   PES (AAC as ADTS, MPEG audio, AC-3 / E-AC-3 syncframes, Opus access
//!   units with their TS control headers), stamped with the PES's PTS.
//! - Codecs as `codec::from_pmt` (ffprobe's view) names them: `h264`,
//!   `hevc`, `aac`, MPEG audio (types 0x03/0x04), `ac3` / `eac3` (ATSC
//!   0x81/0x87, DVB 0x06 + descriptor; the first frame tells AC-3 from
//!   E-AC-3), `opus` (0x06 + registration `Opus`). A private stream (0x06
//!   or >= 0x80) that nothing identifies is sniffed from its first PES.
//!   Everything else is skipped and counted per reason.
//! - Timestamps in 90 kHz on an unwrapped timeline per track: the 33-bit
//!   wrap is carried into the high bits. A PES without PTS gets the
//!   previous PES's timestamps (counted); one before any timestamp is
//!   dropped (counted).
//! - `keyframe`: video, when the PES's first packet has the
//!   random_access_indicator or its first picture is IDR / IRAP (the
//!   output entry gate's start-code scan); audio, always.
//! - `discontinuity`: on the first PES after a continuity gap or a
//!   discontinuity_indicator.
//!
//! What it does not do: resync (the scanner upstream owns sync; a packet
//! without a sync byte is skipped and counted), descramble (scrambled
//! packets are counted and dropped), split audio PES into frames, or emit
//! a PES it knows is incomplete (lost to a CC gap, shorter than its
//! PES_packet_length, over [`DemuxLimits::max_pes_bytes`]).
//!
//! Bounds: each track holds at most one PES of at most `max_pes_bytes`, in
//! one of its two blocks (each at most `max_pes_bytes` or 128 KiB, the
//! larger; a block lives on while packets cut from it do); the ready queue
//! holds at most `max_queued` packets (beyond, counted and dropped); a
//! chunk need not end on a packet boundary (up to 187 bytes are carried to
//! the next push).

mod gather;
mod track;

use std::collections::VecDeque;

use mpeg2ts_reader::demultiplex::{
    Demultiplex, DemuxContext, FilterChangeset, FilterRequest, PacketFilter, PatPacketFilter, PmtPacketFilter,
};
use mpeg2ts_reader::packet::Packet;

use crate::ts::av::{AvPacket, Codec};
use crate::ts::codec;
use crate::ts::prefetch::prefetch_read;
use track::{Mode, Sink, Track};

/// Bytes in a TS packet.
const PACKET: usize = 188;

/// How far ahead of the packet it works on the loop prefetches: 6 KB. Of
/// 3 to 200 packets in `cargo bench --bench demux`, 32 to 48 did best
/// (28 ms; 12: 32 ms; 96: 30 ms; 3: 52 ms).
const PREFETCH_PACKETS: usize = 32;

/// A good batch size for [`Demuxer::drain`]: large enough to amortise the
/// call, small enough to keep latency and memory per hand-off low.
pub const DRAIN_BATCH: usize = 256;

/// Memory bounds of a [`Demuxer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemuxLimits {
    /// The largest PES payload gathered; a larger PES is dropped and
    /// counted in `oversized_pes_total`.
    pub max_pes_bytes: usize,
    /// The most packets waiting in the ready queue; more are dropped and
    /// counted in `queue_overflow_total`.
    pub max_queued: usize,
}

impl Default for DemuxLimits {
    fn default() -> Self {
        DemuxLimits { max_pes_bytes: 8 << 20, max_queued: 65_536 }
    }
}

/// What the demuxer saw, skipped and dropped. Counters only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DemuxCounters {
    /// TS packets pushed.
    pub ts_packets_total: u64,
    /// Packets without the 0x47 sync byte, skipped.
    pub bad_sync_packets_total: u64,
    /// Packets with transport_error_indicator, dropped.
    pub transport_error_packets_total: u64,
    /// Scrambled packets, dropped.
    pub scrambled_packets_total: u64,
    /// Access units put in the ready queue.
    pub av_packets_total: u64,
    /// Tracks created from PMT entries.
    pub tracks_added_total: u64,
    /// Tracks removed by a PMT change (or replaced by another stream type).
    pub tracks_removed_total: u64,
    /// PMTs whose stream list changed after the first one seen.
    pub pmt_changes_total: u64,
    /// Skipped streams: video in a codec we do not demux (MPEG-2, VC-1...).
    pub skipped_streams_video_total: u64,
    /// Skipped streams: audio in a codec we do not demux (DTS, LATM...).
    pub skipped_streams_audio_total: u64,
    /// Skipped streams: neither audio nor video (subtitles, teletext,
    /// SCTE-35, metadata, private sections).
    pub skipped_streams_data_total: u64,
    /// Skipped streams: private streams whose first payload is nothing we
    /// know.
    pub skipped_streams_unidentified_total: u64,
    /// TS packets of skipped streams.
    pub skipped_es_packets_total: u64,
    /// Continuity counter gaps on demuxed tracks.
    pub cc_gaps_total: u64,
    /// Duplicate packets (same continuity counter, §2.4.3.3), ignored.
    pub duplicate_packets_total: u64,
    /// PES packets in progress lost to a continuity gap.
    pub pes_dropped_cc_gap_total: u64,
    /// PES packets over `max_pes_bytes`, dropped.
    pub oversized_pes_total: u64,
    /// Bounded PES packets cut off before their PES_packet_length, dropped.
    pub truncated_pes_total: u64,
    /// PES starts without a start code or a complete header, dropped.
    pub malformed_pes_total: u64,
    /// PES packets without PTS, given the previous PES's timestamps.
    pub pes_without_pts_total: u64,
    /// PES packets without PTS before any timestamp on their track, dropped.
    pub pes_dropped_no_timestamp_total: u64,
    /// Payload packets of a track with no PES in progress (joined mid-PES,
    /// or after a dropped one).
    pub payload_without_pes_start_total: u64,
    /// Access units dropped because the ready queue was full.
    pub queue_overflow_total: u64,
}

/// A demuxed (or being identified) elementary stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    /// The elementary PID (the `track` of its packets).
    pub pid: u16,
    /// The PID of the PMT that announced it.
    pub pmt_pid: u16,
    /// Its stream_type in that PMT.
    pub stream_type: u8,
    /// Its codec; `None` while a private stream waits for its first PES.
    pub codec: Option<Codec>,
}

/// The sans-IO demuxer: [`push`](Demuxer::push) chunks of TS packets,
/// [`drain`](Demuxer::drain) the access units, [`flush`](Demuxer::flush) at
/// the end of input.
pub struct Demuxer {
    demux: Demultiplex<Ctx>,
    ctx: Ctx,
    /// The start of a packet split between pushes.
    carry: [u8; PACKET],
    carry_len: usize,
}

impl Default for Demuxer {
    fn default() -> Self {
        Demuxer::new()
    }
}

impl std::fmt::Debug for Demuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demuxer").field("counters", &self.ctx.counters).field("ready", &self.ctx.ready.len()).finish()
    }
}

impl Demuxer {
    /// A demuxer with the default limits (8 MiB per PES, 65 536 queued).
    pub fn new() -> Demuxer {
        Demuxer::with_limits(DemuxLimits::default())
    }

    /// A demuxer with the given memory bounds.
    pub fn with_limits(limits: DemuxLimits) -> Demuxer {
        let mut ctx = Ctx::new(limits);
        let demux = Demultiplex::new(&mut ctx);
        Demuxer { demux, ctx, carry: [0; PACKET], carry_len: 0 }
    }

    /// Feeds TS bytes: normally whole 188-byte packets; a partial packet at
    /// the end is kept for the next push.
    pub fn push(&mut self, mut chunk: &[u8]) {
        if self.carry_len > 0 {
            let take = (PACKET - self.carry_len).min(chunk.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&chunk[..take]);
            self.carry_len += take;
            chunk = &chunk[take..];
            if self.carry_len < PACKET {
                return;
            }
            self.carry_len = 0;
            let packet = self.carry;
            self.push_aligned(&packet);
        }
        let whole = chunk.len() / PACKET * PACKET;
        self.push_aligned(&chunk[..whole]);
        let rest = &chunk[whole..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carry_len = rest.len();
    }

    /// Moves up to `max` ready access units, oldest first, to the end of
    /// `out`; returns how many.
    pub fn drain(&mut self, out: &mut Vec<AvPacket>, max: usize) -> usize {
        let n = max.min(self.ctx.ready.len());
        out.extend(self.ctx.ready.drain(..n));
        n
    }

    /// Access units waiting to be drained.
    pub fn ready(&self) -> usize {
        self.ctx.ready.len()
    }

    /// End of input: emits each track's last PES (an unbounded PES ends only
    /// at the next one), drops a partial packet. Pushing may go on after.
    pub fn flush(&mut self) {
        self.carry_len = 0;
        let ctx = &mut self.ctx;
        let mut sink = Sink { ready: &mut ctx.ready, counters: &mut ctx.counters, limits: &ctx.limits };
        for track in ctx.tracks.iter_mut().flatten() {
            track.finish(&mut sink, true);
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &DemuxCounters {
        &self.ctx.counters
    }

    /// The tracks the current PMTs announce that are demuxed or being
    /// identified, in no particular order.
    pub fn tracks(&self) -> impl Iterator<Item = TrackInfo> + '_ {
        self.ctx.tracks.iter().flatten().filter_map(|t| {
            let codec = match t.mode {
                Mode::Demux { codec, .. } => Some(codec),
                Mode::Sniff => None,
                Mode::Skip => return None,
            };
            Some(TrackInfo { pid: t.pid, pmt_pid: t.program_pid, stream_type: t.stream_type, codec })
        })
    }

    /// Whole packets: checked, counted and routed by PID.
    fn push_aligned(&mut self, buf: &[u8]) {
        let ctx = &mut self.ctx;
        ctx.counters.ts_packets_total += (buf.len() / PACKET) as u64;
        for (i, pk) in buf.chunks_exact(PACKET).enumerate() {
            if let Some(ahead) = buf.get((i + PREFETCH_PACKETS) * PACKET..) {
                prefetch_read(ahead, PACKET);
            }
            let Some(pk) = pk.first_chunk::<PACKET>() else { continue };
            if pk[0] != 0x47 {
                ctx.counters.bad_sync_packets_total += 1;
                continue;
            }
            if pk[1] & 0x80 != 0 {
                ctx.counters.transport_error_packets_total += 1;
                continue;
            }
            if pk[3] & 0xC0 != 0 {
                ctx.counters.scrambled_packets_total += 1;
                continue;
            }
            let pid = usize::from(u16::from_be_bytes([pk[1] & 0x1F, pk[2]]));
            match ctx.routes[pid] {
                Route::Track(slot) => {
                    if let Some(Some(track)) = ctx.tracks.get_mut(usize::from(slot)) {
                        let mut sink = Sink { ready: &mut ctx.ready, counters: &mut ctx.counters, limits: &ctx.limits };
                        track.consume(pk, &mut sink);
                    }
                }
                Route::Skip => ctx.counters.skipped_es_packets_total += 1,
                Route::Ignore => {}
                Route::Reader => self.demux.push(ctx, pk),
            }
        }
    }
}

/// Where the packet loop sends a PID's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// To mpeg2ts-reader: the PAT, PMTs, and PIDs not (yet) announced, so
    /// that a table that appears later is read.
    Reader,
    /// To the track in this slot of `Ctx::tracks`.
    Track(u16),
    /// An announced stream we skip: counted.
    Skip,
    /// Null packets.
    Ignore,
}

/// The packet filters mpeg2ts-reader dispatches to, by PID.
enum Filter {
    Pat(PatPacketFilter<Ctx>),
    Pmt(PmtFilter),
    /// A PID no table announces (PCR-only, NIT...), or an elementary
    /// stream, whose packets `Ctx::routes` sends past the reader.
    Ignore,
}

impl PacketFilter for Filter {
    type Ctx = Ctx;
    fn consume(&mut self, ctx: &mut Ctx, pk: &Packet<'_>) {
        match self {
            Filter::Pat(f) => f.consume(ctx, pk),
            Filter::Pmt(f) => f.consume(ctx, pk),
            Filter::Ignore => {}
        }
    }
}

/// mpeg2ts-reader's PMT filter, watched: it asks `Ctx::construct` for each
/// stream of a new table version; after it we learn which tracks went away.
struct PmtFilter {
    pid: u16,
    inner: PmtPacketFilter<Ctx>,
}

impl PmtFilter {
    fn consume(&mut self, ctx: &mut Ctx, pk: &Packet<'_>) {
        ctx.announced.clear();
        self.inner.consume(ctx, pk);
        // The reader queues filter changes only when a new table arrived
        // (and a table with streams always queues some).
        if !ctx.changeset.is_empty() {
            ctx.table_done(self.pid);
        }
    }
}

/// The state the filters share: tracks, ready queue, counters.
struct Ctx {
    changeset: FilterChangeset<Filter>,
    limits: DemuxLimits,
    /// Track slots; a `Route::Track` names one. Freed slots are reused, so
    /// there are never more than 8192 (and a slot fits a `u16`).
    tracks: Vec<Option<Track>>,
    ready: VecDeque<AvPacket>,
    counters: DemuxCounters,
    /// `(PMT PID, its (PID, stream_type) list)` as last seen.
    programs: Vec<(u16, Vec<(u16, u8)>)>,
    /// Streams of the table being read.
    announced: Vec<(u16, u8)>,
    /// Where each PID's packets go, indexed by PID.
    routes: Box<[Route; 8192]>,
}

impl Ctx {
    fn new(limits: DemuxLimits) -> Ctx {
        Ctx {
            changeset: FilterChangeset::default(),
            limits,
            tracks: Vec::new(),
            ready: VecDeque::new(),
            counters: DemuxCounters::default(),
            programs: Vec::new(),
            announced: Vec::new(),
            routes: Ctx::initial_routes(),
        }
    }

    fn initial_routes() -> Box<[Route; 8192]> {
        let mut routes = Box::new([Route::Reader; 8192]);
        routes[0x1FFF] = Route::Ignore;
        routes
    }

    fn slot_of(&self, pid: u16) -> Option<usize> {
        self.tracks.iter().position(|t| t.as_ref().is_some_and(|t| t.pid == pid))
    }

    /// Ends a track: its last PES goes out if whole; its PID's packets go
    /// to the reader again.
    fn remove_track(&mut self, slot: usize) {
        if let Some(mut track) = self.tracks.get_mut(slot).and_then(Option::take) {
            self.routes[usize::from(track.pid & 0x1FFF)] = Route::Reader;
            let mut sink = Sink { ready: &mut self.ready, counters: &mut self.counters, limits: &self.limits };
            track.finish(&mut sink, true);
            self.counters.tracks_removed_total += 1;
        }
    }

    /// A new version of the PMT on `pmt_pid` has been read.
    fn table_done(&mut self, pmt_pid: u16) {
        let now = std::mem::take(&mut self.announced);
        let before = match self.programs.iter().position(|(p, _)| *p == pmt_pid) {
            Some(i) => Some(std::mem::replace(&mut self.programs[i].1, now.clone())),
            None => {
                self.programs.push((pmt_pid, now.clone()));
                None
            }
        };
        let Some(before) = before else { return };
        if before != now {
            self.counters.pmt_changes_total += 1;
        }
        for (pid, _) in before.iter().filter(|(pid, _)| !now.iter().any(|(p, _)| p == pid)) {
            if let Some(slot) = self.slot_of(*pid) {
                if self.tracks[slot].as_ref().is_some_and(|t| t.program_pid == pmt_pid) {
                    self.remove_track(slot);
                }
            } else if self.routes[usize::from(*pid & 0x1FFF)] == Route::Skip {
                self.routes[usize::from(*pid & 0x1FFF)] = Route::Reader;
            }
        }
    }

    /// Routes the PID of a stream a PMT announces.
    fn announce_stream(&mut self, pmt_pid: u16, pid: u16, stream_type: u8, pmt: &[u8]) {
        let route = self.stream_route(pmt_pid, pid, stream_type, pmt);
        self.routes[usize::from(pid & 0x1FFF)] = route;
    }

    /// Where the packets of a stream a PMT announces go.
    fn stream_route(&mut self, pmt_pid: u16, pid: u16, stream_type: u8, pmt: &[u8]) -> Route {
        self.announced.push((pid, stream_type));
        let (registration, es_descriptors) = pmt_entry(pmt, pid);
        let name = codec::from_pmt(stream_type, es_descriptors, registration);
        let existing = self.slot_of(pid);
        let mode = match classify(stream_type, name) {
            Ok(mode) => mode,
            Err(reason) => {
                let seen = self.programs.iter().any(|(p, s)| *p == pmt_pid && s.contains(&(pid, stream_type)));
                if !seen {
                    *reason.counter(&mut self.counters) += 1;
                }
                if let Some(slot) = existing {
                    self.remove_track(slot);
                }
                return Route::Skip;
            }
        };
        if let Some(slot) = existing {
            if let Some(t) = self.tracks[slot].as_mut()
                && t.stream_type == stream_type
            {
                // The same stream in a new table version: keep its state.
                t.program_pid = pmt_pid;
                return Route::Track(slot_id(slot));
            }
            self.remove_track(slot);
        }
        let track = Track::new(pid, pmt_pid, stream_type, mode);
        self.counters.tracks_added_total += 1;
        let slot = match self.tracks.iter().position(Option::is_none) {
            Some(slot) => {
                self.tracks[slot] = Some(track);
                slot
            }
            None => {
                self.tracks.push(Some(track));
                self.tracks.len() - 1
            }
        };
        Route::Track(slot_id(slot))
    }
}

impl DemuxContext for Ctx {
    type F = Filter;

    fn filter_changeset(&mut self) -> &mut FilterChangeset<Filter> {
        &mut self.changeset
    }

    fn construct(&mut self, req: FilterRequest<'_, '_>) -> Filter {
        match req {
            FilterRequest::ByPid(pid) if u16::from(pid) == 0 => Filter::Pat(PatPacketFilter::default()),
            FilterRequest::ByPid(_) | FilterRequest::Nit { .. } => Filter::Ignore,
            FilterRequest::Pmt { pid, program_number } => {
                let pid_index = usize::from(u16::from(pid) & 0x1FFF);
                if let Some(slot) = self.slot_of(u16::from(pid)) {
                    // A PID cannot be both a table and a stream: the
                    // newest announcement wins.
                    self.remove_track(slot);
                }
                self.routes[pid_index] = Route::Reader;
                Filter::Pmt(PmtFilter { pid: u16::from(pid), inner: PmtPacketFilter::new(pid, program_number) })
            }
            FilterRequest::ByStream { program_pid, stream_type, pmt, stream_info } => {
                self.announce_stream(
                    u16::from(program_pid),
                    u16::from(stream_info.elementary_pid()),
                    stream_type.0,
                    pmt.buffer(),
                );
                Filter::Ignore
            }
        }
    }
}

/// A track slot as a route names it: slots stay below 8192 (one per PID).
fn slot_id(slot: usize) -> u16 {
    u16::try_from(slot).unwrap_or(u16::MAX)
}

/// Why a stream is skipped.
#[derive(Clone, Copy, Debug)]
enum SkipReason {
    Video,
    Audio,
    Data,
}

impl SkipReason {
    fn counter(self, c: &mut DemuxCounters) -> &mut u64 {
        match self {
            SkipReason::Video => &mut c.skipped_streams_video_total,
            SkipReason::Audio => &mut c.skipped_streams_audio_total,
            SkipReason::Data => &mut c.skipped_streams_data_total,
        }
    }
}

/// What to do with a stream, from its type and `codec::from_pmt`'s name.
fn classify(stream_type: u8, name: Option<&str>) -> Result<Mode, SkipReason> {
    let codec = match name {
        Some("h264") => Codec::H264,
        Some("hevc") => Codec::H265,
        Some("aac") => Codec::Aac,
        Some("mp3") => Codec::MpegAudio,
        Some("ac3") => return Ok(Mode::Demux { codec: Codec::Ac3, refine: true }),
        Some("eac3") => Codec::Eac3,
        Some("opus") => Codec::Opus,
        Some(name) if codec::is_video(name) => return Err(SkipReason::Video),
        Some("aac_latm" | "dts" | "truehd" | "pcm_bluray" | "s302m") => return Err(SkipReason::Audio),
        Some(_) => return Err(SkipReason::Data),
        // Private PES streams may be audio that only the frames identify.
        None if stream_type == 0x06 || stream_type >= 0x80 => return Ok(Mode::Sniff),
        None => return Err(SkipReason::Data),
    };
    Ok(Mode::Demux { codec, refine: false })
}

/// From a PMT section body (after the table syntax header, without the
/// CRC): the program's registration format, and the ES descriptors of `pid`.
fn pmt_entry(pmt: &[u8], pid: u16) -> (Option<[u8; 4]>, &[u8]) {
    let Some(&[_, _, pil_hi, pil_lo]) = pmt.first_chunk::<4>() else { return (None, &[]) };
    let program_info_len = usize::from(u16::from_be_bytes([pil_hi & 0x0F, pil_lo]));
    let Some(program_info) = pmt.get(4..4 + program_info_len) else { return (None, &[]) };
    let registration = codec::Descriptors::new(program_info)
        .find(|(tag, body)| *tag == 0x05 && body.len() >= 4)
        .and_then(|(_, body)| body.first_chunk::<4>().copied());
    let mut rest = &pmt[4 + program_info_len..];
    while let Some(&[_, pid_hi, pid_lo, len_hi, len_lo]) = rest.first_chunk::<5>() {
        let len = usize::from(u16::from_be_bytes([len_hi & 0x0F, len_lo]));
        let Some(descriptors) = rest.get(5..5 + len) else { break };
        if u16::from_be_bytes([pid_hi & 0x1F, pid_lo]) == pid {
            return (registration, descriptors);
        }
        rest = &rest[5 + len..];
    }
    (registration, &[])
}

#[cfg(test)]
mod tests;
