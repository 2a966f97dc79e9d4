//! Long-running processes with captured logs, and polling waits (never fixed sleeps).

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::env::{TestEnv, SCOPE_ENV};
use crate::netns::Netns;

/// How long `Proc`'s drop waits after SIGTERM before SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(10);
/// Lines of each log printed when a test panics while a `Proc` is alive.
const PANIC_TAIL_LINES: usize = 40;
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(100);

/// Polls `cond` (5 ms, growing to 100 ms) until it is true; an error naming `what` when
/// `timeout` passes first.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    wait_for(timeout, what, || Ok(cond().then_some(())))
}

/// Polls `f` until it returns `Ok(Some(v))` and returns `v`; an `Err` from `f` ends the wait
/// at once; an error naming `what` when `timeout` passes first.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = POLL_MIN;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// Polls until a TCP connection to `addr` (from the host namespace) succeeds.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    wait_until(
        timeout,
        &format!("TCP {addr} to accept connections"),
        || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok(),
    )
}

/// Waits until a line containing `needle` appears in `proc`'s stdout or stderr and returns
/// that line; fails early (with the log tail) when the process exits without printing it.
pub fn wait_for_log_line(proc: &Proc, needle: &str, timeout: Duration) -> Result<String> {
    proc.wait_for_line(needle, timeout)
}

/// Builder of a `Proc`: program, arguments, environment, optional namespace.
pub struct ProcBuilder {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    netns: Option<String>,
    label: Option<String>,
    cwd: Option<PathBuf>,
}

impl ProcBuilder {
    pub fn new(program: impl Into<OsString>) -> ProcBuilder {
        ProcBuilder {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            netns: None,
            label: None,
            cwd: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Run inside `ns` (`ip netns exec`, which execs the program: the pid stays the same).
    pub fn netns(mut self, ns: &Netns) -> Self {
        self.netns = Some(ns.name().to_string());
        self
    }

    /// Name used in log file names and messages (default: the program's file name).
    pub fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_string());
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The command line as it will be executed (for messages and unit tests).
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns.as_str()].map(OsString::from));
        }
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// Starts the process in its own process group, stdout/stderr into
    /// `<env dir>/logs/<label>.<n>.{stdout,stderr}`.
    pub fn spawn(self, env: &TestEnv) -> Result<Proc> {
        let label = self.label.clone().unwrap_or_else(|| {
            Path::new(&self.program)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "proc".to_string())
        });
        let logs = env.path("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let base = format!("{label}.{}", env.unique_name('p'));
        let stdout_path = logs.join(format!("{base}.stdout"));
        let stderr_path = logs.join(format!("{base}.stderr"));
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("creating {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        let argv = self.argv();
        let (program, rest) = argv
            .split_first()
            .ok_or_else(|| anyhow!("empty command line"))?;
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env(SCOPE_ENV, env.prefix())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let shown = argv
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let child = cmd.spawn().with_context(|| format!("starting `{shown}`"))?;
        Ok(Proc {
            label,
            pid: child.id(),
            child: Mutex::new(child),
            stdout_path,
            stderr_path,
        })
    }
}

/// A running process with its output in files. Drop: prints the log tails when the test is
/// panicking, SIGTERM, waits up to 10 s, SIGKILL, then SIGKILLs what is left of its process
/// group.
pub struct Proc {
    label: String,
    pid: u32,
    child: Mutex<Child>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// stdout followed by stderr, as captured so far.
    pub fn log(&self) -> String {
        let read = |p: &Path| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let mut all = read(&self.stdout_path);
        let err = read(&self.stderr_path);
        if !err.is_empty() {
            if !all.is_empty() && !all.ends_with('\n') {
                all.push('\n');
            }
            all.push_str(&err);
        }
        all
    }

    /// The last `n` lines of stdout and of stderr, labelled, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let tail = |p: &Path| {
            let text = std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "--- {} (pid {}) stdout tail ---\n{}\n--- {} stderr tail ---\n{}\n---",
            self.label,
            self.pid,
            tail(&self.stdout_path),
            self.label,
            tail(&self.stderr_path)
        )
    }

    /// Number of log lines containing `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&self) -> Result<Option<ExitStatus>> {
        let mut child = self
            .child
            .lock()
            .map_err(|_| anyhow!("process state lock poisoned"))?;
        child
            .try_wait()
            .with_context(|| format!("checking whether {} exited", self.label))
    }

    pub fn is_running(&self) -> bool {
        matches!(self.exit_status(), Ok(None))
    }

    /// Waits for the first line containing `needle`; see `wait_for_log_line`.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for_line_count(needle, 1, timeout)
    }

    /// Waits until `count` lines contain `needle` and returns the last of them (e.g. the
    /// second "Initialization Sequence Completed" after a reconnect).
    pub fn wait_for_line_count(
        &self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<String> {
        let find = || {
            self.log()
                .lines()
                .filter(|l| l.contains(needle))
                .nth(count.saturating_sub(1))
                .map(str::to_string)
        };
        let what = format!("{count} line(s) with {needle:?} from {}", self.label);
        let res = wait_for(timeout, &what, || {
            if let Some(line) = find() {
                return Ok(Some(line));
            }
            if let Some(status) = self.exit_status()? {
                // It may have printed the line just before exiting.
                return match find() {
                    Some(line) => Ok(Some(line)),
                    None => bail!("{} exited ({status}) before printing it", self.label),
                };
            }
            Ok(None)
        });
        res.with_context(|| format!("waiting for {what}\n{}", self.log_tail(30)))
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.label);
        wait_for(timeout, &what, || self.exit_status())
            .with_context(|| format!("waiting for {what}\n{}", self.log_tail(30)))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = i32::try_from(self.pid).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("sending {signal} to {} ({})", self.label, self.pid))
    }

    /// SIGTERM, then waits up to `grace` for the exit and returns its status; if it does
    /// not exit in time it is SIGKILLed and this is an error. Children the process left in
    /// its group are not touched (so a leak check afterwards can see them).
    pub fn terminate(&self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exit_status()? {
            return Ok(status);
        }
        // ESRCH: it exited between the check and the signal; the wait below reaps it.
        let _ = self.signal(Signal::SIGTERM);
        match self.wait_exit(grace) {
            Ok(status) => Ok(status),
            Err(e) => {
                let _ = self.signal(Signal::SIGKILL);
                let _ = self.wait_exit(grace);
                Err(e.context(format!(
                    "{} did not exit within {grace:?} after SIGTERM; killed",
                    self.label
                )))
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(PANIC_TAIL_LINES));
        }
        if let Err(e) = self.terminate(DROP_GRACE) {
            eprintln!("e2e: stopping {}: {e:#}", self.label);
        }
        if let Ok(pgid) = i32::try_from(self.pid) {
            // The group has the leader's pid; ESRCH when nothing is left, which is the goal.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_wraps_in_ip_netns_exec_only_with_a_namespace() {
        let plain = ProcBuilder::new("openvpn").args(["--config", "x.conf"]);
        assert_eq!(
            plain.argv(),
            ["openvpn", "--config", "x.conf"].map(OsString::from)
        );
        let inside = ProcBuilder {
            netns: Some("e00000100n0".to_string()),
            ..ProcBuilder::new("iperf3").arg("-s")
        };
        assert_eq!(
            inside.argv(),
            ["ip", "netns", "exec", "e00000100n0", "iperf3", "-s"].map(OsString::from)
        );
    }

    #[test]
    fn wait_for_returns_value_times_out_and_stops_on_error() -> Result<()> {
        let mut n = 0;
        let v = wait_for(Duration::from_secs(5), "n to reach 3", || {
            n += 1;
            Ok((n >= 3).then_some(n))
        });
        assert_eq!(v.ok(), Some(3));

        let Err(err) = wait_until(Duration::from_millis(30), "never", || false) else {
            bail!("waiting for a false condition succeeded");
        };
        assert!(format!("{err}").contains("waiting for never"), "{err}");

        let mut calls = 0;
        let Err(err) = wait_for::<()>(Duration::from_secs(5), "x", || {
            calls += 1;
            bail!("broken")
        }) else {
            bail!("a failing poll succeeded");
        };
        assert_eq!(calls, 1);
        assert!(format!("{err}").contains("broken"));
        Ok(())
    }

    #[test]
    fn proc_captures_logs_waits_for_lines_and_terminates() -> Result<()> {
        let env = TestEnv::new_unchecked("proc-unit")?;
        let p = ProcBuilder::new("sh")
            .args(["-c", "echo ready; echo warn >&2; exec sleep 600"])
            .label("sleeper")
            .spawn(&env)?;
        let line = p.wait_for_line("ready", Duration::from_secs(10))?;
        assert_eq!(line, "ready");
        p.wait_for_line("warn", Duration::from_secs(10))?;
        assert!(p.is_running());
        assert!(p.log_tail(5).contains("warn"));
        let status = p.terminate(Duration::from_secs(10))?;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
        Ok(())
    }

    #[test]
    fn waiting_for_a_line_fails_early_when_the_process_exits() -> Result<()> {
        let env = TestEnv::new_unchecked("proc-exit")?;
        let p = ProcBuilder::new("sh")
            .args(["-c", "echo something else; exit 2"])
            .spawn(&env)?;
        let Err(err) = p.wait_for_line("never printed", Duration::from_secs(60)) else {
            bail!("found a line that was never printed");
        };
        let msg = format!("{err:#}");
        assert!(
            msg.contains("exited") && msg.contains("something else"),
            "{msg}"
        );
        Ok(())
    }
}
