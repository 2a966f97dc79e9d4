//! The hook hand-off (issue 12, item 1): the built `adapter-server-hook` binary run as
//! OpenVPN runs it, the monitor in process with its hand-off socket, a fake management
//! interface and a real in-process core.
//!
//! The full `adapter-server` is reached only through `ADAPTER_SERVER_HOOK_FALLBACK`, set to
//! a recorder script that notes each run and then execs the real binary: a test of the
//! hand-off shows the big binary was never started by an empty record.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use adapter_server::monitor::{self, HandoffConfig, MgmtAddr, MonitorConfig};
use adapter_server_hook::wire;
use common::{client_block, fixture, hook_bin, status_row, wait_for, FakeMgmt, Fixture};
use service_api::Client;
use tokio_util::sync::CancellationToken;

const FULL: &str = env!("CARGO_BIN_EXE_adapter-server");
const IP: &str = "192.0.2.7";
const PORT: &str = "50123";

struct Running {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), monitor::MonitorError>>,
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await??;
        Ok(())
    }
}

/// A test directory with the hand-off socket path, the fallback recorder and its record.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> anyhow::Result<Self> {
        let p = Self {
            dir: tempfile::tempdir()?,
        };
        let script = format!(
            "#!/bin/sh\necho \"$script_type $*\" >> '{}'\nexec '{FULL}' \"$@\"\n",
            p.record().display()
        );
        std::fs::write(p.recorder(), script)?;
        std::fs::set_permissions(p.recorder(), std::fs::Permissions::from_mode(0o755))?;
        Ok(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn socket(&self) -> PathBuf {
        self.path("run/hook.sock")
    }
    fn recorder(&self) -> PathBuf {
        self.path("fallback.sh")
    }
    fn record(&self) -> PathBuf {
        self.path("fallback.record")
    }
    /// The recorded runs of the full binary.
    fn fallbacks(&self) -> Vec<String> {
        std::fs::read_to_string(self.record())
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }
    /// Answer files as OpenVPN leaves them for the script: created, empty.
    fn answer_files(&self, n: u32) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (acf, arf) = (self.path(&format!("acf{n}")), self.path(&format!("arf{n}")));
        std::fs::write(&acf, b"")?;
        std::fs::write(&arf, b"")?;
        Ok((acf, arf))
    }
}

/// The monitor with its hand-off socket (owned by this test's user) on `place`.
async fn start_monitor(f: &Fixture, fake: &FakeMgmt, place: &Place) -> anyhow::Result<Running> {
    let mut cfg = MonitorConfig::new(MgmtAddr::Unix(fake.path.clone()));
    cfg.tick = Duration::from_millis(100);
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.reconnect_max = Duration::from_millis(200);
    cfg.handoff = Some(HandoffConfig {
        path: place.socket(),
        owner: nix::unistd::geteuid().as_raw(),
    });
    let client = Client::new(&f.core.url, f.token.clone(), Duration::from_secs(2))?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(monitor::run(cfg, client, cancel.clone()));
    wait_for("the hand-off socket", || {
        place.socket().exists().then_some(())
    })
    .await?;
    wait_for("the monitor on the management socket", || {
        (fake.count("status 3") >= 1).then_some(())
    })
    .await?;
    Ok(Running { cancel, task })
}

/// What most tests start with: the core fixture, the fake management interface, a test
/// directory and the monitor with its hand-off socket on it.
struct Setup {
    f: Fixture,
    fake: FakeMgmt,
    place: Place,
    mon: Running,
}

async fn setup() -> anyhow::Result<Setup> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let place = Place::new()?;
    let mon = start_monitor(&f, &fake, &place).await?;
    Ok(Setup {
        f,
        fake,
        place,
        mon,
    })
}

/// Runs `adapter-server-hook` like OpenVPN: only its variables, the full hook's command
/// line (`--core-url --token hook --handoff-socket`) plus `extra` arguments.
async fn hook(
    core_url: &str,
    token: &str,
    place: &Place,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new(hook_bin()?);
    cmd.arg(format!("--core-url={core_url}"))
        .arg(format!("--token={token}"))
        .arg("hook")
        .arg(format!("--handoff-socket={}", place.socket().display()))
        .args(extra)
        .env_clear()
        .env("ADAPTER_SERVER_HOOK_FALLBACK", place.recorder())
        .envs(env.iter().copied());
    Ok(cmd.output().await?)
}

/// A connect that fails at once (EAGAIN) on a full backlog instead of waiting for room.
fn connect_nowait(path: &Path) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(path)?)?;
    Ok(fd)
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

async fn file_text(what: &str, p: &Path) -> anyhow::Result<String> {
    wait_for(what, || {
        std::fs::read_to_string(p).ok().filter(|t| !t.is_empty())
    })
    .await
}

fn auth_env<'a>(user: &'a str, acf: &'a str, arf: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("script_type", "user-pass-verify"),
        ("username", user),
        ("untrusted_ip", IP),
        ("untrusted_port", PORT),
        ("auth_control_file", acf),
        ("auth_failed_reason_file", arf),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_handed_off_and_answered_through_the_control_file() -> anyhow::Result<()> {
    let Setup {
        f,
        fake: _fake,
        place,
        mon,
    } = setup().await?;
    let (url, token) = (f.core.url.as_str(), f.token.expose());

    // via-file, good credentials: exit 2 at once, the monitor writes "1".
    let creds = place.path("creds");
    std::fs::write(&creds, format!("{}\n{}\n", f.key.0, f.password.expose()))?;
    let (acf, arf) = place.answer_files(1)?;
    let (acf_s, arf_s) = (s(&acf), s(&arf));
    let env = auth_env(&f.key.0, &acf_s, &arf_s);
    let out = hook(url, token, &place, &[&s(&creds)], &env).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("handed off"), "{}", stderr(&out));
    assert_eq!(file_text("the control file", &acf).await?, "1");
    assert_eq!(std::fs::read_to_string(&arf)?, "", "a reason on accept");

    // via-env, wrong password: exit 2, "0" and the reason; the password is never logged.
    let (acf, arf) = place.answer_files(2)?;
    let (acf_s, arf_s) = (s(&acf), s(&arf));
    let mut env = auth_env(&f.key.0, &acf_s, &arf_s);
    env.push(("password", "wrong-password-123"));
    let out = hook(url, token, &place, &[], &env).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(file_text("the control file", &acf).await?, "0");
    assert_eq!(std::fs::read_to_string(&arf)?, "authentication failed");
    assert!(!stderr(&out).contains("wrong-password-123"));

    // A suspended channel: denied with its status.
    f.core
        .set_channel_status(&f.channel_id, service_api::ServiceStatus::Suspended, "test")?;
    let (acf, arf) = place.answer_files(3)?;
    let (acf_s, arf_s) = (s(&acf), s(&arf));
    let mut env = auth_env(&f.key.0, &acf_s, &arf_s);
    env.push(("password", f.password.expose()));
    let out = hook(url, token, &place, &[], &env).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(file_text("the control file", &acf).await?, "0");
    assert!(std::fs::read_to_string(&arf)?.contains("suspended"));

    assert_eq!(
        place.fallbacks(),
        Vec::<String>::new(),
        "the full binary ran"
    );
    mon.stop().await
}

/// The monitor writes the answer as root on behalf of the hook: a control file that is a
/// symbolic link, or that belongs to another user than the hook's, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_or_foreign_control_file_is_refused() -> anyhow::Result<()> {
    let Setup {
        f,
        fake: _fake,
        place,
        mon,
    } = setup().await?;
    let (url, token) = (f.core.url.as_str(), f.token.expose());
    let victim = place.path("victim");
    std::fs::write(&victim, "precious")?;
    let foreign = place.path("foreign-acf");
    std::fs::write(&foreign, "")?;
    std::os::unix::fs::chown(&foreign, Some(nix::unistd::geteuid().as_raw() + 4242), None)?;
    let link = place.path("link-acf");
    std::os::unix::fs::symlink(&victim, &link)?;
    for (i, acf) in [link, foreign.clone()].iter().enumerate() {
        // A wrong password: the reason file is written first, then the control file.
        let arf = place.path(&format!("arf-{i}"));
        std::fs::write(&arf, "")?;
        let (acf_s, arf_s) = (s(acf), s(&arf));
        let mut env = auth_env(&f.key.0, &acf_s, &arf_s);
        env.push(("password", "wrong-password-123"));
        let out = hook(url, token, &place, &[], &env).await?;
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert_eq!(
            file_text("the reason file", &arf).await?,
            "authentication failed"
        );
        // One more login answered after it (the refused write is long done by then).
        let (acf2, arf2) = place.answer_files(10 + i as u32)?;
        let (acf2_s, arf2_s) = (s(&acf2), s(&arf2));
        let mut env = auth_env(&f.key.0, &acf2_s, &arf2_s);
        env.push(("password", f.password.expose()));
        let out = hook(url, token, &place, &[], &env).await?;
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert_eq!(file_text("the next control file", &acf2).await?, "1");
    }
    assert_eq!(std::fs::read_to_string(&victim)?, "precious");
    assert_eq!(
        std::fs::read_to_string(&foreign)?,
        "",
        "wrote another user's file"
    );
    assert_eq!(
        place.fallbacks(),
        Vec::<String>::new(),
        "the full binary ran"
    );
    mon.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_disconnect_hand_offs_account_the_session_exactly() -> anyhow::Result<()> {
    let Setup {
        f,
        fake,
        place,
        mon,
    } = setup().await?;
    let (url, token) = (f.core.url.as_str(), f.token.expose());
    let identity = |time: &'static str| {
        vec![
            ("username", f.key.0.as_str()),
            ("common_name", "client1"),
            ("untrusted_ip", IP),
            ("untrusted_port", PORT),
            ("time_unix", time),
            ("ifconfig_pool_remote_ip", "10.8.0.6"),
        ]
    };

    // OpenVPN lists the connected client in `status` (the monitor polls it once a second
    // and closes the sessions of clients it no longer lists).
    let listed = |since: u64| {
        status_row(
            &f.key.0,
            &format!("{IP}:{PORT}"),
            "10.8.0.6",
            0,
            0,
            since,
            7,
        )
    };
    fake.set_status_rows(vec![listed(1_700_000_000)]);

    // client-connect: exit 0, the monitor opens the session.
    let mut env = identity("1700000000");
    env.push(("script_type", "client-connect"));
    let dynamic = s(&place.path("dynamic.conf"));
    let out = hook(url, token, &place, &[&dynamic], &env).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let session = wait_for("the session opened", || f.channel().ok()?.open_session).await?;

    // OpenVPN then reports the client established: the same session, usage by client id.
    fake.send(&client_block("ESTABLISHED,7", &identity("1700000000")))?;
    fake.send(&[">BYTECOUNT_CLI:7,1000,2000".into()])?;
    wait_for("usage reported", || {
        (f.channel().ok()?.bytes_total == 3000).then_some(())
    })
    .await?;
    assert_eq!(f.channel()?.open_session, Some(session.clone()));

    // client-disconnect: exit 0, StopSession with OpenVPN's exact final counters.
    let mut env = identity("1700000000");
    env.extend([
        ("script_type", "client-disconnect"),
        ("bytes_received", "123456"),
        ("bytes_sent", "654321"),
    ]);
    fake.set_status_rows(vec![]);
    let out = hook(url, token, &place, &[], &env).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    wait_for("the session stopped with the exact counts", || {
        let c = f.channel().ok()?;
        (c.open_session.is_none() && c.bytes_total == 123456 + 654321).then_some(())
    })
    .await?;

    // The management interface's DISCONNECT of the same connection (with
    // management-client-auth OpenVPN sends both) changes nothing.
    let mut env = identity("1700000000");
    env.extend([("bytes_received", "123456"), ("bytes_sent", "654321")]);
    fake.send(&client_block("DISCONNECT,7", &env))?;
    // A later connection of the channel, handed off after it, opens a new session.
    fake.set_status_rows(vec![listed(1_700_000_100)]);
    let mut env = identity("1700000100");
    env.push(("script_type", "client-connect"));
    let out = hook(url, token, &place, &[&dynamic], &env).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let second = wait_for("the second session", || f.channel().ok()?.open_session).await?;
    assert_ne!(second, session);
    assert_eq!(f.channel()?.bytes_total, 123456 + 654321, "billed twice");

    assert_eq!(
        place.fallbacks(),
        Vec::<String>::new(),
        "the full binary ran"
    );
    mon.stop().await
}

/// No monitor (no socket, a stale socket, a monitor that stopped accepting): the full
/// `adapter-server hook` runs with the same arguments and environment, answers by itself,
/// and fails closed when the core is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_monitor_the_full_hook_runs_and_fails_closed() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let place = Place::new()?;
    let (url, token) = (f.core.url.as_str(), f.token.expose());
    let creds = place.path("creds");
    std::fs::write(&creds, format!("{}\n{}\n", f.key.0, f.password.expose()))?;

    // No socket at all: the full hook answers (deferred worker) and the login is accepted.
    let (acf, arf) = place.answer_files(1)?;
    let (acf_s, arf_s) = (s(&acf), s(&arf));
    let env = auth_env(&f.key.0, &acf_s, &arf_s);
    let out = hook(url, token, &place, &[&s(&creds)], &env).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(file_text("the control file", &acf).await?, "1");
    let runs = place.fallbacks();
    assert_eq!(runs.len(), 1, "{runs:?}");
    // Same arguments, OpenVPN's trailing credentials path included, and environment.
    assert!(
        runs[0].starts_with("user-pass-verify --core-url=")
            && runs[0].contains(" hook --handoff-socket=")
            && runs[0].ends_with(&s(&creds)),
        "{runs:?}"
    );

    // The core is down: the full hook denies, with a reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let down = format!("http://{}", closed.local_addr()?);
    drop(closed);
    let (acf, arf) = place.answer_files(2)?;
    let (acf_s, arf_s) = (s(&acf), s(&arf));
    let env = auth_env(&f.key.0, &acf_s, &arf_s);
    let out = hook(&down, token, &place, &[&s(&creds)], &env).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(file_text("the control file", &acf).await?, "0");
    assert!(std::fs::read_to_string(&arf)?.starts_with("TEMP"));
    // And synchronously (no auth_control_file): exit 1.
    let out = hook(&down, token, &place, &[&s(&creds)], &env[..4]).await?;
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    // A socket left by a dead monitor, and a listener whose backlog is full (a monitor
    // that stopped accepting): the same.
    std::fs::create_dir_all(place.socket().parent().expect("dir"))?;
    drop(std::os::unix::net::UnixListener::bind(place.socket())?);
    let (acf, arf) = place.answer_files(3)?;
    let (acf_s, arf_s) = (s(&acf), s(&arf));
    let env = auth_env(&f.key.0, &acf_s, &arf_s);
    let out = hook(url, token, &place, &[&s(&creds)], &env).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(file_text("the control file", &acf).await?, "1");
    std::fs::remove_file(place.socket())?;
    let silent = std::os::unix::net::UnixListener::bind(place.socket())?;
    nix::sys::socket::listen(&silent, nix::sys::socket::Backlog::new(1)?)?;
    let mut queued = Vec::new();
    while let Ok(c) = connect_nowait(&place.socket()) {
        queued.push(c);
        anyhow::ensure!(queued.len() < 16, "the backlog never filled");
    }
    let (acf, arf) = place.answer_files(4)?;
    let (acf_s, arf_s) = (s(&acf), s(&arf));
    let env = auth_env(&f.key.0, &acf_s, &arf_s);
    let out = hook(url, token, &place, &[&s(&creds)], &env).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(file_text("the control file", &acf).await?, "1");
    drop((silent, queued));
    assert_eq!(place.fallbacks().len(), 5, "{:?}", place.fallbacks());

    // The full binary missing too: nobody can answer, the hook denies by itself.
    let (acf, arf) = place.answer_files(5)?;
    let (acf_s, arf_s) = (s(&acf), s(&arf));
    let env = auth_env(&f.key.0, &acf_s, &arf_s);
    let out = tokio::process::Command::new(hook_bin()?)
        .args(["hook", &s(&creds)])
        .env_clear()
        .env("ADAPTER_SERVER_HOOK_FALLBACK", place.path("no-such-binary"))
        .env("ADAPTER_SERVER_HANDOFF_SOCKET", place.socket())
        .envs(env.iter().copied())
        .output()
        .await?;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&arf)?, "authentication unavailable");
    assert_eq!(std::fs::read_to_string(&acf)?, "");
    Ok(())
}

/// Writes `bytes` as a hook would (then closes its side) and returns what the monitor
/// sent back before closing the connection: always nothing, the monitor never answers.
fn send_raw(socket: &Path, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut c = std::os::unix::net::UnixStream::connect(socket)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(bytes)?;
    c.shutdown(std::net::Shutdown::Write)?;
    let mut back = Vec::new();
    match c.read_to_end(&mut back) {
        // Closed with bytes of ours unread (an invalid frame is not read to its end).
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(back),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(back),
    }
}

/// The socket takes hostile input like the management interface: invalid frames and a
/// frame cut short (a hook that died while writing) are dropped and change nothing, the
/// monitor never writes back, and it keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_or_cut_short_hand_offs_change_nothing() -> anyhow::Result<()> {
    let Setup {
        f,
        fake,
        place,
        mon,
    } = setup().await?;
    let socket = place.socket();
    let connect = wire::Request {
        kind: wire::Kind::ClientConnect,
        env: vec![
            ("username", f.key.0.as_bytes().to_vec()),
            ("untrusted_ip", IP.into()),
            ("untrusted_port", PORT.into()),
            ("time_unix", b"1700000000".to_vec()),
        ],
        credentials: None,
    };
    assert_eq!(send_raw(&socket, &wire::encode_request(&connect)?)?, b"");
    let session = wait_for("the handed-off connect's session", || {
        f.channel().ok()?.open_session
    })
    .await?;

    let mut disconnect = connect.clone();
    disconnect.kind = wire::Kind::ClientDisconnect;
    disconnect.env.extend([
        ("bytes_received", b"5".to_vec()),
        ("bytes_sent", b"6".to_vec()),
    ]);
    let good = wire::encode_request(&disconnect)?;
    let mut old_version = good.clone();
    old_version[4] = 1;
    let mut huge = good[..5].to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut unknown_field = good[..5].to_vec();
    unknown_field.extend_from_slice(&4u32.to_be_bytes());
    unknown_field.extend_from_slice(&[3, 0xee, 0, 0]);
    let mut password_twice = good[..5].to_vec();
    password_twice.extend_from_slice(&9u32.to_be_bytes());
    password_twice.extend_from_slice(&[1, 2, 0, 1, b'a', 2, 0, 1, b'b']);
    for (what, bytes) in [
        ("not the protocol", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("another version", old_version),
        ("a body beyond the bound", huge),
        ("an unknown field", unknown_field),
        ("a field twice", password_twice),
        (
            "a valid disconnect cut short",
            good[..good.len() - 3].to_vec(),
        ),
        ("a header cut short", good[..4].to_vec()),
    ] {
        assert_eq!(send_raw(&socket, &bytes)?, b"", "{what}");
    }
    // The session is still open: usage reported through the management interface lands
    // on it.
    let mut env = vec![
        ("username", f.key.0.as_str()),
        ("untrusted_ip", IP),
        ("untrusted_port", PORT),
        ("time_unix", "1700000000"),
    ];
    fake.send(&client_block("ESTABLISHED,7", &env))?;
    fake.send(&[">BYTECOUNT_CLI:7,100,100".into()])?;
    wait_for("usage on the open session", || {
        (f.channel().ok()?.bytes_total == 200).then_some(())
    })
    .await?;
    assert_eq!(f.channel()?.open_session, Some(session));
    env.extend([("bytes_received", "300"), ("bytes_sent", "400")]);
    fake.send(&client_block("DISCONNECT,7", &env))?;
    wait_for("stopped by the DISCONNECT", || {
        let c = f.channel().ok()?;
        (c.open_session.is_none() && c.bytes_total == 700).then_some(())
    })
    .await?;
    mon.stop().await
}

/// A busy monitor stops accepting rather than dropping events, and events the kernel
/// still holds when the monitor stops (their hooks have exited counting them as handed
/// off) are served: here a disconnect queued behind 256 connections that send nothing
/// reaches the final StopSession with its exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_offs_queued_when_the_monitor_stops_are_served() -> anyhow::Result<()> {
    let Setup {
        f,
        fake,
        place,
        mon,
    } = setup().await?;
    let (url, token) = (f.core.url.as_str(), f.token.expose());
    let identity = vec![
        ("username", f.key.0.as_str()),
        ("untrusted_ip", IP),
        ("untrusted_port", PORT),
        ("time_unix", "1700000000"),
    ];
    fake.set_status_rows(vec![status_row(
        &f.key.0,
        &format!("{IP}:{PORT}"),
        "10.8.0.6",
        0,
        0,
        1_700_000_000,
        7,
    )]);
    let mut env = identity.clone();
    env.push(("script_type", "client-connect"));
    let dynamic = s(&place.path("dynamic.conf"));
    let out = hook(url, token, &place, &[&dynamic], &env).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    wait_for("the session opened", || f.channel().ok()?.open_session).await?;

    // Every slot of the monitor taken by a connection that sends nothing (each is given
    // up after 2 s).
    let mut idle = Vec::new();
    for _ in 0..256 {
        idle.push(std::os::unix::net::UnixStream::connect(place.socket())?);
    }
    // Let the monitor accept them all (a few milliseconds), so that the hook's connection
    // is the one left in the kernel's queue rather than refused by a full backlog.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut env = identity.clone();
    env.extend([
        ("script_type", "client-disconnect"),
        ("bytes_received", "1111"),
        ("bytes_sent", "2222"),
    ]);
    let out = hook(url, token, &place, &[], &env).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("handed off"),
        "not handed off: {}",
        stderr(&out)
    );
    // Still queued in the kernel: the session is open.
    assert!(f.channel()?.open_session.is_some());
    mon.stop().await?;
    let c = f.channel()?;
    assert_eq!(c.open_session, None);
    assert_eq!(c.bytes_total, 1111 + 2222);
    assert_eq!(
        place.fallbacks(),
        Vec::<String>::new(),
        "the full binary ran"
    );
    drop(idle);
    Ok(())
}

/// The socket is 0600 and owned by OpenVPN's user; a live socket of another monitor is
/// never taken over, a file that is not a socket is never replaced, and it is removed when
/// the monitor stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_and_never_taken_over() -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Setup {
        f,
        fake,
        place,
        mon,
    } = setup().await?;
    let meta = std::fs::metadata(place.socket())?;
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    let client = || Client::new(&f.core.url, f.token.clone(), Duration::from_secs(2));
    let second = |path: PathBuf| {
        let mut cfg = MonitorConfig::new(MgmtAddr::Unix(fake.path.clone()));
        cfg.handoff = Some(HandoffConfig { path, owner: 0 });
        cfg
    };
    let taken = monitor::run(second(place.socket()), client()?, CancellationToken::new()).await;
    assert!(
        matches!(
            taken,
            Err(monitor::MonitorError::Handoff(
                monitor::HandoffError::InUse(_)
            ))
        ),
        "{taken:?}"
    );
    let file = place.path("not-a-socket");
    std::fs::write(&file, "data")?;
    let replaced = monitor::run(second(file.clone()), client()?, CancellationToken::new()).await;
    assert!(
        matches!(
            replaced,
            Err(monitor::MonitorError::Handoff(
                monitor::HandoffError::NotASocket(_)
            ))
        ),
        "{replaced:?}"
    );
    assert_eq!(std::fs::read_to_string(&file)?, "data");
    // The first monitor still serves: it reads (and drops) a frame of another version
    // and closes the connection.
    assert_eq!(
        send_raw(&place.socket(), b"ASHK\x09\x00\x00\x00\x01\x01")?,
        b""
    );
    mon.stop().await?;
    assert!(!place.socket().exists(), "socket left behind");
    Ok(())
}
