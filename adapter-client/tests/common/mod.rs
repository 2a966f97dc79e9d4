//! Shared helpers of the in-process tests: an agent core and a client core (real servers,
//! real SQLite) and a fake `openvpn` whose management socket the test itself serves.
#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use core_lite::testkit::{vpn_offering_input, TestCore};
use service_api::{ChannelInfo, Client, ClientKey, Secret, SetProductConfigRequest};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixListener;
use tokio::time::Instant;

pub const CA: &str = include_str!("../fixtures/ca.pem");
pub const TA: &str = include_str!("../fixtures/ta.key");
pub const WAIT: Duration = Duration::from_secs(15);

/// Polls `f` until it returns Some or the deadline passes.
pub async fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Agent core (sold the channel) and client core (holds the access message).
pub struct Cores {
    pub agent: TestCore,
    pub client: TestCore,
    pub client_token: Secret,
    pub client_key: ClientKey,
}

impl Cores {
    pub async fn start(endpoint: &str, speed: Option<(&str, &str)>) -> Result<Self> {
        Self::start_proto(endpoint, speed, "udp").await
    }

    pub async fn start_proto(
        endpoint: &str,
        speed: Option<(&str, &str)>,
        proto: &str,
    ) -> Result<Self> {
        let agent = TestCore::start().await?;
        agent.register_vpn_module()?;
        let (product_id, product_token) = agent.create_product("vpn-1", endpoint)?;
        let config: BTreeMap<String, String> = [
            ("proto", proto),
            ("port", "1194"),
            ("dev", "tun"),
            ("dataCiphers", "AES-256-GCM:AES-128-GCM"),
            ("auth", "SHA256"),
            ("tlsVersionMin", "1.2"),
            ("ca", CA),
            ("tlsCrypt", TA),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Client::new(&agent.url, product_token, Duration::from_secs(5))?
            .set_product_config(&SetProductConfigRequest { config })
            .await
            .context("SetProductConfig")?;
        let hash = agent.publish_offering(&product_id, &vpn_offering_input(1000, speed))?;
        let (channel_id, client_key) = agent.create_channel(&hash, None)?;
        let access = agent.export_access(&channel_id)?;
        let client = TestCore::start().await?;
        client.register_vpn_module()?;
        client.import_access(&access)?;
        let client_token = client.create_client_token()?;
        Ok(Self {
            agent,
            client,
            client_token,
            client_key,
        })
    }

    /// Forces the client channel's status. `TestCore::set_channel_status` currently fails
    /// for client-side channels ("no agent channel": the billing step only knows agent
    /// channels); until that is fixed, fall back to updating the client core's database
    /// with the sqlite3 CLI.
    pub fn set_client_status(&self, status: service_api::ServiceStatus) -> Result<()> {
        match self
            .client
            .set_channel_status(&self.client_key.0, status, "test: forced")
        {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("no agent channel") => self.client_sql(&format!(
                "UPDATE channels SET status = '{}' WHERE side = 'client' AND client_key = '{}';",
                status.as_str(),
                self.client_key.0.replace('\'', "")
            )),
            Err(e) => Err(e),
        }
    }

    /// Runs SQL on the client core's database with the sqlite3 CLI (for faults the API
    /// cannot produce).
    pub fn client_sql(&self, sql: &str) -> Result<()> {
        let db = self.client.data_dir.join("core.db");
        let out = std::process::Command::new("sqlite3")
            .arg("-cmd")
            .arg(".timeout 5000")
            .arg(&db)
            .arg(sql)
            .output()
            .context("sqlite3")?;
        if !out.status.success() {
            bail!("sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    pub fn channel(&self) -> Result<ChannelInfo> {
        self.client.channel(&self.client_key.0)
    }

    /// Waits until the client channel has an open session (≠ `not`) and `bytes` in total.
    pub async fn wait_open_session(&self, not: Option<&str>, bytes: u64) -> Result<String> {
        poll(&format!("an open session with {bytes} bytes"), || {
            let c = self.channel().ok()?;
            let s = c.open_session?;
            (Some(s.0.as_str()) != not && c.bytes_total == bytes).then_some(s.0)
        })
        .await
    }

    /// Waits until no session is open and the channel has `bytes` in total.
    pub async fn wait_closed(&self, bytes: u64) -> Result<()> {
        poll(&format!("no open session and {bytes} bytes"), || {
            let c = self.channel().ok()?;
            (c.open_session.is_none() && c.bytes_total == bytes).then_some(())
        })
        .await
    }
}

/// A fake `openvpn`: a shell script that records its pid and sleeps. The test serves the
/// management socket in its place and plays OpenVPN's side of the protocol.
pub struct FakeOpenVpn {
    pub dir: tempfile::TempDir,
    pub script: PathBuf,
    pub spawn_log: PathBuf,
    seen: usize,
}

impl FakeOpenVpn {
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("fake-openvpn");
        let spawn_log = dir.path().join("spawns");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$$ $*\" >> '{}'\nexec sleep 600\n",
                spawn_log.display()
            ),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self {
            dir,
            script,
            spawn_log,
            seen: 0,
        })
    }

    pub fn spawns(&self) -> Vec<(i32, String)> {
        std::fs::read_to_string(&self.spawn_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (pid, args) = l.split_once(' ')?;
                Some((pid.parse().ok()?, args.to_string()))
            })
            .collect()
    }

    /// Waits for the next start of the fake and returns its pid and argv.
    pub async fn next_spawn(&mut self) -> Result<(i32, String)> {
        let n = self.seen;
        let s = poll("the next openvpn start", || self.spawns().get(n).cloned()).await?;
        self.seen += 1;
        Ok(s)
    }

    /// Serves the management socket at `path` and accepts the adapter; sends the greeting
    /// and the hold notice, then answers the adapter's setup commands up to `hold release`.
    pub async fn accept(&self, path: &Path) -> Result<Mgmt> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .context("the adapter did not connect to the management socket")??;
        let (r, w) = stream.into_split();
        let mut m = Mgmt {
            r: BufReader::new(r),
            w,
            received: Vec::new(),
        };
        m.send(">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info")
            .await?;
        m.send(">HOLD:Waiting for hold release:0").await?;
        m.expect("hold release").await?;
        for c in ["state on", "bytecount 1"] {
            if !m.received.iter().any(|r| r == c) {
                bail!(
                    "adapter did not send {c:?} before hold release: {:?}",
                    m.received
                );
            }
        }
        Ok(m)
    }
}

pub fn kill(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// The test's end of the management connection.
pub struct Mgmt {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    /// Every command the adapter sent.
    pub received: Vec<String>,
}

impl Mgmt {
    pub async fn send(&mut self, line: &str) -> Result<()> {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await?;
        Ok(())
    }

    /// Writes bytes as they are (no line end added).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.w.write_all(bytes).await?;
        self.w.flush().await?;
        Ok(())
    }

    /// Reads commands until `cmd` arrives, answering each with SUCCESS like OpenVPN does.
    pub async fn expect(&mut self, cmd: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout_at(deadline, self.r.read_line(&mut line))
                .await
                .with_context(|| format!("waiting for {cmd:?}; got {:?}", self.received))??;
            if n == 0 {
                bail!("management connection closed while waiting for {cmd:?}");
            }
            let line = line.trim_end().to_string();
            self.received.push(line.clone());
            self.send(&format!("SUCCESS: {line}")).await?;
            if line == cmd {
                return Ok(());
            }
        }
    }
}

/// Settings for the library's `connect::run` with fast timers.
pub fn settings(
    cores: &Cores,
    fake: &FakeOpenVpn,
    work: &Path,
) -> adapter_client::connect::ConnectSettings {
    let mut s = adapter_client::connect::ConnectSettings::new(
        cores.client_key.clone(),
        cores.client.url.clone(),
        cores.client_token.clone(),
    );
    s.openvpn = fake.script.clone();
    s.runtime_dir = work.join("rt");
    s.state_file = work.join("state.json");
    s.shaping = false;
    s.report_interval = Duration::from_millis(200);
    s.backoff_initial = Duration::from_millis(50);
    s.backoff_max = Duration::from_millis(200);
    s.stop_timeout = Duration::from_secs(5);
    s.suspend_poll = Duration::from_millis(100);
    s.halt_grace = Duration::from_secs(1);
    s
}

pub fn read_state(path: &Path) -> Option<adapter_client::state::Status> {
    adapter_client::state::read(path).ok()
}
