//! `file:///abs/path.ts?options`.

use super::filter::FilterOptions;
use super::{FILE_KEYS, FileRead, InputSpec, Pace, UrlError, bad_option, parse_bool, redact_userinfo, set_once, shown};

pub(super) fn parse_file_url(input: &str) -> Result<InputSpec, UrlError> {
    let bad = |reason| UrlError::BadFileUrl { url: redact_userinfo(input), reason };
    let url = url::Url::parse(input).map_err(|_| bad("not a valid URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("user info is not allowed"));
    }
    if url.port().is_some() {
        return Err(bad("a port is not allowed"));
    }
    if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
        return Err(bad("the host must be empty (file:///abs/path)"));
    }
    if url.fragment().is_some() {
        return Err(bad("a fragment is not allowed"));
    }
    let (mut looping, mut pace, mut read) = (None, None, None);
    let mut filter = FilterOptions::default();
    for (key, value) in url::form_urlencoded::parse(url.query().unwrap_or("").as_bytes()) {
        if filter.take(&key, &value)? {
            continue;
        }
        match &*key {
            "loop" => set_once(&mut looping, "loop", parse_bool("loop", &value)?)?,
            "pace" => {
                let p = match &*value {
                    "pcr" => Pace::Pcr,
                    "none" => Pace::None,
                    _ => return Err(bad_option("pace", &value, "expected pcr or none")),
                };
                set_once(&mut pace, "pace", p)?;
            }
            "read" => {
                let r = match &*value {
                    "auto" => FileRead::Auto,
                    "mmap" => FileRead::Mmap,
                    "uring" => FileRead::Uring,
                    _ => return Err(bad_option("read", &value, "expected auto, mmap or uring")),
                };
                set_once(&mut read, "read", r)?;
            }
            _ => return Err(UrlError::UnknownOption { scheme: "file", key: shown(&key), known: FILE_KEYS }),
        }
    }
    let path = url.to_file_path().map_err(|()| bad("the path is not an absolute local path"))?;
    Ok(InputSpec::File { path, looping, pace, read: read.unwrap_or_default(), filter: filter.finish() })
}
