//! The built `adapter-server hook` binary with crafted OpenVPN environments against an
//! in-process core.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fixture, wait_for, Fixture};

const BIN: &str = env!("CARGO_BIN_EXE_adapter-server");

struct Hook {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Hook {
    fn new(core_url: &str, token: &str) -> Self {
        Self {
            // `=` form: tokens may start with '-'.
            args: vec![
                format!("--core-url={core_url}"),
                format!("--token={token}"),
                "hook".into(),
            ],
            env: vec![],
        }
    }
    fn for_fixture(f: &Fixture) -> Self {
        Self::new(&f.core.url, f.token.expose())
    }
    fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    async fn run(&self) -> anyhow::Result<Output> {
        // OpenVPN runs scripts with only its own variables.
        Ok(tokio::process::Command::new(BIN)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await?)
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct AuthFiles {
    dir: tempfile::TempDir,
}

impl AuthFiles {
    /// The answer files as OpenVPN leaves them for the script: created, empty.
    fn new() -> anyhow::Result<Self> {
        let files = Self::empty_dir()?;
        std::fs::write(files.acf(), b"")?;
        std::fs::write(files.arf(), b"")?;
        Ok(files)
    }
    /// A directory without the answer files.
    fn empty_dir() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
        })
    }
    fn acf(&self) -> PathBuf {
        self.dir.path().join("acf")
    }
    fn arf(&self) -> PathBuf {
        self.dir.path().join("arf")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

async fn control_answer(files: &AuthFiles) -> anyhow::Result<String> {
    wait_for("auth_control_file answer", || {
        std::fs::read_to_string(files.acf())
            .ok()
            .filter(|t| !t.is_empty())
    })
    .await
}

fn auth_env(h: Hook, files: &AuthFiles, user: &str, pass: &str) -> Hook {
    h.env("script_type", "user-pass-verify")
        .env("username", user)
        .env("password", pass)
        .env("untrusted_ip", "192.0.2.7")
        .env("untrusted_port", "50123")
        .env("auth_control_file", &s(&files.acf()))
        .env("auth_failed_reason_file", &s(&files.arf()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_auth_accepts_and_denies() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    // accept
    let files = AuthFiles::new()?;
    let out = auth_env(Hook::for_fixture(&f), &files, &f.key.0, f.password.expose())
        .run()
        .await?;
    assert_eq!(code(&out), 2, "not deferred: {}", stderr(&out));
    assert_eq!(control_answer(&files).await?, "1");
    assert_eq!(
        std::fs::read_to_string(files.arf())?,
        "",
        "reason written on accept"
    );

    // wrong password: 0 and a reason, password never logged
    let files = AuthFiles::new()?;
    let out = auth_env(
        Hook::for_fixture(&f),
        &files,
        &f.key.0,
        "wrong-password-123",
    )
    .run()
    .await?;
    assert_eq!(code(&out), 2);
    assert_eq!(control_answer(&files).await?, "0");
    assert_eq!(
        std::fs::read_to_string(files.arf())?,
        "authentication failed"
    );
    assert!(!stderr(&out).contains("wrong-password-123"));

    // suspended channel: denied with the status as the reason
    f.core
        .set_channel_status(&f.channel_id, service_api::ServiceStatus::Suspended, "test")?;
    let files = AuthFiles::new()?;
    let out = auth_env(Hook::for_fixture(&f), &files, &f.key.0, f.password.expose())
        .run()
        .await?;
    assert_eq!(code(&out), 2);
    assert_eq!(control_answer(&files).await?, "0");
    assert!(std::fs::read_to_string(files.arf())?.contains("suspended"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_auth_via_file_and_env() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let files = AuthFiles::new()?;
    let creds = files.path("creds");
    std::fs::write(&creds, format!("{}\n{}\n", f.key.0, f.password.expose()))?;
    // via-file, sync: no username/password in env, credentials path appended
    let out = Hook::for_fixture(&f)
        .arg("--sync")
        .arg(s(&creds))
        .env("script_type", "user-pass-verify")
        .env("untrusted_ip", "192.0.2.7")
        .env("untrusted_port", "1")
        .env("auth_control_file", &s(&files.acf()))
        .run()
        .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(files.acf())?,
        "",
        "sync mode wrote the control file"
    );

    std::fs::write(&creds, format!("{}\nnope\n", f.key.0))?;
    let out = Hook::for_fixture(&f)
        .arg("--sync")
        .arg(s(&creds))
        .env("script_type", "user-pass-verify")
        .run()
        .await?;
    assert_eq!(code(&out), 1);

    // via-env without auth_control_file: synchronous
    let out = Hook::for_fixture(&f)
        .env("script_type", "auth-user-pass-verify")
        .env("username", &f.key.0)
        .env("password", f.password.expose())
        .run()
        .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // hostile credential files deny
    for bad in [
        b"".to_vec(),
        b"only-user\n".to_vec(),
        vec![b'x'; 10_000],
        b"us\xffer\npw\n".to_vec(),
        format!("{}\n{}\nextra\n", f.key.0, f.password.expose()).into_bytes(),
    ] {
        std::fs::write(&creds, &bad)?;
        let out = Hook::for_fixture(&f)
            .arg(s(&creds))
            .env("script_type", "user-pass-verify")
            .run()
            .await?;
        assert_eq!(code(&out), 1, "{bad:?} accepted");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_down_denies() -> anyhow::Result<()> {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", closed.local_addr()?);
    drop(closed);
    let files = AuthFiles::new()?;
    let out = auth_env(Hook::new(&url, "tok"), &files, "user-1", "pw")
        .run()
        .await?;
    assert_eq!(code(&out), 2);
    assert_eq!(control_answer(&files).await?, "0");
    assert!(std::fs::read_to_string(files.arf())?.starts_with("TEMP"));

    let out = auth_env(Hook::new(&url, "tok").arg("--sync"), &files, "user-1", "pw")
        .run()
        .await?;
    assert_eq!(code(&out), 1);

    // No token at all: deny, never crash.
    let out = Hook {
        args: vec!["hook".into()],
        env: vec![],
    }
    .env("script_type", "user-pass-verify")
    .env("username", "u")
    .env("password", "p")
    .run()
    .await?;
    assert_eq!(code(&out), 1);

    // Missing / unknown script_type: deny.
    let out = Hook::new(&url, "tok").run().await?;
    assert_eq!(code(&out), 1);
    let out = Hook::new(&url, "tok")
        .env("script_type", "up")
        .run()
        .await?;
    assert_eq!(code(&out), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_disconnect_account_the_session() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let state = tempfile::tempdir()?;
    let state_dir = state.path().join("state");
    let conn = |h: Hook| {
        h.env("username", &f.key.0)
            .env("common_name", "client1")
            .env("untrusted_ip", "192.0.2.7")
            .env("untrusted_port", "50123")
            .env("trusted_ip", "192.0.2.7")
            .env("trusted_port", "50123")
            .env("time_unix", "1700000000")
            .env("ifconfig_pool_remote_ip", "10.8.0.6")
    };
    let dyn_conf = state.path().join("dyn.conf");
    let out = conn(Hook::for_fixture(&f))
        .arg("--state-dir")
        .arg(s(&state_dir))
        .arg(s(&dyn_conf))
        .env("script_type", "client-connect")
        .run()
        .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let session = f.channel()?.open_session.expect("session opened");

    let out = conn(Hook::for_fixture(&f))
        .arg("--state-dir")
        .arg(s(&state_dir))
        .env("script_type", "client-disconnect")
        .env("bytes_received", "123456")
        .env("bytes_sent", "654321")
        .run()
        .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ch = f.channel()?;
    assert_eq!(ch.open_session, None, "session {session} still open");
    assert_eq!(ch.bytes_total, 123456 + 654321);
    assert_eq!(
        std::fs::read_dir(&state_dir)?.count(),
        0,
        "state file left behind"
    );

    // A second disconnect (no state file) finds the stopped session again by its connection
    // id: nothing is billed twice and no session is opened.
    let out = conn(Hook::for_fixture(&f))
        .arg("--state-dir")
        .arg(s(&state_dir))
        .env("script_type", "client-disconnect")
        .env("bytes_received", "123456")
        .env("bytes_sent", "654321")
        .run()
        .await?;
    assert_eq!(code(&out), 0);
    assert_eq!(f.channel()?.bytes_total, 123456 + 654321, "billed twice");

    // The monitor opened a session (no client-connect hook) and stopped it with its last
    // bytecount; client-disconnect then brings OpenVPN's exact final counters for the same
    // connection: they win, and no second session is opened.
    let conn2 = |h: Hook| conn(h).env("time_unix", "1700000050");
    let api = service_api::Client::new(
        &f.core.url,
        f.token.clone(),
        std::time::Duration::from_secs(5),
    )?;
    let monitor_session = api
        .start_session(&service_api::StartSessionRequest {
            client_key: f.key.clone(),
            connection_id: Some(format!("{}|192.0.2.7:50123|1700000050", f.key.0)),
            client_addr: None,
            vpn_addr: None,
        })
        .await?
        .session_id;
    api.stop_session(&service_api::StopSessionRequest {
        session_id: monitor_session.clone(),
        bytes_in: 1000,
        bytes_out: 2000,
    })
    .await?;
    let before = f.channel()?.bytes_total;
    let out = conn2(Hook::for_fixture(&f))
        .arg("--state-dir")
        .arg(s(&state_dir))
        .env("script_type", "client-disconnect")
        .env("bytes_received", "1500")
        .env("bytes_sent", "2500")
        .run()
        .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&monitor_session.0),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        f.channel()?.bytes_total,
        before + 1000,
        "exact counts: +500 +500"
    );
    assert_eq!(f.channel()?.open_session, None);

    // client-connect of a channel that is not in service is refused.
    f.core.set_channel_status(
        &f.channel_id,
        service_api::ServiceStatus::Terminated,
        "test",
    )?;
    let out = conn(Hook::for_fixture(&f))
        .arg("--state-dir")
        .arg(s(&state_dir))
        .env("script_type", "client-connect")
        .env("time_unix", "1700000100")
        .run()
        .await?;
    assert_eq!(code(&out), 1);
    Ok(())
}

/// Runs the deferred-auth worker with `job` on its stdin until it exits.
async fn run_worker(job: &serde_json::Value) -> anyhow::Result<Output> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(BIN)
        .arg("__auth-worker")
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&serde_json::to_vec(job)?).await?;
    drop(stdin);
    Ok(child.wait_with_output().await?)
}

/// Issue 11, item 14: the answer files and the credentials file are never opened through a
/// symbolic link (a link there would truncate and overwrite its target), and the answer
/// files are never created (OpenVPN creates them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_and_credentials_files_are_never_followed_or_created() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let files = AuthFiles::empty_dir()?;
    let victim = files.path("victim");
    std::fs::write(&victim, "precious")?;
    std::os::unix::fs::symlink(&victim, files.acf())?;
    std::os::unix::fs::symlink(&victim, files.arf())?;
    let job = |password: &str, acf: &Path, arf: &Path| {
        serde_json::json!({
            "core_url": f.core.url,
            "token": f.token.expose(),
            "timeout_ms": 5000,
            "username": f.key.0,
            "password": password,
            "client_addr": null,
            "control_file": acf,
            "reason_file": arf,
        })
    };
    // The deferred worker, accept and deny: the links are refused, the target untouched.
    for password in [f.password.expose(), "wrong-password-123"] {
        let out = run_worker(&job(password, &files.acf(), &files.arf())).await?;
        assert_eq!(code(&out), 1, "answer written: {}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&victim)?, "precious");
    }
    // Absent answer files are not created.
    let absent = AuthFiles::empty_dir()?;
    let out = run_worker(&job("wrong-password-123", &absent.acf(), &absent.arf())).await?;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(!absent.acf().exists() && !absent.arf().exists(), "created");
    // Sync mode and the early denies write the reason file the same way.
    let out = auth_env(
        Hook::for_fixture(&f).arg("--sync"),
        &files,
        &f.key.0,
        "wrong-password-123",
    )
    .run()
    .await?;
    assert_eq!(code(&out), 1);
    let out = auth_env(Hook::for_fixture(&f), &files, "bad user", "pw")
        .run()
        .await?;
    assert_eq!(code(&out), 1);
    assert_eq!(std::fs::read_to_string(&victim)?, "precious");

    // A via-file credentials file that is a link is refused (deny), even to good credentials.
    let creds = files.path("creds");
    std::fs::write(&creds, format!("{}\n{}\n", f.key.0, f.password.expose()))?;
    let link = files.path("creds-link");
    std::os::unix::fs::symlink(&creds, &link)?;
    let out = Hook::for_fixture(&f)
        .arg("--sync")
        .arg(s(&link))
        .env("script_type", "user-pass-verify")
        .run()
        .await?;
    assert_eq!(code(&out), 1, "credentials read through a link");
    let out = Hook::for_fixture(&f)
        .arg("--sync")
        .arg(s(&creds))
        .env("script_type", "user-pass-verify")
        .run()
        .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    Ok(())
}

/// Issue 11, item 15: client-disconnect of a connection that has no session (no state file,
/// none opened by the monitor) never starts one: nothing is opened or billed, the channel
/// keeps its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_never_starts_a_session() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let state = tempfile::tempdir()?;
    let before = f.channel()?;
    let out = Hook::for_fixture(&f)
        .arg("--state-dir")
        .arg(s(&state.path().join("state")))
        .env("script_type", "client-disconnect")
        .env("username", &f.key.0)
        .env("untrusted_ip", "192.0.2.7")
        .env("untrusted_port", "50123")
        .env("time_unix", "1700000000")
        .env("ifconfig_pool_remote_ip", "10.8.0.6")
        .env("bytes_received", "123456")
        .env("bytes_sent", "654321")
        .run()
        .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = f.channel()?;
    assert_eq!(after.open_session, None);
    assert_eq!(after.bytes_total, 0, "a session was started and billed");
    assert_eq!(after.status, before.status, "the channel changed status");
    assert_eq!(after.history, before.history);
    Ok(())
}
