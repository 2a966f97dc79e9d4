//! Scraping Prometheus metrics in the end-to-end tests: `curl` inside a namespace, every
//! scrape checked by `promtool check metrics` (Debian's `prometheus`), and the value of one
//! sample read from the text. The parser and the promtool run are core-lite's testkit's
//! (shared with core-lite's own metrics test).

use anyhow::{Context, Result};
pub use core_lite::testkit::prom::{promtool_check, value};

use crate::netns::Netns;

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
    value(text, sample).unwrap_or(0.0)
}
