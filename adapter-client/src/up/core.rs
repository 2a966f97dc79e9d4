//! The user's client core: reused when one answers at `--core-url`, else started by `up`
//! (and `ls`) as a child in its own process group and stopped when the command ends.
//!
//! A core `up` starts lives in the state directory: `core/` (its data dir), `core.log`
//! (its log), `module/vpn/` (the VPN module it registers: the templates built into this
//! program unless `--module-dir` names others) and `client.token` (0600): the client
//! token `core-lite token create --role client` made on the first start. That token is how
//! `up`, `ls` and `connect` authenticate to it; a core that `up` did not start needs
//! `--token-file` (or `--token`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use service_api::Secret;
use tokio::process::{Child, Command};

/// Name of the client token file in the state directory.
pub const TOKEN_FILE: &str = "client.token";
/// How long a started core gets to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a started core gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The VPN module's files, built into this program (a core must hold the same templates
/// as the agent to verify its offerings).
const MODULE_FILES: [(&str, &str); 3] = [
    (
        "module.toml",
        include_str!("../../../templates/vpn/module.toml"),
    ),
    (
        "offering.json",
        include_str!("../../../templates/vpn/offering.json"),
    ),
    (
        "access.json",
        include_str!("../../../templates/vpn/access.json"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("no client core answers at {url}, and `up` starts one only on a loopback address (http://127.0.0.1:PORT): start it yourself or fix --core-url")]
    NotLocal { url: String },
    #[error("the core-lite program {0} was not found (give --core-bin or put core-lite in PATH)")]
    NoProgram(PathBuf),
    #[error("could not prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not run {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`core-lite {what}` failed ({status}): {stderr}")]
    Command {
        what: &'static str,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("the client core did not answer at {url} within {secs} s (see {log})", secs = START_TIMEOUT.as_secs())]
    NoAnswer { url: String, log: PathBuf },
    #[error("the client core exited at start ({status}); the end of {log}:\n{tail}")]
    Exited {
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("the client core at {url} needs a token: give --token-file (the state directory has no {TOKEN_FILE})")]
    NoToken { url: String },
    #[error("could not read the token file {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The default state directory (see `--state-dir`).
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/adapter-client");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("privatix-vpn");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/privatix-vpn"),
        None => PathBuf::from(format!(
            "/tmp/privatix-vpn-{}",
            nix::unistd::geteuid().as_raw()
        )),
    }
}

/// What is needed to find, or start, the client core.
#[derive(Debug, Clone)]
pub struct CoreSpec {
    pub url: String,
    /// A token given by the user (flag, env, config file).
    pub token: Option<Secret>,
    pub state_dir: PathBuf,
    pub core_bin: Option<PathBuf>,
    pub module_dir: Option<PathBuf>,
    /// False: only reuse a running core (`ls` with no state directory yet).
    pub may_start: bool,
}

/// A client core to talk to; `started` when this command started it.
#[derive(Debug)]
pub struct CoreHandle {
    pub url: String,
    pub token: Secret,
    pub started: Option<ManagedCore>,
}

/// A core this command started: stopped by [`ManagedCore::stop`] (killed if dropped).
#[derive(Debug)]
pub struct ManagedCore {
    child: Child,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl ManagedCore {
    /// SIGTERM, then a kill after 10 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!("the client core did not stop within 10 s; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// True when something answers `GET /health` at `url` with 200.
pub async fn answers(url: &str) -> bool {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
    else {
        return false;
    };
    let health = format!(
        "{}{}",
        url.trim_end_matches('/'),
        service_api::paths::HEALTH
    );
    http.get(health)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The token for a core: the user's, else the state directory's.
fn token_for(spec: &CoreSpec) -> Result<Secret, CoreError> {
    if let Some(t) = &spec.token {
        return Ok(t.clone());
    }
    let path = spec.state_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(Secret(t.lines().next().unwrap_or("").trim().into())),
        Ok(_) => Err(CoreError::NoToken {
            url: spec.url.clone(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CoreError::NoToken {
            url: spec.url.clone(),
        }),
        Err(source) => Err(CoreError::Token { path, source }),
    }
}

/// The `HOST:PORT` a core for `url` listens on, when `url` is `http://` to a loopback IP.
pub fn local_listen(url: &str) -> Option<std::net::SocketAddr> {
    let rest = url.strip_prefix("http://")?.trim_end_matches('/');
    let addr: std::net::SocketAddr = rest.parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

/// The core-lite program: `--core-bin`, else next to this program, else from PATH.
pub fn core_program(given: Option<&Path>) -> Result<PathBuf, CoreError> {
    if let Some(p) = given {
        return crate::connect::find_program(p).ok_or_else(|| CoreError::NoProgram(p.into()));
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("core-lite")))
        .filter(|p| p.is_file())
    {
        return Ok(sibling);
    }
    crate::connect::find_program(Path::new("core-lite"))
        .ok_or_else(|| CoreError::NoProgram("core-lite".into()))
}

/// Reuses the core at `spec.url`, or starts one (see the module doc). `Ok(None)` when none
/// answers and `spec.may_start` is false.
pub async fn ensure(spec: &CoreSpec) -> Result<Option<CoreHandle>, CoreError> {
    if answers(&spec.url).await {
        return Ok(Some(CoreHandle {
            url: spec.url.clone(),
            token: token_for(spec)?,
            started: None,
        }));
    }
    if !spec.may_start {
        return Ok(None);
    }
    let listen = local_listen(&spec.url).ok_or_else(|| CoreError::NotLocal {
        url: spec.url.clone(),
    })?;
    let program = core_program(spec.core_bin.as_deref())?;
    let state = &spec.state_dir;
    private_dir(state)?;
    let data_dir = state.join("core");
    private_dir(&data_dir)?;
    let module_dir = match &spec.module_dir {
        Some(d) => d.clone(),
        None => write_module(state)?,
    };
    let cli = |what: &'static str, args: Vec<std::ffi::OsString>| {
        run_cli(&program, &data_dir, what, args)
    };
    cli(
        "module register",
        vec!["module".into(), "register".into(), module_dir.into()],
    )
    .await?;
    let token_path = state.join(TOKEN_FILE);
    if spec.token.is_none() && !token_path.exists() {
        cli(
            "token create",
            vec![
                "token".into(),
                "create".into(),
                "--role".into(),
                "client".into(),
                "--out".into(),
                token_path.clone().into(),
            ],
        )
        .await?;
    }
    let log = state.join("core.log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|source| CoreError::Prepare {
            path: log.clone(),
            source,
        })?;
    let log_err = log_file.try_clone().map_err(|source| CoreError::Prepare {
        path: log.clone(),
        source,
    })?;
    let mut child = Command::new(&program)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["serve", "--role", "client", "--listen"])
        .arg(listen.to_string())
        .env("CORE_LITE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        // Its own process group: a Ctrl-C on the terminal reaches `up`, which stops the
        // connection (final usage reported to this core) and then the core.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CoreError::Spawn {
            program: program.clone(),
            source,
        })?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CoreError::Exited {
                status,
                tail: tail(&log, 15),
                log,
            });
        }
        if answers(&spec.url).await {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(CoreError::NoAnswer {
                url: spec.url.clone(),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Some(CoreHandle {
        url: spec.url.clone(),
        token: token_for(spec)?,
        started: Some(ManagedCore {
            child,
            data_dir,
            log,
        }),
    }))
}

fn private_dir(path: &Path) -> Result<(), CoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| CoreError::Prepare {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes the built-in module into `<state>/module/vpn` and returns that directory.
fn write_module(state: &Path) -> Result<PathBuf, CoreError> {
    let dir = state.join("module").join("vpn");
    private_dir(&dir)?;
    for (name, text) in MODULE_FILES {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|source| CoreError::Prepare { path: p, source })?;
    }
    Ok(dir)
}

async fn run_cli(
    program: &Path,
    data_dir: &Path,
    what: &'static str,
    args: Vec<std::ffi::OsString>,
) -> Result<(), CoreError> {
    let out = Command::new(program)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| CoreError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(CoreError::Command {
            what,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_users_or_the_state_directorys() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut spec = CoreSpec {
            url: "http://127.0.0.1:7701".into(),
            token: None,
            state_dir: tmp.path().to_path_buf(),
            core_bin: None,
            module_dir: None,
            may_start: true,
        };
        assert!(matches!(token_for(&spec), Err(CoreError::NoToken { .. })));
        std::fs::write(tmp.path().join(TOKEN_FILE), "from-state\n").expect("w");
        assert_eq!(token_for(&spec).expect("token").expose(), "from-state");
        spec.token = Some(Secret("given".into()));
        assert_eq!(token_for(&spec).expect("token").expose(), "given");
    }

    #[test]
    fn a_core_is_started_only_on_loopback_http() {
        assert_eq!(
            local_listen("http://127.0.0.1:7701"),
            Some("127.0.0.1:7701".parse().expect("addr"))
        );
        assert_eq!(
            local_listen("http://[::1]:7701/"),
            Some("[::1]:7701".parse().expect("addr"))
        );
        for url in [
            "http://10.0.0.1:7701",
            "https://127.0.0.1:7701",
            "http://localhost:7701",
            "http://127.0.0.1",
            "http://127.0.0.1:7701/x",
        ] {
            assert_eq!(local_listen(url), None, "{url}");
        }
    }
}
