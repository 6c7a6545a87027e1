//! The supervisor's vocabulary: configuration, events in, actions out,
//! and the status it reports. The rules are in the parent module.

use std::time::Duration;

/// Timing of one stream's supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// No data for this long degrades an input.
    pub input_timeout: Duration,
    /// A higher-priority input must deliver data this long before failback.
    pub failback_after: Duration,
    /// First retry wait after a failure.
    pub backoff_min: Duration,
    /// Longest retry wait.
    pub backoff_max: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            input_timeout: Duration::from_secs(3),
            failback_after: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// What the shell reports. Events naming an input out of range, or that do
/// not fit the input's state (stale), are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The open asked for by [`Action::Open`] succeeded.
    Opened {
        /// Input index.
        input: usize,
    },
    /// The open failed; `permanent` takes the input out of rotation.
    OpenFailed {
        /// Input index.
        input: usize,
        /// The failure will not go away by retrying (e.g. HTTP 404).
        permanent: bool,
    },
    /// The input delivered data.
    Data {
        /// Input index.
        input: usize,
    },
    /// The open input failed and is closed by the shell.
    Failed {
        /// Input index.
        input: usize,
        /// The failure will not go away by retrying.
        permanent: bool,
    },
    /// The open input reached a clean end of data (EOF) and is closed.
    Ended {
        /// Input index.
        input: usize,
    },
    /// The operator asks for this input.
    ManualSwitch {
        /// Input index.
        input: usize,
    },
    /// A new input was inserted at this priority position; later ones shift.
    InputAdded {
        /// Position of the new input (clamped to the end).
        at: usize,
    },
    /// The input was removed; later ones shift down.
    InputRemoved {
        /// Input index.
        input: usize,
    },
    /// A deadline from [`Supervisor::next_deadline`](super::Supervisor::next_deadline) passed.
    Tick,
}

/// What the shell must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open the input's reader (then report `Opened` or `OpenFailed`).
    Open {
        /// Input index.
        input: usize,
    },
    /// Close the input's reader (or cancel its pending open).
    Close {
        /// Input index.
        input: usize,
    },
    /// Outputs now take this input's data.
    Activate {
        /// Input index.
        input: usize,
        /// Why the switch happened.
        reason: SwitchReason,
    },
}

/// Why the active input changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchReason {
    /// The first activation of the stream.
    Start,
    /// The previous input failed (permanently, or transiently without data
    /// coming back within `input_timeout`).
    Error,
    /// The previous input delivered no data for `input_timeout`.
    Timeout,
    /// The previous input reached a clean end of data.
    Ended,
    /// A higher-priority input was healthy for `failback_after`.
    Failback,
    /// The operator asked for it.
    Manual,
    /// A newly added input took over.
    InputAdded,
    /// The previous input was removed.
    InputRemoved,
}

/// One change of the active input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch {
    /// When it happened.
    pub at: Duration,
    /// The previous active input, if it still existed.
    pub from: Option<usize>,
    /// The new active input.
    pub to: usize,
    /// Why.
    pub reason: SwitchReason,
}

/// Lifecycle state of one input (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputState {
    /// Not open; may be opened at once.
    Closed,
    /// Open asked for, not yet answered.
    Opening,
    /// Open.
    Open,
    /// Not open; not reopened before `until`.
    Backoff {
        /// Earliest retry.
        until: Duration,
    },
    /// Clean end of data; out of rotation.
    Ended,
    /// Permanent failure; out of rotation.
    Failed,
}

/// A snapshot of one input for the status API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputHealth {
    /// Lifecycle state.
    pub state: InputState,
    /// Successful opens.
    pub opens_total: u64,
    /// Failed opens, failures and timeouts.
    pub failures_total: u64,
    /// Last data, if any.
    pub last_data: Option<Duration>,
    /// Start of the current run of data without a gap of `input_timeout`.
    pub healthy_since: Option<Duration>,
    /// When it last failed or timed out, until data comes again.
    pub degraded_since: Option<Duration>,
    /// Earliest retry while in backoff.
    pub next_retry: Option<Duration>,
}
