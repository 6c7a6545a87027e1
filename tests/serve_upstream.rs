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
