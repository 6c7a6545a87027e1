use super::*;

fn base() -> Url {
    Url::parse("http://127.0.0.1:8080/live/index.m3u8?token=abc").unwrap()
}

/// A media playlist of `count` 2-second segments from `first`.
fn media_text(first: u64, count: u64, ended: bool) -> String {
    let mut text = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n");
    for n in first..first + count {
        text.push_str(&format!("#EXTINF:2.000,\nseg{n}.ts\n"));
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text
}

fn media(first: u64, count: u64, ended: bool) -> Media {
    match parse(media_text(first, count, ended).as_bytes(), &base()) {
        Ok(Listing::Media(m)) => m,
        other => panic!("{other:?}"),
    }
}

fn sequences(update: &Update) -> Vec<u64> {
    update.new.iter().map(|s| s.sequence).collect()
}

#[test]
fn a_master_playlist_resolves_to_its_highest_bandwidth_variant() {
    let text = "#EXTM3U\n\
        #EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080\nhigh/index.m3u8\n\
        #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=9000000,URI=\"iframes.m3u8\"\n\
        #EXT-X-STREAM-INF:BANDWIDTH=2000000\n/abs/mid.m3u8\n";
    let listing = parse(text.as_bytes(), &base()).unwrap();
    let expected = Url::parse("http://127.0.0.1:8080/live/high/index.m3u8").unwrap();
    assert_eq!(listing, Listing::Variant { url: expected, bandwidth: 5_000_000 });
    let none = "#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=9000000,URI=\"i.m3u8\"\n";
    assert_eq!(parse(none.as_bytes(), &base()), Err(PlaylistError::NoVariant));
}

#[test]
fn a_media_playlist_numbers_and_resolves_its_segments() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:41\n\
        #EXTINF:5.5,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:6,\nhttp://other:81/b.ts?x=1\n#EXT-X-ENDLIST\n";
    let Listing::Media(m) = parse(text.as_bytes(), &base()).unwrap() else { panic!() };
    assert_eq!(m.target_duration, Duration::from_secs(6));
    assert!(m.ended);
    assert_eq!(m.segments.len(), 2);
    assert_eq!(m.segments[0].sequence, 41);
    assert_eq!(m.segments[0].url.as_str(), "http://127.0.0.1:8080/live/a.ts");
    assert_eq!(m.segments[0].duration, Duration::from_millis(5_500));
    assert!(!m.segments[0].discontinuity);
    assert_eq!((m.segments[1].sequence, m.segments[1].url.as_str()), (42, "http://other:81/b.ts?x=1"));
    assert!(m.segments[1].discontinuity);
}

#[test]
fn what_the_input_cannot_play_is_refused_by_name() {
    let refused = |body: &str| parse(body.as_bytes(), &base()).unwrap_err();
    let head = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n";
    assert_eq!(
        refused(&format!("{head}#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:2,\na.ts\n")),
        PlaylistError::Encrypted { method: "AES-128".into() }
    );
    assert_eq!(refused(&format!("{head}#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\na.m4s\n")), PlaylistError::Fmp4);
    assert_eq!(refused(&format!("{head}#EXT-X-BYTERANGE:1000@0\n#EXTINF:2,\na.ts\n")), PlaylistError::ByteRange);
    assert!(matches!(refused(&format!("{head}#EXTINF:2,\nhttps://cdn/a.ts\n")), PlaylistError::NotHttp { .. }));
    assert_eq!(refused("<html>not found</html>"), PlaylistError::Malformed);
    assert_eq!(refused(""), PlaylistError::Malformed);
    // METHOD=NONE is plain.
    let plain = format!("{head}#EXT-X-KEY:METHOD=NONE\n#EXTINF:2,\na.ts\n");
    assert!(matches!(parse(plain.as_bytes(), &base()), Ok(Listing::Media(_))));
}

#[test]
fn a_live_playlist_is_joined_near_its_end_and_each_segment_taken_once() {
    let mut cursor = Cursor::new();
    let first = cursor.update(&media(100, 6, false));
    assert_eq!(sequences(&first), vec![103, 104, 105]);
    first.new.iter().for_each(|s| cursor.taken(s.sequence));
    // Unchanged: nothing new.
    assert_eq!(cursor.update(&media(100, 6, false)), Update::default());
    // The window slid by two.
    let next = cursor.update(&media(102, 6, false));
    assert_eq!(sequences(&next), vec![106, 107]);
    assert!(next.new.iter().all(|s| !s.discontinuity));
    next.new.iter().for_each(|s| cursor.taken(s.sequence));
    // A fetch failed before 108 was taken: the next reload offers it again.
    assert_eq!(sequences(&cursor.update(&media(103, 6, false))), vec![108]);
    assert_eq!(sequences(&cursor.update(&media(104, 6, false))), vec![108, 109]);
}

#[test]
fn a_window_that_slid_past_is_counted_and_a_restart_rejoins() {
    let mut cursor = Cursor::new();
    cursor.update(&media(0, 3, false)).new.iter().for_each(|s| cursor.taken(s.sequence));
    // Next expected is 3; the window now starts at 10.
    let slid = cursor.update(&media(10, 4, false));
    assert_eq!(slid.missed, 7);
    assert_eq!(sequences(&slid), vec![10, 11, 12, 13]);
    assert!(slid.new[0].discontinuity && !slid.new[1].discontinuity);
    slid.new.iter().for_each(|s| cursor.taken(s.sequence));
    // The packager restarted at 0.
    let restarted = cursor.update(&media(0, 5, false));
    assert!(restarted.restarted);
    assert_eq!(sequences(&restarted), vec![2, 3, 4]);
    assert!(restarted.new[0].discontinuity);
}

#[test]
fn vod_starts_at_the_first_segment_and_reloads_are_spaced() {
    let vod = media(0, 5, true);
    assert_eq!(sequences(&Cursor::new().update(&vod)), vec![0, 1, 2, 3, 4]);
    assert_eq!(reload_after(&vod, true), Duration::from_secs(2));
    assert_eq!(reload_after(&vod, false), Duration::from_secs(1));
    let zero = Media { target_duration: Duration::ZERO, ended: false, segments: Vec::new() };
    assert_eq!(reload_after(&zero, true), MIN_RELOAD);
    assert_eq!(Cursor::new().update(&zero), Update::default());
}
