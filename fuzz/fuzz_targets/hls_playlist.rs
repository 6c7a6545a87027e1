//! Arbitrary bytes as a fetched HLS playlist, then through the cursor.
//!
//! Layout: the whole input is the playlist body, fetched from a fixed
//! http:// URL.
//!
//! Checks: no panic; a master playlist resolves to an http:// variant; a
//! media playlist's segments are http://, numbered one after another; the
//! cursor offers each sequence number at most once over two reloads of the
//! same playlist, in increasing order, and only numbers the playlist holds;
//! the reload wait is at least the minimum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringest::input::hls::playlist::{Cursor, Listing, MIN_RELOAD, parse, reload_after};

fuzz_target!(|data: &[u8]| {
    let Ok(base) = url::Url::parse("http://127.0.0.1:8080/live/index.m3u8") else { return };
    match parse(data, &base) {
        Err(e) => assert!(!e.to_string().chars().any(char::is_control), "control character in {e}"),
        Ok(Listing::Variant { url, .. }) => assert_eq!(url.scheme(), "http"),
        Ok(Listing::Media(media)) => {
            for pair in media.segments.windows(2) {
                assert_eq!(pair[0].sequence + 1, pair[1].sequence);
            }
            assert!(media.segments.iter().all(|s| s.url.scheme() == "http"));
            let mut cursor = Cursor::new();
            let mut offered = Vec::new();
            for _ in 0..2 {
                let update = cursor.update(&media);
                for s in &update.new {
                    assert!(media.segments.iter().any(|m| m.sequence == s.sequence));
                    cursor.taken(s.sequence);
                    offered.push(s.sequence);
                }
                assert!(reload_after(&media, !update.new.is_empty()) >= MIN_RELOAD);
            }
            assert!(offered.windows(2).all(|w| w[0] < w[1]), "offered twice or out of order: {offered:?}");
        }
    }
});
