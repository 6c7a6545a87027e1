//! Raw packets through the PSI state, the way the analyzer feeds it.
//!
//! The input is cut into 188-byte packets; byte 0 is forced to 0x47 and a
//! PID outside {0, 0x1000..=0x1003, 0x100, 0x101, 0x1FFF} is replaced by one
//! of them (chosen by the low 3 bits of byte 1), so PAT, PMT and codec
//! sniffing paths are reached. Every packet is accounted in a `PidTable`;
//! packets of wanted PIDs without transport_error go to `Psi::push`.
//!
//! Checks after every push: no panic; counters never decrease; programs
//! are unique, non-zero, have PMT PIDs < 8192 that are still wanted, and
//! attached PMTs belong to their program and PID; the PAT PID stays wanted.
//! In parallel, a `SectionAssembler` per PID sees every packet: each section
//! it emits as `Ok` has a consistent length (12..=1024, matching
//! section_length) and a valid CRC.
#![no_main]

use std::collections::BTreeMap;

use crc::{CRC_32_MPEG_2, Crc};
use libfuzzer_sys::fuzz_target;
use uringest::ts::packet::{Pid, TsPacket};
use uringest::ts::psi::{Psi, SectionAssembler, SectionError};
use uringest::ts::stats::PidTable;

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_MPEG_2);
const PIDS: [u16; 8] = [0x0000, 0x1000, 0x1001, 0x1002, 0x1003, 0x0100, 0x0101, 0x1FFF];

fuzz_target!(|data: &[u8]| {
    let mut table = PidTable::default();
    let mut psi = Psi::new(&mut table);
    uringest_fuzz::check_psi(&psi, &table);
    let mut assemblers: BTreeMap<Pid, SectionAssembler> = BTreeMap::new();
    for (index, chunk) in data.chunks_exact(188).enumerate() {
        let mut p: [u8; 188] = chunk.try_into().expect("188 bytes");
        p[0] = 0x47;
        uringest_fuzz::steer_pid(&mut p, &PIDS);
        let pkt = TsPacket::new(&p);

        assemblers.entry(pkt.pid()).or_default().push(&pkt, &mut |res| {
            match res {
                Ok(s) => {
                    assert!((12..=1024).contains(&s.len()), "section of {} bytes emitted", s.len());
                    let declared = 3 + (usize::from(s[1] & 0x0F) << 8 | usize::from(s[2]));
                    assert_eq!(declared, s.len(), "section length field disagrees with the section");
                    let (body, crc) = s.split_at(s.len() - 4);
                    assert_eq!(CRC32.checksum(body).to_be_bytes(), crc, "section emitted with a bad CRC");
                }
                Err(SectionError::Crc | SectionError::Length) => {}
            }
        });

        table.account(&pkt, index as u64);
        if uringest_fuzz::is_wanted(&table, pkt.pid()) && !pkt.transport_error() {
            let before = psi.counters();
            psi.push(&pkt, &mut table);
            uringest_fuzz::check_counters_monotone(before, psi.counters());
            uringest_fuzz::check_psi(&psi, &table);
        }
    }
});
