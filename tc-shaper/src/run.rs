//! Running [`TcCommand`]s: stdin closed, stdout discarded, stderr kept in the error.

use std::process::Stdio;

use tracing::debug;

use crate::command::TcCommand;
use crate::error::ShapingError;

/// Most characters of stderr kept in an error.
const MAX_STDERR: usize = 512;

impl TcCommand {
    /// Runs the command; stderr is kept in the error. A removal marked
    /// [`TcCommand::tolerant`] whose object is already gone succeeds.
    pub async fn run(&self) -> Result<(), ShapingError> {
        debug!(command = %self, "running");
        let out = tokio::process::Command::new(self.program())
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| ShapingError::Spawn {
                command: self.display(),
                source: e,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr: String = String::from_utf8_lossy(&out.stderr)
            .trim()
            .chars()
            .take(MAX_STDERR)
            .collect();
        if self.ignores_missing() && is_missing_error(&stderr) {
            return Ok(());
        }
        Err(ShapingError::Failed {
            command: self.display(),
            status: out.status,
            stderr,
        })
    }
}

/// Whether a tc/ip error means "the thing to remove is not there".
pub fn is_missing_error(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("cannot find device")
        || s.contains("no such device")
        || s.contains("handle of zero")
        || s.contains("cannot delete qdisc with handle of zero")
        || s.contains("invalid handle")
        || s.contains("no such file or directory")
        || s.contains("does not exist")
}

/// Runs commands in order, stopping at the first failure.
pub async fn run_all(cmds: &[TcCommand]) -> Result<(), ShapingError> {
    for c in cmds {
        c.run().await?;
    }
    Ok(())
}

/// Runs every command, returning all failures (for cleanup: one failure must not leave the
/// rest in place).
pub async fn run_each(cmds: &[TcCommand]) -> Vec<ShapingError> {
    let mut errs = Vec::new();
    for c in cmds {
        if let Err(e) = c.run().await {
            errs.push(e);
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Moved from adapter-client's shaping.
    #[test]
    fn missing_errors_recognised() {
        for s in [
            "Cannot find device \"tunac7\"",
            "Error: Cannot delete qdisc with handle of zero.",
            "RTNETLINK answers: No such file or directory",
        ] {
            assert!(is_missing_error(s), "{s}");
        }
        assert!(!is_missing_error(
            "RTNETLINK answers: Operation not permitted"
        ));
    }

    /// Moved from adapter-client's shaping.
    #[tokio::test]
    async fn failing_command_keeps_stderr() {
        let c = TcCommand::new(Path::new("sh"), &["-c", "echo boom >&2; exit 3"]);
        match c.run().await {
            Err(ShapingError::Failed {
                stderr,
                command,
                status,
            }) => {
                assert_eq!(stderr, "boom");
                assert!(command.starts_with("sh -c"));
                assert_eq!(status.code(), Some(3));
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let tolerant = TcCommand::new(
            Path::new("sh"),
            &["-c", "echo 'Cannot find device' >&2; exit 1"],
        )
        .tolerant();
        assert!(tolerant.run().await.is_ok());
    }

    /// A missing program is a spawn error that keeps its io::Error source; stderr is
    /// bounded; `run_all` stops at the first failure and `run_each` runs everything.
    #[tokio::test]
    async fn spawn_errors_bounds_and_sequencing() {
        use std::error::Error as _;
        let missing = TcCommand::new(Path::new("/nonexistent/tc-xyz"), &["qdisc"]);
        match missing.run().await {
            Err(e @ ShapingError::Spawn { .. }) => {
                assert!(e.source().is_some(), "{e:?}");
                assert!(e.to_string().contains("/nonexistent/tc-xyz qdisc"), "{e}");
            }
            other => panic!("expected a spawn error, got {other:?}"),
        }
        let noisy = TcCommand::new(
            Path::new("sh"),
            &["-c", "head -c 5000 /dev/zero | tr '\\0' x >&2; exit 1"],
        );
        match noisy.run().await {
            Err(ShapingError::Failed { stderr, .. }) => assert_eq!(stderr.len(), MAX_STDERR),
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().expect("tmp");
        let mark = dir.path().join("ran");
        let touch = TcCommand::new(Path::new("touch"), &[mark.to_str().expect("utf-8")]);
        let fail = TcCommand::new(Path::new("false"), &[]);
        assert!(run_all(&[fail.clone(), touch.clone()]).await.is_err());
        assert!(!mark.exists(), "run_all went on after a failure");
        let errs = run_each(&[fail.clone(), touch, fail]).await;
        assert_eq!(errs.len(), 2);
        assert!(mark.exists(), "run_each stopped at a failure");
    }
}
