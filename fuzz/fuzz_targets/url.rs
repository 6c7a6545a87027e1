//! Arbitrary strings through `parse_input`.
//!
//! Layout: `m text...`; when `m & 1` is set, `udp://` is put in front of the
//! text so most runs reach the udp:// parser; else when `m & 2` is set,
//! `http://` (the HLS parser). Text that is not UTF-8 is
//! skipped (`parse_input` takes `&str`).
//!
//! Checks: no panic; an error holds no control character (so it is one
//! line) and does not echo user info (six
//! or more characters before an `@` that appear nowhere else in the input
//! never show up followed by that `@`, unless the message for the same
//! input with that user info replaced shows them too: then they are the
//! message's own words); a udp:// spec
//! keeps its invariants (port nonzero, rcvbuf and pkt_size in range, SSM
//! sources only with a multicast group and of its family, filter options in
//! range: program nonzero, PIDs sorted, distinct, below 8192, at most 64) and its `Display`
//! parses back to the same spec and displays the same again; a plain path
//! comes back unchanged with no options (`read` left at auto); copy:// and
//! mixer:// name only valid stream ids; an HLS spec fetches http:// without
//! user info or fragment, keeps none of this node's keys in the fetched
//! query, and its `Display` parses back to the same spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringest::url::{
    FileRead, FilterSpec, InputSpec, MAX_ALLOWED_PIDS, MAX_PKT_SIZE, MAX_RCVBUF, MAX_SOURCES, MIN_PKT_SIZE, MIN_RCVBUF,
    check_stream_id, parse_input,
};

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let input = if m & 1 != 0 {
        format!("udp://{text}")
    } else if m & 2 != 0 {
        format!("http://{text}")
    } else {
        text.to_owned()
    };
    match parse_input(&input) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "control character in error: {msg:?}");
            if let Some((_, after)) = input.split_once("://") {
                let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
                if let Some((user, host)) = authority.rsplit_once('@') {
                    let elsewhere = host.contains(user) || after[authority.len()..].contains(user);
                    if user.len() >= 6 && !elsewhere && !input[..input.len() - after.len()].contains(user) {
                        // Text that is in the message whatever the user
                        // info (the message's own words) is not an echo.
                        let fixed = parse_input(&input.replacen(user, "x", 1))
                            .err()
                            .is_some_and(|e| e.to_string().contains(&format!("{user}@")));
                        assert!(fixed || !msg.contains(&format!("{user}@")), "user info echoed: {msg}");
                    }
                }
            }
        }
        Ok(InputSpec::Udp(spec)) => {
            assert_ne!(spec.port, 0);
            assert!((MIN_RCVBUF..=MAX_RCVBUF).contains(&spec.rcvbuf));
            assert!((MIN_PKT_SIZE..=MAX_PKT_SIZE).contains(&spec.pkt_size));
            assert!(spec.sources.len() <= MAX_SOURCES);
            check_filter(&spec.filter);
            for s in &spec.sources {
                assert!(spec.is_multicast(), "SSM source with a non-multicast group");
                assert_eq!(s.is_ipv4(), spec.group_or_host.is_ipv4(), "source family");
            }
            let shown = spec.to_string();
            match parse_input(&shown) {
                Ok(InputSpec::Udp(again)) => {
                    assert_eq!(again, spec, "round trip changed the spec: {input:?} -> {shown:?}");
                    assert_eq!(again.to_string(), shown, "Display not stable");
                }
                other => panic!("Display {shown:?} of {input:?} does not parse back: {other:?}"),
            }
        }
        Ok(spec @ (InputSpec::Copy { .. } | InputSpec::Mixer(_))) => {
            // Stream ids only, each valid.
            for id in spec.upstreams() {
                assert!(check_stream_id(id).is_ok(), "bad id accepted: {id:?} from {input:?}");
            }
        }
        Ok(InputSpec::Hls(spec)) => {
            check_filter(&spec.filter);
            assert_eq!(spec.url.scheme(), "http");
            assert!(spec.url.username().is_empty() && spec.url.password().is_none() && spec.url.fragment().is_none());
            for (key, _) in spec.url.query_pairs() {
                assert!(!["pace", "program", "si", "pids"].contains(&&*key), "kept our key {key:?}");
            }
            let shown = spec.to_string();
            match parse_input(&shown) {
                Ok(InputSpec::Hls(again)) => {
                    assert_eq!(again, spec, "round trip changed the spec: {input:?} -> {shown:?}");
                    assert_eq!(again.to_string(), shown, "Display not stable");
                }
                other => panic!("Display {shown:?} of {input:?} does not parse back: {other:?}"),
            }
        }
        Ok(InputSpec::File { path, looping, pace, read, filter }) => {
            check_filter(&filter);
            if !input.contains("://") {
                assert_eq!(path.as_os_str(), input.as_str());
                assert!(looping.is_none() && pace.is_none() && read == FileRead::Auto);
                assert_eq!(filter, FilterSpec::default());
            } else {
                assert!(path.is_absolute(), "file URL gave a relative path");
            }
        }
    }
});

fn check_filter(filter: &FilterSpec) {
    assert_ne!(filter.program, Some(0));
    if let Some(pids) = &filter.pids {
        assert!(!pids.is_empty() && pids.len() <= MAX_ALLOWED_PIDS);
        assert!(pids.windows(2).all(|w| w[0] < w[1]), "PIDs not sorted and distinct: {pids:?}");
        assert!(pids.iter().all(|p| p.index() < 8192));
    }
}
