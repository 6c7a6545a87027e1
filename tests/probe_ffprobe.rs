//! `uringest probe` against ffprobe, the oracle, on every fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{ffprobe, fixture, hex_id, probe_json};
use serde_json::Value;

/// (program number, PMT PID, PCR PID, [(PID, codec)]) in a stable order.
type Programs = Vec<(u64, u64, u64, Vec<(u64, String)>)>;

fn ours(report: &Value) -> Programs {
    report["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let streams = p["streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["pid"].as_u64().unwrap(), s["codec"].as_str().unwrap().to_owned()))
                .collect();
            (p["number"].as_u64().unwrap(), p["pmt_pid"].as_u64().unwrap(), p["pcr_pid"].as_u64().unwrap(), streams)
        })
        .collect()
}

fn theirs(probe: &Value) -> Programs {
    let mut programs: Programs = probe["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let streams = p["streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (hex_id(&s["id"]), s["codec_name"].as_str().unwrap_or("unknown").to_owned()))
                .collect();
            (
                p["program_num"].as_u64().unwrap(),
                p["pmt_pid"].as_u64().unwrap(),
                p["pcr_pid"].as_u64().unwrap(),
                streams,
            )
        })
        .collect();
    programs.sort_by_key(|p| p.0);
    programs
}

fn assert_agrees(path: &Path) -> Value {
    let report = probe_json(path);
    let oracle = ffprobe(path);
    let mut mine = ours(&report);
    mine.sort_by_key(|p| p.0);
    assert_eq!(mine, theirs(&oracle), "programs of {}", path.display());
    assert!(!mine.is_empty());

    // Every PID ffprobe lists as a stream is among ours, and per-PID packets
    // add up to the total.
    let pids: BTreeSet<u64> = report["pids"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    for s in oracle["streams"].as_array().unwrap() {
        assert!(pids.contains(&hex_id(&s["id"])), "stream {} missing", s["id"]);
    }
    let sum: u64 = report["pids"].as_array().unwrap().iter().map(|p| p["packets"].as_u64().unwrap()).sum();
    assert_eq!(sum, report["ts_packets"].as_u64().unwrap());
    assert_eq!(report["errors"]["cc_errors"], 0);
    assert_eq!(report["errors"]["sync_losses"], 0);

    // Our PCR-timed bitrate is within 10 % of ffprobe's size / PTS duration.
    let theirs_bps: f64 = oracle["format"]["bit_rate"].as_str().unwrap().parse().unwrap();
    let ours_bps = report["bitrate_bps"].as_f64().unwrap();
    assert!((ours_bps / theirs_bps - 1.0).abs() < 0.10, "bitrate {ours_bps} vs ffprobe {theirs_bps}");
    report
}

#[test]
fn spts_h264_aac() {
    let report = assert_agrees(&fixture("h264_aac.ts"));
    assert_eq!(report["packet_size"], 188);
    assert_eq!(report["ts_packets"].as_u64().unwrap() * 188, report["bytes"].as_u64().unwrap());
}

#[test]
fn mpts_three_programs() {
    let report = assert_agrees(&fixture("mpts_3prog.ts"));
    assert_eq!(report["programs"].as_array().unwrap().len(), 3);
}

#[test]
fn m2ts_192_byte_packets() {
    let report = assert_agrees(&fixture("h264_aac_192.m2ts"));
    assert_eq!(report["packet_size"], 192);
    assert_eq!(report["ts_packets"].as_u64().unwrap() * 192, report["bytes"].as_u64().unwrap());
}

#[test]
fn rs_204_byte_packets_built_from_the_spts() {
    let ts = std::fs::read(fixture("h264_aac.ts")).unwrap();
    let mut rs = Vec::with_capacity(ts.len() / 188 * 204);
    for packet in ts.chunks_exact(188) {
        rs.extend_from_slice(packet);
        rs.extend_from_slice(&[0u8; 16]);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rs204.ts");
    std::fs::write(&path, &rs).unwrap();
    let report = assert_agrees(&path);
    assert_eq!(report["packet_size"], 204);
    assert_eq!(report["ts_packets"].as_u64().unwrap(), (ts.len() / 188) as u64);
}
