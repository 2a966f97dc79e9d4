//! Scraping Prometheus metrics in the end-to-end tests: `curl` inside a namespace, every
//! scrape checked by `promtool check metrics` (Debian's `prometheus`), and the value of one
//! sample read from the text.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use crate::env::required;
use crate::netns::Netns;

/// `promtool check metrics` on `text`. Without promtool: skipped (printed), unless
/// `E2E_REQUIRED=1`, then an error.
pub fn promtool_check(text: &str) -> Result<()> {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if required() {
                bail!("promtool not found (Debian package prometheus)");
            }
            eprintln!("promtool not found: the lint of the scrape is skipped");
            return Ok(());
        }
        Err(e) => return Err(e).context("running promtool"),
    };
    child
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics failed: {}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `GET url` from inside `ns` (with a bearer token when given), checked by promtool.
pub fn scrape(ns: &Netns, url: &str, token: Option<&str>) -> Result<String> {
    let auth;
    let mut argv = vec!["curl", "-sS", "--fail-with-body", "--max-time", "10"];
    if let Some(t) = token {
        auth = format!("Authorization: Bearer {t}");
        argv.extend(["-H", auth.as_str()]);
    }
    argv.push(url);
    let text = ns.run(&argv).with_context(|| format!("scraping {url}"))?;
    promtool_check(&text).with_context(|| format!("the scrape of {url}"))?;
    Ok(text)
}

/// The value of the sample `name{labels}` as written (e.g. `x_total{side="agent"}`); 0
/// when absent.
pub fn sample(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
