//! Shared fixtures: an in-process core with one VPN channel, and a fake OpenVPN management
//! interface on a unix socket.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use core_lite::testkit::{vpn_offering_input, TestCore};
use service_api::{ChannelInfo, ClientKey, Secret};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

pub struct Fixture {
    pub core: TestCore,
    pub token: Secret,
    pub channel_id: String,
    pub key: ClientKey,
    pub password: Secret,
}

pub async fn fixture(speed: Option<(&str, &str)>) -> anyhow::Result<Fixture> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (pid, token) = core.create_product("vpn-test", "127.0.0.1:1194")?;
    let offering = core.publish_offering(&pid, &vpn_offering_input(1000, speed))?;
    let (channel_id, key) = core.create_channel(&offering, None)?;
    let access = core.export_access(&channel_id)?;
    Ok(Fixture {
        core,
        token,
        channel_id,
        key,
        password: access.password,
    })
}

impl Fixture {
    pub fn channel(&self) -> anyhow::Result<ChannelInfo> {
        self.core.channel(&self.channel_id)
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub async fn wait_for<T, F: FnMut() -> Option<T>>(what: &str, mut f: F) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fake management interface: accepts one connection at a time, records every command,
/// answers `status 3` with [`FakeMgmt::set_status_rows`] and everything else with SUCCESS.
pub struct FakeMgmt {
    pub path: PathBuf,
    pub commands: Arc<Mutex<Vec<String>>>,
    rows: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
    tx: Arc<Mutex<Option<mpsc::UnboundedSender<Option<String>>>>>,
    _dir: tempfile::TempDir,
}

pub const STATUS_HEADER: &str = "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher";

pub fn status_row(
    user: &str,
    real: &str,
    vaddr: &str,
    rx: u64,
    tx: u64,
    since: u64,
    cid: u64,
) -> String {
    format!("CLIENT_LIST\t{user}\t{real}\t{vaddr}\t\t{rx}\t{tx}\t2026-01-01 00:00:00\t{since}\t{user}\t{cid}\t{cid}\tAES-256-GCM")
}

impl FakeMgmt {
    pub fn start() -> anyhow::Result<FakeMgmt> {
        let dir = tempfile::tempdir().context("tempdir")?;
        let path = dir.path().join("mgmt.sock");
        let listener = UnixListener::bind(&path).context("bind")?;
        let commands: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let rows: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let tx = Arc::new(Mutex::new(None));
        {
            let (commands, rows, connections, tx) = (
                commands.clone(),
                rows.clone(),
                connections.clone(),
                tx.clone(),
            );
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (rd, mut wr) = stream.into_split();
                    let (ltx, mut lrx) = mpsc::unbounded_channel::<Option<String>>();
                    *tx.lock().expect("lock") = Some(ltx.clone());
                    *connections.lock().expect("lock") += 1;
                    let _ = wr
                        .write_all(b">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info\n")
                        .await;
                    let (commands, rows) = (commands.clone(), rows.clone());
                    // Reader: record commands and queue their answers.
                    let reader = tokio::spawn(async move {
                        let mut lines = BufReader::new(rd).lines();
                        while let Ok(Some(l)) = lines.next_line().await {
                            commands.lock().expect("lock").push(l.clone());
                            let answer = if l.starts_with("status") {
                                let mut s = String::from("TITLE\tOpenVPN 2.6.14 fake\nTIME\t2026-01-01 00:00:00\t1767225600\n");
                                s.push_str(STATUS_HEADER);
                                s.push('\n');
                                for r in rows.lock().expect("lock").iter() {
                                    s.push_str(r);
                                    s.push('\n');
                                }
                                s.push_str("GLOBAL_STATS\tMax bcast/mcast queue length\t0\nEND");
                                s
                            } else {
                                "SUCCESS: ok".to_string()
                            };
                            if ltx.send(Some(answer)).is_err() {
                                break;
                            }
                        }
                        // The monitor hung up: end this connection.
                        let _ = ltx.send(None);
                    });
                    // Writer: everything the test or the reader queues; None = hang up.
                    while let Some(item) = lrx.recv().await {
                        match item {
                            Some(mut text) => {
                                text.push('\n');
                                if wr.write_all(text.as_bytes()).await.is_err() {
                                    break;
                                }
                            }
                            None => break,
                        }
                    }
                    reader.abort();
                    drop(wr);
                }
            });
        }
        Ok(FakeMgmt {
            path,
            commands,
            rows,
            connections,
            tx,
            _dir: dir,
        })
    }

    pub fn set_status_rows(&self, rows: Vec<String>) {
        *self.rows.lock().expect("lock") = rows;
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().expect("lock")
    }

    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().expect("lock").clone()
    }

    pub fn count(&self, cmd: &str) -> usize {
        self.commands().iter().filter(|c| c.as_str() == cmd).count()
    }

    /// Sends lines to the monitor on the current connection.
    pub fn send(&self, lines: &[String]) -> anyhow::Result<()> {
        let g = self.tx.lock().expect("lock");
        let tx = g.as_ref().context("no connection")?;
        tx.send(Some(lines.join("\n"))).context("connection gone")?;
        Ok(())
    }

    /// Closes the current connection.
    pub fn hang_up(&self) {
        if let Some(tx) = self.tx.lock().expect("lock").take() {
            let _ = tx.send(None);
        }
    }

    pub async fn wait_command(&self, cmd: &str) -> anyhow::Result<()> {
        wait_for(&format!("command {cmd:?}"), || {
            self.commands().iter().any(|c| c == cmd).then_some(())
        })
        .await
    }
}

/// A `>CLIENT:<kind>,<ids>` block with env lines.
pub fn client_block(header: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut v = vec![format!(">CLIENT:{header}")];
    for (k, val) in env {
        v.push(format!(">CLIENT:ENV,{k}={val}"));
    }
    v.push(">CLIENT:ENV,END".into());
    v
}

/// The small `adapter-server-hook` binary, next to `adapter-server` in the target dir.
/// `cargo test --workspace` (and `cargo build --workspace --bins`, which scripts/test.sh
/// runs first) builds it; a test run of this package alone builds it here.
pub fn hook_bin() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_hook_bin().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_hook_bin() -> anyhow::Result<PathBuf> {
    let full = PathBuf::from(env!("CARGO_BIN_EXE_adapter-server"));
    let small = full.with_file_name("adapter-server-hook");
    let profile_dir = full.parent().context("binary without a directory")?;
    let target_dir = profile_dir
        .parent()
        .context("profile dir without a parent")?;
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "adapter-server-hook",
        "--bin",
        "adapter-server-hook",
    ])
    .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() || !small.is_file() {
        bail!(
            "{} is missing and `cargo build -p adapter-server-hook` failed ({status})",
            small.display()
        );
    }
    Ok(small)
}
