//! core-lite on PostgreSQL vs SQLite (issue 14), in one run on one machine:
//!
//! 1. UpdateSession and AuthClient, closed loop (each caller its own connection, back to
//!    back): rate, p50, p99, CPU of core-lite and of PostgreSQL, on SQLite and on PostgreSQL.
//! 2. N sessions (default 10,000) each reporting once a second, half to each of two
//!    `core-lite serve` on one PostgreSQL database (open loop, evenly spread): achieved
//!    rate, p99 from the scheduled time, errors, CPU of each core and of PostgreSQL.
//!
//! Needs a PostgreSQL server: `--database` (every backend run gets a fresh database in it),
//! e.g. under `scripts/pg-test.sh` (set `PG_TEST_FSYNC=on` to measure with fsync, as SQLite
//! runs with synchronous=FULL):
//!
//!   sudo PG_TEST_FSYNC=on scripts/pg-test.sh sh -c \
//!     'target/release/bench-pg --bin-dir target/release --database "$CORE_LITE_TEST_DATABASE"'

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bench::{
    binary, clk_tck, cpu_ticks, ms, prepare_core_on, CoreProc, Cred, OfferingSpec, Summary, Table,
};
use clap::Parser;
use service_api::{
    AuthClientRequest, Client, Secret, SessionId, StartSessionRequest, UpdateSessionRequest,
    UpdateSessionsRequest,
};

#[derive(Parser, Debug)]
#[command(about = "core-lite on PostgreSQL vs SQLite; N sessions across two cores on PostgreSQL")]
struct Args {
    /// Directory with the release binary core-lite.
    #[arg(long, env = "BENCH_BIN_DIR")]
    bin_dir: PathBuf,
    /// A PostgreSQL URL naming a database on the server to use (fresh databases are created
    /// next to it).
    #[arg(long, env = "CORE_LITE_TEST_DATABASE")]
    database: String,
    /// Seconds per closed-loop point.
    #[arg(long, default_value_t = 5)]
    point_secs: u64,
    /// Callers of the closed loop.
    #[arg(long, default_value_t = 16)]
    callers: usize,
    /// Channels of the closed-loop phase.
    #[arg(long, default_value_t = 1000)]
    channels: usize,
    /// Sessions reporting once a second across two cores.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Seconds of the reporting phase.
    #[arg(long, default_value_t = 20)]
    report_secs: u64,
    /// Connections per core in the reporting phase.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Reporting phase as the monitors send it: each connection stands for one VPN
    /// server's monitor and sends all its sessions' reports of a second in one
    /// UpdateSessions call (≤ 500 per call); without it, one UpdateSession call per report.
    #[arg(long)]
    batched: bool,
    /// Only the two-core reporting phase (skip the closed-loop SQLite/PostgreSQL points).
    #[arg(long)]
    reporting_only: bool,
}

fn client(url: &str, token: &Secret) -> Result<Client> {
    Ok(Client::new(url, token.clone(), Duration::from_secs(10))?)
}

/// CPU ticks of every `postgres` process (server and backends).
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|pid| cpu_ticks(pid).ok())
        .sum()
}

/// CPU of some processes over a window, % of one core.
struct Cpu {
    hz: u64,
    start: Instant,
    cores: Vec<(u32, u64)>,
    pg: u64,
}

impl Cpu {
    fn start(core_pids: &[u32]) -> Result<Cpu> {
        Ok(Cpu {
            hz: clk_tck(),
            start: Instant::now(),
            cores: core_pids
                .iter()
                .map(|p| Ok((*p, cpu_ticks(*p)?)))
                .collect::<Result<_>>()?,
            pg: postgres_ticks(),
        })
    }

    /// (each core's %, PostgreSQL's %).
    fn percent(&self) -> Result<(Vec<f64>, f64)> {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let pct = |ticks: u64| 100.0 * ticks as f64 / self.hz as f64 / wall;
        let cores = self
            .cores
            .iter()
            .map(|(p, t0)| Ok(pct(cpu_ticks(*p)?.saturating_sub(*t0))))
            .collect::<Result<_>>()?;
        Ok((cores, pct(postgres_ticks().saturating_sub(self.pg))))
    }
}

/// A fresh database next to `url`'s.
async fn fresh(url: &str) -> Result<String> {
    core_lite::testkit::fresh_database(url).await
}

/// `url` for the preparation only: commits not waiting for the WAL flush (thousands of
/// channels in seconds, not minutes); the measured cores use `url` itself.
fn quick(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20synchronous_commit%3Doff")
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Auth,
    Update,
}

async fn start_sessions(c: &Client, creds: &[Cred], tag: &str) -> Result<Vec<SessionId>> {
    let mut out = Vec::with_capacity(creds.len());
    for (i, cr) in creds.iter().enumerate() {
        let r = c
            .start_session(&StartSessionRequest {
                client_key: cr.key.clone(),
                connection_id: Some(format!("{tag}|10.0.0.1:{i}|1")),
                client_addr: None,
                vpn_addr: None,
            })
            .await
            .context("StartSession")?;
        out.push(r.session_id);
    }
    Ok(out)
}

struct Point {
    rate: f64,
    lat: Summary,
    errors: u64,
    core_cpu: f64,
    pg_cpu: f64,
}

/// `callers` connections calling `op` back to back for `secs`.
#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    url: &str,
    token: &Secret,
    creds: &Arc<Vec<Cred>>,
    sessions: &Arc<Vec<SessionId>>,
    op: Op,
    callers: usize,
    secs: u64,
    pid: u32,
) -> Result<Point> {
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let cpu = Cpu::start(&[pid])?;
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..callers {
        let c = client(url, token)?;
        let (creds, sessions, counter) = (creds.clone(), sessions.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, w);
            while Instant::now() < end {
                let t = Instant::now();
                let r = match op {
                    Op::Auth => {
                        let k = i % creds.len();
                        let cr = &creds[k];
                        // Each client from its own address, as a VPN server's clients are
                        // (one address for all would spend that address's throttle budget:
                        // a check in flight holds one unit of it).
                        c.auth_client(&AuthClientRequest {
                            client_key: cr.key.clone(),
                            password: cr.password.clone(),
                            client_addr: Some(format!(
                                "10.{}.{}.{}:40000",
                                k / 65_536 % 256,
                                k / 256 % 256,
                                k % 256
                            )),
                        })
                        .await
                        .map(drop)
                    }
                    Op::Update => {
                        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        c.update_session(&UpdateSessionRequest {
                            session_id: sessions[i % sessions.len()].clone(),
                            bytes_in: n * 1000,
                            bytes_out: n * 1000,
                        })
                        .await
                        .map(drop)
                    }
                };
                lat.push(t.elapsed());
                if let Err(e) = r {
                    if errors == 0 {
                        eprintln!("bench-pg: {op:?}: first error: {e}");
                    }
                    errors += 1;
                }
                i += callers;
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    let (cores, pg_cpu) = cpu.percent()?;
    Ok(Point {
        rate: all.len() as f64 / wall,
        lat: Summary::of(&all).context("no calls")?,
        errors,
        core_cpu: cores[0],
        pg_cpu,
    })
}

async fn backend_points(args: &Args, bin: &Path, tmp: &Path, pg: bool) -> Result<Vec<Vec<String>>> {
    let name = if pg { "PostgreSQL" } else { "SQLite" };
    let db = if pg {
        Some(fresh(&args.database).await?)
    } else {
        None
    };
    let dir = tmp.join(format!("core-{name}"));
    eprintln!("bench-pg: {name}: preparing {} channels", args.channels);
    let prep = prepare_core_on(
        &dir,
        db.as_deref().map(quick).as_deref(),
        &[OfferingSpec {
            speed: None,
            max_units: 1_000_000,
            channels: args.channels,
        }],
    )?;
    let core = CoreProc::start_on(
        bin,
        &dir,
        db.as_deref(),
        None,
        &tmp.join(format!("{name}.log")),
    )?;
    let starter = client(&core.url, &prep.token)?;
    let creds = Arc::new(prep.creds[0].clone());
    let sessions = Arc::new(start_sessions(&starter, &creds, "closed").await?);
    let mut rows = Vec::new();
    for op in [Op::Auth, Op::Update] {
        eprintln!("bench-pg: {name}: {op:?} × {}", args.callers);
        let p = closed_loop(
            &core.url,
            &prep.token,
            &creds,
            &sessions,
            op,
            args.callers,
            args.point_secs,
            core.pid(),
        )
        .await?;
        rows.push(vec![
            name.to_string(),
            format!("{op:?}"),
            args.callers.to_string(),
            format!("{:.0}", p.rate),
            ms(p.lat.p50),
            ms(p.lat.p99),
            p.errors.to_string(),
            format!("{:.0}", p.core_cpu),
            if pg {
                format!("{:.0}", p.pg_cpu)
            } else {
                "-".into()
            },
        ]);
    }
    Ok(rows)
}

/// Each session reports once a second, evenly spread, sessions `i % 2` to core `i % 2`.
async fn reporting(args: &Args, bin: &Path, tmp: &Path) -> Result<String> {
    let db = fresh(&args.database).await?;
    let dir = tmp.join("core-two");
    eprintln!(
        "bench-pg: two cores: preparing {} channels on PostgreSQL",
        args.sessions
    );
    let t = Instant::now();
    let prep = prepare_core_on(
        &dir,
        Some(&quick(&db)),
        &[OfferingSpec {
            speed: None,
            max_units: 1_000_000,
            channels: args.sessions,
        }],
    )?;
    eprintln!("bench-pg: prepared in {:.0} s", t.elapsed().as_secs_f64());
    let a = CoreProc::start_on(bin, &dir, Some(&db), None, &tmp.join("a.log"))?;
    let b = CoreProc::start_on(bin, &dir, Some(&db), None, &tmp.join("b.log"))?;
    let urls = [a.url.clone(), b.url.clone()];
    let creds = &prep.creds[0];
    // Session i on core i % 2, started 32 at a time.
    let mut starts = Vec::new();
    let per = creds.len().div_ceil(32);
    for (k, chunk) in creds.chunks(per.max(1)).enumerate() {
        let urls = urls.clone();
        let (token, chunk) = (prep.token.clone(), chunk.to_vec());
        starts.push(tokio::spawn(async move {
            let cs = [client(&urls[0], &token)?, client(&urls[1], &token)?];
            let mut out = Vec::with_capacity(chunk.len());
            for (j, cr) in chunk.iter().enumerate() {
                let i = k * per + j;
                let r = cs[i % 2]
                    .start_session(&StartSessionRequest {
                        client_key: cr.key.clone(),
                        connection_id: Some(format!("two|10.0.0.1:{i}|1")),
                        client_addr: None,
                        vpn_addr: None,
                    })
                    .await
                    .context("StartSession")?;
                out.push(r.session_id);
            }
            anyhow::Ok(out)
        }));
    }
    let mut sessions = Vec::with_capacity(creds.len());
    for s in starts {
        sessions.extend(s.await??);
    }
    eprintln!("bench-pg: {} sessions started", sessions.len());
    let sessions = Arc::new(sessions);
    let n = sessions.len();
    let period = Duration::from_secs(1);
    let conns = args.conns * 2;
    eprintln!(
        "bench-pg: {n} sessions reporting once a second for {} s",
        args.report_secs
    );
    let cpu = Cpu::start(&[a.pid(), b.pid()])?;
    let t0 = Instant::now() + Duration::from_millis(200);
    let end = t0 + Duration::from_secs(args.report_secs);
    let mut tasks = Vec::new();
    for w in 0..conns {
        // Connection w serves sessions w, w + conns, ...; all on one core (w % 2 = i % 2
        // since conns is even).
        let c = client(&urls[w % 2], &prep.token)?;
        let sessions = sessions.clone();
        let batched = args.batched;
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut sent) = (Vec::new(), 0u64, 0u64);
            let mut round = 0u64;
            'outer: loop {
                if batched {
                    let at = t0
                        + period * u32::try_from(round).unwrap_or(u32::MAX)
                        + period.mul_f64(w as f64 / conns as f64);
                    if at >= end {
                        break 'outer;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    let v = (round + 1) * 1000;
                    let mine: Vec<usize> = (w..n).step_by(conns).collect();
                    for chunk in mine.chunks(500) {
                        let req = UpdateSessionsRequest {
                            updates: chunk
                                .iter()
                                .map(|&i| UpdateSessionRequest {
                                    session_id: sessions[i].clone(),
                                    bytes_in: v,
                                    bytes_out: v,
                                })
                                .collect(),
                        };
                        let k = chunk.len() as u64;
                        match c.update_sessions(&req).await {
                            Ok(r) => {
                                errors +=
                                    r.results.iter().filter(|x| x.error.is_some()).count() as u64;
                            }
                            Err(_) => errors += k,
                        }
                        let l = at.elapsed();
                        lat.extend(std::iter::repeat_n(l, chunk.len()));
                        sent += k;
                    }
                    round += 1;
                    continue;
                }
                for i in (w..n).step_by(conns) {
                    let at = t0
                        + period * u32::try_from(round).unwrap_or(u32::MAX)
                        + period.mul_f64(i as f64 / n as f64);
                    if at >= end {
                        break 'outer;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    let v = (round + 1) * 1000;
                    let r = c
                        .update_session(&UpdateSessionRequest {
                            session_id: sessions[i].clone(),
                            bytes_in: v,
                            bytes_out: v,
                        })
                        .await;
                    lat.push(at.elapsed());
                    errors += u64::from(r.is_err());
                    sent += 1;
                }
                round += 1;
            }
            (lat, errors, sent)
        }));
    }
    let (mut all, mut errors, mut sent) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, e, s) = t.await?;
        all.extend(l);
        errors += e;
        sent += s;
    }
    let wall = t0.elapsed().as_secs_f64();
    let (cores, pg_cpu) = cpu.percent()?;
    let lat = Summary::of(&all).context("no reports")?;
    let mut t = Table::new(&[
        "sessions",
        "reports",
        "offered/s",
        "achieved/s",
        "p50 ms (from schedule)",
        "p99 ms (from schedule)",
        "errors",
        "core A CPU %",
        "core B CPU %",
        "PostgreSQL CPU %",
    ]);
    t.row(vec![
        n.to_string(),
        if args.batched {
            format!("UpdateSessions, one call/s per connection ({conns} connections)")
        } else {
            "UpdateSession, one call per report".to_string()
        },
        n.to_string(),
        format!("{:.0}", sent as f64 / wall),
        ms(lat.p50),
        ms(lat.p99),
        errors.to_string(),
        format!("{:.0}", cores[0]),
        format!("{:.0}", cores[1]),
        format!("{pg_cpu:.0}"),
    ]);
    Ok(t.render())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = binary(&args.bin_dir, "core-lite")?;
    let tmp = bench::TempDir::new("bench-pg")?;
    let mut t = Table::new(&[
        "database",
        "call",
        "callers",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "core-lite CPU %",
        "PostgreSQL CPU %",
    ]);
    println!("{}", bench::machine_line());
    if !args.reporting_only {
        for pg in [false, true] {
            for row in backend_points(&args, &bin, tmp.path(), pg).await? {
                t.row(row);
            }
        }
        println!("\n### One core-lite, closed loop: SQLite vs PostgreSQL\n");
        println!("{}", t.render());
    }
    let two = reporting(&args, &bin, tmp.path()).await?;
    println!("\n### Two core-lite on one PostgreSQL, every session reporting once a second\n");
    println!("{two}");
    Ok(())
}
