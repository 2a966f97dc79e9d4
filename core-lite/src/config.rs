//! The TOML config file of `core-lite` (`--config`, `CORE_LITE_CONFIG`) and `check-config`.
//!
//! Every key is optional and names a flag of `serve` (or the global `--data-dir`) with `_`
//! for `-`. Precedence: the command-line flag, then its environment variable, then the
//! file, then the built-in default. Unknown keys are an error.
//!
//! ```toml
//! data_dir = "/var/lib/core-lite"
//! role = "agent"
//! listen = "127.0.0.1:7700"
//! market_listen = "0.0.0.0:7710"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde::Deserialize;

use crate::cli::{Cli, Command, Role, ServeArgs};

/// Largest config file read.
pub const MAX_CONFIG_FILE: u64 = 64 * 1024;

/// The keys of the config file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub tick_ms: Option<u64>,
    pub role: Option<Role>,
    pub market_listen: Option<SocketAddr>,
    pub pay_interval_ms: Option<u64>,
    pub tolerance_pct: Option<u64>,
    pub max_connections: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub usage_bucket_secs: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub market_tls_cert: Option<PathBuf>,
    pub market_tls_key: Option<PathBuf>,
    pub insecure_http: Option<bool>,
    pub claim_window_secs: Option<u64>,
    pub ca_file: Option<PathBuf>,
}

/// Checks a config file: every problem, each with its line and key.
pub fn check(path: &Path) -> config_check::Report {
    let mut c = config_check::Checker::<FileConfig>::read(path, MAX_CONFIG_FILE, &[]);
    let Some(f) = c.config().cloned() else {
        return c.finish();
    };
    if let Some(dir) = &f.data_dir {
        if dir.as_os_str().is_empty() {
            c.problem("data_dir", "must not be empty");
        } else if dir.exists() && !dir.is_dir() {
            c.problem(
                "data_dir",
                format!("{} exists and is not a directory", dir.display()),
            );
        }
    }
    let at_least = |v: Option<u64>, min: u64| v.is_some_and(|v| v < min);
    if at_least(f.tick_ms, 10) {
        c.problem("tick_ms", "must be at least 10 (milliseconds)");
    }
    if at_least(f.pay_interval_ms, 50) {
        c.problem("pay_interval_ms", "must be at least 50 (milliseconds)");
    }
    if f.max_connections == Some(0) {
        c.problem("max_connections", "must be at least 1");
    }
    for (key, v) in [
        ("header_timeout_ms", f.header_timeout_ms),
        ("idle_timeout_ms", f.idle_timeout_ms),
        ("usage_bucket_secs", f.usage_bucket_secs),
        ("claim_window_secs", f.claim_window_secs),
    ] {
        if v == Some(0) {
            c.problem(key, "must be at least 1");
        }
    }
    for (cert_key, cert, key_key, key) in [
        ("tls_cert", &f.tls_cert, "tls_key", &f.tls_key),
        (
            "market_tls_cert",
            &f.market_tls_cert,
            "market_tls_key",
            &f.market_tls_key,
        ),
    ] {
        match (cert, key) {
            (Some(_), None) => c.problem(cert_key, format!("needs `{key_key}` too")),
            (None, Some(_)) => c.problem(key_key, format!("needs `{cert_key}` too")),
            _ => {}
        }
    }
    for (key, file) in [
        ("tls_cert", &f.tls_cert),
        ("tls_key", &f.tls_key),
        ("market_tls_cert", &f.market_tls_cert),
        ("market_tls_key", &f.market_tls_key),
        ("ca_file", &f.ca_file),
    ] {
        if let Some(file) = file {
            if !file.is_file() {
                c.problem(key, format!("{} is not a readable file", file.display()));
            }
        }
    }
    let market = matches!(f.role, Some(Role::Agent | Role::Both));
    if market && f.listen.is_some() && f.listen == f.market_listen {
        c.problem(
            "market_listen",
            "is the same address as `listen` (the market API needs its own)",
        );
    }
    c.finish()
}

/// Parses the command line, then fills every setting not given as a flag or environment
/// variable from the config file. A config file with problems stops here with all of them.
pub fn parse_cli() -> anyhow::Result<Cli> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    apply(cli, &matches)
}

/// [`parse_cli`] on given arguments (tests).
pub fn parse_cli_from<I, T>(args: I) -> anyhow::Result<Cli>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    apply(cli, &matches)
}

fn apply(mut cli: Cli, matches: &ArgMatches) -> anyhow::Result<Cli> {
    let Some(path) = cli.config.clone() else {
        return Ok(cli);
    };
    if matches!(cli.command, Command::CheckConfig { .. }) {
        return Ok(cli);
    }
    let report = check(&path);
    if !report.is_ok() {
        bail!("the config file has problems (see `core-lite check-config`):\n{report}");
    }
    let f = config_check::Checker::<FileConfig>::read(&path, MAX_CONFIG_FILE, &[])
        .config()
        .cloned()
        .unwrap_or_default();
    if defaulted(matches, "data_dir") {
        if let Some(d) = f.data_dir.clone() {
            cli.data_dir = d;
        }
    }
    if defaulted(matches, "ca_file") && f.ca_file.is_some() {
        cli.ca_file = f.ca_file.clone();
    }
    if let (Command::Serve(args), Some(m)) = (&mut cli.command, matches.subcommand_matches("serve"))
    {
        apply_serve(args, m, &f);
    }
    Ok(cli)
}

/// True when `id` has its built-in default (no flag, no environment variable).
fn defaulted(m: &ArgMatches, id: &str) -> bool {
    !matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

fn apply_serve(a: &mut ServeArgs, m: &ArgMatches, f: &FileConfig) {
    fn set<T: Clone>(m: &ArgMatches, id: &str, field: &mut T, file: &Option<T>) {
        if let Some(v) = file {
            if defaulted(m, id) {
                *field = v.clone();
            }
        }
    }
    set(m, "listen", &mut a.listen, &f.listen);
    set(m, "tick_ms", &mut a.tick_ms, &f.tick_ms);
    set(m, "role", &mut a.role, &f.role);
    set(m, "market_listen", &mut a.market_listen, &f.market_listen);
    set(
        m,
        "pay_interval_ms",
        &mut a.pay_interval_ms,
        &f.pay_interval_ms,
    );
    set(m, "tolerance_pct", &mut a.tolerance_pct, &f.tolerance_pct);
    set(
        m,
        "max_connections",
        &mut a.max_connections,
        &f.max_connections,
    );
    set(
        m,
        "header_timeout_ms",
        &mut a.header_timeout_ms,
        &f.header_timeout_ms,
    );
    set(
        m,
        "idle_timeout_ms",
        &mut a.idle_timeout_ms,
        &f.idle_timeout_ms,
    );
    set(
        m,
        "usage_bucket_secs",
        &mut a.usage_bucket_secs,
        &f.usage_bucket_secs,
    );
    set(
        m,
        "claim_window_secs",
        &mut a.claim_window_secs,
        &f.claim_window_secs,
    );
    set(m, "insecure_http", &mut a.insecure_http, &f.insecure_http);
    // The certificate and its key come as a pair: from the flags or from the file.
    if defaulted(m, "tls_cert") && defaulted(m, "tls_key") && f.tls_cert.is_some() {
        a.tls_cert = f.tls_cert.clone();
        a.tls_key = f.tls_key.clone();
    }
    if defaulted(m, "market_tls_cert")
        && defaulted(m, "market_tls_key")
        && f.market_tls_cert.is_some()
    {
        a.market_tls_cert = f.market_tls_cert.clone();
        a.market_tls_key = f.market_tls_key.clone();
    }
}

/// `core-lite check-config [FILE]`: prints the report, returns the exit code.
pub fn run_check(file: Option<&Path>, global: Option<&Path>) -> anyhow::Result<u8> {
    let Some(path) = file.or(global) else {
        bail!("check-config: give the file (`core-lite check-config FILE`, --config or CORE_LITE_CONFIG)");
    };
    let report = check(path);
    print!("{report}");
    Ok(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("core-lite.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    fn serve_args(cli: &Cli) -> &ServeArgs {
        match &cli.command {
            Command::Serve(a) => a,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn file_fills_defaults_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "data_dir = \"/srv/core\"\nrole = \"agent\"\nlisten = \"127.0.0.1:7801\"\n\
             market_listen = \"0.0.0.0:7811\"\ntick_ms = 250\n",
        );
        let conf = p.to_str().expect("utf-8 path");
        let cli = parse_cli_from(["core-lite", "--config", conf, "serve"]).expect("parse");
        assert_eq!(cli.data_dir, PathBuf::from("/srv/core"));
        let a = serve_args(&cli);
        assert_eq!(a.role, Role::Agent);
        assert_eq!(a.listen, "127.0.0.1:7801".parse().expect("addr"));
        assert_eq!(a.market_listen, "0.0.0.0:7811".parse().expect("addr"));
        assert_eq!(a.tick_ms, 250);
        assert_eq!(a.pay_interval_ms, 1000, "untouched default");

        let cli = parse_cli_from([
            "core-lite",
            "serve",
            "--config",
            conf,
            "--listen",
            "127.0.0.1:9000",
            "--data-dir",
            "/flag",
        ])
        .expect("parse");
        assert_eq!(cli.data_dir, PathBuf::from("/flag"), "flag wins");
        let a = serve_args(&cli);
        assert_eq!(
            a.listen,
            "127.0.0.1:9000".parse().expect("addr"),
            "flag wins"
        );
        assert_eq!(a.role, Role::Agent, "file still fills the rest");
    }

    #[test]
    fn check_reports_every_problem_with_key_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let not_dir = dir.path().join("plain");
        std::fs::write(&not_dir, "x").expect("write");
        let p = write(
            dir.path(),
            &format!(
                "role = \"agnet\"\nlisten = \"nowhere\"\ntick_ms = 0\nlistne = 1\n\
                 data_dir = \"{}\"\nmax_connections = -3\n",
                not_dir.display()
            ),
        );
        let r = check(&p);
        let keys: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.line, p.key.as_str()))
            .collect();
        // Type problems come first; the value checks need a well-typed file.
        assert_eq!(
            keys,
            vec![
                (Some(1), "role"),
                (Some(2), "listen"),
                (Some(4), "listne"),
                (Some(6), "max_connections")
            ],
            "{r}"
        );
        let p = write(
            dir.path(),
            &format!(
                "role = \"both\"\nlisten = \"127.0.0.1:1\"\nmarket_listen = \"127.0.0.1:1\"\n\
                 tick_ms = 0\ndata_dir = \"{}\"\nusage_bucket_secs = 0\n",
                not_dir.display()
            ),
        );
        let r = check(&p);
        let keys: Vec<_> = r.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["market_listen", "tick_ms", "data_dir", "usage_bucket_secs"],
            "{r}"
        );
        assert!(
            r.to_string().contains("core-lite.toml:4: key `tick_ms`"),
            "{r}"
        );
        // A config with problems stops the program with the whole report.
        let conf = p.to_str().expect("utf-8 path");
        let e = parse_cli_from(["core-lite", "--config", conf, "serve"])
            .expect_err("bad config must stop serve");
        assert!(e.to_string().contains("key `data_dir`"), "{e}");
        // check-config itself does not stop on them.
        assert!(parse_cli_from(["core-lite", "--config", conf, "check-config"]).is_ok());
        let good = write(
            dir.path(),
            "role = \"client\"\nlisten = \"127.0.0.1:7701\"\n",
        );
        assert!(check(&good).is_ok());
    }

    #[test]
    fn tls_keys_come_from_the_file_in_pairs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("api.crt");
        let key = dir.path().join("api.key");
        std::fs::write(&cert, "pem").expect("write");
        std::fs::write(&key, "pem").expect("write");
        let p = write(
            dir.path(),
            &format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\nca_file = \"{}\"\n\
                 insecure_http = true\nclaim_window_secs = 60\n",
                cert.display(),
                key.display(),
                cert.display()
            ),
        );
        let conf = p.to_str().expect("utf-8 path");
        let cli = parse_cli_from(["core-lite", "--config", conf, "serve"]).expect("parse");
        assert_eq!(cli.ca_file.as_deref(), Some(cert.as_path()));
        let a = serve_args(&cli);
        assert_eq!(a.tls_cert.as_deref(), Some(cert.as_path()));
        assert_eq!(a.tls_key.as_deref(), Some(key.as_path()));
        assert!(a.insecure_http);
        assert_eq!(a.claim_window_secs, 60);

        let p = write(
            dir.path(),
            &format!(
                "market_tls_cert = \"{}\"\ntls_key = \"{}\"\nca_file = \"/nonexistent\"\n\
                 claim_window_secs = 0\n",
                cert.display(),
                key.display()
            ),
        );
        let r = check(&p);
        let keys: Vec<_> = r.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["market_tls_cert", "tls_key", "ca_file", "claim_window_secs"],
            "{r}"
        );
    }
}
