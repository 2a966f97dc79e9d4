//! The private runtime directory (0700) with the config, the credentials file (0600), the
//! management socket and a pid file; removed when dropped. Also the default locations.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::signal::kill;
use nix::unistd::Pid;

pub const CONFIG_NAME: &str = "client.conf";
pub const AUTH_NAME: &str = "auth.txt";
pub const MGMT_SOCKET_NAME: &str = "mgmt.sock";
pub const PID_NAME: &str = "adapter.pid";
/// `sun_path` is 108 bytes including the NUL.
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not create runtime directory {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "runtime directory {path} is not a plain directory (symlink or file); refusing to use it"
    )]
    NotADirectory { path: PathBuf },
    #[error("another adapter-client (pid {pid}) uses runtime directory {path}")]
    InUse { path: PathBuf, pid: i32 },
    #[error("could not remove stale runtime directory {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("management socket path {path} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter --runtime-dir")]
    SocketPathTooLong { path: PathBuf },
}

/// An adapter that was killed (SIGKILL) leaves its openvpn running; if that openvpn still
/// serves the old management socket, ask it to exit before the directory is reused.
fn stop_orphan(socket: &Path) {
    use std::os::unix::net::UnixStream;
    if !socket.exists() {
        return;
    }
    if let Ok(mut s) = UnixStream::connect(socket) {
        let _ = s.set_write_timeout(Some(std::time::Duration::from_secs(1)));
        if s.write_all(b"signal SIGTERM\n").is_ok() {
            tracing::warn!(socket = %socket.display(), "asked an orphaned openvpn of an earlier run to exit");
        }
    }
}

/// A private directory removed on drop.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
    keep: bool,
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), None).is_ok()
}

impl RuntimeDir {
    /// Creates `path` with mode 0700 (parents 0755). An existing directory left behind by a
    /// dead adapter is removed first; one whose pid file names a live process is refused.
    pub fn create(path: &Path) -> Result<Self, RuntimeError> {
        let socket = path.join(MGMT_SOCKET_NAME);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(RuntimeError::SocketPathTooLong { path: socket });
        }
        match fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_dir() => {
                if let Some(pid) = fs::read_to_string(path.join(PID_NAME))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    if pid != std::process::id() as i32 && pid_alive(pid) {
                        return Err(RuntimeError::InUse {
                            path: path.to_path_buf(),
                            pid,
                        });
                    }
                }
                stop_orphan(&path.join(MGMT_SOCKET_NAME));
                fs::remove_dir_all(path).map_err(|e| RuntimeError::RemoveStale {
                    path: path.to_path_buf(),
                    source: e,
                })?;
            }
            Ok(_) => {
                return Err(RuntimeError::NotADirectory {
                    path: path.to_path_buf(),
                })
            }
            Err(_) => {}
        }
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| RuntimeError::Create {
                    path: parent.to_path_buf(),
                    source: e,
                })?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| RuntimeError::Create {
                path: path.to_path_buf(),
                source: e,
            })?;
        // The umask may have removed bits we do not want anyway; make 0700 exact.
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|e| {
            RuntimeError::Create {
                path: path.to_path_buf(),
                source: e,
            }
        })?;
        let dir = Self {
            path: path.to_path_buf(),
            keep: false,
        };
        dir.write_private(PID_NAME, format!("{}\n", std::process::id()).as_bytes())?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_NAME)
    }
    pub fn auth_path(&self) -> PathBuf {
        self.path.join(AUTH_NAME)
    }
    pub fn socket_path(&self) -> PathBuf {
        self.path.join(MGMT_SOCKET_NAME)
    }

    /// Writes a file with mode 0600 (replacing an existing one).
    pub fn write_private(&self, name: &str, contents: &[u8]) -> Result<PathBuf, RuntimeError> {
        let p = self.path.join(name);
        let werr = |e| RuntimeError::Write {
            path: p.clone(),
            source: e,
        };
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(werr(e)),
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(werr)?;
        f.write_all(contents).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        Ok(p)
    }

    /// Keep the directory on drop (debugging).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), "could not remove the runtime directory: {e}");
            }
        }
    }
}

/// A client key made safe as a file name: `[A-Za-z0-9_.-]` kept, the rest `_`, no leading
/// dot, at most 64 characters.
pub fn safe_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// `/run/adapter-client` for root, `$XDG_RUNTIME_DIR/adapter-client` otherwise, else
/// `/tmp/adapter-client-<uid>`.
pub fn default_base_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/adapter-client");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("adapter-client"),
        _ => PathBuf::from(format!("/tmp/adapter-client-{uid}")),
    }
}

pub fn default_runtime_dir(client_key: &str) -> PathBuf {
    default_base_dir().join(safe_name(client_key))
}

pub fn default_state_file(client_key: &str) -> PathBuf {
    default_base_dir().join(format!("{}.state.json", safe_name(client_key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names() {
        for (k, want) in [
            ("abc-DEF_1.2", "abc-DEF_1.2"),
            ("../etc", "_.._etc"),
            ("a/b c", "a_b_c"),
            ("", "_"),
        ] {
            assert_eq!(safe_name(k), want, "{k:?}");
        }
        assert_eq!(safe_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn creates_private_dir_and_files_and_removes_on_drop() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("a/b/rt");
        let d = RuntimeDir::create(&p).expect("create");
        let md = fs::metadata(&p).expect("md");
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        let f = d.write_private(AUTH_NAME, b"u\np\n").expect("write");
        assert_eq!(
            fs::metadata(&f).expect("md").permissions().mode() & 0o777,
            0o600
        );
        let f = d.write_private(AUTH_NAME, b"u\nq\n").expect("rewrite");
        assert_eq!(fs::read_to_string(f).expect("read"), "u\nq\n");
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn stale_dir_is_replaced_live_one_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("rt");
        fs::create_dir(&p).expect("mk");
        fs::write(p.join("junk"), "x").expect("junk");
        // pid 1 is alive: refused.
        fs::write(p.join(PID_NAME), "1\n").expect("pid");
        assert!(matches!(
            RuntimeDir::create(&p),
            Err(RuntimeError::InUse { pid: 1, .. })
        ));
        // A pid that cannot exist: replaced.
        fs::write(p.join(PID_NAME), "2147483647\n").expect("pid");
        let d = RuntimeDir::create(&p).expect("replaced");
        assert!(!d.path().join("junk").exists());
        // A symlink is refused.
        let l = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &l).expect("symlink");
        assert!(matches!(
            RuntimeDir::create(&l),
            Err(RuntimeError::NotADirectory { .. })
        ));
        drop(d);
        // A stale dir whose openvpn still serves the management socket: it is told to exit.
        fs::create_dir(&p).expect("mk");
        let listener =
            std::os::unix::net::UnixListener::bind(p.join(MGMT_SOCKET_NAME)).expect("bind");
        let d = RuntimeDir::create(&p).expect("replaced");
        let (mut conn, _) = listener.accept().expect("the adapter connected");
        let mut got = String::new();
        std::io::Read::read_to_string(&mut conn, &mut got).expect("read");
        assert_eq!(got, "signal SIGTERM\n");
        drop(d);
        let long = tmp.path().join("x".repeat(120));
        assert!(matches!(
            RuntimeDir::create(&long),
            Err(RuntimeError::SocketPathTooLong { .. })
        ));
    }
}
