//! File mounts: the only directories file inputs may read from.
//!
//! A mount is a name and an absolute directory (`media = "/srv/media"`); a
//! file input names one as `file://<mount>/<relative path>`.
//! [`resolve_in_mount`] turns that into a path and refuses everything that
//! could leave the mount: absolute paths (`file:///etc/passwd`, a plain
//! path), `..` components (also percent-encoded, `%2e%2e`), and symlinks
//! whose target lies outside the mount.
//!
//! What it checks when: the traversal checks run when the URL is resolved
//! (at config load, or when the API adds a stream). Whether the file exists
//! is left to the input when it opens it, so a config may name a recording
//! that appears later. The symlink check covers the part of the path that
//! exists at resolve time; a symlink planted later, between resolve and
//! open, is not caught here (opening with `openat2(RESOLVE_BENEATH)` would
//! close that window; not done yet).
//!
//! Invariants: every root in a [`Mounts`] is canonical (absolute, no
//! symlinks, no `.`/`..`) and was a directory when added; a path returned
//! by [`resolve_in_mount`] starts with the root of the mount it names.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use crate::url::shown;

/// Most mounts one node takes.
pub const MAX_MOUNTS: usize = 64;
/// Longest mount name.
pub const MAX_MOUNT_NAME: usize = 64;

/// Named mount roots, each canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    roots: BTreeMap<String, PathBuf>,
}

/// Why a mount or a file input under one was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MountError {
    /// A mount name outside `[a-z0-9_-]{1,64}`, or `localhost` (which a
    /// `file://` URL reads as "this host").
    #[error("bad mount name '{name}': expected 1 to 64 of a-z, 0-9, '_', '-' (and not 'localhost')")]
    BadName {
        /// The name as written.
        name: String,
    },
    /// A mount added twice.
    #[error("mount '{name}' given twice")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// More than [`MAX_MOUNTS`].
    #[error("more than {MAX_MOUNTS} mounts")]
    TooMany,
    /// A mount directory given as a relative path.
    #[error("mount '{name}': directory '{dir}' is not an absolute path")]
    NotAbsolute {
        /// The mount.
        name: String,
        /// The directory as written.
        dir: String,
    },
    /// A mount directory that cannot be used.
    #[error("mount '{name}': directory '{dir}': {reason}")]
    BadDirectory {
        /// The mount.
        name: String,
        /// The directory as written.
        dir: String,
        /// What is wrong (missing, not a directory, the OS error).
        reason: String,
    },
    /// A file input that is an absolute path instead of naming a mount.
    #[error("file inputs must name a mount, file://<mount>/<relative path>: absolute paths are refused ({known})")]
    AbsolutePath {
        /// The mounts there are, for the message.
        known: String,
    },
    /// A file URL with user info or a port where the mount name goes.
    #[error("file input: user info and ports are not allowed in file://<mount>/<relative path>")]
    BadAuthority,
    /// A mount name that is not configured.
    #[error("file input names unknown mount '{name}' ({known})")]
    UnknownMount {
        /// The name as written.
        name: String,
        /// The mounts there are, for the message.
        known: String,
    },
    /// Nothing after `file://<mount>/`.
    #[error("file input names mount '{name}' but no file in it")]
    NoPath {
        /// The mount.
        name: String,
    },
    /// A `%` not followed by two hex digits, or an encoded NUL byte.
    #[error("file input: bad percent escape in the path")]
    BadEscape,
    /// A `..` component.
    #[error("file input: '..' is not allowed in a path under a mount")]
    DotDot,
    /// The path (through a symlink) leads out of its mount.
    #[error("file input: '{path}' leads out of mount '{name}' through a symlink")]
    Escapes {
        /// The path under the mount, as written.
        path: String,
        /// The mount.
        name: String,
    },
    /// A symlink on the path that resolves to nothing, or another error
    /// while following the path.
    #[error("file input: cannot resolve '{path}' in mount '{name}': {reason}")]
    Unresolvable {
        /// The path under the mount, as written.
        path: String,
        /// The mount.
        name: String,
        /// The OS error.
        reason: String,
    },
}

impl Mounts {
    /// No mounts: every file input is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds mount `name` at `dir`, which must be an absolute path to an
    /// existing directory; the root kept is its canonical form.
    pub fn insert(&mut self, name: &str, dir: &Path) -> Result<(), MountError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_MOUNT_NAME
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && name != "localhost";
        if !valid {
            return Err(MountError::BadName { name: shown(name) });
        }
        if self.roots.contains_key(name) {
            return Err(MountError::Duplicate { name: name.to_owned() });
        }
        if self.roots.len() >= MAX_MOUNTS {
            return Err(MountError::TooMany);
        }
        let shown_dir = shown(&dir.to_string_lossy());
        if !dir.is_absolute() {
            return Err(MountError::NotAbsolute { name: name.to_owned(), dir: shown_dir });
        }
        let bad = |reason: String| MountError::BadDirectory { name: name.to_owned(), dir: shown_dir.clone(), reason };
        let root = dir.canonicalize().map_err(|e| bad(io_reason(&e)))?;
        let meta = root.metadata().map_err(|e| bad(io_reason(&e)))?;
        if !meta.is_dir() {
            return Err(bad("not a directory".to_owned()));
        }
        self.roots.insert(name.to_owned(), root);
        Ok(())
    }

    /// The canonical root of mount `name`.
    pub fn get(&self, name: &str) -> Option<&Path> {
        self.roots.get(name).map(PathBuf::as_path)
    }

    /// Mount names and roots, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.roots.iter().map(|(n, p)| (n.as_str(), p.as_path()))
    }

    /// Number of mounts.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// "mounts: a, b" or "no mounts are configured", for messages.
    pub(super) fn known(&self) -> String {
        if self.roots.is_empty() {
            "no mounts are configured".to_owned()
        } else {
            format!("mounts: {}", self.roots.keys().map(String::as_str).collect::<Vec<_>>().join(", "))
        }
    }
}

/// Resolves `file://<mount>/<relative path>` (query and fragment ignored:
/// the caller parses the options) to a path under that mount's root.
///
/// Refuses `file:///abs`, `file://localhost/abs` and anything without
/// `file://` (a plain path) as absolute, a `..` component, and a path that
/// leaves the mount through a symlink. The path need not exist (see the
/// module doc); the part that exists is canonicalized, so the result holds
/// no symlink that existed at the time of the call.
pub fn resolve_in_mount(mounts: &Mounts, url: &str) -> Result<PathBuf, MountError> {
    let rest = match url.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("file://") => &url[7..],
        _ => return Err(MountError::AbsolutePath { known: mounts.known() }),
    };
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let (authority, relative) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() || authority.eq_ignore_ascii_case("localhost") {
        return Err(MountError::AbsolutePath { known: mounts.known() });
    }
    if authority.contains(['@', ':']) {
        return Err(MountError::BadAuthority);
    }
    let Some(root) = mounts.get(authority) else {
        return Err(MountError::UnknownMount { name: shown(authority), known: mounts.known() });
    };
    let decoded = percent_decode(relative).ok_or(MountError::BadEscape)?;
    let relative = Path::new(OsStr::from_bytes(&decoded));
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(MountError::DotDot),
            // `file://media//etc/passwd`: joining would replace the root.
            Component::RootDir | Component::Prefix(_) => {
                return Err(MountError::AbsolutePath { known: mounts.known() });
            }
        }
    }
    if parts.is_empty() {
        return Err(MountError::NoPath { name: authority.to_owned() });
    }
    let shown_path = || shown(&relative.to_string_lossy());
    // Follow the part of the path that exists, one component at a time, so
    // a symlink anywhere on it is seen; what does not exist yet holds none.
    let mut resolved = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        let next = resolved.join(part);
        match next.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => {
                resolved = next.canonicalize().map_err(|e| MountError::Unresolvable {
                    path: shown_path(),
                    name: authority.to_owned(),
                    reason: io_reason(&e),
                })?;
                if !resolved.starts_with(root) {
                    return Err(MountError::Escapes { path: shown_path(), name: authority.to_owned() });
                }
            }
            Ok(_) => resolved = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                resolved = next;
                resolved.extend(&parts[i + 1..]);
                break;
            }
            Err(e) => {
                return Err(MountError::Unresolvable {
                    path: shown_path(),
                    name: authority.to_owned(),
                    reason: io_reason(&e),
                });
            }
        }
    }
    Ok(resolved)
}

/// `%XX` decoded to bytes; `None` for a bad escape or a NUL byte (which no
/// path may hold).
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            // Two hex digits: both the UTF-8 and the radix parse succeed.
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(Some(value).filter(|&v| v != 0)?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// An I/O error as a short reason, without the "(os error N)" noise.
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "does not exist".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        kind => shown(&kind.to_string()),
    }
}
