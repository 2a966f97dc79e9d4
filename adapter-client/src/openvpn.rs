//! The `openvpn` child process: argv builder ([`OpenVpnCommand`]) and spawning with its
//! output forwarded to the log (the last lines kept for error reports).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use openvpn_mgmt::ReadItem;
use tokio::io::BufReader;
use tokio::process::{Child, Command};

/// Lines of OpenVPN output kept for error reports.
pub const TAIL_LINES: usize = 20;

/// Builds the `openvpn` command line. Everything that matters is in the config file the
/// renderer wrote; the command line only points at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenVpnCommand {
    program: PathBuf,
    config: PathBuf,
    cd: Option<PathBuf>,
}

impl OpenVpnCommand {
    pub fn new(program: &Path, config: &Path) -> Self {
        Self {
            program: program.to_path_buf(),
            config: config.to_path_buf(),
            cd: None,
        }
    }
    /// `--cd DIR`: OpenVPN changes to DIR before reading the config.
    pub fn cd(mut self, dir: &Path) -> Self {
        self.cd = Some(dir.to_path_buf());
        self
    }
    pub fn program(&self) -> &Path {
        &self.program
    }
    pub fn args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(d) = &self.cd {
            v.push("--cd".to_string());
            v.push(d.display().to_string());
        }
        v.push("--config".to_string());
        v.push(self.config.display().to_string());
        // Our log lines carry timestamps already.
        v.push("--suppress-timestamps".to_string());
        v
    }

    /// Starts the child with stdout/stderr piped into the log. The child is killed if the
    /// handle is dropped.
    pub fn spawn(&self) -> Result<(Child, OutputTail), std::io::Error> {
        let mut child = Command::new(&self.program)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let tail = OutputTail::default();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(BufReader::new(out), tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(BufReader::new(err), tail.clone()));
        }
        Ok((child, tail))
    }
}

/// The last [`TAIL_LINES`] lines of the child's output.
#[derive(Debug, Clone, Default)]
pub struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    fn push(&self, line: String) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() == TAIL_LINES {
                q.pop_front();
            }
            q.push_back(line);
        }
    }
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Forwards OpenVPN's output, line by line, with the management socket's bounded reader
/// (a line over its limit, or an unfinished last line, is noted instead of kept).
async fn forward<R: tokio::io::AsyncBufRead + Unpin>(r: R, tail: OutputTail) {
    let mut r = openvpn_mgmt::LineReader::new(r);
    while let Ok(Some(item)) = r.next().await {
        let line = match item {
            ReadItem::Line(l) => l.trim_end().to_string(),
            ReadItem::TooLong { len } => format!("[an output line of {len} bytes was dropped]"),
            ReadItem::Unterminated { len } => {
                format!("[an unfinished last output line of {len} bytes was dropped]")
            }
        };
        tracing::debug!(target: "openvpn", "{line}");
        tail.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv() {
        let c = OpenVpnCommand::new(
            Path::new("/usr/sbin/openvpn"),
            Path::new("/run/x/client.conf"),
        );
        assert_eq!(c.program(), Path::new("/usr/sbin/openvpn"));
        assert_eq!(
            c.args(),
            ["--config", "/run/x/client.conf", "--suppress-timestamps"]
        );
        let c = c.cd(Path::new("/run/x"));
        assert_eq!(
            c.args(),
            [
                "--cd",
                "/run/x",
                "--config",
                "/run/x/client.conf",
                "--suppress-timestamps"
            ]
        );
    }

    #[tokio::test]
    async fn spawn_keeps_output_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        let script = dir.path().join("fake");
        std::fs::write(
            &script,
            "#!/bin/sh\nfor i in $(seq 1 30); do echo line$i; done\necho err >&2\nexit 3\n",
        )
        .expect("write");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let (mut child, tail) = OpenVpnCommand::new(&script, Path::new("/nonexistent"))
            .spawn()
            .expect("spawn");
        let st = child.wait().await.expect("wait");
        assert_eq!(st.code(), Some(3));
        // The forwarders finish shortly after the pipes close: poll with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let l = tail.lines();
            if l.len() == TAIL_LINES
                && l.contains(&"err".to_string())
                && l.contains(&"line30".to_string())
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "tail: {l:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
