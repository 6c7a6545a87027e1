//! Streams that read other streams of the node: `copy://` of a copy,
//! an upstream created after its copy, an upstream deleted under its copy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::node::{call, get_json, json, record_for, stop_node, wait_for};
use serde_json::Value;

fn start_node(config: &Path) -> (Child, SocketAddr) {
    common::start_serve(&["--shards", "2", "--config", config.to_str().unwrap()])
}

/// A node config with `clip.ts` (the H.264 + AAC fixture) under mount
/// `media` in `dir`, and `streams`.
fn config_with(dir: &Path, streams: &str) -> std::path::PathBuf {
    std::fs::copy(common::fixture("h264_aac.ts"), dir.join("clip.ts")).unwrap();
    let path = dir.join("node.toml");
    std::fs::write(&path, format!("[node.mounts]\nmedia = \"{}\"\n\n{streams}", dir.display())).unwrap();
    path
}

fn stream(id: &str, inputs: &[&str]) -> String {
    let inputs: Vec<String> = inputs.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[[stream]]\nid = \"{id}\"\ninputs = [{}]\n\n", inputs.join(", "))
}

fn running(detail: &Value) -> bool {
    detail["state"] == "running"
}

/// The codec names ffprobe finds in `path`, and the video's size.
fn codecs_and_size(path: &Path) -> (Vec<String>, (u64, u64)) {
    let probe = common::ffprobe(path);
    let streams = probe["streams"].as_array().unwrap();
    let codecs = streams.iter().map(|s| s["codec_name"].as_str().unwrap_or("?").to_owned()).collect();
    let video = streams.iter().find(|s| s["codec_type"] == "video").cloned().unwrap_or_default();
    (codecs, (video["width"].as_u64().unwrap_or(0), video["height"].as_u64().unwrap_or(0)))
}

#[test]
fn a_copy_of_a_copy_carries_the_stream_and_upstreams_are_found_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &[
            stream("src", &["file://media/clip.ts?loop=true"]),
            stream("c1", &["copy://src"]),
            stream("c2", &["copy://c1"]),
            stream("late", &["copy://later"]),
        ]
        .concat(),
    );
    let (node, addr) = start_node(&config);
    let limit = Duration::from_secs(10);
    wait_for(addr, "c2", limit, "the copy of the copy to run", running);

    // Three seconds of the copy of the copy: the fixture's programme,
    // unbroken.
    let ts = record_for(addr, "c2", 3.0);
    assert!(ts.len() > 50 * 188, "recorded only {} bytes", ts.len());
    let path = dir.path().join("c2.ts");
    std::fs::write(&path, &ts[..ts.len() / 188 * 188]).unwrap();
    let (codecs, size) = codecs_and_size(&path);
    assert_eq!((codecs, size), (vec!["h264".to_owned(), "aac".to_owned()], (320, 240)));
    let report = common::probe_json(&path);
    for pid in report["pids"].as_array().unwrap() {
        assert_eq!(pid["cc_errors"], 0, "{pid}");
    }

    // The upstream of `late` does not exist: its input fails to open and
    // says why; once `later` is created, `late` picks it up on a retry.
    let late = wait_for(addr, "late", limit, "the missing upstream's error", |d| {
        d["inputs"][0]["last_error"].as_str().is_some_and(|e| e.contains("no stream 'later' to copy"))
    });
    assert_ne!(late["state"], "running", "{late:#}");
    let (code, body) = call(addr, "POST", "/api/v1/streams", Some(r#"{"id":"later","inputs":["copy://src"]}"#), None);
    assert_eq!(code, 201, "{body}");
    wait_for(addr, "late", Duration::from_secs(20), "the late copy to run", running);

    // Replacing an upstream restarts it: its copy reconnects to the new
    // hub instead of ending.
    let body = r#"{"inputs":["file://media/clip.ts?loop=true&pace=pcr"]}"#;
    let (code, body) = call(addr, "PUT", "/api/v1/streams/src", Some(body), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["replaced"], "stream", "{body}");
    let c1 = wait_for(addr, "c1", Duration::from_secs(20), "the copy to reconnect", |d| {
        d["inputs"][0]["opens_total"].as_u64().is_some_and(|n| n >= 2) && running(d)
    });
    assert!(c1["inputs"][0]["last_error"].as_str().is_some_and(|e| e.contains("stream 'src' restarted")), "{c1:#}");

    // Deleting an upstream ends its copy: `c1`'s only input has ended.
    let (code, body) = call(addr, "DELETE", "/api/v1/streams/src", None, None);
    assert_eq!(code, 204, "{body}");
    let c1 = wait_for(addr, "c1", limit, "the copy to end", |d| d["state"] == "finished");
    assert_eq!(c1["inputs"][0]["state"], "ended", "{c1:#}");

    // Self-reference is refused up front.
    let (code, body) = call(addr, "POST", "/api/v1/streams", Some(r#"{"id":"x","inputs":["copy://x"]}"#), None);
    assert_eq!(code, 400, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("a stream cannot copy itself"), "{body}");
    assert_eq!(get_json(addr, "/api/v1/streams")["streams"].as_array().map(Vec::len), Some(4));
    stop_node(node);
}

/// Per stream of `path`: (codec_type, codec_name, start_time, packets).
fn streams_of(path: &Path) -> Vec<(String, String, f64, u64)> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_streams", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let probe: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let num = |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    (probe["streams"].as_array().unwrap().iter())
        .map(|s| {
            let packets = s["nb_read_packets"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
            (text(&s["codec_type"]), text(&s["codec_name"]), num(&s["start_time"]), packets)
        })
        .collect()
}

/// What `ffmpeg -v error` says decoding `path`.
fn decode_errors(path: &Path) -> String {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_mixer_takes_video_of_one_stream_and_audio_of_another() {
    let dir = tempfile::tempdir().unwrap();
    // The video stream is program 3 of the MPTS fixture (192x144 HEVC, and
    // AC-3 the mixer must drop); the audio stream the H.264 + AAC fixture
    // (whose H.264 the mixer must drop).
    std::fs::copy(common::fixture("mpts_3prog.ts"), dir.path().join("mpts.ts")).unwrap();
    // The mix recorded from its first packet by a file output.
    let recording = dir.path().join("down.ts");
    let config = config_with(
        dir.path(),
        &[
            stream("v", &["file://media/mpts.ts?loop=true&program=3"]),
            stream("a", &["file://media/clip.ts?loop=true"]),
            format!(
                "{}\noutputs = [\"file://{}\"]\n\n",
                stream("down", &["mixer://v,a"]).trim_end(),
                recording.display()
            ),
            stream("cont", &["mixer://v,a?audio_failure=continue"]),
            stream("lost", &["mixer://v,nosuch"]),
        ]
        .concat(),
    );
    let (node, addr) = start_node(&config);
    let limit = Duration::from_secs(15);
    wait_for(addr, "down", limit, "the mix to run", running);
    wait_for(addr, "cont", limit, "the second mix to run", running);

    // Video of `v` (192x144 HEVC), audio of `a` (AAC), starting together:
    // four seconds of the recording from the mix's start.
    std::thread::sleep(Duration::from_secs(4));
    let path = dir.path().join("mix.ts");
    let ts = std::fs::read(&recording).unwrap();
    std::fs::write(&path, &ts[..ts.len() / 188 * 188]).unwrap();
    let (codecs, size) = codecs_and_size(&path);
    assert_eq!((codecs, size), (vec!["hevc".to_owned(), "aac".to_owned()], (192, 144)));
    let streams = streams_of(&path);
    eprintln!("mixed: {streams:?}");
    let (video, audio) = (&streams[0], &streams[1]);
    assert!(video.3 >= 50 && audio.3 >= 50, "packets in 4 s: {streams:?}");
    // The other kind's packets were dropped and counted; the looped
    // upstreams' timelines never jumped.
    let mixer = get_json(addr, "/api/v1/streams/down");
    let input = &mixer["inputs"][0];
    assert_eq!(input["lag_drops_total"], 0, "{mixer:#}");
    assert!(input["mix_dropped_total"].as_u64().is_some_and(|n| n > 100), "{mixer:#}");
    assert_eq!(input["mix_realigned_total"], 0, "{mixer:#}");
    // Demux runs for the upstreams a mixer reads, not for the mix itself.
    let upstream = get_json(addr, "/api/v1/streams/v");
    assert!(upstream["demux"]["av_packets_total"].as_u64().is_some_and(|n| n > 100), "{upstream:#}");
    assert_eq!(upstream["demux"]["cc_gaps_total"], 0, "{upstream:#}");
    assert!(mixer["demux"].is_null(), "{mixer:#}");
    assert!((video.2 - audio.2).abs() < 0.1, "A/V start not aligned within 100 ms: {streams:?}");
    let errors = decode_errors(&path);
    assert!(errors.is_empty(), "ffmpeg: {errors}");
    for pid in common::probe_json(&path)["pids"].as_array().unwrap() {
        assert_eq!(pid["cc_errors"], 0, "{pid}");
    }

    // A missing upstream is a run-time error of the input.
    wait_for(addr, "lost", limit, "the missing audio upstream's error", |d| {
        d["inputs"][0]["last_error"].as_str().is_some_and(|e| e.contains("no stream 'nosuch' for the mixer's audio"))
    });

    // The audio stream goes: `down` ends, `cont` goes on with video alone.
    let (code, body) = call(addr, "DELETE", "/api/v1/streams/a", None, None);
    assert_eq!(code, 204, "{body}");
    wait_for(addr, "down", limit, "the mix to end with its audio", |d| d["state"] == "finished");
    std::thread::sleep(Duration::from_millis(500));
    let detail = get_json(addr, "/api/v1/streams/cont");
    assert_eq!(detail["state"], "running", "{detail:#}");
    let path = dir.path().join("video_only.ts");
    let ts = record_for(addr, "cont", 2.0);
    std::fs::write(&path, &ts[..ts.len() / 188 * 188]).unwrap();
    let streams = streams_of(&path);
    let video: Vec<_> = streams.iter().filter(|s| s.0 == "video").collect();
    assert!(video.len() == 1 && video[0].3 >= 25, "video goes on: {streams:?}");
    assert!(streams.iter().all(|s| s.0 != "audio" || s.3 == 0), "no audio after its end: {streams:?}");

    // The video stream goes: the mix ends.
    let (code, body) = call(addr, "DELETE", "/api/v1/streams/v", None, None);
    assert_eq!(code, 204, "{body}");
    wait_for(addr, "cont", limit, "the mix to end with its video", |d| d["state"] == "finished");

    // A mixer of itself, or beside another input, is refused.
    let (code, body) = call(addr, "POST", "/api/v1/streams", Some(r#"{"id":"m","inputs":["mixer://v,m"]}"#), None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("a stream cannot mix itself"), "{body}");
    let (code, body) =
        call(addr, "POST", "/api/v1/streams", Some(r#"{"id":"m","inputs":["copy://v","mixer://v,a"]}"#), None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("a mixer must be its stream's only input"), "{body}");
    stop_node(node);
}
