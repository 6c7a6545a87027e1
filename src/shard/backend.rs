//! Which I/O backend the shards run: io_uring, or tokio's epoll reactor.
//!
//! io_uring is often missing where uringest runs: old kernels, and container
//! seccomp profiles that forbid `io_uring_setup`. [`detect`] probes once at
//! start for what the receive path needs (a ring, multishot `recvmsg`,
//! provided-buffer rings, reads) and picks epoll when any of it is missing.
//! Behaviour is the same on both; the backend in use is logged and reported.

use std::fmt;
use std::str::FromStr;

use io_uring::{IoUring, opcode};
use thiserror::Error;

use super::bufring::BufRing;

/// The backend the shards run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// tokio-uring runtimes; UDP through multishot recvmsg and a
    /// provided-buffer ring.
    Uring,
    /// Plain tokio (epoll) runtimes; UDP through `recvmmsg`.
    Epoll,
}

impl Backend {
    /// Lower-case name, as logged and reported.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the operator asked for (`--io`, or `URINGEST_BACKEND`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring when it works, else epoll.
    #[default]
    Auto,
    /// io_uring or fail.
    Uring,
    /// epoll.
    Epoll,
}

impl FromStr for IoChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(IoChoice::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(IoChoice::Uring),
            "epoll" => Ok(IoChoice::Epoll),
            other => Err(format!("unknown I/O backend '{other}' (expected auto, uring or epoll)")),
        }
    }
}

/// io_uring was asked for and cannot be used.
#[derive(Debug, Error)]
#[error("io_uring backend unavailable: {0}")]
pub struct BackendError(pub String);

/// Picks the backend for `choice`, probing io_uring unless epoll is asked
/// for. The environment variable `URINGEST_BACKEND` (auto, uring, epoll)
/// overrides `Auto`, so a whole test suite can run on either.
pub fn detect(choice: IoChoice) -> Result<Backend, BackendError> {
    let choice = match (choice, std::env::var("URINGEST_BACKEND").ok()) {
        (IoChoice::Auto, Some(env)) => env.parse().map_err(BackendError)?,
        (choice, _) => choice,
    };
    match choice {
        IoChoice::Epoll => Ok(Backend::Epoll),
        IoChoice::Uring => probe_uring().map(|()| Backend::Uring).map_err(BackendError),
        IoChoice::Auto => match probe_uring() {
            Ok(()) => Ok(Backend::Uring),
            Err(why) => {
                tracing::info!("io_uring unavailable ({why}); using epoll");
                Ok(Backend::Epoll)
            }
        },
    }
}

/// Checks that a ring can be made and supports what the receive path uses.
fn probe_uring() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| format!("cannot probe opcodes: {e}"))?;
    let needed = [
        (opcode::RecvMsgMulti::CODE, "multishot recvmsg"),
        (opcode::Read::CODE, "read"),
        (opcode::AsyncCancel::CODE, "cancel"),
    ];
    if let Some((_, name)) = needed.iter().find(|(code, _)| !probe.is_supported(*code)) {
        return Err(format!("kernel lacks {name}"));
    }
    let mut bufring =
        BufRing::register(&ring.submitter(), 8, 0).map_err(|e| format!("no provided-buffer rings: {e}"))?;
    bufring.unregister(&ring.submitter()).map_err(|e| format!("cannot unregister a buffer ring: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_errors_name_the_value() {
        assert_eq!("Auto".parse::<IoChoice>(), Ok(IoChoice::Auto));
        assert_eq!("io_uring".parse::<IoChoice>(), Ok(IoChoice::Uring));
        assert_eq!("epoll".parse::<IoChoice>(), Ok(IoChoice::Epoll));
        assert!("kqueue".parse::<IoChoice>().unwrap_err().contains("'kqueue'"));
    }

    #[test]
    fn epoll_is_always_available() {
        assert_eq!(detect(IoChoice::Epoll).unwrap(), Backend::Epoll);
    }
}
