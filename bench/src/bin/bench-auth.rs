//! One login through the auth path, end to end, against a running core-lite (its own
//! process): the classic synchronous script (sh + blocking curl, the baseline), the
//! adapter-server hook in sync mode, the hook deferred (process start → control file
//! written), the small `adapter-server-hook` handing the login to a running monitor
//! (process start → control file written by the monitor) and the monitor with
//! `--client-auth` (>CLIENT:CONNECT written → client-auth-nt received). The hooks are run
//! exactly as OpenVPN runs them: empty environment plus OpenVPN's script variables.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::fake_mgmt::{client_block, FakeMgmt};
use bench::{
    binary, ms, prepare_core, ratio, verdict_le, write_baseline_script, CoreProc, Cred,
    OfferingSpec, Summary, Table, TempDir,
};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "auth: one login end to end, hook deferred / sync / monitor --client-auth vs a sh+curl script"
)]
struct Args {
    /// Directory with the release binaries core-lite, adapter-server and
    /// adapter-server-hook.
    #[arg(long, env = "BENCH_BIN_DIR")]
    bin_dir: PathBuf,
    /// The adapter-server-hook to use (default: the one in --bin-dir); scripts/bench.sh
    /// passes the statically linked one that scripts/dist.sh ships.
    #[arg(long, env = "BENCH_HOOK")]
    hook: Option<PathBuf>,
    /// Logins per variant.
    #[arg(long, env = "BENCH_LOGINS", default_value_t = 300)]
    logins: usize,
    /// Pin core-lite to this CPU (taskset -c).
    #[arg(long, env = "BENCH_CORE_CPU")]
    core_cpu: Option<usize>,
}

/// OpenVPN's script environment for auth-user-pass-verify via-file (the credentials are
/// in the file named by the last argument, see [`creds_file`]).
fn auth_env(c: &Cred, i: usize, control: Option<&Path>) -> Vec<(String, String)> {
    let mut v = vec![
        ("script_type".to_string(), "user-pass-verify".to_string()),
        ("common_name".into(), c.key.0.clone()),
        ("untrusted_ip".into(), "10.99.0.2".into()),
        ("untrusted_port".into(), (30000 + i % 30000).to_string()),
    ];
    if let Some(p) = control {
        v.push(("auth_control_file".into(), p.display().to_string()));
        v.push((
            "auth_failed_reason_file".into(),
            format!("{}.reason", p.display()),
        ));
    }
    v
}

/// Writes the via-file credentials file OpenVPN would write (before the clock starts).
fn creds_file(dir: &Path, c: &Cred) -> Result<String> {
    let p = dir.join("creds");
    std::fs::write(&p, format!("{}\n{}\n", c.key.0, c.password.expose()))?;
    Ok(p.display().to_string())
}

/// `argv` + the credentials file argument.
fn with_file(mut argv: Vec<String>, file: String) -> Vec<String> {
    argv.push(file);
    argv
}

/// Runs `argv` with `env` only (like OpenVPN); returns (time to exit, exit code).
fn run_script(argv: &[String], env: &[(String, String)]) -> Result<(Duration, Option<i32>)> {
    let t = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {}", argv[0]))?;
    Ok((t.elapsed(), status.code()))
}

/// The answer files as OpenVPN leaves them for the script: created, empty (the hook never
/// creates them).
fn answer_files(control: &Path) -> Result<()> {
    std::fs::write(control, b"")?;
    std::fs::write(format!("{}.reason", control.display()), b"")?;
    Ok(())
}

/// Deferred: spawn → exit (OpenVPN resumes) and spawn → control file holds the answer.
fn run_deferred(
    argv: &[String],
    env: &[(String, String)],
    control: &Path,
) -> Result<(Duration, Duration, String)> {
    let t = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let exited = t.elapsed();
    if status.code() != Some(2) {
        bail!("deferred hook exited with {status} (expected 2)");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(control) {
            if !s.is_empty() {
                return Ok((exited, t.elapsed(), s.trim().to_string()));
            }
        }
        if Instant::now() > deadline {
            bail!("no answer in {} after 10 s", control.display());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let core_bin = binary(&args.bin_dir, "core-lite")?;
    let adapter = binary(&args.bin_dir, "adapter-server")?;
    let small_hook = match &args.hook {
        Some(h) => h.clone(),
        None => binary(&args.bin_dir, "adapter-server-hook")?,
    };
    let tmp = TempDir::new("bench-auth")?;
    let dir = tmp.path().to_path_buf();
    let prep = prepare_core(
        &dir.join("core"),
        &[OfferingSpec {
            speed: None,
            max_units: 1000,
            channels: 50,
        }],
    )?;
    let core = CoreProc::start(
        &core_bin,
        &prep.data_dir,
        args.core_cpu,
        &dir.join("core.log"),
    )?;
    let creds = &prep.creds[0];
    let script = write_baseline_script(&dir, &core.url, &prep.token)?;
    let state = dir.join("hook-state");
    std::fs::create_dir_all(&state)?;
    let hook = |sync: bool| {
        let mut v = vec![
            adapter.display().to_string(),
            format!("--core-url={}", core.url),
            format!("--token-file={}", prep.token_file.display()),
            "hook".to_string(),
            format!("--state-dir={}", state.display()),
        ];
        if sync {
            v.push("--sync".into());
        }
        v
    };
    let n = args.logins;
    let mut results: Vec<(String, Summary, String)> = Vec::new();

    eprintln!("bench-auth: baseline script × {n}");
    let mut lat = Vec::new();
    for i in 0..n {
        let c = &creds[i % creds.len()];
        let (d, code) = run_script(
            &with_file(vec![script.display().to_string()], creds_file(&dir, c)?),
            &auth_env(c, i, None),
        )?;
        if code != Some(0) {
            bail!("baseline script denied a valid login (exit {code:?})");
        }
        lat.push(d);
    }
    let base = Summary::of(&lat).context("no samples")?;
    results.push((
        "classic script: sh + blocking curl (baseline), process start → exit".into(),
        base,
        "sync: OpenVPN blocked for the whole time".into(),
    ));

    eprintln!("bench-auth: hook --sync × {n}");
    let mut lat = Vec::new();
    for i in 0..n {
        let c = &creds[i % creds.len()];
        let (d, code) = run_script(
            &with_file(hook(true), creds_file(&dir, c)?),
            &auth_env(c, i, None),
        )?;
        if code != Some(0) {
            bail!("hook --sync denied a valid login (exit {code:?})");
        }
        lat.push(d);
    }
    results.push((
        "adapter-server hook --sync, process start → exit".into(),
        Summary::of(&lat).context("no samples")?,
        "sync: OpenVPN blocked for the whole time".into(),
    ));

    eprintln!("bench-auth: hook deferred × {n}");
    let mut answer = Vec::new();
    let mut exit = Vec::new();
    for i in 0..n {
        let c = &creds[i % creds.len()];
        let control = dir.join(format!("acf-{i}"));
        answer_files(&control)?;
        let (e, a, text) = run_deferred(
            &with_file(hook(false), creds_file(&dir, c)?),
            &auth_env(c, i, Some(&control)),
            &control,
        )?;
        if text != "1" {
            bail!("deferred hook answered {text:?} for a valid login");
        }
        exit.push(e);
        answer.push(a);
    }
    let exit_s = Summary::of(&exit).context("no samples")?;
    results.push((
        "adapter-server hook (deferred), process start → control file written".into(),
        Summary::of(&answer).context("no samples")?,
        format!(
            "OpenVPN blocked only until the hook exits: p50 {} ms, p99 {} ms",
            ms(exit_s.p50),
            ms(exit_s.p99)
        ),
    ));

    eprintln!("bench-auth: adapter-server-hook hand-off × {n}");
    let (exit_s, answer_s) = handoff_logins(
        &small_hook,
        &adapter,
        &core,
        &prep.token_file,
        creds,
        &dir,
        n,
    )?;
    results.push((
        "adapter-server-hook, hand-off to the monitor, process start → control file written".into(),
        answer_s,
        format!(
            "OpenVPN blocked only until the hook exits: p50 {} ms, p99 {} ms",
            ms(exit_s.p50),
            ms(exit_s.p99)
        ),
    ));

    eprintln!("bench-auth: monitor --client-auth × {n}");
    let ca = monitor_client_auth(&adapter, &core, &prep.token_file, creds, &dir, n)?;
    results.push((
        "adapter-server monitor --client-auth, >CLIENT:CONNECT → client-auth-nt".into(),
        ca,
        "OpenVPN never blocked (management interface is asynchronous)".into(),
    ));

    let mut t = Table::new(&[
        "auth path",
        "logins",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p50 vs baseline",
        "p99 vs baseline",
        "target p99 ≤ 10 ms",
        "OpenVPN event loop",
    ]);
    for (name, s, note) in &results {
        t.row(vec![
            name.clone(),
            s.n.to_string(),
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ratio(s.p50.as_secs_f64(), base.p50.as_secs_f64()),
            ratio(s.p99.as_secs_f64(), base.p99.as_secs_f64()),
            verdict_le(s.p99.as_secs_f64() * 1000.0, 10.0),
            note.clone(),
        ]);
    }
    println!("### Auth: one login end to end (sequential logins, valid credentials)\n");
    println!("{}", t.render());
    drop(core);
    Ok(())
}

/// `n` sequential logins through `adapter-server-hook` handing them to a monitor (on a
/// fake management socket, `--handoff-socket`): (spawn → exit, spawn → answer written).
/// The hook's fallback points to nothing, so a login that was not handed off fails the run.
fn handoff_logins(
    small_hook: &Path,
    adapter: &Path,
    core: &CoreProc,
    token_file: &Path,
    creds: &[Cred],
    dir: &Path,
    n: usize,
) -> Result<(Summary, Summary)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mgmt = dir.join("mgmt-handoff.sock");
        let fake = FakeMgmt::bind(&mgmt)?;
        let socket = dir.join("handoff.sock");
        let log = std::fs::File::create(dir.join("monitor-handoff.log"))?;
        let mut child = Command::new(adapter)
            .arg(format!("--core-url={}", core.url))
            .arg(format!("--token-file={}", token_file.display()))
            .args(["monitor", "--no-shaping", "--management"])
            .arg(&mgmt)
            .arg("--handoff-socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the monitor")?;
        let r = async {
            let _conn = tokio::time::timeout(Duration::from_secs(10), fake.accept())
                .await
                .context("the monitor did not connect")??;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !socket.exists() {
                if Instant::now() > deadline {
                    bail!("the monitor made no hand-off socket");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let argv = vec![
                small_hook.display().to_string(),
                format!("--core-url={}", core.url),
                format!("--token-file={}", token_file.display()),
                "hook".to_string(),
                format!("--handoff-socket={}", socket.display()),
            ];
            let (mut exit, mut answer) = (Vec::new(), Vec::new());
            for i in 0..n {
                let c = &creds[i % creds.len()];
                let control = dir.join(format!("acf-handoff-{i}"));
                answer_files(&control)?;
                let mut env = auth_env(c, i, Some(&control));
                env.push((
                    "ADAPTER_SERVER_HOOK_FALLBACK".into(),
                    "/nonexistent/adapter-server".into(),
                ));
                let (e, a, text) = run_deferred(
                    &with_file(argv.clone(), creds_file(dir, c)?),
                    &env,
                    &control,
                )?;
                if text != "1" {
                    bail!("the hand-off answered {text:?} for a valid login");
                }
                exit.push(e);
                answer.push(a);
            }
            Ok((
                Summary::of(&exit).context("no samples")?,
                Summary::of(&answer).context("no samples")?,
            ))
        }
        .await;
        bench::terminate_child(&mut child);
        r
    })
}

/// The monitor with --client-auth on a fake management socket: `n` sequential
/// >CLIENT:CONNECT blocks, each timed until the monitor's `client-auth-nt` for it.
fn monitor_client_auth(
    adapter: &Path,
    core: &CoreProc,
    token_file: &Path,
    creds: &[Cred],
    dir: &Path,
    n: usize,
) -> Result<Summary> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sock = dir.join("mgmt-auth.sock");
        let fake = FakeMgmt::bind(&sock)?;
        let log = std::fs::File::create(dir.join("monitor-auth.log"))?;
        let mut child = Command::new(adapter)
            .arg(format!("--core-url={}", core.url))
            .arg(format!("--token-file={}", token_file.display()))
            .args(["monitor", "--no-shaping", "--client-auth", "--management"])
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the monitor")?;
        let r = async {
            let mut conn = tokio::time::timeout(Duration::from_secs(10), fake.accept())
                .await
                .context("the monitor did not connect")??;
            // Let it send its start-up commands.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while conn.commands.try_recv().is_ok() {}
            let mut lat = Vec::new();
            for i in 0..n {
                let c = &creds[i % creds.len()];
                let cid = i as u64 + 1;
                let env = [
                    ("username", c.key.0.clone()),
                    ("password", c.password.expose().to_string()),
                    ("common_name", c.key.0.clone()),
                    ("untrusted_ip", "10.99.0.2".to_string()),
                    ("untrusted_port", (30000 + i).to_string()),
                ];
                let block = client_block(&format!("CONNECT,{cid},0"), &env);
                let t = Instant::now();
                conn.send.send(block)?;
                loop {
                    let (at, line) =
                        tokio::time::timeout(Duration::from_secs(10), conn.commands.recv())
                            .await
                            .context("no answer from the monitor")?
                            .context("monitor closed the connection")?;
                    if line.starts_with(&format!("client-auth-nt {cid} ")) {
                        lat.push(at.duration_since(t));
                        break;
                    }
                    if line.starts_with(&format!("client-deny {cid} ")) {
                        bail!("the monitor denied a valid login: {line}");
                    }
                }
            }
            Summary::of(&lat).context("no samples")
        }
        .await;
        bench::terminate_child(&mut child);
        r
    })
}
