//! `scripts/demo.sh` runs to its table with every check passed, and leaves nothing behind:
//! neither after a full run nor when it is interrupted (Ctrl-C) half-way.
//!
//! The demo runs with the debug binaries of this test build (`DEMO_BIN_DIR`), in quick mode
//! (short iperf3 runs) and with this test's prefix as its name prefix, so the harness's leak
//! checker sees its namespaces, devices and processes (they inherit `E2E_SCOPE` too).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::*;

/// Tools the demo runs besides those every e2e test needs (it would install them with
/// apt-get; a test must not).
const DEMO_TOOLS: &[&str] = &["iperf3", "jq", "curl", "tc", "setsid"];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(tool).is_file())
    })
}

/// The test scope, or `None` (skip) by the harness's policy; missing demo tools count as a
/// missing requirement too.
fn demo_env(name: &str) -> Result<Option<TestEnv>> {
    let Some(env) = TestEnv::with_bins(name, &["core-lite", "adapter-server", "adapter-client"])?
    else {
        return Ok(None);
    };
    let missing: Vec<&str> = DEMO_TOOLS.iter().copied().filter(|t| !on_path(t)).collect();
    if !missing.is_empty() {
        if std::env::var("E2E_REQUIRED").is_ok_and(|v| v == "1") {
            bail!("e2e test `{name}` cannot run: needs {missing:?} in PATH");
        }
        eprintln!("e2e test `{name}` skipped: needs {missing:?} in PATH");
        return Ok(None);
    }
    Ok(Some(env))
}

/// The demo as a command: own process group (so the test can send it a Ctrl-C), output
/// into `out`.
fn demo_command(env: &TestEnv, out: &Path) -> Result<Command> {
    let core = bin_path("core-lite")?;
    let bin_dir = core.parent().context("the binary directory of core-lite")?;
    let log = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    // As from a terminal: SIGINT at its default. A test run started in the background (nohup,
    // `cmd &`) inherits SIGINT ignored, and a shell cannot trap a signal ignored at its
    // start, so the demo's Ctrl-C handling would not be tested (coreutils `env`).
    let mut cmd = Command::new("env");
    cmd.args(["--default-signal=INT", "bash"])
        .arg(script())
        .env("DEMO_BIN_DIR", bin_dir)
        .env("DEMO_QUICK", "1")
        .env("DEMO_PREFIX", env.prefix())
        .env(SCOPE_ENV, env.prefix())
        // Shaping is done by tc, not by the (debug) binaries; the loose bound is for a
        // busy 2-core machine running other tests at the same time.
        .env("DEMO_TOLERANCE_PCT", "25")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    Ok(cmd)
}

/// What the demo left behind besides the leak checker's view: its temporary directory
/// (`/tmp/<prefix>-XXXXXX`; the test's own dir has the same prefix and is excluded) and
/// tc qdiscs on host devices named with the prefix.
fn other_leftovers(env: &TestEnv) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let own = env.dir().canonicalize()?;
    for entry in std::fs::read_dir(std::env::temp_dir())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{}-", env.prefix()))
            && entry.path().canonicalize().ok().as_ref() != Some(&own)
        {
            found.push(format!("directory {}", entry.path().display()));
        }
    }
    let qdiscs = run_cmd(Command::new("tc").args(["qdisc", "show"]))?;
    for line in qdiscs.lines() {
        if line.contains(&format!("dev {}", env.prefix())) {
            found.push(format!("host qdisc: {line}"));
        }
    }
    Ok(found)
}

fn read(out: &Path) -> String {
    std::fs::read_to_string(out).unwrap_or_default()
}

#[test]
fn demo_runs_to_its_table_and_leaves_nothing_behind() -> Result<()> {
    let Some(env) = demo_env("demo_script_full")? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    let out = env.path("demo.out");
    let status = demo_command(&env, &out)?
        .status()
        .context("running scripts/demo.sh")?;
    let text = read(&out);
    ensure!(
        status.success(),
        "scripts/demo.sh exited with {status}:\n{text}"
    );
    for needle in [
        "RESULT",
        "download (Mbit/s)",
        "upload (Mbit/s)",
        "agent core (adapter-server monitor)",
        "OpenVPN server final counters",
        "client core (adapter-client)",
        "Status history, agent core",
        "terminating  maxUnits used",
        "client cut off (tunnel gone)",
        "[PASS] throughput within ±25 %",
        "[PASS] agent bytes == OpenVPN",
        "[PASS] client cut off",
        "demo: all checks passed",
        "demo: cleaned up",
    ] {
        ensure!(
            text.contains(needle),
            "the demo's output lacks {needle:?}:\n{text}"
        );
    }
    leaks.wait_clean(Duration::from_secs(20))?;
    let other = other_leftovers(&env)?;
    ensure!(other.is_empty(), "the demo left behind: {other:?}");
    Ok(())
}

#[test]
fn demo_interrupted_half_way_cleans_up() -> Result<()> {
    let Some(env) = demo_env("demo_script_sigint")? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    let out = env.path("demo.out");
    let mut child = demo_command(&env, &out)?
        .spawn()
        .context("starting scripts/demo.sh")?;
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    // Interrupt while traffic flows through the tunnel: every part is running then.
    let waited = wait_until(
        Duration::from_secs(120),
        "the demo's measurement step",
        || read(&out).contains("download (server -> client"),
    );
    if let Err(e) = waited {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGINT);
        let _ = child.wait();
        bail!("{e:#}\n{}", read(&out));
    }
    // The line comes just before iperf3 starts: give it time to be running (it catches
    // SIGINT itself; the demo must still report the interruption, not an iperf3 failure).
    std::thread::sleep(Duration::from_millis(1500));
    let running = leaks.find()?;
    ensure!(
        running
            .iter()
            .filter(|l| l.starts_with("namespace"))
            .count()
            == 2
            && running.iter().any(|l| l.contains("openvpn")),
        "the running demo should have two namespaces and OpenVPN to clean up: {running:?}"
    );
    // Ctrl-C goes to the terminal's foreground process group: the script and its
    // foreground commands (the background services run in their own groups).
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGINT)?;
    let status = match wait_for(
        Duration::from_secs(60),
        "the demo to exit after SIGINT",
        || Ok(child.try_wait()?),
    ) {
        Ok(status) => status,
        Err(e) => {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            bail!("{e:#}\n{}", read(&out));
        }
    };
    let text = read(&out);
    ensure!(
        !status.success(),
        "an interrupted demo must not exit 0:\n{text}"
    );
    ensure!(
        text.contains("demo: interrupted") && text.contains("demo: cleaned up"),
        "the demo did not report the interruption and its cleanup:\n{text}"
    );
    leaks.wait_clean(Duration::from_secs(20))?;
    let other = other_leftovers(&env)?;
    ensure!(
        other.is_empty(),
        "the interrupted demo left behind: {other:?}"
    );
    Ok(())
}
