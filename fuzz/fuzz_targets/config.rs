//! Arbitrary text through `config::parse`.
//!
//! Layout: the input is the config text (not UTF-8: skipped, `parse` takes
//! `&str`; `load` refuses such files with a line number before parsing).
//!
//! Checks: no panic; an error is one line (no control character) that starts
//! with `config fuzz.toml:` and, when it has a line, names one inside the
//! text; an accepted config holds its invariants: at most MAX_STREAMS
//! streams, ids of `[a-z0-9_-]{1,64}` and distinct, 1..=MAX_INPUTS inputs
//! and at most MAX_OUTPUTS outputs each, timeouts in range, every file input
//! under the root of a configured mount, at most one stdout output, shards
//! in range, a token of the allowed length; and parsing the same text again
//! gives the same config.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use uringest::config::{
    FAILBACK_AFTER_RANGE, INPUT_TIMEOUT_RANGE, MAX_ID_LEN, MAX_INPUTS, MAX_OUTPUTS, MAX_SHARDS, MAX_STREAMS,
    TOKEN_LEN, parse,
};
use uringest::output::spec::OutputSpec;
use uringest::url::InputSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let config = match parse(text, "fuzz.toml") {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "control character in error: {msg:?}");
            assert!(msg.starts_with("config fuzz.toml"), "{msg}");
            if let Some(line) = e.line() {
                assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "line {line} outside the text: {msg}");
            }
            return;
        }
        Ok(config) => config,
    };
    let node = &config.node;
    assert!(node.shards.is_none_or(|n| (1..=MAX_SHARDS).contains(&n)));
    if let Some(token) = &node.token {
        let len = token.as_str().chars().count();
        assert!((TOKEN_LEN.0..=TOKEN_LEN.1).contains(&len));
        assert!(!format!("{token:?}").contains(token.as_str()), "Debug shows the token");
    }
    for (name, root) in node.mounts.iter() {
        assert!(!name.is_empty() && root.is_absolute() && root.is_dir());
    }
    assert!(config.streams.len() <= MAX_STREAMS);
    let mut ids = HashSet::new();
    let mut stdouts = 0;
    for s in &config.streams {
        assert!(!s.id.is_empty() && s.id.len() <= MAX_ID_LEN);
        assert!(s.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'));
        assert!(ids.insert(s.id.clone()), "duplicate id {}", s.id);
        assert!((1..=MAX_INPUTS).contains(&s.inputs.len()));
        assert!(s.outputs.len() <= MAX_OUTPUTS);
        let t = s.input_timeout.as_secs_f64();
        assert!(t >= INPUT_TIMEOUT_RANGE.0 - 1e-9 && t <= INPUT_TIMEOUT_RANGE.1 + 1e-9);
        let f = s.failback_after.as_secs_f64();
        assert!(f >= FAILBACK_AFTER_RANGE.0 && f <= FAILBACK_AFTER_RANGE.1 + 1e-9);
        for input in &s.inputs {
            if let InputSpec::File { path, .. } = input {
                assert!(node.mounts.iter().any(|(_, root)| path.starts_with(root)), "{path:?} outside every mount");
            }
        }
        stdouts += s.outputs.iter().filter(|o| **o == OutputSpec::Stdout).count();
    }
    assert!(stdouts <= 1);
    assert_eq!(parse(text, "fuzz.toml").ok().as_ref(), Some(&config), "second parse differs");
});
