//! URL parsing: accepted forms, refusals naming the part, round trips.

use std::net::{IpAddr, Ipv6Addr};

use super::udp::format_size;
use super::*;

fn file(path: &str, looping: Option<bool>, pace: Option<Pace>) -> InputSpec {
    InputSpec::File { path: path.into(), looping, pace, read: FileRead::Auto, filter: FilterSpec::default() }
}

fn udp(input: &str) -> UdpSpec {
    match parse_input(input) {
        Ok(InputSpec::Udp(spec)) => spec,
        other => panic!("{input}: {other:?}"),
    }
}

fn err(input: &str) -> UrlError {
    parse_input(input).unwrap_err()
}

/// The error, and that its message holds `needle`.
fn err_says(input: &str, needle: &str) -> UrlError {
    let e = err(input);
    assert!(e.to_string().contains(needle), "{input}: {needle:?} not in {e}");
    assert!(!e.to_string().contains('\n'));
    e
}

#[test]
fn paths_and_file_urls() {
    assert_eq!(parse_input("a/b.ts"), Ok(file("a/b.ts", None, None)));
    assert_eq!(parse_input("a/b?loop=1.ts"), Ok(file("a/b?loop=1.ts", None, None)));
    assert_eq!(parse_input("file:///tmp/x%20y.ts"), Ok(file("/tmp/x y.ts", None, None)));
    assert_eq!(parse_input("file://localhost/tmp/x.ts"), Ok(file("/tmp/x.ts", None, None)));
}

#[test]
fn file_options() {
    assert_eq!(parse_input("file:///x.ts?loop=true&pace=pcr"), Ok(file("/x.ts", Some(true), Some(Pace::Pcr))));
    assert_eq!(parse_input("file:///x.ts?loop=false"), Ok(file("/x.ts", Some(false), None)));
    assert_eq!(parse_input("file:///x.ts?pace=none&loop=0"), Ok(file("/x.ts", Some(false), Some(Pace::None))));
    assert_eq!(parse_input("file:///x.ts?"), Ok(file("/x.ts", None, None)));
    assert_eq!(
        err_says("file:///x.ts?segment=600", "'segment'"),
        UrlError::UnknownOption { scheme: "file", key: "segment".into(), known: FILE_KEYS }
    );
    err_says("file:///x.ts?loop=yes", "'loop'");
    err_says("file:///x.ts?pace=fast", "'pace'");
    assert_eq!(err("file:///x.ts?loop=1&loop=0"), UrlError::DuplicateOption { key: "loop" });
    assert_eq!(Pace::Pcr.to_string(), "pcr");
    assert_eq!(Pace::None.to_string(), "none");
}

#[test]
fn file_read_option() {
    let read = |input: &str| match parse_input(input) {
        Ok(InputSpec::File { read, .. }) => read,
        other => panic!("{input}: {other:?}"),
    };
    assert_eq!(read("file:///x.ts"), FileRead::Auto);
    assert_eq!(read("/x.ts?read=uring"), FileRead::Auto, "a plain path takes no options");
    assert_eq!(read("file:///x.ts?read=auto"), FileRead::Auto);
    assert_eq!(read("file:///x.ts?read=mmap&loop=1"), FileRead::Mmap);
    assert_eq!(read("file:///tmp/fifo?loop=0&read=uring&pace=none"), FileRead::Uring);
    let e = err_says("file:///x.ts?read=direct", "'read'");
    assert!(e.to_string().contains("auto, mmap or uring"), "{e}");
    err_says("file:///x.ts?read=URING", "'read'");
    err_says("file:///x.ts?read=", "'read'");
    assert_eq!(err("file:///x.ts?read=mmap&read=uring"), UrlError::DuplicateOption { key: "read" });
    for r in [FileRead::Auto, FileRead::Mmap, FileRead::Uring] {
        assert_eq!(read(&format!("file:///x.ts?read={r}")), r);
    }
}

#[test]
fn refusals_name_the_part() {
    assert!(matches!(parse_input("gopher://x"), Err(UrlError::UnknownScheme { .. })));
    assert!(matches!(parse_input("srt://1.2.3.4:9000"), Err(UrlError::NotYetSupported { .. })));
    err_says("file://host/x.ts", "host");
    err_says("file:///x.ts#frag", "fragment");
    assert_eq!(parse_input(""), Err(UrlError::Empty));
}

#[test]
fn user_info_is_never_echoed() {
    for input in ["rtmp://bob:hunter2@host/app", "gopher://bob:hunter2@x", "file://bob:hunter2@/x.ts"] {
        let e = err(input).to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
    assert_eq!(err("udp://bob:hunter2@239.1.1.1:5000"), UrlError::UdpUserInfo);
    assert_eq!(err("udp://@239.1.1.1:5000"), UrlError::UdpUserInfo);
    // An `@` after a `/` still reads as user info, so no part of it is echoed.
    assert_eq!(err("udp://bob:p/w@239.1.1.1:5000"), UrlError::UdpUserInfo);
}

#[test]
fn udp_accepted_forms() {
    let s = udp("udp://239.1.1.1:5000");
    assert_eq!(s, UdpSpec::new("239.1.1.1".parse().unwrap(), 5000));
    assert!(s.rtp && s.is_multicast());
    assert_eq!((s.rcvbuf, s.pkt_size), (8 << 20, 65507));

    let s = udp("udp://239.1.1.1:5000?iface=eth0&source=10.0.0.1&rtp=0&rcvbuf=8M&pkt_size=1316");
    assert_eq!(s.iface, Some(Iface::Name("eth0".into())));
    assert_eq!(s.sources, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!((s.rtp, s.rcvbuf, s.pkt_size), (false, 8 << 20, 1316));

    let s = udp("UDP://232.0.0.1:1234/?source=10.0.0.1,10.0.0.2&source=10.0.0.3&iface=3&rtp=true");
    assert_eq!(s.sources.len(), 3);
    assert_eq!(s.iface, Some(Iface::Index(3)));
    assert!(s.rtp);

    let s = udp("udp://[ff15::1]:5000?iface=fe80::1&source=2001:db8::7&rcvbuf=512K");
    assert_eq!(s.group_or_host, "ff15::1".parse::<IpAddr>().unwrap());
    assert_eq!(s.iface, Some(Iface::Addr("fe80::1".parse().unwrap())));
    assert_eq!(s.rcvbuf, 512 << 10);

    assert!(!udp("udp://0.0.0.0:5000").is_multicast());
    assert_eq!(udp("udp://127.0.0.1:65535").port, 65535);
    assert_eq!(udp("udp://[::]:5000").group_or_host, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert_eq!(udp("udp://239.1.1.1:5000?iface=10.0.0.5").iface, Some(Iface::Addr("10.0.0.5".parse().unwrap())));
    assert_eq!(udp("udp://239.1.1.1:5000?iface=br-lan.100").iface, Some(Iface::Name("br-lan.100".into())));
    for (text, bytes) in [("8388608", 8 << 20), ("8MiB", 8 << 20), ("8m", 8 << 20), ("1G", 1 << 30), ("4k", 4096)] {
        assert_eq!(udp(&format!("udp://1.2.3.4:5?rcvbuf={text}")).rcvbuf, bytes, "{text}");
    }
    assert_eq!(udp("udp://1.2.3.4:5?pkt_size=188").pkt_size, 188);
    assert_eq!(udp("udp://1.2.3.4:5?pkt_size=65507").pkt_size, 65507);
    assert!(udp("udp://1.2.3.4:5?rtp=1").rtp);
}

#[test]
fn udp_address_errors() {
    assert_eq!(err("udp://:5000"), UrlError::MissingHost);
    assert_eq!(err("udp://"), UrlError::MissingHost);
    assert_eq!(err("udp://239.1.1.1"), UrlError::MissingPort { host: "239.1.1.1".into() });
    assert_eq!(err("udp://239.1.1.1:"), UrlError::MissingPort { host: "239.1.1.1".into() });
    assert_eq!(err("udp://[ff15::1]"), UrlError::MissingPort { host: "[ff15::1]".into() });
    assert_eq!(err("udp://239.1.1.1:0"), UrlError::BadPort { port: "0".into() });
    assert_eq!(err("udp://239.1.1.1:65536"), UrlError::BadPort { port: "65536".into() });
    assert_eq!(err("udp://239.1.1.1:+5"), UrlError::BadPort { port: "+5".into() });
    assert_eq!(err("udp://[ff15::1]x"), UrlError::BadPort { port: "x".into() });
    err_says("udp://example.com:5000", "'example.com' is not an IP address");
    err_says("udp://[example]:5000", "'example'");
    err_says("udp://[ff15::1:5000", "[ff15::1:5000");
    err_says("udp://[1.2.3.4]:5000", "'1.2.3.4'");
    err_says("udp://[ff02::1%eth0]:5000", "ff02::1%eth0");
    assert_eq!(err("udp://ff15::1:5000"), UrlError::UnbracketedIpv6 { host: "ff15::1".into() });
    assert_eq!(err("udp://ff15::1"), UrlError::UnbracketedIpv6 { host: "ff15::1".into() });
    err_says("udp://a:b:c", "'a:b:c'");
    assert_eq!(err("udp://239.1.1.1:5000/live"), UrlError::UdpPath { path: "/live".into() });
    assert_eq!(err("udp://239.1.1.1:5000#x"), UrlError::UdpFragment);
    assert_eq!(err("udp://239.1.1.1:5000?rtp=0#x"), UrlError::UdpFragment);
}

#[test]
fn udp_option_errors() {
    let bad = |input: &str, key: &str| {
        let e = err(input);
        assert!(matches!(&e, UrlError::BadOption { key: k, .. } if *k == key), "{input}: {e:?}");
        assert!(e.to_string().contains(&format!("for '{key}'")), "{e}");
    };
    err_says("udp://239.1.1.1:5000?foo=1", "unknown option 'foo'");
    err_says("udp://239.1.1.1:5000?ttl=1", "known: iface, source");
    assert_eq!(err("udp://239.1.1.1:5000?rtp=0&rtp=1"), UrlError::DuplicateOption { key: "rtp" });
    assert_eq!(err("udp://239.1.1.1:5000?iface=a&iface=b"), UrlError::DuplicateOption { key: "iface" });
    bad("udp://239.1.1.1:5000?rtp=yes", "rtp");
    bad("udp://239.1.1.1:5000?rtp", "rtp");
    for v in ["8MB", "x", "", "0", "4095", "2G", "99999999999999999999", "M", "-1"] {
        bad(&format!("udp://239.1.1.1:5000?rcvbuf={v}"), "rcvbuf");
    }
    for v in ["187", "65508", "1k", "", "+200"] {
        bad(&format!("udp://239.1.1.1:5000?pkt_size={v}"), "pkt_size");
    }
    for v in ["", "0", "4294967296", "a/b", "a:b", "a%20b", "sixteen_chars_xx", ".", ".."] {
        bad(&format!("udp://239.1.1.1:5000?iface={v}"), "iface");
    }
    bad("udp://239.1.1.1:5000?iface=::1", "iface");
    bad("udp://239.1.1.1:5000?iface=0.0.0.0", "iface");
    bad("udp://[ff15::1]:5000?iface=10.0.0.1", "iface");
    bad("udp://239.1.1.1:5000?source=host", "source");
    bad("udp://239.1.1.1:5000?source=10.0.0.1,", "source");
    bad("udp://10.0.0.9:5000?source=10.0.0.1", "source");
    bad("udp://0.0.0.0:5000?source=10.0.0.1", "source");
    bad("udp://239.1.1.1:5000?source=2001:db8::1", "source");
    bad("udp://[ff15::1]:5000?source=10.0.0.1", "source");
    bad("udp://239.1.1.1:5000?source=239.1.1.2", "source");
    bad("udp://239.1.1.1:5000?source=0.0.0.0", "source");
    bad("udp://239.1.1.1:5000?source=10.0.0.1&source=10.0.0.1", "source");
    let many: Vec<String> = (1..=65).map(|i| format!("10.0.{}.{}", i / 256, i % 256)).collect();
    bad(&format!("udp://239.1.1.1:5000?source={}", many.join(",")), "source");
    err_says("udp://10.0.0.9:5000?source=10.0.0.1", "needs a multicast group");
    err_says("udp://239.1.1.1:5000?source=2001:db8::1", "IPv6 but the group is IPv4");
}

#[test]
fn udp_display_is_normalised_and_round_trips() {
    let cases = [
        ("udp://239.1.1.1:5000", "udp://239.1.1.1:5000"),
        ("udp://239.1.1.1:5000?rtp=1&rcvbuf=8388608&pkt_size=65507", "udp://239.1.1.1:5000"),
        (
            "udp://239.1.1.1:5000?pkt_size=1316&rcvbuf=512k&rtp=false&source=10.0.0.1&iface=eth0",
            "udp://239.1.1.1:5000?iface=eth0&source=10.0.0.1&rtp=0&rcvbuf=512K&pkt_size=1316",
        ),
        (
            "udp://[FF15:0::1]:5000?source=2001:db8::1&source=2001:db8::2",
            "udp://[ff15::1]:5000?source=2001:db8::1,2001:db8::2",
        ),
        ("udp://1.2.3.4:5?rcvbuf=5000&iface=7", "udp://1.2.3.4:5?iface=7&rcvbuf=5000"),
        ("udp://1.2.3.4:5?iface=a%26b%2Bc", "udp://1.2.3.4:5?iface=a%26b%2Bc"),
        ("udp://1.2.3.4:5?rcvbuf=1048576", "udp://1.2.3.4:5?rcvbuf=1M"),
        ("udp://1.2.3.4:5?pids=0x101,256&si=1&program=3", "udp://1.2.3.4:5?program=3&pids=256,257"),
        (
            "udp://239.1.1.1:5000?si=false&pids=8191&rtp=0&pids=0,17,0x11&program=65535",
            "udp://239.1.1.1:5000?rtp=0&program=65535&si=0&pids=0,17,8191",
        ),
        ("udp://1.2.3.4:5?si=0", "udp://1.2.3.4:5?si=0"),
    ];
    for (input, shown) in cases {
        let spec = udp(input);
        assert_eq!(spec.to_string(), shown, "{input}");
        assert_eq!(udp(shown), spec, "{shown}");
    }
    assert_eq!(udp("udp://1.2.3.4:5?iface=a%26b%2Bc").iface, Some(Iface::Name("a&b+c".into())));
    assert_eq!(Iface::Index(4).to_string(), "4");
}

#[test]
fn control_characters_are_escaped_in_errors() {
    let e = err("udp://1.2.3.4:5?a%0Ab=1");
    assert_eq!(e, UrlError::UnknownOption { scheme: "udp", key: "a\\nb".into(), known: UDP_KEYS });
    assert!(!err("udp://1.2.3.4:5?iface=x%0D").to_string().contains('\r'));
    assert!(!err("file:///x?pace=%7F").to_string().chars().any(char::is_control));
    assert!(!err("gopher://a\tb").to_string().contains('\t'));
}

#[test]
fn size_formatting() {
    assert_eq!(format_size(1 << 30), "1G");
    assert_eq!(format_size(3 << 20), "3M");
    assert_eq!(format_size(4096), "4K");
    assert_eq!(format_size(4097), "4097");
}

fn filter(input: &str) -> FilterSpec {
    match parse_input(input) {
        Ok(InputSpec::Udp(spec)) => spec.filter,
        Ok(InputSpec::File { filter, .. }) => filter,
        other => panic!("{input}: {other:?}"),
    }
}

#[test]
fn filter_options_on_both_schemes() {
    let pids = |list: &[u16]| Some(list.iter().map(|&p| crate::ts::packet::Pid::new(p)).collect::<Vec<_>>());
    for base in ["udp://239.1.1.1:5000", "file:///x.ts"] {
        assert_eq!(filter(base), FilterSpec::default());
        assert!(filter(base).is_passthrough());
        let f = filter(&format!("{base}?program=3"));
        assert_eq!(f, FilterSpec { program: Some(3), si: true, pids: None });
        assert!(!f.is_passthrough());
        let f = filter(&format!("{base}?program=1&si=0&pids=257,256"));
        assert_eq!(f, FilterSpec { program: Some(1), si: false, pids: pids(&[256, 257]) });
        // Repeated key, repeated PIDs, hex: one sorted list.
        let f = filter(&format!("{base}?pids=0x1FFF,17&pids=16,0x11,0&si=true"));
        assert_eq!(f, FilterSpec { program: None, si: true, pids: pids(&[0, 16, 17, 8191]) });
        assert_eq!(filter(&format!("{base}?program=65535")).program, Some(65535));
        let all: Vec<String> = (0..64).map(|p| (p * 100).to_string()).collect();
        assert_eq!(filter(&format!("{base}?pids={}&pids=0,100", all.join(","))).pids.map(|p| p.len()), Some(64));
    }
    assert_eq!(filter("/x.ts?program=3"), FilterSpec::default(), "a plain path takes no options");
}

#[test]
fn filter_option_errors_name_key_and_value() {
    let bad = |input: &str, key: &str, value: &str| {
        let e = err(input);
        assert!(
            matches!(&e, UrlError::BadOption { key: k, value: v, .. } if *k == key && v == value),
            "{input}: {e:?}"
        );
        assert!(e.to_string().contains(&format!("'{value}' for '{key}'")), "{e}");
    };
    for base in ["udp://239.1.1.1:5000", "file:///x.ts"] {
        for v in ["0", "65536", "-1", "x", "", "0x10", "1.0"] {
            bad(&format!("{base}?program={v}"), "program", v);
        }
        bad(&format!("{base}?program=%2B3"), "program", "+3");
        err_says(&format!("{base}?program=0"), "network PID");
        bad(&format!("{base}?si=2"), "si", "2");
        bad(&format!("{base}?si="), "si", "");
        for v in ["8192", "0x2000", "99999999999"] {
            bad(&format!("{base}?pids=1,{v}"), "pids", v);
        }
        bad(&format!("{base}?pids=%2B1"), "pids", "+1");
        for v in ["", "x", "0x", "1.5", "-0", "0xg", "0x-1"] {
            bad(&format!("{base}?pids=256,{v}"), "pids", v);
        }
        bad(&format!("{base}?pids="), "pids", "");
        let many: Vec<String> = (0..65).map(|p| p.to_string()).collect();
        bad(&format!("{base}?pids={}", many.join(",")), "pids", "64");
        err_says(&format!("{base}?pids={}", many.join(",")), "more than 64 PIDs");
        assert_eq!(err(&format!("{base}?program=1&program=1")), UrlError::DuplicateOption { key: "program" });
        assert_eq!(err(&format!("{base}?si=1&si=0")), UrlError::DuplicateOption { key: "si" });
    }
    err_says("udp://239.1.1.1:5000?prog=1", "known: iface, source, rtp, rcvbuf, pkt_size, program, si, pids");
    err_says("file:///x.ts?pid=1", "known: loop, pace, read, program, si, pids");
}

#[test]
fn copy_and_mixer_urls() {
    assert_eq!(parse_input("copy://news-1"), Ok(InputSpec::Copy { stream: "news-1".into() }));
    let mix = |v: &str, a: &str, audio_failure| {
        InputSpec::Mixer(MixerSpec { video: v.into(), audio: a.into(), audio_failure })
    };
    assert_eq!(parse_input("mixer://cam,radio"), Ok(mix("cam", "radio", AudioFailure::Down)));
    assert_eq!(
        parse_input("mixer://cam,radio?audio_failure=continue"),
        Ok(mix("cam", "radio", AudioFailure::Continue))
    );
    assert_eq!(parse_input("MIXER://cam,radio?audio_failure=down"), Ok(mix("cam", "radio", AudioFailure::Down)));
    assert_eq!(parse_input("mixer://cam,radio").unwrap().upstreams(), vec!["cam", "radio"]);
}

#[test]
fn copy_and_mixer_refusals_name_the_part() {
    err_says("copy://", "bad stream id ''");
    err_says("copy://News", "bad stream id 'News'");
    err_says("copy://a:1234", "a port (':1234')");
    err_says("copy://a/b", "a path ('/b')");
    err_says("copy://a?x=1", "unknown option 'x' for copy://");
    err_says("copy://a#frag", "a fragment");
    let e = err_says("copy://user:secret@a", "user info");
    assert!(!e.to_string().contains("secret"));
    err_says("mixer://cam", "expected mixer://<video stream>,<audio stream>");
    err_says("mixer://cam,", "the audio stream: bad stream id ''");
    err_says("mixer://,radio", "the video stream: bad stream id ''");
    err_says("mixer://cam,radio?audio_failure=maybe", "bad value 'maybe' for 'audio_failure'");
    err_says("mixer://cam,radio?audio_failure=down&audio_failure=down", "given twice");
    err_says("mixer://cam,radio?loop=1", "unknown option 'loop' for mixer://");
    err_says("mixer://cam,radio:80", "a port (':80')");
    let copy = parse_input("copy://a").unwrap();
    assert_eq!(copy.clone().standalone("relay").unwrap_err(), UrlError::NeedsNode { scheme: "copy", command: "relay" });
    assert!(copy.filter().is_passthrough());
}

fn hls(input: &str) -> HlsSpec {
    match parse_input(input) {
        Ok(InputSpec::Hls(spec)) => spec,
        other => panic!("{input}: {other:?}"),
    }
}

#[test]
fn an_http_playlist_is_hls_and_keeps_the_servers_query() {
    let plain = hls("http://cdn.example:8080/live/index.m3u8");
    assert_eq!(plain.url.as_str(), "http://cdn.example:8080/live/index.m3u8");
    assert_eq!((plain.pace, plain.filter.clone()), (HlsPace::Dts, FilterSpec::default()));
    assert_eq!(plain.to_string(), "http://cdn.example:8080/live/index.m3u8");
    // This node's keys come out; the server's stay as written, in order.
    let mixed = hls("HTTP://127.0.0.1/a/b.M3U8?token=a%2Bb&pace=none&sig&program=3&x=1+2#frag");
    assert_eq!(mixed.url.as_str(), "http://127.0.0.1/a/b.M3U8?token=a%2Bb&sig&x=1+2");
    assert_eq!((mixed.pace, mixed.filter.program), (HlsPace::None, Some(3)));
    let shown = mixed.to_string();
    assert_eq!(shown, "http://127.0.0.1/a/b.M3U8?token=a%2Bb&sig&x=1+2&pace=none&program=3");
    assert_eq!(hls(&shown), mixed);
    assert_eq!(hls("http://[::1]:81/x.m3u?&&pace=dts").url.as_str(), "http://[::1]:81/x.m3u");
}

#[test]
fn http_refusals_name_what_is_wrong() {
    err_says("http://user:secret@host/x.m3u8", "user info is not allowed");
    assert!(!err("http://user:secret@host/x.m3u8").to_string().contains("secret"));
    err_says("https://host/x.m3u8", "HLS over https:// (TLS) is not supported yet");
    err_says("http://host/stream.ts", "progressive HTTP-TS");
    err_says("http://host/x.m3u8?pace=pcr", "bad value 'pcr' for 'pace': expected dts or none");
    err_says("http://host/x.m3u8?pace=none&pace=dts", "option 'pace' given twice");
    err_says("http://host/x.m3u8?program=0", "program 0");
    err_says("http://host:99999/x.m3u8", "not a valid URL");
    assert!(matches!(InputSpec::Hls(hls("http://h/x.m3u8")).standalone("relay"), Ok(InputSpec::Hls(_))));
}
