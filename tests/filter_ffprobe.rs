//! `TsFilter` on the real three-program fixture, judged by ffprobe and
//! ffmpeg: the program asked for remains with its streams, nothing else,
//! and the output decodes without a word from ffmpeg.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use serde_json::Value;
use uringest::ts::filter::{FilterSpec, TsFilter};
use uringest::ts::packet::Pid;

/// Runs the filter over `input` cut in chunks of `packets_per_chunk`
/// packets; the output bytes and the filter.
fn filter_file(input: &[u8], spec: FilterSpec, packets_per_chunk: usize) -> (Vec<u8>, TsFilter) {
    let all = Bytes::copy_from_slice(input);
    let mut filter = TsFilter::new(spec);
    let mut out = Vec::new();
    let step = packets_per_chunk * 188;
    for start in (0..all.len()).step_by(step) {
        let chunk = all.slice(start..(start + step).min(all.len()));
        let before = out.len();
        filter.push(&chunk, &mut out);
        // Everything but rewritten PATs is a slice of the chunk.
        for b in &out[before..] {
            let inside = chunk.as_ptr_range().contains(&b.as_ptr());
            assert!(inside || (b.len() == 188 && b[1] & 0x1F == 0 && b[2] == 0), "a copied packet that is not a PAT");
        }
    }
    let c = filter.counters();
    assert_eq!(c.packets_in, (input.len() / 188) as u64);
    assert_eq!(c.packets_in, c.packets_passed + c.packets_dropped);
    (out.concat(), filter)
}

/// ffprobe's `(program_num, [stream ids])`, and every stream id.
fn programs_and_streams(probe: &Value) -> (Vec<(u64, Vec<u64>)>, Vec<u64>) {
    let programs = probe["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ids = p["streams"].as_array().unwrap().iter().map(|s| common::hex_id(&s["id"])).collect();
            (p["program_num"].as_u64().unwrap(), ids)
        })
        .collect();
    let streams = probe["streams"].as_array().unwrap().iter().map(|s| common::hex_id(&s["id"])).collect();
    (programs, streams)
}

/// Codec names by stream id.
fn codecs(probe: &Value) -> Vec<(u64, String)> {
    let mut all: Vec<(u64, String)> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (common::hex_id(&s["id"]), s["codec_name"].as_str().unwrap_or("?").to_owned()))
        .collect();
    all.sort();
    all
}

/// What `ffmpeg -v error` says while decoding every stream of `path`.
fn ffmpeg_complaints(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("ffmpeg must be installed (the README's test command installs it)");
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn each_program_alone_is_what_ffprobe_sees_of_it_in_the_mpts() {
    let fixture = common::fixture("mpts_3prog.ts");
    let input = std::fs::read(&fixture).unwrap();
    let original = common::ffprobe(&fixture);
    let (programs, _) = programs_and_streams(&original);
    assert_eq!(programs.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3], "the fixture's programs");
    assert!(ffmpeg_complaints(&fixture).is_empty(), "the fixture itself decodes cleanly");
    let dir = tempfile::tempdir().unwrap();
    for (number, ids) in &programs {
        for (si, packets_per_chunk) in [(true, 1), (true, 7), (false, 10_000)] {
            let spec = FilterSpec { program: Some(*number as u16), si, pids: None };
            let (out, filter) = filter_file(&input, spec, packets_per_chunk);
            let path = write(dir.path(), &format!("p{number}_{packets_per_chunk}.ts"), &out);
            let probe = common::ffprobe(&path);
            let (mut got_programs, got_streams) = programs_and_streams(&probe);
            if si {
                // The SDT passes unchanged and still names the other two
                // services: ffmpeg lists them as programs without a number
                // or a stream.
                let (services, real): (Vec<_>, Vec<_>) = got_programs.into_iter().partition(|p| p.0 == 0);
                assert_eq!(services, [(0, vec![]), (0, vec![])], "program {number}: SDT services");
                got_programs = real;
            }
            assert_eq!(got_programs, [(*number, ids.clone())], "program {number}");
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(got_streams, sorted, "program {number}: streams");
            let want: Vec<(u64, String)> = codecs(&original).into_iter().filter(|c| ids.contains(&c.0)).collect();
            assert_eq!(codecs(&probe), want, "program {number}: codecs");
            let complaints = ffmpeg_complaints(&path);
            assert!(complaints.is_empty(), "program {number}: ffmpeg says {complaints}");
            let c = filter.counters();
            assert_eq!((c.pats_rewritten, c.pat_changes, c.pmt_changes, c.section_errors), (35, 0, 0, 0));
        }
    }
}

#[test]
fn allow_list_keeps_only_the_listed_pids() {
    let fixture = common::fixture("mpts_3prog.ts");
    let input = std::fs::read(&fixture).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Program 2 by hand: the original PAT, its PMT, its two streams.
    let pids: Vec<Pid> = [0, 0x1001, 0x102, 0x103].into_iter().map(Pid::new).collect();
    let (out, _) = filter_file(&input, FilterSpec { pids: Some(pids.clone()), ..FilterSpec::default() }, 64);
    let kept: Vec<u16> = out.chunks(188).map(|p| u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])).collect();
    assert!(kept.iter().all(|p| pids.contains(&Pid::new(*p))));
    let expected: Vec<&[u8]> =
        input.chunks(188).filter(|p| pids.contains(&Pid::new(u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])))).collect();
    assert_eq!(out, expected.concat(), "the listed packets, unchanged and in order");
    let path = write(dir.path(), "pids.ts", &out);
    let (_, streams) = programs_and_streams(&common::ffprobe(&path));
    assert_eq!(streams, [0x102, 0x103]);
    assert!(ffmpeg_complaints(&path).is_empty());

    // Applied after a program filter: program 2 without its SI is what the
    // list of its PIDs (PCR on the video) keeps.
    let with_list = FilterSpec { program: Some(2), si: true, pids: Some(pids) };
    let (listed, _) = filter_file(&input, with_list, 64);
    let (no_si, _) = filter_file(&input, FilterSpec { program: Some(2), si: false, pids: None }, 64);
    assert_eq!(listed, no_si);
    let path = write(dir.path(), "p2_pids.ts", &listed);
    let (programs, _) = programs_and_streams(&common::ffprobe(&path));
    assert_eq!(programs, [(2, vec![0x102, 0x103])]);
}
