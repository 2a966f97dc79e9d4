//! The one error type of shaping.

use std::process::ExitStatus;

/// Errors of building or running shaping commands.
#[derive(Debug, thiserror::Error)]
pub enum ShapingError {
    #[error("invalid rate {0:?}: expected e.g. 1gbit, 100mbit, 512kbit, 1000000bit")]
    BadRate(String),
    #[error("device name {0:?} invalid (1..=15 chars of [A-Za-z0-9_.-])")]
    BadDevice(String),
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        /// The command's stderr, trimmed, at most 512 characters.
        stderr: String,
    },
    #[error("all {0} shaping slots are in use (raise --max-clients)")]
    NoSlot(u32),
}
