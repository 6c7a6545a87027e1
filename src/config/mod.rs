//! The `serve` configuration: a TOML file checked into a typed [`Config`]
//! before anything starts.
//!
//! ```toml
//! [node]
//! listen = "127.0.0.1:8080"   # default; any other address is reachable from outside
//! shards = 2                  # default: one per usable core
//! io = "auto"                 # auto | uring | epoll
//! token = "at-least-16-chars" # optional; mutating API calls then need it
//! [node.mounts]
//! media = "/srv/media"        # file inputs read only from here
//!
//! [[stream]]
//! id = "news"
//! inputs = ["udp://239.1.1.1:5000", "file://media/backup.ts?loop=true&pace=pcr"]
//! outputs = ["udp://239.2.2.2:5000?ttl=4"]
//! input_timeout = 3.0         # seconds (default 3)
//! failback_after = 10.0       # seconds (default 10)
//! ```
//!
//! Every refusal is one line, `config FILE:LINE: problem`, with the line of
//! the offending value (or key, for an unknown key). Input URLs go through
//! [`parse_input`], outputs through [`parse_output`]; file inputs must name
//! a mount ([`mount`] says what is checked when). Unknown keys are refused,
//! so a typo never silently falls back to a default.
//!
//! What it does not: start anything, or check that a UDP interface or an
//! input file exists (opening does). Mount directories are checked on the
//! filesystem here, so [`parse`] reads file metadata.
//!
//! Invariants of an accepted [`Config`]: at most [`MAX_STREAMS`] streams,
//! ids valid and distinct, 1 to [`MAX_INPUTS`] inputs and at most
//! [`MAX_OUTPUTS`] outputs each, timeouts in their ranges, every file input
//! under a mount root, at most one stdout output in the whole node.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::output::spec::{OutputSpec, parse_output};
use crate::shard::backend::IoChoice;
use crate::url::{InputSpec, check_stream_id, parse_input, shown};

pub mod mount;
pub use mount::{MAX_MOUNTS, MountError, Mounts, resolve_in_mount};

/// Largest config file read, in bytes (1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Most streams one config holds.
pub const MAX_STREAMS: usize = 1024;
/// Most inputs (failover order) one stream takes.
pub const MAX_INPUTS: usize = 16;
/// Most outputs one stream takes.
pub const MAX_OUTPUTS: usize = 64;
pub use crate::url::MAX_ID_LEN;
/// Longest input or output URL (PATH_MAX).
pub const MAX_URL_LEN: usize = 4096;
/// Most shards.
pub const MAX_SHARDS: usize = 1024;
/// Shortest and longest API token, in characters.
pub const TOKEN_LEN: (usize, usize) = (16, 256);
/// Default HTTP listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `input_timeout`: how long an input may be silent before the
/// supervisor fails over.
pub const DEFAULT_INPUT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `failback_after`: how long a higher-priority input must be
/// healthy again before the supervisor returns to it.
pub const DEFAULT_FAILBACK_AFTER: Duration = Duration::from_secs(10);
/// Accepted `input_timeout`, seconds.
pub const INPUT_TIMEOUT_RANGE: (f64, f64) = (0.1, 3600.0);
/// Accepted `failback_after`, seconds (0: fail back at once).
pub const FAILBACK_AFTER_RANGE: (f64, f64) = (0.0, 86_400.0);

/// A checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `[node]`.
    pub node: NodeConfig,
    /// `[[stream]]`, in file order.
    pub streams: Vec<StreamConfig>,
}

/// Node settings (`[node]`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// HTTP API address; [`DEFAULT_LISTEN`] unless told otherwise.
    pub listen: SocketAddr,
    /// Shard count; `None`: one per usable core.
    pub shards: Option<usize>,
    /// I/O backend asked for.
    pub io: IoChoice,
    /// API token; with one, every mutating call needs it.
    pub token: Option<ApiToken>,
    /// Where file inputs may read from.
    pub mounts: Mounts,
}

/// One stream (`[[stream]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamConfig {
    /// `[a-z0-9_-]{1,64}`, unique in the node.
    pub id: String,
    /// Inputs in failover order (the first is the main); file inputs hold
    /// the path resolved under their mount.
    pub inputs: Vec<InputSpec>,
    /// The input URLs as written, for status and logs.
    pub input_urls: Vec<String>,
    /// Outputs.
    pub outputs: Vec<OutputSpec>,
    /// The output URLs as written.
    pub output_urls: Vec<String>,
    /// Silence after which the supervisor fails over.
    pub input_timeout: Duration,
    /// Health time before the supervisor returns to a better input.
    pub failback_after: Duration,
}

/// The API token. Its `Debug` hides the value, so logging a config does not
/// leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token, to compare with a request's `Authorization: Bearer`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// Why a config was refused; each displays as one line naming the file.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {file}: {reason}")]
    Read {
        /// The file.
        file: String,
        /// The OS error.
        reason: String,
    },
    /// The file is over [`MAX_CONFIG_BYTES`].
    #[error("config {file}: larger than the {MAX_CONFIG_BYTES}-byte limit")]
    TooLarge {
        /// The file.
        file: String,
    },
    /// The text is not a valid config.
    #[error("config {file}:{line}: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line of the offending value.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

impl ConfigError {
    /// The line an [`ConfigError::Invalid`] points at.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = shown(&path.to_string_lossy());
    let read_err = |e: std::io::Error| ConfigError::Read { file: file.clone(), reason: shown(&e.to_string()) };
    let handle = std::fs::File::open(path).map_err(read_err)?;
    if handle.metadata().map_err(read_err)?.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { file });
    }
    // Bounded again while reading: a FIFO or a growing file has no size.
    let mut bytes = Vec::new();
    handle.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { file });
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            let line = line_of(&bytes, e.valid_up_to());
            return Err(ConfigError::Invalid { file, line, problem: "not valid UTF-8".to_owned() });
        }
    };
    parse_named(text, file)
}

/// Checks config `text`; `name` stands for the file in messages.
pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
    parse_named(text, shown(name))
}

fn parse_named(text: &str, file: String) -> Result<Config, ConfigError> {
    let at = |span: Range<usize>, problem: String| ConfigError::Invalid {
        file: file.clone(),
        line: line_of(text.as_bytes(), span.start),
        problem: shown(&problem),
    };
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { file });
    }
    let raw: RawConfig = toml::from_str(text).map_err(|e| at(e.span().unwrap_or(0..0), e.message().to_owned()))?;
    let node = check_node(raw.node).map_err(|(span, problem)| at(span, problem))?;
    let streams = check_streams(raw.stream, &node.mounts, text).map_err(|(span, problem)| at(span, problem))?;
    Ok(Config { node, streams })
}

/// A problem and where it is.
type Located = (Range<usize>, String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    stream: Vec<Spanned<RawStream>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    listen: Option<Spanned<String>>,
    shards: Option<Spanned<i64>>,
    io: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    #[serde(default)]
    mounts: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    id: Spanned<String>,
    inputs: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    outputs: Vec<Spanned<String>>,
    input_timeout: Option<Spanned<f64>>,
    failback_after: Option<Spanned<f64>>,
}

fn check_node(raw: RawNode) -> Result<NodeConfig, Located> {
    let listen = match raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(l) => l.get_ref().parse().map_err(|_| {
            (l.span(), format!("bad listen address '{}': expected ip:port, e.g. 127.0.0.1:8080", l.get_ref()))
        })?,
    };
    let shards = match raw.shards {
        None => None,
        Some(s) => match usize::try_from(*s.get_ref()) {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => Some(n),
            _ => return Err((s.span(), format!("shards = {}: expected 1..={MAX_SHARDS}", s.get_ref()))),
        },
    };
    let io = match raw.io {
        None => IoChoice::Auto,
        Some(io) => io.get_ref().parse().map_err(|e| (io.span(), e))?,
    };
    let token = match raw.token {
        None => None,
        Some(t) => {
            let len = t.get_ref().chars().count();
            if !(TOKEN_LEN.0..=TOKEN_LEN.1).contains(&len) {
                // The token itself is never echoed.
                return Err((
                    t.span(),
                    format!("token: {len} characters, expected {} to {}", TOKEN_LEN.0, TOKEN_LEN.1),
                ));
            }
            if !t.get_ref().bytes().all(|b| b.is_ascii_graphic()) {
                return Err((t.span(), "token: only printable ASCII without spaces is allowed".to_owned()));
            }
            Some(ApiToken(t.into_inner()))
        }
    };
    let mut mounts = Mounts::new();
    // In file order, so the first bad one is the one reported.
    let mut raw_mounts: Vec<_> = raw.mounts.iter().collect();
    raw_mounts.sort_by_key(|(_, dir)| dir.span().start);
    for (name, dir) in raw_mounts {
        mounts.insert(name, Path::new(dir.get_ref())).map_err(|e| (dir.span(), e.to_string()))?;
    }
    Ok(NodeConfig { listen, shards, io, token, mounts })
}

fn check_streams(raw: Vec<Spanned<RawStream>>, mounts: &Mounts, text: &str) -> Result<Vec<StreamConfig>, Located> {
    if let Some(extra) = raw.get(MAX_STREAMS) {
        return Err((extra.span(), format!("more than {MAX_STREAMS} streams")));
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    // Where the node's one stdout output is, if any: (stream id).
    let mut stdout: Option<String> = None;
    let mut streams = Vec::with_capacity(raw.len());
    for stream in raw {
        let stream = stream.into_inner();
        let id_span = stream.id.span();
        let id = stream.id.into_inner();
        check_id(&id).map_err(|e| (id_span.clone(), e))?;
        if let Some(first) = ids.get(&id) {
            return Err((id_span, format!("stream id '{id}' already used (line {first})")));
        }
        let inputs_span = stream.inputs.span();
        let raw_inputs = stream.inputs.into_inner();
        if raw_inputs.is_empty() {
            return Err((inputs_span, format!("stream '{id}' has no inputs")));
        }
        if let Some(extra) = raw_inputs.get(MAX_INPUTS) {
            return Err((extra.span(), format!("stream '{id}' has more than {MAX_INPUTS} inputs")));
        }
        if let Some(extra) = stream.outputs.get(MAX_OUTPUTS) {
            return Err((extra.span(), format!("stream '{id}' has more than {MAX_OUTPUTS} outputs")));
        }
        let mut inputs = Vec::with_capacity(raw_inputs.len());
        for (n, input) in raw_inputs.iter().enumerate() {
            let spec = check_input(input.get_ref(), mounts)
                .map_err(|e| (input.span(), format!("stream '{id}' input {}: {e}", n + 1)))?;
            inputs.push(spec);
        }
        if let Err((n, e)) = check_upstreams(&id, &inputs) {
            return Err((raw_inputs[n].span(), format!("stream '{id}' input {}: {e}", n + 1)));
        }
        let mut outputs = Vec::with_capacity(stream.outputs.len());
        for (n, output) in stream.outputs.iter().enumerate() {
            let located = |e: String| (output.span(), format!("stream '{id}' output {}: {e}", n + 1));
            let spec = check_output(output.get_ref()).map_err(located)?;
            if spec == OutputSpec::Stdout {
                if let Some(other) = &stdout {
                    return Err(located(format!("stdout ('-') is already the output of stream '{other}'")));
                }
                stdout = Some(id.clone());
            }
            outputs.push(spec);
        }
        let input_timeout = seconds(stream.input_timeout, "input_timeout", INPUT_TIMEOUT_RANGE, DEFAULT_INPUT_TIMEOUT)?;
        let failback_after =
            seconds(stream.failback_after, "failback_after", FAILBACK_AFTER_RANGE, DEFAULT_FAILBACK_AFTER)?;
        ids.insert(id.clone(), line_of(text.as_bytes(), id_span.start));
        let input_urls = raw_inputs.into_iter().map(|u| shown(&u.into_inner())).collect();
        let output_urls = stream.outputs.into_iter().map(|u| shown(&u.into_inner())).collect();
        streams.push(StreamConfig { id, inputs, input_urls, outputs, output_urls, input_timeout, failback_after });
    }
    Ok(streams)
}

/// The rules on inputs that read other streams: a stream cannot copy or
/// mix itself, and a mixer is its stream's only input (it ends with its
/// video, and there is nothing to fail over to that would keep the mix).
/// On error, the index of the input at fault.
fn check_upstreams(id: &str, inputs: &[InputSpec]) -> Result<(), (usize, String)> {
    for (n, input) in inputs.iter().enumerate() {
        if input.upstreams().contains(&id) {
            let what = if matches!(input, InputSpec::Mixer(_)) { "mix" } else { "copy" };
            return Err((n, format!("a stream cannot {what} itself")));
        }
        if matches!(input, InputSpec::Mixer(_)) && inputs.len() > 1 {
            return Err((n, "a mixer must be its stream's only input".into()));
        }
    }
    Ok(())
}

/// An input URL checked against the mounts: a file input is resolved under
/// its mount and its options parsed by [`parse_input`] on their own.
fn check_input(text: &str, mounts: &Mounts) -> Result<InputSpec, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes"));
    }
    let is_file = text.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("file://"));
    if !is_file && !text.is_empty() && !text.contains("://") {
        // A plain path: absolute or relative to wherever serve started,
        // outside every mount either way.
        return Err(MountError::AbsolutePath { known: mounts.known() }.to_string());
    }
    if !is_file {
        return parse_input(text).map_err(|e| e.to_string());
    }
    let path = resolve_in_mount(mounts, text).map_err(|e| e.to_string())?;
    // The options (and a fragment, which parse_input refuses) go through
    // the file:// parser with a stand-in path; the resolved one replaces it.
    let after = &text[7..];
    let options = &after[after.find(['?', '#']).unwrap_or(after.len())..];
    match parse_input(&format!("file:///{options}")).map_err(|e| e.to_string())? {
        InputSpec::File { looping, pace, read, filter, .. } => {
            Ok(InputSpec::File { path, looping, pace, read, filter })
        }
        _ => Err("file input parsed as another scheme".to_owned()),
    }
}

/// A duration in seconds from the config, in `range`, or `default`.
fn seconds(value: Option<Spanned<f64>>, key: &str, range: (f64, f64), default: Duration) -> Result<Duration, Located> {
    let Some(value) = value else { return Ok(default) };
    seconds_in(*value.get_ref(), key, range).map_err(|e| (value.span(), e))
}

/// `secs` as a duration if it is in `range`.
fn seconds_in(secs: f64, key: &str, range: (f64, f64)) -> Result<Duration, String> {
    if !(range.0..=range.1).contains(&secs) {
        return Err(format!("{key} = {secs}: expected {} to {} seconds", range.0, range.1));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A stream id: `[a-z0-9_-]{1,64}` ([`check_stream_id`]).
pub fn check_id(id: &str) -> Result<(), String> {
    check_stream_id(id)
}

fn check_output(text: &str) -> Result<OutputSpec, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes"));
    }
    parse_output(text).map_err(|e| e.to_string())
}

/// One stream defined at run time (the API), checked as strictly as one
/// from the file. Stdout is refused: it belongs to the process, not to a
/// stream the API may create.
pub fn check_stream(
    id: &str,
    inputs: &[String],
    outputs: &[String],
    input_timeout: Option<f64>,
    failback_after: Option<f64>,
    mounts: &Mounts,
) -> Result<StreamConfig, String> {
    check_id(id)?;
    let inputs_text = inputs;
    if inputs.is_empty() {
        return Err(format!("stream '{id}' has no inputs"));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(format!("stream '{id}' has more than {MAX_INPUTS} inputs"));
    }
    if outputs.len() > MAX_OUTPUTS {
        return Err(format!("stream '{id}' has more than {MAX_OUTPUTS} outputs"));
    }
    let inputs = (inputs.iter().enumerate())
        .map(|(n, u)| check_input(u, mounts).map_err(|e| format!("stream '{id}' input {}: {e}", n + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    check_upstreams(id, &inputs).map_err(|(n, e)| format!("stream '{id}' input {}: {e}", n + 1))?;
    let mut checked = Vec::with_capacity(outputs.len());
    for (n, text) in outputs.iter().enumerate() {
        let spec = check_output(text).map_err(|e| format!("stream '{id}' output {}: {e}", n + 1))?;
        if spec == OutputSpec::Stdout {
            return Err(format!("stream '{id}' output {}: stdout ('-') is only for the config file", n + 1));
        }
        checked.push(spec);
    }
    let timeout = |v: Option<f64>, key, range, default| v.map_or(Ok(default), |s| seconds_in(s, key, range));
    Ok(StreamConfig {
        id: id.to_owned(),
        inputs,
        input_urls: inputs_text.iter().map(|u| shown(u)).collect(),
        outputs: checked,
        output_urls: outputs.iter().map(|u| shown(u)).collect(),
        input_timeout: timeout(input_timeout, "input_timeout", INPUT_TIMEOUT_RANGE, DEFAULT_INPUT_TIMEOUT)?,
        failback_after: timeout(failback_after, "failback_after", FAILBACK_AFTER_RANGE, DEFAULT_FAILBACK_AFTER)?,
    })
}

/// 1-based line of byte `offset` in `bytes`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests;
