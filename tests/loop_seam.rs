//! A fixture looped three times through `LoopSeam`, judged by ffprobe and
//! ffmpeg: timestamps increase on every stream across the seams, the
//! duration is three passes, and ffmpeg decodes it without a complaint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::fixture;
use uringest::ts::seam::LoopSeam;

/// `bytes` three times: pass 0 as it is, passes 1 and 2 rewritten.
fn three_passes(bytes: &[u8]) -> (Vec<u8>, f64) {
    let mut seam = LoopSeam::new(None);
    seam.observe(bytes).unwrap();
    let mut out = bytes.to_vec();
    for _ in 1..3 {
        seam.start_iteration();
        let mut pass = bytes.to_vec();
        for chunk in pass.chunks_mut(7 * 188) {
            seam.rewrite(chunk).unwrap();
        }
        out.extend_from_slice(&pass);
    }
    (out, seam.period().unwrap().as_secs_f64())
}

fn run(cmd: &str, args: &[&str], path: &Path) -> (String, String) {
    run_around(cmd, args, path, &[])
}

fn run_around(cmd: &str, before: &[&str], path: &Path, after: &[&str]) -> (String, String) {
    let out = Command::new(cmd)
        .args(before)
        .arg(path)
        .args(after)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} must be installed (the README's test command installs ffmpeg): {e}"));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// `key=value` fields of ffprobe's `csv=nk=0` lines of `section`.
fn records<'a>(csv: &'a str, section: &str) -> Vec<BTreeMap<&'a str, &'a str>> {
    csv.lines()
        .filter(|l| l.starts_with(&format!("{section},")))
        .map(|l| l.split(',').skip(1).filter_map(|kv| kv.split_once('=')).collect())
        .collect()
}

/// Per stream index its duration in seconds, and the whole file's under
/// the key "format", from ffprobe.
fn durations(path: &Path) -> BTreeMap<String, f64> {
    let args = ["-v", "error", "-show_entries", "stream=index,duration:format=duration", "-of", "csv=nk=0"];
    let (csv, _) = run("ffprobe", &args, path);
    let streams = records(&csv, "stream").into_iter().map(|r| (r["index"].to_owned(), r["duration"].parse().unwrap()));
    let format = records(&csv, "format").into_iter().map(|r| ("format".to_owned(), r["duration"].parse().unwrap()));
    streams.chain(format).collect()
}

fn check(name: &str) {
    let path = fixture(name);
    let (out, period) = three_passes(&std::fs::read(&path).unwrap());
    let mut file = tempfile::Builder::new().suffix(".ts").tempfile().unwrap();
    file.write_all(&out).unwrap();
    file.flush().unwrap();

    // DTS strictly increasing per stream, and as many packets as 3 passes.
    let args = ["-v", "error", "-show_entries", "packet=pts,dts,stream_index", "-of", "csv=nk=0"];
    let (single_csv, _) = run("ffprobe", &args, &path);
    let (csv, stderr) = run("ffprobe", &args, file.path());
    assert_eq!(stderr, "", "{name}: ffprobe complained");
    let mut dts: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in records(&csv, "packet") {
        dts.entry(r["stream_index"]).or_default().push(r["dts"].parse().unwrap());
    }
    let mut single: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records(&single_csv, "packet") {
        *single.entry(r["stream_index"]).or_default() += 1;
    }
    assert_eq!(dts.keys().collect::<Vec<_>>(), single.keys().collect::<Vec<_>>(), "{name}");
    for (stream, values) in &dts {
        assert_eq!(values.len(), 3 * single[stream], "{name} stream {stream}: packets");
        for w in values.windows(2) {
            assert!(w[1] > w[0], "{name} stream {stream}: DTS {} then {}", w[0], w[1]);
        }
    }

    // Three passes last three times one pass within a frame (25 fps), and
    // each stream lasts two periods more than in one pass.
    let frame = 1.0 / 25.0;
    let one = durations(&path);
    let three = durations(file.path());
    eprintln!("{name}: period {period:.6} s, one pass {one:?}, three {three:?}");
    assert!((three["format"] - 3.0 * one["format"]).abs() < frame, "{name}: {three:?} vs 3 x {one:?}");
    for (stream, &d) in &one {
        assert!((three[stream] - (2.0 * period + d)).abs() < 1e-3, "{name} {stream}: {} vs {d}", three[stream]);
    }

    // ffmpeg reads and decodes all of it without a word (as for the fixture).
    let decode =
        |path: &Path| run_around("ffmpeg", &["-hide_banner", "-v", "error", "-i"], path, &["-f", "null", "-"]).1;
    assert_eq!(decode(&path), "", "{name}: ffmpeg on the fixture");
    assert_eq!(decode(file.path()), "", "{name}: ffmpeg on the looped file");
}

#[test]
fn cbr_loops_cleanly() {
    check("cbr_5mbit.ts");
}

#[test]
fn h264_aac_loops_cleanly() {
    check("h264_aac.ts");
}

#[test]
fn mpts_loops_cleanly() {
    check("mpts_3prog.ts");
}
