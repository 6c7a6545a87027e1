//! `copy://<stream>` and `mixer://<video>,<audio>?audio_failure=down|continue`:
//! inputs that read other streams of the same node.
//!
//! The part after `://` is stream ids, nothing else: user info, a port, a
//! path, a fragment or an unknown option is refused by name, as the
//! reference grammar does, so `copy://host:1234/x` is not silently taken
//! for a stream called `host`.

use super::{UrlError, bad_option, set_once, shown};

/// Longest stream id.
pub const MAX_ID_LEN: usize = 64;

/// Options a `mixer://` input takes, for error messages.
const MIXER_KEYS: &str = "audio_failure";

/// What a mixer does when its audio stream ends (`audio_failure=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AudioFailure {
    /// `down` (the default): the mix ends with its audio.
    #[default]
    Down,
    /// `continue`: the video goes on alone.
    Continue,
}

/// A parsed `mixer://` input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MixerSpec {
    /// The stream the video comes from.
    pub video: String,
    /// The stream the audio comes from.
    pub audio: String,
    /// What the end of the audio does.
    pub audio_failure: AudioFailure,
}

/// Checks a stream id: 1 to [`MAX_ID_LEN`] of `a-z`, `0-9`, `_`, `-`.
pub fn check_stream_id(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!("bad stream id '{}': expected 1 to {MAX_ID_LEN} of a-z, 0-9, '_', '-'", shown(id)))
    }
}

/// Splits `rest` (after `scheme://`) into the authority and the query,
/// refusing every other URL part by name.
fn authority_and_query<'a>(scheme: &'static str, rest: &'a str) -> Result<(&'a str, Option<&'a str>), UrlError> {
    let bad = |reason: String| UrlError::BadStreamUrl { scheme, reason };
    if rest.contains('#') {
        return Err(bad("a fragment ('#...') is not allowed".into()));
    }
    let (head, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    if head.contains('@') {
        // Not echoed: whatever is before the '@' may be a password.
        return Err(bad("user info ('...@') is not allowed".into()));
    }
    if let Some((_, path)) = head.split_once('/') {
        return Err(bad(format!("a path ('/{}') is not allowed", shown(path))));
    }
    if let Some((_, port)) = head.split_once(':') {
        return Err(bad(format!("a port (':{}') is not allowed", shown(port))));
    }
    Ok((head, query))
}

fn stream_id(scheme: &'static str, role: &'static str, id: &str) -> Result<String, UrlError> {
    check_stream_id(id).map_err(|e| UrlError::BadStreamUrl { scheme, reason: format!("{role}: {e}") })?;
    Ok(id.to_owned())
}

/// Parses what follows `copy://`.
pub(super) fn parse_copy(rest: &str) -> Result<String, UrlError> {
    let (head, query) = authority_and_query("copy", rest)?;
    if let Some(query) = query {
        let key = query.split(['&', '=']).next().unwrap_or_default();
        return Err(UrlError::UnknownOption { scheme: "copy", key: shown(key), known: "none" });
    }
    stream_id("copy", "the stream", head)
}

/// Parses what follows `mixer://`.
pub(super) fn parse_mixer(rest: &str) -> Result<MixerSpec, UrlError> {
    let (head, query) = authority_and_query("mixer", rest)?;
    let Some((video, audio)) = head.split_once(',') else {
        return Err(UrlError::BadStreamUrl {
            scheme: "mixer",
            reason: format!("'{}': expected mixer://<video stream>,<audio stream>", shown(head)),
        });
    };
    let video = stream_id("mixer", "the video stream", video)?;
    let audio = stream_id("mixer", "the audio stream", audio)?;
    let mut audio_failure = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "audio_failure" => {
                let mode = match &*value {
                    "down" => AudioFailure::Down,
                    "continue" => AudioFailure::Continue,
                    _ => return Err(bad_option("audio_failure", &value, "expected down or continue")),
                };
                set_once(&mut audio_failure, "audio_failure", mode)?;
            }
            _ => return Err(UrlError::UnknownOption { scheme: "mixer", key: shown(&key), known: MIXER_KEYS }),
        }
    }
    Ok(MixerSpec { video, audio, audio_failure: audio_failure.unwrap_or_default() })
}
