//! Shared parts of the benchmark binaries (`bench-core`, `bench-auth`, `bench-net`):
//! latency summaries, `/proc` readers, a prepared core-lite data dir served by the real
//! `core-lite` binary in its own process, a fake OpenVPN management interface and the
//! classic baseline auth script.
//!
//! Every binary prints Markdown (tables and short notes) on stdout and progress on stderr;
//! `scripts/bench.sh` pastes the Markdown into `docs/BENCHMARKS.md`.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use service_api::{ClientKey, Secret};

// ---------------------------------------------------------------------------------------
// Statistics

/// Percentiles of a set of latencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// `None` for an empty set. Percentiles are nearest-rank.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_unstable();
        let rank = |p: f64| {
            let r = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[r.clamp(1, v.len()) - 1]
        };
        let total: Duration = v.iter().sum();
        Some(Summary {
            n: v.len(),
            mean: total / v.len() as u32,
            p50: rank(50.0),
            p99: rank(99.0),
            max: v[v.len() - 1],
        })
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `a / b` as "1.23×" (or "–" when b is zero).
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "–".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// "met" / "missed by X %" for "value ≤ target" (lower is better).
pub fn verdict_le(value: f64, target: f64) -> String {
    if value <= target {
        "**met**".into()
    } else {
        format!("**missed** by {:.0} %", (value / target - 1.0) * 100.0)
    }
}

/// "met" / "missed by X %" for "value ≥ target" (higher is better).
pub fn verdict_ge(value: f64, target: f64) -> String {
    if value >= target {
        "**met**".into()
    } else {
        format!("**missed** by {:.0} %", (1.0 - value / target) * 100.0)
    }
}

/// A Markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| {} |", self.header.join(" | "));
        let _ = writeln!(
            s,
            "|{}",
            self.header.iter().map(|_| "---|").collect::<String>()
        );
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

// ---------------------------------------------------------------------------------------
// /proc

/// Clock ticks per second (`getconf CLK_TCK`, 100 when that fails).
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a process (all its threads), in clock ticks, from `/proc/PID/stat`.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&text).with_context(|| format!("parsing {path}: {text}"))
}

/// utime (field 14) + stime (field 15) of a `/proc/PID/stat` line.
pub fn parse_stat_cpu(text: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (VmRSS, VmHWM) of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_rss(&text).with_context(|| format!("no VmRSS/VmHWM in {path}"))
}

pub fn parse_status_rss(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Measures the CPU a process uses over a period: `start()`, then `percent()` = % of one core.
pub struct CpuMeter {
    pid: u32,
    ticks: u64,
    at: Instant,
    hz: u64,
}

impl CpuMeter {
    pub fn start(pid: u32, hz: u64) -> Result<CpuMeter> {
        Ok(CpuMeter {
            pid,
            ticks: cpu_ticks(pid)?,
            at: Instant::now(),
            hz,
        })
    }
    /// (% of one core, CPU seconds) since `start`.
    pub fn percent(&self) -> Result<(f64, f64)> {
        let t = cpu_ticks(self.pid)?;
        let cpu_s = t.saturating_sub(self.ticks) as f64 / self.hz as f64;
        let wall = self.at.elapsed().as_secs_f64();
        Ok((100.0 * cpu_s / wall.max(1e-9), cpu_s))
    }
}

// ---------------------------------------------------------------------------------------
// Machine description

/// One Markdown line about the machine and its load.
pub fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{cores} × {cpu}; load average before: {}",
        loadavg().unwrap_or_else(|| "?".into())
    )
}

/// The first three fields of `/proc/loadavg`.
pub fn loadavg() -> Option<String> {
    let t = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

// ---------------------------------------------------------------------------------------
// Binaries

/// A workspace binary in `dir` (e.g. `$CARGO_TARGET_DIR/release`).
pub fn binary(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release -p {name}) or pass --bin-dir",
            p.display()
        );
    }
    Ok(p)
}

/// A free TCP port on 127.0.0.1 (bound and released: a small race, fine for a benchmark).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Polls `addr` until it accepts a TCP connection.
pub fn wait_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not accept connections within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory removed on drop (kept when `BENCH_KEEP` is set).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// core-lite fixture

/// Credentials of one channel.
#[derive(Clone, Debug)]
pub struct Cred {
    pub channel_id: String,
    pub key: ClientKey,
    pub password: Secret,
}

/// One offering to create: speeds (down, up) in Mbit/s or unlimited, and its channels.
pub struct OfferingSpec {
    pub speed: Option<(String, String)>,
    pub max_units: u64,
    pub channels: usize,
}

/// A prepared data dir: product token (also in `token_file`) and channels per offering.
pub struct Prepared {
    pub data_dir: PathBuf,
    pub token: Secret,
    pub token_file: PathBuf,
    pub creds: Vec<Vec<Cred>>,
}

/// `templates/vpn` of this workspace.
pub fn vpn_module_dir() -> PathBuf {
    core_lite::testkit::vpn_module_dir()
}

/// Creates `data_dir` with the VPN module, one product and the offerings and channels asked
/// for, using core-lite's own operations in this process (fast); the server is started
/// afterwards as a separate process ([`CoreProc`]).
pub fn prepare_core(data_dir: &Path, offerings: &[OfferingSpec]) -> Result<Prepared> {
    prepare_core_on(data_dir, None, offerings)
}

/// [`prepare_core`] with the database of `--database` (`None`: SQLite in the data dir).
pub fn prepare_core_on(
    data_dir: &Path,
    database: Option<&str>,
    offerings: &[OfferingSpec],
) -> Result<Prepared> {
    use core_lite::service::Core;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let core = Core::open_with(data_dir, database).context("opening the core data dir")?;
    core.ensure_admin_token()?;
    core.register_module(&vpn_module_dir())
        .context("registering templates/vpn")?;
    let (product, token) = core
        .create_product("bench", "vpn", Some("10.0.0.1:1194"))
        .context("creating the product")?;
    let mut creds = Vec::new();
    for spec in offerings {
        let speed = spec.speed.as_ref().map(|(d, u)| (d.as_str(), u.as_str()));
        let mut input = core_lite::testkit::vpn_offering_input(spec.max_units, speed);
        input["supply"] = Value::from(spec.channels as u64 + 10);
        let (hash, _) = core
            .publish_offering(&product.product_id, &input)
            .context("publishing the offering")?;
        let mut list = Vec::with_capacity(spec.channels);
        for _ in 0..spec.channels {
            let (channel_id, key) = core.create_channel(&hash, None)?;
            let access = core.export_access(&channel_id)?;
            list.push(Cred {
                channel_id,
                key,
                password: access.password,
            });
        }
        creds.push(list);
    }
    let token_file = data_dir.join("product.token");
    std::fs::write(&token_file, format!("{}\n", token.expose()))?;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
    Ok(Prepared {
        data_dir: data_dir.to_path_buf(),
        token,
        token_file,
        creds,
    })
}

/// `core-lite serve` as a child process (optionally pinned with `taskset -c CPU`); killed on
/// drop.
pub struct CoreProc {
    child: Child,
    pub url: String,
    pub addr: SocketAddr,
}

impl CoreProc {
    pub fn start(bin: &Path, data_dir: &Path, cpu: Option<usize>, log: &Path) -> Result<CoreProc> {
        Self::start_on(bin, data_dir, None, cpu, log)
    }

    /// [`CoreProc::start`] with `--database` (several may share one PostgreSQL database and
    /// one data dir: the same agent key).
    pub fn start_on(
        bin: &Path,
        data_dir: &Path,
        database: Option<&str>,
        cpu: Option<usize>,
        log: &Path,
    ) -> Result<CoreProc> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let logf = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string()]).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        cmd.arg("--data-dir").arg(data_dir);
        if let Some(db) = database {
            cmd.args(["--database", db]);
        }
        cmd.args(["serve", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut me = CoreProc {
            child,
            url: format!("http://{addr}"),
            addr,
        };
        if let Err(e) = wait_tcp(addr, Duration::from_secs(20)) {
            let _ = me.child.kill();
            return Err(e.context(format!("core-lite did not come up (log {})", log.display())));
        }
        Ok(me)
    }

    /// The server's pid (taskset execs the program, so it is the same process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for CoreProc {
    fn drop(&mut self) {
        terminate_child(&mut self.child);
    }
}

/// SIGTERM, up to 5 s, then SIGKILL.
pub fn terminate_child(child: &mut Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------
// The classic baseline

/// Writes the classic synchronous `auth-user-pass-verify` script (via-file: `$1` holds the
/// username and the password on two lines): one blocking `curl` to AuthClient per login,
/// exit 0 on HTTP 200. OpenVPN runs scripts with an empty environment, so every program is
/// an absolute path.
pub fn write_baseline_script(dir: &Path, core_url: &str, token: &Secret) -> Result<PathBuf> {
    let curl = ["/usr/bin/curl", "/bin/curl"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("the baseline script needs curl (apt-get install curl)")?;
    let path = dir.join("baseline-auth.sh");
    let text = format!(
        r#"#!/bin/sh
# Classic synchronous auth-user-pass-verify (via-file): one blocking HTTP call per login.
{{ read -r user; read -r pass; }} < "$1"
code=$({curl} -s -o /dev/null -w '%{{http_code}}' -m 5 \
  -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \
  --data-binary "{{\"clientKey\":\"$user\",\"password\":\"$pass\"}}" \
  '{core_url}/v1/AuthClient')
[ "$code" = 200 ]
"#,
        token = token.expose()
    );
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------
// Fake OpenVPN management interface (for the monitor benchmarks)

pub mod fake_mgmt {
    use std::path::Path;
    use std::time::Instant;

    use anyhow::{Context, Result};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;
    use tokio::sync::mpsc;

    /// An empty `status 3` answer (tab separated, OpenVPN 2.6 columns).
    pub const EMPTY_STATUS: &str = "TITLE\tOpenVPN 2.6.14 bench\n\
TIME\t2026-01-01 00:00:00\t1767225600\n\
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n\
HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\n\
GLOBAL_STATS\tMax bcast/mcast queue length\t0\n\
END\n";

    /// One accepted monitor connection: send lines with `send`, read the monitor's
    /// commands (with their arrival time) from `commands`. Every command is answered with
    /// `SUCCESS:` (and `status` with an empty status block) by a background task.
    pub struct Conn {
        pub send: mpsc::UnboundedSender<String>,
        pub commands: mpsc::UnboundedReceiver<(Instant, String)>,
    }

    pub struct FakeMgmt {
        listener: UnixListener,
    }

    impl FakeMgmt {
        pub fn bind(path: &Path) -> Result<FakeMgmt> {
            let _ = std::fs::remove_file(path);
            Ok(FakeMgmt {
                listener: UnixListener::bind(path)
                    .with_context(|| format!("binding {}", path.display()))?,
            })
        }

        pub async fn accept(&self) -> Result<Conn> {
            let (stream, _) = self.listener.accept().await.context("accept")?;
            let (rd, mut wr) = stream.into_split();
            let (send, mut to_write) = mpsc::unbounded_channel::<String>();
            let (cmd_tx, commands) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some(text) = to_write.recv().await {
                    if wr.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
            let _ = send.send(
                ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info\n"
                    .to_string(),
            );
            let replies = send.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(rd).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let at = Instant::now();
                    let answer = if line.starts_with("status") {
                        EMPTY_STATUS.to_string()
                    } else {
                        "SUCCESS: ok\n".to_string()
                    };
                    let _ = replies.send(answer);
                    let _ = cmd_tx.send((at, line));
                }
            });
            Ok(Conn { send, commands })
        }
    }

    /// A `>CLIENT:<kind>` block with its environment.
    pub fn client_block(kind: &str, env: &[(&str, String)]) -> String {
        let mut s = format!(">CLIENT:{kind}\n");
        for (k, v) in env {
            s.push_str(&format!(">CLIENT:ENV,{k}={v}\n"));
        }
        s.push_str(">CLIENT:ENV,END\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() -> Result<()> {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&v).context("empty")?;
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert!(Summary::of(&[]).is_none());
        Ok(())
    }

    #[test]
    fn stat_and_status_parsers() {
        let stat = "1234 (core (lite) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu(stat), Some(300));
        assert_eq!(parse_stat_cpu("garbage"), None);
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_rss(status), Some((1024, 2048)));
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }

    #[test]
    fn client_block_is_a_management_notification() {
        let b = fake_mgmt::client_block("CONNECT,3,0", &[("username", "u".to_string())]);
        assert_eq!(
            b,
            ">CLIENT:CONNECT,3,0\n>CLIENT:ENV,username=u\n>CLIENT:ENV,END\n"
        );
    }

    #[test]
    fn baseline_script_reads_the_credentials_file() -> Result<()> {
        if !Path::new("/usr/bin/curl").is_file() && !Path::new("/bin/curl").is_file() {
            return Ok(());
        }
        let dir = TempDir::new("bench-unit")?;
        let p = write_baseline_script(dir.path(), "http://127.0.0.1:1", &Secret("t0k".into()))?;
        let text = std::fs::read_to_string(&p)?;
        assert!(text.contains("< \"$1\""), "{text}");
        assert!(
            text.contains("'http://127.0.0.1:1/v1/AuthClient'"),
            "{text}"
        );
        assert!(text.contains("Bearer t0k"), "{text}");
        // Nothing listens on port 1: the script must deny.
        let creds = dir.path().join("creds");
        std::fs::write(&creds, "user\npass\n")?;
        let st = Command::new(&p).arg(&creds).env_clear().status()?;
        assert!(!st.success());
        Ok(())
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict_le(9.0, 10.0), "**met**");
        assert_eq!(verdict_le(15.0, 10.0), "**missed** by 50 %");
        assert_eq!(verdict_ge(4000.0, 5000.0), "**missed** by 20 %");
        assert_eq!(ratio(2.0, 1.0), "2.00×");
    }
}
