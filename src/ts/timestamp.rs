//! The 5-byte PTS / DTS field of a PES header (ISO/IEC 13818-1 §2.4.3.7).

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

#[cfg(test)]
mod tests {
    use super::*;

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
