//! HLS playlists (RFC 8216), sans-IO: what a fetched playlist says, and
//! which of its segments are new since the last reload.
//!
//! Parsing is m3u8-rs; this module checks what it returns against what the
//! input can play (MPEG-TS segments, unencrypted, whole files) and resolves
//! URIs against the playlist's own URL. A master playlist resolves to its
//! highest-bandwidth variant (I-frame-only variants are not playable).
//!
//! [`Cursor`] walks a media playlist by media sequence number across
//! reloads: a segment is taken once; a live playlist is joined
//! [`LIVE_EDGE_SEGMENTS`] from its end (RFC 8216 §6.3.3); segments that
//! slid out of the window before they were fetched are counted, and so is
//! a sequence that went backwards (a restarted packager), after which the
//! playlist is joined afresh.

use std::time::Duration;

use m3u8_rs::{KeyMethod, Playlist};
use thiserror::Error;
use url::Url;

/// Segments from the end of a live playlist where playback starts.
pub const LIVE_EDGE_SEGMENTS: usize = 3;
/// Shortest wait between two reloads, whatever the playlist says.
pub const MIN_RELOAD: Duration = Duration::from_millis(500);
/// Longest target duration taken from a playlist; longer ones are clamped.
pub const MAX_TARGET_DURATION: Duration = Duration::from_secs(60);

/// Why a playlist cannot be played. All of these are permanent: fetching
/// the same playlist again gives the same answer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlaylistError {
    /// Not a playlist m3u8-rs can read.
    #[error("not an HLS playlist (no #EXTM3U header, or a malformed tag)")]
    Malformed,
    /// A master playlist without a playable variant.
    #[error("master playlist lists no playable variant")]
    NoVariant,
    /// A URI that does not resolve against the playlist's URL.
    #[error("bad URI '{uri}' in playlist")]
    BadUri {
        /// The URI as written (control characters escaped).
        uri: String,
    },
    /// A URI with another scheme than `http`.
    #[error("playlist URI '{uri}' is not http:// (this build fetches http:// only)")]
    NotHttp {
        /// The resolved URI.
        uri: String,
    },
    /// Encrypted segments.
    #[error("encrypted segments (#EXT-X-KEY METHOD={method}) are not supported")]
    Encrypted {
        /// The method as named in the playlist.
        method: String,
    },
    /// fMP4 (CMAF) segments: not a transport stream.
    #[error("fMP4 segments (#EXT-X-MAP) are not MPEG-TS")]
    Fmp4,
    /// A media sequence so high its segments' numbers overflow.
    #[error("#EXT-X-MEDIA-SEQUENCE too large for its segments")]
    SequenceOverflow,
    /// Byte-range segments.
    #[error("byte-range segments (#EXT-X-BYTERANGE) are not supported")]
    ByteRange,
}

/// A fetched playlist, checked.
#[derive(Debug, PartialEq)]
pub enum Listing {
    /// A master playlist: the variant to load instead.
    Variant {
        /// The variant's media playlist.
        url: Url,
        /// Its `BANDWIDTH`, bits per second.
        bandwidth: u64,
    },
    /// A media playlist.
    Media(Media),
}

/// A media playlist, checked.
#[derive(Debug, PartialEq)]
pub struct Media {
    /// `#EXT-X-TARGETDURATION`, clamped to [`MAX_TARGET_DURATION`].
    pub target_duration: Duration,
    /// `#EXT-X-ENDLIST`: no segment will be added (VOD, or a finished event).
    pub ended: bool,
    /// The segments, in order, numbered from `#EXT-X-MEDIA-SEQUENCE`.
    pub segments: Vec<Segment>,
}

/// One media segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Media sequence number.
    pub sequence: u64,
    /// Where to fetch it.
    pub url: Url,
    /// `#EXTINF` duration.
    pub duration: Duration,
    /// `#EXT-X-DISCONTINUITY` before it.
    pub discontinuity: bool,
}

/// Reads `body`, fetched from `base`.
pub fn parse(body: &[u8], base: &Url) -> Result<Listing, PlaylistError> {
    match m3u8_rs::parse_playlist_res(body).map_err(|_| PlaylistError::Malformed)? {
        Playlist::MasterPlaylist(master) => {
            let best = master
                .variants
                .iter()
                .filter(|v| !v.is_i_frame && !v.uri.is_empty())
                .max_by_key(|v| v.bandwidth)
                .ok_or(PlaylistError::NoVariant)?;
            Ok(Listing::Variant { url: resolve(base, &best.uri)?, bandwidth: best.bandwidth })
        }
        Playlist::MediaPlaylist(media) => {
            let mut segments = Vec::with_capacity(media.segments.len());
            for (n, s) in media.segments.iter().enumerate() {
                // A key applies until the next #EXT-X-KEY, which only
                // METHOD=NONE may follow without being refused here.
                if let Some(key) = &s.key
                    && key.method != KeyMethod::None
                {
                    return Err(PlaylistError::Encrypted { method: crate::url::shown(&key.method.to_string()) });
                }
                if s.map.is_some() {
                    return Err(PlaylistError::Fmp4);
                }
                if s.byte_range.is_some() {
                    return Err(PlaylistError::ByteRange);
                }
                // The number after the last must exist too: the cursor keeps it.
                let after = media.media_sequence.checked_add(n as u64 + 1).ok_or(PlaylistError::SequenceOverflow)?;
                let sequence = after - 1;
                segments.push(Segment {
                    sequence,
                    url: resolve(base, &s.uri)?,
                    duration: Duration::try_from_secs_f32(s.duration).unwrap_or_default(),
                    discontinuity: s.discontinuity,
                });
            }
            Ok(Listing::Media(Media {
                target_duration: Duration::from_secs(media.target_duration).min(MAX_TARGET_DURATION),
                ended: media.end_list,
                segments,
            }))
        }
    }
}

fn resolve(base: &Url, uri: &str) -> Result<Url, PlaylistError> {
    let url = base.join(uri.trim()).map_err(|_| PlaylistError::BadUri { uri: crate::url::shown(uri) })?;
    if url.scheme() != "http" {
        return Err(PlaylistError::NotHttp { uri: crate::url::shown(url.as_str()) });
    }
    Ok(url)
}

/// What a reload brought.
#[derive(Debug, Default, PartialEq)]
pub struct Update {
    /// Segments to fetch, in order.
    pub new: Vec<Segment>,
    /// Segments that left the window before they could be fetched.
    pub missed: u64,
    /// The sequence went backwards: the playlist was joined afresh.
    pub restarted: bool,
}

/// Where playback is in a media playlist, across reloads.
#[derive(Clone, Debug, Default)]
pub struct Cursor {
    /// The sequence number of the next segment to take.
    next: Option<u64>,
}

impl Cursor {
    /// A cursor that has seen no playlist.
    pub fn new() -> Cursor {
        Cursor::default()
    }

    /// The segments of `media` not taken yet; the first segment after a gap
    /// or a restart is marked discontinuous. Each is taken by [`Cursor::taken`].
    pub fn update(&mut self, media: &Media) -> Update {
        let mut update = Update::default();
        let (Some(first), Some(last)) = (media.segments.first(), media.segments.last()) else { return update };
        let start = match self.next {
            None => join_point(media),
            Some(next) if next > last.sequence.saturating_add(1) => {
                update.restarted = true;
                join_point(media)
            }
            Some(next) if next < first.sequence => {
                update.missed = first.sequence - next;
                0
            }
            Some(next) => (next - first.sequence) as usize,
        };
        update.new = media.segments.get(start..).unwrap_or_default().to_vec();
        if let Some(s) = update.new.first_mut()
            && (update.missed > 0 || update.restarted)
        {
            s.discontinuity = true;
        }
        self.next = Some(update.new.first().map_or(last.sequence.saturating_add(1), |s| s.sequence));
        update
    }

    /// Marks the segment numbered `sequence` as played: until then, a
    /// reload after a failure offers it again.
    pub fn taken(&mut self, sequence: u64) {
        self.next = Some(sequence.saturating_add(1));
    }
}

/// Index of the first segment to play when joining `media`.
fn join_point(media: &Media) -> usize {
    if media.ended { 0 } else { media.segments.len().saturating_sub(LIVE_EDGE_SEGMENTS) }
}

/// How long to wait before reloading a live playlist (RFC 8216 §6.3.4): the
/// target duration after a reload that brought segments, half of it after
/// one that did not; never less than [`MIN_RELOAD`].
pub fn reload_after(media: &Media, brought_segments: bool) -> Duration {
    let wait = if brought_segments { media.target_duration } else { media.target_duration / 2 };
    wait.max(MIN_RELOAD)
}

#[cfg(test)]
mod tests;
