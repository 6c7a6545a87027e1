//! `/metrics`: the renderer against known snapshots, every page checked
//! line by line against the text exposition format 0.0.4.

use std::collections::{HashMap, HashSet};

use super::Server;
use crate::http::HttpOptions;
use crate::http::metrics::render;
use crate::node::api::{InputStatus, OutputStatus, ShardStatus, StreamDetail, StreamState};
use crate::ts::monitor::{MonitorCounters, PidCounters};

/// A label value as the format reads it (the inverse of the renderer's
/// escaping), or `None` if an escape is invalid.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Label names and values, in order.
type Labels = Vec<(String, String)>;
/// One sample: name, labels, value.
type Sample = (String, Labels, f64);

/// Parses `{a="x",b="y"}` (after the name) into labels and the rest.
fn labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    let Some(rest) = s.strip_prefix('{') else { return Ok((out, s)) };
    s = rest;
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((out, rest));
        }
        let (key, rest) = s.split_once("=\"").ok_or("label without =\"")?;
        if !is_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        // The value ends at the first quote not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.ok_or("unterminated label value")?;
        out.push((key.to_owned(), unescape(&rest[..end]).ok_or("bad escape")?));
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// Checks `page` against the format: HELP then TYPE once per family, before
/// its samples, which are contiguous; names and labels well formed; values
/// floats; counters named `_total`; no sample repeated. Returns the samples.
fn check_exposition(page: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = HashSet::new();
    let mut finished = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen = HashSet::new();
    let mut samples = Vec::new();
    if !page.is_empty() && !page.ends_with('\n') {
        return Err("page does not end with a newline".into());
    }
    for (n, line) in page.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !is_name(name) || !helped.insert(name.to_owned()) || types.contains_key(name) {
                return Err(fail("HELP repeated, misplaced or badly named"));
            }
            if let Some(prev) = current.replace(name.to_owned()) {
                finished.insert(prev);
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            if current.as_deref() != Some(name) || types.contains_key(name) {
                return Err(fail("TYPE not right after its HELP"));
            }
            if !["counter", "gauge"].contains(&kind) {
                return Err(fail("unknown type"));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(fail("counter without _total"));
            }
            types.insert(name.to_owned(), kind.to_owned());
        } else if line.starts_with('#') || line.is_empty() {
            return Err(fail("stray comment or blank line"));
        } else {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..end];
            if !is_name(name) || current.as_deref() != Some(name) || !types.contains_key(name) {
                return Err(fail("sample outside its family"));
            }
            if finished.contains(name) {
                return Err(fail("family not contiguous"));
            }
            let (labels, rest) = labels(&line[end..]).map_err(|e| fail(&e))?;
            let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| fail("value is not a float"))?,
            };
            if !seen.insert((name.to_owned(), format!("{labels:?}"))) {
                return Err(fail("sample repeated"));
            }
            samples.push((name.to_owned(), labels, value));
        }
    }
    Ok(samples)
}

fn stream(id: &str, url: &str) -> StreamDetail {
    StreamDetail {
        id: id.into(),
        state: StreamState::Running,
        active_input: Some(1),
        uptime_s: 10.0,
        bitrate_bps: 2_500_000.5,
        counters: MonitorCounters {
            packets_total: 1000,
            bytes_total: 188_000,
            sync_losses_total: 1,
            sync_byte_errors_total: 2,
            pat_errors_total: 3,
            cc_errors_total: 4,
            pmt_errors_total: 5,
            pid_errors_total: 6,
            tei_packets_total: 7,
            pcr_interval_violations_total: 8,
        },
        pids: vec![
            PidCounters { pid: 0, packets_total: 10, cc_errors_total: 0, bitrate_bps: 15040.0 },
            PidCounters { pid: 256, packets_total: 990, cc_errors_total: 4, bitrate_bps: 2_000_000.0 },
        ],
        inputs: (0..2)
            .map(|index| InputStatus {
                index,
                url: if index == 0 { url.into() } else { "udp://239.0.0.2:5000".into() },
                state: "open",
                active: index == 1,
                opens_total: 1 + index as u64,
                failures_total: 9,
                bytes_total: 188_000,
                kernel_drops_total: 11,
                rtp_gaps_total: 12,
                lag_drops_total: 15,
                segments_missed_total: 3,
                mix_dropped_total: 16,
                mix_realigned_total: 17,
                last_data_ago_s: None,
                healthy_for_s: None,
                retry_in_s: None,
                last_error: None,
            })
            .collect(),
        switches_total: 13,
        switches: Vec::new(),
        outputs: vec![OutputStatus { url: "http".into(), bytes_total: 99, lag_drops_total: 14 }],
        http_clients: 2,
        shard: 0,
        pool: crate::node::api::PoolUse::default(),
        demux: None,
    }
}

fn shard() -> ShardStatus {
    ShardStatus {
        index: 1,
        backend: "io_uring",
        streams: 2,
        pool_in_use: 3,
        pool_fallbacks_total: 4,
        pool_drops_total: 5,
    }
}

/// Families the renderer must always describe.
const FAMILIES: usize = 14 + 10 + 2 + 3 + 4;

#[test]
fn rendered_page_is_valid_and_exact() {
    let tricky = "file:///a \"b\"\\c\nd.ts";
    let page = render(&[stream("one", tricky), stream("two", "udp://239.0.0.1:5000")], &[shard()]);
    let samples = check_exposition(&page).unwrap_or_else(|e| panic!("{e}\n{page}"));
    assert_eq!(page.matches("# HELP ").count(), FAMILIES);
    assert_eq!(page.matches("# TYPE ").count(), FAMILIES);
    // 14 stream families and 2 output families x 2 streams; 10 input and
    // 3 PID families x 2 streams x 2; 4 shard families.
    assert_eq!(samples.len(), 14 * 2 + 2 * 2 + 10 * 4 + 3 * 4 + 4);
    for line in [
        "# TYPE uringest_bytes_total counter",
        "uringest_bytes_total{stream=\"one\"} 188000",
        "uringest_packets_total{stream=\"two\"} 1000",
        "uringest_bitrate_bits_per_second{stream=\"one\"} 2500000.5",
        "uringest_sync_losses_total{stream=\"one\"} 1",
        "uringest_sync_byte_errors_total{stream=\"one\"} 2",
        "uringest_pat_errors_total{stream=\"one\"} 3",
        "uringest_cc_errors_total{stream=\"one\"} 4",
        "uringest_pmt_errors_total{stream=\"one\"} 5",
        "uringest_pid_errors_total{stream=\"one\"} 6",
        "uringest_tei_packets_total{stream=\"one\"} 7",
        "uringest_pcr_interval_violations_total{stream=\"one\"} 8",
        "uringest_switches_total{stream=\"one\"} 13",
        "# TYPE uringest_active_input gauge",
        "uringest_active_input{stream=\"one\"} 1",
        "uringest_http_clients{stream=\"one\"} 2",
        "uringest_input_opens_total{stream=\"one\",input=\"1\",url=\"udp://239.0.0.2:5000\"} 2",
        "uringest_input_failures_total{stream=\"one\",input=\"1\",url=\"udp://239.0.0.2:5000\"} 9",
        "uringest_input_kernel_drops_total{stream=\"two\",input=\"0\",url=\"udp://239.0.0.1:5000\"} 11",
        "uringest_input_rtp_gaps_total{stream=\"two\",input=\"0\",url=\"udp://239.0.0.1:5000\"} 12",
        "uringest_input_lag_drops_total{stream=\"two\",input=\"0\",url=\"udp://239.0.0.1:5000\"} 15",
        "uringest_input_segments_missed_total{stream=\"two\",input=\"0\",url=\"udp://239.0.0.1:5000\"} 3",
        "uringest_input_mix_dropped_total{stream=\"two\",input=\"0\",url=\"udp://239.0.0.1:5000\"} 16",
        "uringest_input_mix_realigned_total{stream=\"two\",input=\"0\",url=\"udp://239.0.0.1:5000\"} 17",
        "uringest_input_active{stream=\"two\",input=\"0\",url=\"udp://239.0.0.1:5000\"} 0",
        "uringest_input_active{stream=\"two\",input=\"1\",url=\"udp://239.0.0.2:5000\"} 1",
        "uringest_input_bytes_total{stream=\"one\",input=\"0\",url=\"file:///a \\\"b\\\"\\\\c\\nd.ts\"} 188000",
        "uringest_output_bytes_total{stream=\"one\",url=\"http\"} 99",
        "uringest_output_lag_drops_total{stream=\"two\",url=\"http\"} 14",
        "uringest_pid_packets_total{stream=\"one\",pid=\"256\"} 990",
        "uringest_pid_cc_errors_total{stream=\"one\",pid=\"256\"} 4",
        "uringest_pid_bitrate_bits_per_second{stream=\"one\",pid=\"0\"} 15040",
        "uringest_shard_streams{shard=\"1\",backend=\"io_uring\"} 2",
        "uringest_shard_pool_in_use{shard=\"1\",backend=\"io_uring\"} 3",
        "uringest_shard_pool_fallbacks_total{shard=\"1\",backend=\"io_uring\"} 4",
        "uringest_shard_pool_drops_total{shard=\"1\",backend=\"io_uring\"} 5",
    ] {
        assert!(page.lines().any(|l| l == line), "missing {line:?} in\n{page}");
    }
    // The escaped URL reads back as the original.
    let url = samples.iter().find(|(n, l, _)| n == "uringest_input_bytes_total" && l[1].1 == "0").unwrap();
    assert_eq!(url.1[2].1, tricky);
}

#[test]
fn edge_values_are_spelled_as_the_format_wants() {
    let mut s = stream("x", "udp://239.0.0.1:5000");
    s.active_input = None;
    s.bitrate_bps = f64::NAN;
    s.pids[0].bitrate_bps = f64::INFINITY;
    s.counters.bytes_total = u64::MAX;
    let page = render(&[s], &[]);
    check_exposition(&page).unwrap_or_else(|e| panic!("{e}\n{page}"));
    for line in [
        "uringest_active_input{stream=\"x\"} -1",
        "uringest_bitrate_bits_per_second{stream=\"x\"} NaN",
        "uringest_pid_bitrate_bits_per_second{stream=\"x\",pid=\"0\"} +Inf",
        "uringest_bytes_total{stream=\"x\"} 18446744073709551615",
    ] {
        assert!(page.lines().any(|l| l == line), "missing {line:?} in\n{page}");
    }
}

#[test]
fn empty_node_still_describes_every_family() {
    let page = render(&[], &[]);
    assert_eq!(check_exposition(&page).unwrap().len(), 0);
    assert_eq!(page.lines().count(), 2 * FAMILIES);
}

#[test]
fn checker_refuses_broken_pages() {
    for bad in [
        "uringest_x 1\n",
        "# HELP a_total h\n# TYPE a_total counter\na_total{l=\"x} 1\n",
        "# HELP a_total h\n# TYPE a_total counter\na_total{l=\"\\t\"} 1\n",
        "# HELP a h\n# TYPE a counter\na 1\n",
        "# HELP a h\n# TYPE a gauge\na one\n",
        "# HELP a h\n# TYPE a gauge\na 1\n# HELP b h\n# TYPE b gauge\nb 1\na 2\n",
        "# HELP a h\n# TYPE a gauge\n# HELP a h\n",
        "# HELP a h\n# TYPE a gauge\na 1\na 1\n",
    ] {
        assert!(check_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn metrics_endpoint_serves_the_page() {
    let s = Server::start(HttpOptions { loopback_only: true, ..HttpOptions::default() });
    let def = r#"{"id":"m","inputs":["udp://239.1.1.1:5000"],"outputs":["udp://239.2.2.2:6000"]}"#;
    assert_eq!(s.call("POST", "/api/v1/streams", &[], Some(def)).status, 201);
    let r = s.call("GET", "/metrics", &[], None);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"), "{r:?}");
    let samples = check_exposition(&r.body).unwrap_or_else(|e| panic!("{e}\n{}", r.body));
    assert!(r.body.lines().any(|l| l == "uringest_bytes_total{stream=\"m\"} 1880"), "{}", r.body);
    assert!(r.body.lines().any(|l| l == "uringest_shard_pool_drops_total{shard=\"0\",backend=\"epoll\"} 4"));
    assert!(samples.iter().any(|(n, l, _)| n == "uringest_output_bytes_total" && l[1].1 == "udp://239.2.2.2:6000"));
}
