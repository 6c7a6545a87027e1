//! The 5-byte PTS / DTS field of a PES header (ISO/IEC 13818-1 §2.4.3.7).

use super::packet::{PACKET_LEN, TsPacket};

/// A 33-bit timestamp from its 5 bytes, when the three marker bits are set.
pub fn read_timestamp(b: &[u8]) -> Option<u64> {
    let &[b0, b1, b2, b3, b4] = b else { return None };
    if b0 & b2 & b4 & 1 == 0 {
        return None;
    }
    Some(
        u64::from(b0 >> 1 & 0x07) << 30
            | u64::from(b1) << 22
            | u64::from(b2 >> 1) << 15
            | u64::from(b3) << 7
            | u64::from(b4 >> 1),
    )
}

/// The DTS (the PTS when there is no DTS) of the first PES header that
/// starts in `chunk`, a run of 188-byte packets; `None` when no PES with a
/// timestamp starts there. Only the first packet of a PES is read.
pub fn first_pes_timestamp(chunk: &[u8]) -> Option<u64> {
    chunk.chunks_exact(PACKET_LEN).find_map(|bytes| {
        let packet = TsPacket::from_slice(bytes)?;
        if !packet.payload_unit_start() || packet.transport_error() {
            return None;
        }
        dts_or_pts(packet.payload()?)
    })
}

/// The DTS, else the PTS, of the PES header at the start of `payload`.
pub(crate) fn dts_or_pts(payload: &[u8]) -> Option<u64> {
    let [pts, dts] = timestamp_fields(payload)?;
    dts.or(pts).and_then(|at| read_timestamp(payload.get(at..at + 5)?))
}

/// Positions of PTS and DTS in a PES packet start (§2.4.3.7), when the
/// header is there in full:
///
/// ```text
/// 00 00 01 | stream_id | PES_packet_length(16) |
/// 10 scrambling(2) priority align copyright original |
/// PTS_DTS_flags(2) ESCR ES_rate DSM_trick copy_info CRC extension |
/// PES_header_data_length | PTS (5 bytes) | DTS (5 bytes) ...
/// ```
pub(crate) fn timestamp_fields(payload: &[u8]) -> Option<[Option<usize>; 2]> {
    let &[0, 0, 1, stream_id, _, _, flags1, flags2, header_len, ..] = payload else {
        return None;
    };
    // Streams without the optional header (Table 2-21): program_stream_map,
    // padding, private_stream_2, ECM, EMM, DSMCC, H.222.1 type E, directory.
    if matches!(stream_id, 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF) || flags1 & 0xC0 != 0x80 {
        return None;
    }
    let fields = match flags2 >> 6 {
        0b10 => [Some(9), None],
        0b11 => [Some(9), Some(14)],
        _ => return None,
    };
    let needed = if fields[1].is_some() { 10 } else { 5 };
    (usize::from(header_len) >= needed && payload.len() >= 9 + needed).then_some(fields)
}

/// The 5 bytes of `ts` with the 4-bit `prefix` and the marker bits set, for
/// tests that build PES headers.
#[cfg(test)]
pub(crate) fn encode_timestamp(prefix: u8, ts: u64) -> [u8; 5] {
    [
        prefix << 4 | ((ts >> 29) & 0x0E) as u8 | 1,
        (ts >> 22) as u8,
        ((ts >> 14) & 0xFE) as u8 | 1,
        (ts >> 7) as u8,
        ((ts << 1) & 0xFE) as u8 | 1,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet on PID 256 with a PES header carrying `pts` and `dts`.
    fn pes_packet(stream_id: u8, pts: Option<u64>, dts: Option<u64>) -> Vec<u8> {
        let mut p = vec![0x47, 0x41, 0x00, 0x10, 0, 0, 1, stream_id, 0, 0, 0x80];
        match (pts, dts) {
            (Some(pts), Some(dts)) => {
                p.extend_from_slice(&[0xC0, 10]);
                p.extend_from_slice(&encode_timestamp(3, pts));
                p.extend_from_slice(&encode_timestamp(1, dts));
            }
            (Some(pts), None) => {
                p.extend_from_slice(&[0x80, 5]);
                p.extend_from_slice(&encode_timestamp(2, pts));
            }
            _ => p.extend_from_slice(&[0, 0]),
        }
        p.resize(PACKET_LEN, 0xFF);
        p
    }

    #[test]
    fn the_first_pes_timestamp_prefers_dts() {
        let mut chunk = vec![0x47, 0x01, 0x00, 0x10];
        chunk.resize(PACKET_LEN, 0); // a continuation packet: no PES start
        chunk.extend(pes_packet(0xC0, None, None));
        chunk.extend(pes_packet(0xBE, Some(5), None)); // padding: no header fields
        chunk.extend(pes_packet(0xE0, Some(9_000), Some(5_400)));
        chunk.extend(pes_packet(0xC0, Some(1), None));
        assert_eq!(first_pes_timestamp(&chunk), Some(5_400));
        assert_eq!(first_pes_timestamp(&pes_packet(0xC0, Some(77), None)), Some(77));
        assert_eq!(first_pes_timestamp(&chunk[..PACKET_LEN * 3]), None);
        assert_eq!(first_pes_timestamp(&chunk[..100]), None);
    }

    #[test]
    fn reads_33_bits_and_needs_the_markers() {
        // PTS 0x1_2345_6789 with prefix 0010 and all markers set.
        let ts: u64 = 0x1_2345_6789;
        let b = encode_timestamp(2, ts);
        assert_eq!(read_timestamp(&b), Some(ts));
        let mut no_marker = b;
        no_marker[2] &= 0xFE;
        assert_eq!(read_timestamp(&no_marker), None);
        assert_eq!(read_timestamp(&b[..4]), None);
    }
}
