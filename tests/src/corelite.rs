//! The `core-lite` binary: its CLI (JSON on stdout) and `serve` as a `Proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::env::{bin_path, TestEnv, SCOPE_ENV};
use crate::netns::{run_cmd, Netns};
use crate::proc::{wait_for_tcp, Proc, ProcBuilder};

/// How long `CoreLite::serve` waits for the listener.
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// One core-lite data directory (inside the test's temp dir) and the built binary.
pub struct CoreLite {
    bin: PathBuf,
    data_dir: PathBuf,
    scope: String,
}

impl CoreLite {
    /// `<env dir>/<name>` as data dir; the binary from `bin_path("core-lite")`.
    pub fn new(env: &TestEnv, name: &str) -> Result<CoreLite> {
        Ok(CoreLite {
            bin: bin_path("core-lite")?,
            data_dir: env.path(name),
            scope: env.prefix().to_string(),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `core-lite --data-dir DIR args...` on the host; stdout parsed as JSON (`Null` when
    /// empty). Errors keep stderr.
    pub fn cli(&self, args: &[&str]) -> Result<Value> {
        let out = run_cmd(
            Command::new(&self.bin)
                .arg("--data-dir")
                .arg(&self.data_dir)
                .args(args)
                .env(SCOPE_ENV, &self.scope),
        )?;
        if out.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&out)
            .with_context(|| format!("core-lite {} printed non-JSON: {out}", args.join(" ")))
    }

    /// `cli(args)` and the string field `key` of its JSON object.
    pub fn cli_field(&self, args: &[&str], key: &str) -> Result<String> {
        let v = self.cli(args)?;
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("core-lite {}: no string `{key}` in {v}", args.join(" ")))
    }

    /// The metrics token the core wrote into its data dir.
    pub fn metrics_token(&self) -> Result<String> {
        let path = self.data_dir.join("metrics.token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .with_context(|| format!("reading {}", path.display()))
    }

    /// The admin token the core wrote into its data dir.
    pub fn admin_token(&self) -> Result<String> {
        let path = self.data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .with_context(|| format!("reading {}", path.display()))
    }

    /// `core-lite serve --listen ADDR` (inside `ns` when given); returns once `listen`
    /// accepts TCP connections.
    pub fn serve(&self, env: &TestEnv, ns: Option<&Netns>, listen: SocketAddr) -> Result<Proc> {
        self.serve_with(env, ns, listen, &[])
    }

    /// [`CoreLite::serve`] with more `serve` arguments.
    pub fn serve_with(
        &self,
        env: &TestEnv,
        ns: Option<&Netns>,
        listen: SocketAddr,
        extra: &[&str],
    ) -> Result<Proc> {
        let mut b = ProcBuilder::new(&self.bin)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["serve", "--listen"])
            .arg(listen.to_string())
            .args(extra.iter().copied())
            .label("core-lite");
        if let Some(ns) = ns {
            b = b.netns(ns);
        }
        let proc = b.spawn(env)?;
        let up = match ns {
            Some(ns) => ns.wait_for_tcp(listen, SERVE_TIMEOUT),
            None => wait_for_tcp(listen, SERVE_TIMEOUT),
        };
        up.with_context(|| format!("core-lite serve did not come up\n{}", proc.log_tail(30)))?;
        Ok(proc)
    }
}
