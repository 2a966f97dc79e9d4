//! The `adapter-client` binary: SIGTERM → graceful stop with exit code 0 (also while
//! suspended), `status`, `render`, `--help`.

mod common;

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use common::{kill, poll, read_state, Cores, FakeOpenVpn};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_adapter-client");

/// Kills the process on drop (a failing test must not leave it running).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn base_cmd() -> Command {
    let mut c = Command::new(BIN);
    // Keep the test independent of the caller's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("ADAPTER_CLIENT_") {
            c.env_remove(k);
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_status_shows_it() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", Some(("8", "4"))).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let token_file = work.path().join("token");
    std::fs::write(&token_file, format!("{}\n", cores.client_token.expose()))?;
    let rt = work.path().join("rt");
    let state = work.path().join("state.json");
    let child = base_cmd()
        .arg("connect")
        .args(["--client-key", &cores.client_key.0])
        .args(["--core-url", &cores.client.url])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--openvpn")
        .arg(&fake.script)
        .arg("--runtime-dir")
        .arg(&rt)
        .arg("--state-file")
        .arg(&state)
        .args(["--report-interval", "1", "--backoff-initial-ms", "50"])
        .env("ADAPTER_CLIENT_NO_SHAPING", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut proc = Proc(child);
    let adapter_pid = i32::try_from(proc.0.id())?;

    let (ovpn_pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&rt.join("mgmt.sock")).await?;
    m.send(">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40000")
        .await?;
    m.send(">BYTECOUNT:4000,5000").await?;
    cores.wait_open_session(None, 9000).await?;

    // `status` while connected.
    poll("connected state with traffic", || {
        read_state(&state).filter(|s| s.bytes_in == 4000)
    })
    .await?;
    let out = base_cmd()
        .arg("status")
        .arg("--state-file")
        .arg(&state)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("state:       connected"), "{text}");
    assert!(text.contains("vpn address: 10.8.0.6"), "{text}");

    // SIGTERM to the adapter: it asks openvpn to stop, reports the final counts, exits 0.
    kill(adapter_pid, Signal::SIGTERM);
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000010,EXITING,SIGTERM,,,,,").await?;
    kill(ovpn_pid, Signal::SIGTERM);
    let status = poll("the adapter to exit", || proc.0.try_wait().ok().flatten()).await?;
    let mut stderr = String::new();
    if let Some(mut e) = proc.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    eprintln!("adapter stderr:\n{stderr}");
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("connected"),
        "user sees the connection: {stderr}"
    );
    assert!(
        !stderr.contains(cores.client_token.expose()),
        "token leaked"
    );
    cores.wait_closed(9000).await?;
    assert!(!rt.exists(), "runtime dir removed");

    let out = base_cmd()
        .arg("status")
        .arg("--state-file")
        .arg(&state)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state:       stopped"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_prints_config_without_password() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", Some(("8", "4"))).await?;
    let access = service_api::Client::new(
        &cores.client.url,
        cores.client_token.clone(),
        std::time::Duration::from_secs(5),
    )?
    .get_access(&service_api::GetAccessRequest {
        client_key: cores.client_key.clone(),
    })
    .await;
    // Through the core (GetAccess) …
    let out = base_cmd()
        .arg("render")
        .args(["--client-key", &cores.client_key.0])
        .args(["--core-url", &cores.client.url])
        .env("ADAPTER_CLIENT_TOKEN", cores.client_token.expose())
        .args([
            "--runtime-dir",
            "/run/adapter-client/x",
            "--tun-dev",
            "tunx0",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\nremote 127.0.0.1 1194\n"), "{text}");
    assert!(text.contains("\ndev tunx0\n"), "{text}");
    assert!(
        text.contains("auth-user-pass /run/adapter-client/x/auth.txt"),
        "{text}"
    );
    assert!(text.contains("password <redacted>"), "{text}");
    assert!(
        text.contains("download min Some(1000000) max Some(8000000)"),
        "{text}"
    );
    let access = access.context("get_access")?;
    assert!(!text.contains(access.password.expose()), "password printed");

    // … and from a file, where an injection is refused with the field named.
    let work = tempfile::tempdir()?;
    let mut bad = serde_json::to_value(&access)?;
    bad["additionalParams"]["cipher"] = "AES-256-GCM\nscript-security 2".into();
    let f = work.path().join("access.json");
    std::fs::write(&f, serde_json::to_vec(&bad)?)?;
    let out = base_cmd()
        .arg("render")
        .arg("--access-file")
        .arg(&f)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("additionalParams.cipher: contains a newline"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    Ok(())
}

#[test]
fn help_lists_commands_and_env() -> Result<()> {
    let out = base_cmd().arg("connect").arg("--help").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--client-key",
        "ADAPTER_CLIENT_CORE_URL",
        "ADAPTER_CLIENT_TOKEN_FILE",
        "--no-shaping",
        "--runtime-dir",
        "--tun-dev",
        "ADAPTER_CLIENT_SUSPEND_POLL",
        "ADAPTER_CLIENT_MAX_SUSPEND_WAIT",
        "ADAPTER_CLIENT_HALT_GRACE",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    let out = base_cmd().arg("--help").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["connect", "status", "render", "Exit codes"] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    let out = base_cmd().arg("connect").output()?;
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing token/key is a usage error"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_adapter_shows_it_and_sigterm_exits_0() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let token_file = work.path().join("token");
    std::fs::write(&token_file, format!("{}\n", cores.client_token.expose()))?;
    let rt = work.path().join("rt");
    let state = work.path().join("state.json");
    let child = base_cmd()
        .arg("connect")
        .args(["--client-key", &cores.client_key.0])
        .args(["--core-url", &cores.client.url])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--openvpn")
        .arg(&fake.script)
        .arg("--runtime-dir")
        .arg(&rt)
        .arg("--state-file")
        .arg(&state)
        .args([
            "--report-interval",
            "1",
            "--no-shaping",
            "--suspend-poll",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut proc = Proc(child);
    let adapter_pid = i32::try_from(proc.0.id())?;
    let (ovpn_pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&rt.join("mgmt.sock")).await?;
    m.send(">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40000")
        .await?;
    m.send(">BYTECOUNT:40,50").await?;
    cores.wait_open_session(None, 90).await?;

    cores.set_client_status(service_api::ServiceStatus::Suspending)?;
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000010,EXITING,SIGTERM,,,,,").await?;
    kill(ovpn_pid, Signal::SIGTERM);
    cores.wait_closed(90).await?;
    poll("suspended with openvpn stopped", || {
        read_state(&state).filter(|s| {
            s.phase == adapter_client::state::Phase::Suspended && s.openvpn_pid.is_none()
        })
    })
    .await?;
    let out = base_cmd()
        .arg("status")
        .arg("--state-file")
        .arg(&state)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state:       suspended"), "{text}");
    assert!(text.contains("payment lag; waiting for payment"), "{text}");
    assert!(rt.exists(), "runtime dir kept while waiting");

    kill(adapter_pid, Signal::SIGTERM);
    let status = poll("the adapter to exit", || proc.0.try_wait().ok().flatten()).await?;
    let mut stderr = String::new();
    if let Some(mut e) = proc.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("service suspended by the agent"),
        "the user is told: {stderr}"
    );
    assert!(!rt.exists(), "runtime dir removed");
    assert_eq!(fake.spawns().len(), 1);
    assert_eq!(
        read_state(&state).context("state")?.phase,
        adapter_client::state::Phase::Stopped
    );
    Ok(())
}
