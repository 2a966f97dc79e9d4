//! The `core-lite` binary with a TOML config file: `serve` takes its settings from the file
//! (flags and environment variables win), a file with problems stops it with all of them,
//! and `check-config` reports every problem with file, line and key without starting.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_core-lite");

fn cmd() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("CORE_LITE_") {
            c.env_remove(k);
        }
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits (up to 20 s) for `path` to exist: core-lite creates its database while it starts.
fn wait_exists(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

#[test]
fn serve_takes_its_settings_from_the_file_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("from-file");
    let port = free_port();
    let conf = dir.path().join("core.toml");
    write(
        &conf,
        &format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nrole = \"core\"\n",
            data.display()
        ),
    );
    let child = cmd()
        .arg("--config")
        .arg(&conf)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn core-lite");
    let _kill = Kill(child);
    assert!(
        wait_listening(port),
        "core-lite does not listen on the file's address"
    );
    assert!(
        wait_exists(&data.join("core.db")),
        "the data dir of the file was not used"
    );

    // The environment variable wins over the file's data_dir, the flag over the file's listen.
    let env_data = dir.path().join("from-env");
    let port2 = free_port();
    let child = cmd()
        .env("CORE_LITE_CONFIG", &conf)
        .env("CORE_LITE_DATA_DIR", &env_data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port2}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn core-lite");
    let _kill2 = Kill(child);
    assert!(wait_listening(port2), "the --listen flag did not win");
    assert!(
        env_data.join("core.db").exists(),
        "CORE_LITE_DATA_DIR did not win"
    );
}

#[test]
fn check_config_reports_every_problem_and_serve_refuses_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("bad.toml");
    write(
        &conf,
        "role = \"seller\"\nlisten = \"127.0.0.1\"\n# a comment\ntick-ms = 5\nmax_connections = true\n",
    );
    let out = cmd()
        .args(["check-config"])
        .arg(&conf)
        .output()
        .expect("run check-config");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let f = conf.display();
    for want in [
        format!("{f}:1: key `role`: "),
        format!("{f}:2: key `listen`: "),
        format!("{f}:4: key `tick-ms`: unknown key"),
        format!("{f}:5: key `max_connections`: "),
        format!("{f}: 4 problems"),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in:\n{stdout}");
    }

    // serve with that file stops before opening anything, naming every problem.
    let data = dir.path().join("data");
    let out = cmd()
        .arg("--config")
        .arg(&conf)
        .arg("--data-dir")
        .arg(&data)
        .arg("serve")
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `role`") && stderr.contains("key `tick-ms`"),
        "{stderr}"
    );
    assert!(!data.exists(), "serve started despite the bad config");

    write(
        &conf,
        "role = \"agent\"\nmarket_listen = \"0.0.0.0:7710\"\n",
    );
    let out = cmd()
        .env("CORE_LITE_CONFIG", &conf)
        .arg("check-config")
        .output()
        .expect("run check-config");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": OK\n"));
}
