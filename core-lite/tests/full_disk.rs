//! Issue 11 item 8: a full disk. The core's data dir is on a small tmpfs (mounted by the test:
//! root needed), filled until SQLite cannot write. Writes are answered 503 `unavailable`
//! (retryable: the adapters buffer), `/health` says the storage is not ready (503, JSON, the
//! reason) while reads go on; once space is freed, `/health` is ok again and writes succeed;
//! nothing acknowledged is lost and the database passes `PRAGMA integrity_check`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use core_lite::testkit::{vpn_offering_input, TestCore, TestDb, TestOptions};
use service_api::{
    ApiError, Client, ErrorCode, StartSessionRequest, StopSessionRequest, UpdateSessionRequest,
};

const T: Duration = Duration::from_secs(10);

/// A tmpfs of `size` mounted on a fresh directory; unmounted (lazily) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> anyhow::Result<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("core-full-disk-")
            .tempdir()?;
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()?;
        anyhow::ensure!(st.success(), "mount -t tmpfs failed: {st}");
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem of `path`'s directory with one file until it is full.
fn fill(path: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path)?;
    for chunk in [64 * 1024, 4096, 512, 1] {
        let buf = vec![0x5a_u8; chunk];
        loop {
            match f.write_all(&buf).and_then(|()| f.sync_data()) {
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn api_code(e: &ApiError) -> (Option<u16>, Option<ErrorCode>) {
    match e {
        ApiError::Api {
            http_status, code, ..
        } => (Some(*http_status), Some(*code)),
        _ => (None, None),
    }
}

async fn health(url: &str) -> anyhow::Result<(u16, String, String)> {
    let r = reqwest::Client::new()
        .get(format!("{url}/health"))
        .send()
        .await?;
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok((status, ct, r.text().await?))
}

fn require_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("E2E_REQUIRED").is_none(),
        "the full-disk test mounts a tmpfs: run it as root (scripts/test.sh does)"
    );
    eprintln!("skipped: the full-disk test mounts a tmpfs and needs root");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_health_reports_it_until_space_is_back() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let fs = Tmpfs::mount("4m")?;
    let mut core = TestCore::start_with(TestOptions {
        parent_dir: Some(fs.path().to_path_buf()),
        // The SQLite file on the full filesystem (also in the PostgreSQL pass).
        database: TestDb::Sqlite,
        ..TestOptions::default()
    })
    .await?;
    core.register_vpn_module()?;
    let (pid, product_token) = core.create_product("vpn-1", "192.0.2.1:1194")?;
    let offering = core.publish_offering(&pid, &vpn_offering_input(1_000_000, None))?;
    let (_, key) = core.create_channel(&offering, None)?;
    let c = Client::new(&core.url, product_token.clone(), T)?;
    let s = c
        .start_session(&StartSessionRequest::new(key.clone(), Some("fd-1")))
        .await?;
    let report = |n: u64| UpdateSessionRequest {
        session_id: s.session_id.clone(),
        bytes_in: n,
        bytes_out: n,
    };
    assert_eq!(health(&core.url).await?.0, 200);

    // Fill the filesystem, then report usage until SQLite cannot write any more.
    let filler: PathBuf = fs.path().join("filler");
    fill(&filler)?;
    let mut acked = 0u64;
    let mut refused = None;
    for n in 1..=20_000u64 {
        match c.update_session(&report(n * 1_000)).await {
            Ok(r) => {
                assert_eq!(r.bytes_in, n * 1_000);
                acked = n * 1_000;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the full disk never refused a write");
    eprintln!("reports acknowledged up to {acked} bytes each way; then: {e}");
    assert_eq!(
        api_code(&e),
        (Some(503), Some(ErrorCode::Unavailable)),
        "a full disk is 503 unavailable, not {e}"
    );
    assert!(
        e.is_transport(),
        "503 is what the adapters retry and buffer"
    );
    // Every write is refused the same way; reads go on.
    let e = c
        .stop_session(&StopSessionRequest {
            session_id: s.session_id.clone(),
            bytes_in: acked + 5_000,
            bytes_out: acked + 5_000,
        })
        .await
        .expect_err("still full");
    assert_eq!(api_code(&e), (Some(503), Some(ErrorCode::Unavailable)));
    let admin = Client::new(&core.url, core.admin_token.clone(), T)?;
    assert_eq!(admin.channel_info(&key.0).await?.bytes_total, 2 * acked);
    // /health: not ready, saying why, in the API's error format.
    let (status, ct, body) = health(&core.url).await?;
    assert_eq!(status, 503, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"]["code"], "unavailable", "{body}");
    let why = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("storage not ready") && why.contains("full"),
        "{why}"
    );
    eprintln!("/health: {status} {why}");

    // Space is back: /health is ok again (it tries a write), and writes succeed.
    std::fs::remove_file(&filler)?;
    let mut ok = false;
    for _ in 0..50 {
        let (status, _, body) = health(&core.url).await?;
        if status == 200 {
            assert_eq!(body, "ok\n");
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "/health never recovered");
    let last = acked + 1_000_000;
    let r = c.update_session(&report(last)).await?;
    assert_eq!(r.channel_bytes, 2 * last);

    // Nothing acknowledged is lost, nothing refused was recorded, and the file is sound.
    let db_path = core.data_dir.join("core.db");
    core.stop().await?;
    let db = rusqlite::Connection::open(&db_path)?;
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok");
    let (bytes_in, bytes_out, stopped): (i64, i64, Option<i64>) = db.query_row(
        "SELECT bytes_in, bytes_out, stopped_at_ms FROM sessions WHERE id = ?1",
        [&s.session_id.0],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    assert_eq!(
        (u64::try_from(bytes_in)?, u64::try_from(bytes_out)?),
        (last, last)
    );
    assert_eq!(stopped, None, "the refused StopSession was not recorded");
    let total: i64 = db.query_row(
        "SELECT bytes_total FROM channels WHERE client_key = ?1",
        [&key.0],
        |r| r.get(0),
    )?;
    assert_eq!(u64::try_from(total)?, 2 * last);
    drop(db);
    drop(core);
    drop(fs);
    Ok(())
}
