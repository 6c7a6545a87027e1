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
        pes_timestamp(packet.payload()?)
    })
}

/// The DTS, else the PTS, of the PES header at the start of `pes`.
fn pes_timestamp(pes: &[u8]) -> Option<u64> {
    let [0, 0, 1, stream_id, _, _, _, flags, ..] = *pes else { return None };
    // Streams whose PES header has no optional fields (§2.4.3.7, table 2-22):
    // program_stream_map, padding, private_stream_2, ECM, EMM, DSM-CC,
    // H.222.1 type E, program_stream_directory.
    if matches!(stream_id, 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF) {
        return None;
    }
    match flags >> 6 {
        0b10 => read_timestamp(pes.get(9..14)?),
        0b11 => read_timestamp(pes.get(14..19)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet on PID 256 with a PES header carrying `pts` and `dts`.
    fn pes_packet(stream_id: u8, pts: Option<u64>, dts: Option<u64>) -> Vec<u8> {
        let mut p = vec![0x47, 0x41, 0x00, 0x10, 0, 0, 1, stream_id, 0, 0, 0x80];
        let field = |prefix: u8, ts: u64| {
            [
                prefix << 4 | ((ts >> 29) as u8 & 0x0E) | 1,
                (ts >> 22) as u8,
                ((ts >> 14) as u8 & 0xFE) | 1,
                (ts >> 7) as u8,
                ((ts << 1) as u8 & 0xFE) | 1,
            ]
        };
        match (pts, dts) {
            (Some(pts), Some(dts)) => {
                p.extend_from_slice(&[0xC0, 10]);
                p.extend_from_slice(&field(3, pts));
                p.extend_from_slice(&field(1, dts));
            }
            (Some(pts), None) => {
                p.extend_from_slice(&[0x80, 5]);
                p.extend_from_slice(&field(2, pts));
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
        let b = [
            0x20 | ((ts >> 29) as u8 & 0x0E) | 1,
            (ts >> 22) as u8,
            ((ts >> 14) as u8 & 0xFE) | 1,
            (ts >> 7) as u8,
            ((ts << 1) as u8 & 0xFE) | 1,
        ];
        assert_eq!(read_timestamp(&b), Some(ts));
        let mut no_marker = b;
        no_marker[2] &= 0xFE;
        assert_eq!(read_timestamp(&no_marker), None);
        assert_eq!(read_timestamp(&b[..4]), None);
    }
}
