//! PES packets cut into transport packets, written straight into the
//! caller's buffer: one copy of the payload, no allocation per packet.

use bytes::BytesMut;

use crate::ts::packet::{PACKET_LEN, SYNC_BYTE};

/// The 33-bit PTS/DTS/PCR-base wrap.
pub(super) const WRAP_33: i64 = 1 << 33;

/// Payload bytes of a packet without adaptation field.
const PAYLOAD_MAX: usize = PACKET_LEN - 4;

/// Longest PES header written here: 9 fixed bytes + PTS + DTS.
pub(super) const PES_HEADER_MAX: usize = 19;

/// What the first packet of a PES carries in its adaptation field.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FirstPacket {
    /// PCR base (90 kHz, any value: written modulo 2^33), extension 0.
    pub pcr: Option<i64>,
    /// random_access_indicator.
    pub random_access: bool,
    /// discontinuity_indicator.
    pub discontinuity: bool,
}

impl FirstPacket {
    fn af_flags(&self) -> u8 {
        (u8::from(self.discontinuity) << 7) | (u8::from(self.random_access) << 6) | (u8::from(self.pcr.is_some()) << 4)
    }

    /// Adaptation field bytes this needs (length byte included); 0 for none.
    fn af_len(&self) -> usize {
        if self.af_flags() == 0 { 0 } else { 2 + if self.pcr.is_some() { 6 } else { 0 } }
    }
}

/// Writes a PES header for `stream_id` into `hdr`, returns its length.
/// `pes_len` is PES_packet_length's payload part (0 = unbounded).
pub(super) fn pes_header(
    hdr: &mut [u8; PES_HEADER_MAX],
    stream_id: u8,
    pts: i64,
    dts: i64,
    bounded: Option<usize>,
) -> usize {
    let with_dts = pts.rem_euclid(WRAP_33) != dts.rem_euclid(WRAP_33);
    let optional = if with_dts { 10 } else { 5 };
    let len = 9 + optional;
    // PES_packet_length counts the bytes after itself; 0 (unbounded) when
    // asked for or when it does not fit 16 bits.
    let pes_len = bounded.map_or(0, |payload| payload + 3 + optional);
    let pes_len = if pes_len > 0xFFFF { 0 } else { pes_len as u16 };
    hdr[..9].copy_from_slice(&[
        0,
        0,
        1,
        stream_id,
        (pes_len >> 8) as u8,
        pes_len as u8,
        0x80, // '10', not scrambled, no priority/alignment/copyright flags, as ffmpeg
        if with_dts { 0xC0 } else { 0x80 },
        optional as u8,
    ]);
    if with_dts {
        write_timestamp(&mut hdr[9..14], 0x3, pts);
        write_timestamp(&mut hdr[14..19], 0x1, dts);
    } else {
        write_timestamp(&mut hdr[9..14], 0x2, pts);
    }
    len
}

/// The 5-byte PTS/DTS field with its 4-bit prefix and marker bits.
fn write_timestamp(dst: &mut [u8], prefix: u8, ts: i64) {
    let t = ts.rem_euclid(WRAP_33) as u64;
    dst[0] = (prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1;
    dst[1] = (t >> 22) as u8;
    dst[2] = (((t >> 15) as u8 & 0x7F) << 1) | 1;
    dst[3] = (t >> 7) as u8;
    dst[4] = ((t as u8 & 0x7F) << 1) | 1;
}

/// The 6-byte PCR field: base modulo 2^33, six reserved ones, extension 0.
pub(super) fn pcr_bytes(base: i64) -> [u8; 6] {
    let b = base.rem_euclid(WRAP_33) as u64;
    [(b >> 25) as u8, (b >> 17) as u8, (b >> 9) as u8, (b >> 1) as u8, ((b as u8 & 1) << 7) | 0x7E, 0]
}

/// Appends a packet of `pid` carrying only an adaptation field with a PCR
/// (and `discontinuity`); `cc` is the PID's last counter, repeated because
/// a packet without payload does not advance it.
pub(super) fn write_pcr_only(out: &mut BytesMut, pid: u16, cc: u8, pcr: i64, discontinuity: bool) {
    let mut p = [0xFFu8; PACKET_LEN];
    p[..4].copy_from_slice(&[SYNC_BYTE, (pid >> 8) as u8 & 0x1F, pid as u8, 0x20 | (cc & 0x0F)]);
    p[4] = 183;
    p[5] = 0x10 | (u8::from(discontinuity) << 7);
    p[6..12].copy_from_slice(&pcr_bytes(pcr));
    out.extend_from_slice(&p);
}

/// Appends the PES `hdr ++ payload` on `pid` as whole transport packets,
/// the first with `first`'s adaptation field and the payload_unit_start
/// flag, the last padded by adaptation-field stuffing. `cc` is the PID's
/// next counter and is advanced. Returns the number of packets written.
pub(super) fn write_pes(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    hdr: &[u8],
    payload: &[u8],
    first: FirstPacket,
) -> usize {
    let total = hdr.len() + payload.len();
    let first_af = first.af_len();
    // A PES of n bytes needs ceil((n + first_af) / 184) packets, at least one.
    let count = (total + first_af).div_ceil(PAYLOAD_MAX).max(1);
    out.reserve(count * PACKET_LEN);
    let (pid_hi, pid_lo) = ((pid >> 8) as u8 & 0x1F, pid as u8);
    let mut hdr_left = hdr;
    let mut rest = payload;
    for i in 0..count {
        let is_first = i == 0;
        let af_fixed = if is_first { first_af } else { 0 };
        let left = hdr_left.len() + rest.len();
        let room = PAYLOAD_MAX - af_fixed;
        let take = left.min(room);
        let stuffing = room - take;
        let af_total = af_fixed + stuffing;
        let mut head = [0u8; 4 + 8];
        head[0] = SYNC_BYTE;
        head[1] = (u8::from(is_first) << 6) | pid_hi;
        head[2] = pid_lo;
        head[3] = if af_total > 0 { 0x30 } else { 0x10 } | (*cc & 0x0F);
        *cc = cc.wrapping_add(1) & 0x0F;
        let mut head_len = 4;
        if af_total > 0 {
            head[4] = (af_total - 1) as u8;
            head_len = 5;
            if af_total > 1 {
                head[5] = if is_first { first.af_flags() } else { 0 };
                head_len = 6;
                if let (true, Some(pcr)) = (is_first, first.pcr) {
                    head[6..12].copy_from_slice(&pcr_bytes(pcr));
                    head_len = 12;
                }
            }
        }
        out.extend_from_slice(&head[..head_len]);
        // Stuffing bytes: what is left of the adaptation field after the
        // length, flags and PCR written above.
        let pad = af_total - (head_len - 4);
        if pad > 0 {
            out.extend_from_slice(&STUFFING[..pad]);
        }
        let from_hdr = take.min(hdr_left.len());
        if from_hdr > 0 {
            out.extend_from_slice(&hdr_left[..from_hdr]);
            hdr_left = &hdr_left[from_hdr..];
        }
        let from_payload = take - from_hdr;
        out.extend_from_slice(&rest[..from_payload]);
        rest = &rest[from_payload..];
    }
    count
}

/// Adaptation-field stuffing source.
static STUFFING: [u8; PACKET_LEN] = [0xFF; PACKET_LEN];
