//! External programs of the DNS and kill-switch code (`resolvectl`, `nft`) behind a small
//! builder: the argument list (and the text fed on stdin) is data that unit tests check
//! without running anything; running keeps stderr in the error.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long one command may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// One command line, optionally with text on its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub stdin: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {} s", TOOL_TIMEOUT.as_secs())]
    Timeout { command: String },
}

impl ToolError {
    /// The program's stderr, when it ran and failed.
    pub fn stderr(&self) -> &str {
        match self {
            Self::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

impl ToolCommand {
    pub fn new(program: &Path, args: &[&str]) -> Self {
        Self {
            program: program.to_path_buf(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
            stdin: None,
        }
    }

    pub fn with_stdin(mut self, text: String) -> Self {
        self.stdin = Some(text);
        self
    }

    /// `program arg…` for messages.
    pub fn display(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn failed(&self, status: std::process::ExitStatus, stderr: &[u8]) -> ToolError {
        let text = String::from_utf8_lossy(stderr);
        ToolError::Failed {
            command: self.display(),
            status: status.to_string(),
            stderr: text.trim().chars().take(2000).collect(),
        }
    }

    /// Runs it and returns its stdout.
    pub async fn run(&self) -> Result<String, ToolError> {
        use tokio::io::AsyncWriteExt;
        let spawn_err = |e| ToolError::Spawn {
            command: self.display(),
            source: e,
        };
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(text), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.map_err(spawn_err)?;
        }
        let out = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| ToolError::Timeout {
                command: self.display(),
            })?
            .map_err(spawn_err)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failed(out.status, &out.stderr))
        }
    }

    /// The same without an async runtime (cleanup in `Drop` and at start-up).
    pub fn run_blocking(&self) -> Result<String, ToolError> {
        use std::io::Write;
        let spawn_err = |e| ToolError::Spawn {
            command: self.display(),
            source: e,
        };
        let mut child = std::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(text), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failed(out.status, &out.stderr))
        }
    }
}

/// Whether `program` can be run: a path with a `/` must be executable, a bare name must be
/// found in `PATH`.
pub fn available(program: &Path) -> bool {
    crate::connect::find_program(program).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_with_stdin_and_keeps_stderr() {
        let sh = Path::new("sh");
        let out = ToolCommand::new(sh, &["-c", "cat"])
            .with_stdin("hello\n".into())
            .run()
            .await
            .expect("cat");
        assert_eq!(out, "hello\n");
        let err = ToolCommand::new(sh, &["-c", "echo oops >&2; exit 3"])
            .run()
            .await
            .expect_err("fails");
        assert_eq!(err.stderr(), "oops");
        assert!(err.to_string().contains("exit status: 3"), "{err}");
        let out = ToolCommand::new(sh, &["-c", "echo hi"])
            .run_blocking()
            .expect("echo");
        assert_eq!(out, "hi\n");
        assert!(matches!(
            ToolCommand::new(Path::new("/nonexistent/prog"), &[]).run_blocking(),
            Err(ToolError::Spawn { .. })
        ));
    }
}
