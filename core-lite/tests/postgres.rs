//! Several cores on one PostgreSQL database (the restart is in `postgres_restart.rs`).
//!
//! Needs a PostgreSQL server: `sudo scripts/pg-test.sh cargo test -p core-lite --test
//! postgres` starts a private one (`CORE_LITE_TEST_DATABASE`, and `CORE_LITE_TEST_PG_BIN` /
//! `CORE_LITE_TEST_PG_DATA` for the restart). Without it the tests say so and pass (scripts/test.sh
//! runs the core-lite suite again under scripts/pg-test.sh).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use core_lite::testkit::{fresh_database, vpn_offering_input, TestCore, TestDb, TestOptions};
use service_api::{
    AuthClientRequest, Client, ServiceStatus, StartSessionRequest, UpdateSessionRequest,
};

const T: Duration = Duration::from_secs(10);

/// The server's URL, or `None` (skip) when there is none and it is not required.
fn server() -> Option<String> {
    match std::env::var("CORE_LITE_TEST_DATABASE") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            // scripts/test.sh runs the core-lite suite a second time under scripts/pg-test.sh,
            // where this is set: the plain pass has nothing to run here.
            eprintln!("skipped: no PostgreSQL (run under scripts/pg-test.sh)");
            None
        }
    }
}

/// A core on database `url`; with `like`, another core of the same agent (its agent.key).
async fn core_on(url: &str, like: Option<&TestCore>) -> anyhow::Result<TestCore> {
    TestCore::start_with(TestOptions {
        database: TestDb::Postgres(url.to_string()),
        agent_key_from: like.map(|c| c.data_dir.join("agent.key")),
        ..TestOptions::default()
    })
    .await
}

#[test]
fn cores_starting_together_migrate_once() -> anyhow::Result<()> {
    let Some(base) = server() else {
        return Ok(());
    };
    let rt = tokio::runtime::Runtime::new()?;
    let db = rt.block_on(fresh_database(&base))?;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || core_lite::store::Db::open_postgres(&db).map(drop))
        })
        .collect();
    for o in opens {
        o.join().expect("thread")?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cores_on_one_database_keep_totals_exact_and_change_status_once() -> anyhow::Result<()>
{
    let Some(base) = server() else {
        return Ok(());
    };
    let db = fresh_database(&base).await?;
    let a = core_on(&db, None).await?;
    let b = core_on(&db, Some(&a)).await?;
    // Set up on core A only: core B sees the same module, product, token, offering, channel.
    a.register_vpn_module()?;
    let (pid, token) = a.create_product("vpn-1", "192.0.2.1:1194")?;
    // 10 MB prepaid: the channel runs out of units in the middle of the reports.
    let offering = a.publish_offering(&pid, &vpn_offering_input(10, None))?;
    let (_, key) = a.create_channel(&offering, None)?;
    let access = a.export_access(&key.0)?;
    let via_b = Client::new(&b.url, token.clone(), T)?;
    let auth = via_b
        .auth_client(&AuthClientRequest {
            client_key: key.clone(),
            password: access.password,
            client_addr: None,
        })
        .await?;
    assert_eq!(auth.status, ServiceStatus::Activating);
    let s = via_b
        .start_session(&StartSessionRequest::new(key.clone(), Some("c-1")))
        .await?;

    // 8 reporters, half on each core, send the session's cumulative counters (every report
    // a new, higher value, arriving in any order): the channel's total must be exactly the
    // highest counters, whatever the interleaving of the two cores' transactions.
    const REPORTS: u64 = 400;
    const STEP: u64 = 20_000;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = if i % 2 == 0 { &a.url } else { &b.url };
        let c = Client::new(url, token.clone(), T)?;
        let next = next.clone();
        let sid = s.session_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst) + 1;
                if n > REPORTS {
                    return errors;
                }
                let r = c
                    .update_session(&UpdateSessionRequest {
                        session_id: sid.clone(),
                        bytes_in: n * STEP,
                        bytes_out: n * STEP,
                    })
                    .await;
                if let Err(e) = r {
                    errors.push(format!("report {n}: {e}"));
                }
            }
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await?);
    }
    assert!(errors.is_empty(), "reports failed: {errors:?}");
    let expected = 2 * REPORTS * STEP;
    for core in [&a, &b] {
        let info = core.channel(&key.0)?;
        assert_eq!(info.bytes_total, expected, "bytes on {}", core.url);
    }
    // The status machine moved once per step: 16 MB reported of 10 MB (maxUnits) bought.
    let info = b.channel(&key.0)?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for change in &info.history {
        *seen.entry(change.status.as_str().to_string()).or_default() += 1;
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a status entered twice: {:?}",
        info.history
    );
    assert!(
        seen.contains_key("terminating"),
        "the channel used up its units: {:?}",
        info.history
    );
    Ok(())
}

/// A `core-lite serve` process on database `db` with a copy of `key` (the agent's key).
struct Serve {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start(db: &str, key: &std::path::Path) -> anyhow::Result<Serve> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        std::fs::DirBuilder::new().mode(0o700).create(&data)?;
        std::fs::copy(key, data.join("agent.key"))?;
        std::fs::set_permissions(
            data.join("agent.key"),
            std::fs::Permissions::from_mode(0o600),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_core-lite"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--database", db, "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(Serve {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    async fn ready(&self) -> anyhow::Result<()> {
        for _ in 0..100 {
            if reqwest::get(format!("{}/health", self.url))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("core-lite serve at {} never became ready", self.url)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_core_fails_over_to_the_other_and_loses_no_acknowledged_report(
) -> anyhow::Result<()> {
    let Some(base) = server() else {
        return Ok(());
    };
    let db = fresh_database(&base).await?;
    // The agent set up once (module, product, offering, channel) on the database.
    let setup = core_on(&db, None).await?;
    setup.register_vpn_module()?;
    let (pid, token) = setup.create_product("vpn-1", "192.0.2.1:1194")?;
    let offering = setup.publish_offering(&pid, &vpn_offering_input(100_000, None))?;
    let (_, key) = setup.create_channel(&offering, None)?;
    let agent_key = setup.data_dir.join("agent.key");
    let mut a = Serve::start(&db, &agent_key)?;
    let b = Serve::start(&db, &agent_key)?;
    a.ready().await?;
    b.ready().await?;
    // The adapters' client with both cores, A first.
    let c = Client::new(&format!("{},{}", a.url, b.url), token, T)?;
    let s = c
        .start_session(&StartSessionRequest::new(key.clone(), Some("c-1")))
        .await?;
    assert_eq!(c.base_url(), a.url);
    // Reports one after the other; A is killed (SIGKILL) while they run, whatever is in
    // flight. A report either fails on both (the test fails) or is acknowledged.
    let progress = Arc::new(AtomicU64::new(0));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(a.child.id())?);
    let killer = {
        let progress = progress.clone();
        tokio::spawn(async move {
            while progress.load(Ordering::SeqCst) < 150 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
        })
    };
    let mut acked = 0u64;
    for n in 1..=300u64 {
        let r = c
            .update_session(&UpdateSessionRequest {
                session_id: s.session_id.clone(),
                bytes_in: n * 1_000,
                bytes_out: n * 1_000,
            })
            .await?;
        assert_eq!(
            r.channel_bytes,
            2 * n * 1_000,
            "report {n} on {}",
            c.base_url()
        );
        acked = n * 1_000;
        progress.store(n, Ordering::SeqCst);
    }
    killer.await??;
    a.child.wait()?;
    assert_eq!(c.base_url(), b.url, "the client moved to B");
    // Everything acknowledged, by A before its death or by B, is in the database.
    assert_eq!(setup.channel(&key.0)?.bytes_total, 2 * acked);
    Ok(())
}

/// `core-lite --data-dir DIR --database DB ARGS…`, its stdout as JSON.
fn cli(data: &std::path::Path, db: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_core-lite"))
        .arg("--data-dir")
        .arg(data)
        .args(["--database", db])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "core-lite {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn admin_commands_work_on_the_shared_database() -> anyhow::Result<()> {
    let Some(base) = server() else {
        return Ok(());
    };
    let rt = tokio::runtime::Runtime::new()?;
    let db = rt.block_on(fresh_database(&base))?;
    let dir = tempfile::tempdir()?;
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let module = core_lite::testkit::vpn_module_dir();
    let module = module.to_str().context("path")?;
    cli(&one, &db, &["module", "register", module])?;
    let created = cli(
        &one,
        &db,
        &[
            "product",
            "create",
            "--name",
            "vpn-1",
            "--module",
            "vpn",
            "--endpoint",
            "192.0.2.1",
        ],
    )?;
    // Another core's data dir with the same agent key sees the product on the database.
    std::fs::create_dir(&two)?;
    std::fs::copy(one.join("agent.key"), two.join("agent.key"))?;
    let shown = cli(&two, &db, &["product", "show", "vpn-1"])?;
    assert!(created["productId"].is_string(), "{created}");
    assert_eq!(shown["productId"], created["productId"], "{shown}");
    // Without --database, `two` is its own SQLite core: no such product there.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_core-lite"))
        .arg("--data-dir")
        .arg(&two)
        .env_remove("CORE_LITE_DATABASE")
        .args(["product", "show", "vpn-1"])
        .output()?;
    assert!(
        !out.status.success(),
        "the SQLite core has no product vpn-1"
    );
    Ok(())
}
