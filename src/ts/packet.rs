//! Views of one 188-byte transport packet (ISO/IEC 13818-1 §2.4.3.2).
//!
//! ```text
//!  byte 0      byte 1                  byte 2     byte 3
//! +--------+-+-+-+---------+----------------+---+---+-------+
//! |  0x47  |E|S|P| PID 12..8 | PID 7..0     |TSC|AFC|  CC   |
//! +--------+-+-+-+---------+----------------+---+---+-------+
//!  E = transport_error_indicator, S = payload_unit_start_indicator,
//!  P = transport_priority, TSC = scrambling, AFC = adaptation_field_control
//! ```
//!
//! [`TsPacket`] borrows a fixed-size array, so no accessor can go out of
//! bounds; adaptation-field parsing checks the declared lengths against the
//! 184 bytes that follow the header and never reads past them.

/// Length of a transport packet, without M2TS prefix or Reed-Solomon parity.
pub const PACKET_LEN: usize = 188;
/// The sync byte every packet starts with.
pub const SYNC_BYTE: u8 = 0x47;

/// A 13-bit packet identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(u16);

impl Pid {
    /// Program association table.
    pub const PAT: Pid = Pid(0);
    /// Null (stuffing) packets; carry no continuity counter semantics.
    pub const NULL: Pid = Pid(0x1FFF);
    /// Number of distinct PIDs.
    pub const COUNT: usize = 8192;

    /// Builds a PID from the low 13 bits of `value`.
    pub const fn new(value: u16) -> Pid {
        Pid(value & 0x1FFF)
    }

    /// The PID as a number in `0..8192`.
    pub const fn value(self) -> u16 {
        self.0
    }

    /// The PID as a table index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// A 4-bit continuity counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cc(u8);

impl Cc {
    /// Builds a counter from the low 4 bits of `value`.
    pub const fn new(value: u8) -> Cc {
        Cc(value & 0x0F)
    }

    /// The counter value in `0..16`.
    pub const fn value(self) -> u8 {
        self.0
    }

    /// The counter that follows this one, wrapping after 15.
    ///
    /// ```
    /// use uringest::ts::packet::Cc;
    /// assert_eq!(Cc::new(15).next(), Cc::new(0));
    /// ```
    pub const fn next(self) -> Cc {
        Cc((self.0 + 1) & 0x0F)
    }

    /// Whether `self` is the counter expected right after `prev`.
    ///
    /// ```
    /// use uringest::ts::packet::Cc;
    /// assert!(Cc::new(0).follows(Cc::new(15)));
    /// assert!(!Cc::new(2).follows(Cc::new(0)));
    /// ```
    pub const fn follows(self, prev: Cc) -> bool {
        self.0 == prev.next().0
    }
}

/// Program clock reference, in 27 MHz ticks (`base * 300 + extension`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pcr(u64);

impl Pcr {
    /// Ticks per second.
    pub const HZ: u64 = 27_000_000;
    /// PCR values wrap at 2^33 * 300 ticks (about 26.5 hours).
    pub const WRAP: u64 = (1 << 33) * 300;

    /// Builds a PCR from 27 MHz ticks (taken modulo [`Pcr::WRAP`]).
    pub const fn from_ticks(ticks: u64) -> Pcr {
        Pcr(ticks % Self::WRAP)
    }

    /// The value in 27 MHz ticks.
    pub const fn ticks(self) -> u64 {
        self.0
    }

    /// Ticks from `earlier` to `self`, across at most one wrap-around.
    /// A PCR that went backwards yields a huge value (close to `WRAP`).
    pub const fn ticks_since(self, earlier: Pcr) -> u64 {
        (self.0 + Self::WRAP - earlier.0) % Self::WRAP
    }
}

/// Values of the adaptation_field_control field.
pub mod afc {
    /// Adaptation field present (bit 5 of byte 3).
    pub const ADAPTATION: u8 = 0b10;
    /// Payload present (bit 4 of byte 3).
    pub const PAYLOAD: u8 = 0b01;
}

/// A borrowed 188-byte transport packet.
#[derive(Clone, Copy, Debug)]
pub struct TsPacket<'a> {
    bytes: &'a [u8; PACKET_LEN],
}

impl<'a> TsPacket<'a> {
    /// Wraps exactly 188 bytes; the sync byte is not checked here.
    pub const fn new(bytes: &'a [u8; PACKET_LEN]) -> Self {
        TsPacket { bytes }
    }

    /// Wraps the first 188 bytes of `bytes`, or `None` when it is shorter.
    pub fn from_slice(bytes: &'a [u8]) -> Option<Self> {
        let bytes = bytes.get(..PACKET_LEN)?.try_into().ok()?;
        Some(TsPacket { bytes })
    }

    /// The whole packet.
    pub const fn bytes(&self) -> &'a [u8; PACKET_LEN] {
        self.bytes
    }

    /// Whether byte 0 is 0x47.
    pub const fn has_sync(&self) -> bool {
        self.bytes[0] == SYNC_BYTE
    }

    /// transport_error_indicator.
    pub const fn transport_error(&self) -> bool {
        self.bytes[1] & 0x80 != 0
    }

    /// payload_unit_start_indicator.
    pub const fn payload_unit_start(&self) -> bool {
        self.bytes[1] & 0x40 != 0
    }

    /// The packet's PID.
    pub const fn pid(&self) -> Pid {
        Pid::new(((self.bytes[1] as u16) << 8) | self.bytes[2] as u16)
    }

    /// adaptation_field_control (see [`afc`]).
    pub const fn adaptation_field_control(&self) -> u8 {
        (self.bytes[3] >> 4) & 0b11
    }

    /// Whether the packet carries payload bytes.
    pub const fn has_payload(&self) -> bool {
        self.adaptation_field_control() & afc::PAYLOAD != 0
    }

    /// The continuity counter.
    pub const fn cc(&self) -> Cc {
        Cc::new(self.bytes[3])
    }

    /// The adaptation field, when present with a non-zero length.
    pub fn adaptation_field(&self) -> Option<AdaptationField<'a>> {
        if self.adaptation_field_control() & afc::ADAPTATION == 0 {
            return None;
        }
        let len = usize::from(self.bytes[4]);
        // Bytes 5.. hold the field; a length past the packet end is malformed.
        let body = self.bytes.get(5..5 + len)?;
        if body.is_empty() {
            return None;
        }
        Some(AdaptationField { body })
    }

    /// The payload after header and adaptation field; `None` when the packet
    /// has none or its adaptation field length is impossible.
    pub fn payload(&self) -> Option<&'a [u8]> {
        let control = self.adaptation_field_control();
        if control & afc::PAYLOAD == 0 {
            return None;
        }
        let start = if control & afc::ADAPTATION != 0 { 5 + usize::from(self.bytes[4]) } else { 4 };
        self.bytes.get(start..)
    }
}

/// The adaptation field body (after its length byte), at least one byte.
#[derive(Clone, Copy, Debug)]
pub struct AdaptationField<'a> {
    body: &'a [u8],
}

impl<'a> AdaptationField<'a> {
    fn flags(&self) -> u8 {
        self.body[0]
    }

    /// discontinuity_indicator: continuity counter and PCR may jump here.
    pub fn discontinuity(&self) -> bool {
        self.flags() & 0x80 != 0
    }

    /// random_access_indicator: a clean entry point starts in this packet.
    pub fn random_access(&self) -> bool {
        self.flags() & 0x40 != 0
    }

    /// The PCR when PCR_flag is set and the field is long enough.
    pub fn pcr(&self) -> Option<Pcr> {
        if self.flags() & 0x10 == 0 {
            return None;
        }
        let b = self.body.get(1..7)?;
        let base = (u64::from(b[0]) << 25)
            | (u64::from(b[1]) << 17)
            | (u64::from(b[2]) << 9)
            | (u64::from(b[3]) << 1)
            | (u64::from(b[4]) >> 7);
        let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
        Some(Pcr::from_ticks(base * 300 + ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_with_pcr(base: u64, ext: u16) -> [u8; PACKET_LEN] {
        let mut p = [0xFFu8; PACKET_LEN];
        p[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x30]);
        p[4] = 7;
        p[5] = 0x10;
        p[6] = (base >> 25) as u8;
        p[7] = (base >> 17) as u8;
        p[8] = (base >> 9) as u8;
        p[9] = (base >> 1) as u8;
        p[10] = (((base & 1) as u8) << 7) | 0x7E | ((ext >> 8) as u8 & 1);
        p[11] = ext as u8;
        p
    }

    #[test]
    fn header_fields() {
        let mut p = [0u8; PACKET_LEN];
        p[..4].copy_from_slice(&[0x47, 0xC1, 0x23, 0x1A]);
        let pkt = TsPacket::new(&p);
        assert!(pkt.has_sync());
        assert!(pkt.transport_error());
        assert!(pkt.payload_unit_start());
        assert_eq!(pkt.pid(), Pid::new(0x123));
        assert_eq!(pkt.cc(), Cc::new(0xA));
        assert!(pkt.has_payload());
        assert_eq!(pkt.payload().map(<[u8]>::len), Some(184));
    }

    #[test]
    fn pcr_round_trip() {
        let base = (1u64 << 33) - 5;
        let p = packet_with_pcr(base, 299);
        let af = TsPacket::new(&p).adaptation_field().unwrap();
        assert_eq!(af.pcr(), Some(Pcr::from_ticks(base * 300 + 299)));
    }

    #[test]
    fn pcr_wraps() {
        let late = Pcr::from_ticks(Pcr::WRAP - 10);
        let early = Pcr::from_ticks(20);
        assert_eq!(early.ticks_since(late), 30);
        assert!(late.ticks_since(early) > Pcr::HZ);
    }

    #[test]
    fn oversized_adaptation_field_is_rejected() {
        let mut p = [0u8; PACKET_LEN];
        p[..5].copy_from_slice(&[0x47, 0x01, 0x00, 0x30, 200]);
        let pkt = TsPacket::new(&p);
        assert!(pkt.adaptation_field().is_none());
        assert!(pkt.payload().is_none());
    }
}
