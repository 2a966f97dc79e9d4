//! Reading Prometheus/OpenMetrics scrapes in tests (core-lite's own and the e2e crate's):
//! the value of one sample, and `promtool check metrics` (Debian's `prometheus`) on a
//! scrape.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context};

/// `promtool check metrics` on `text`; skipped (printed) when promtool is missing, unless
/// `E2E_REQUIRED=1` (scripts/test.sh), which makes that a failure.
pub fn promtool_check(text: &str) -> anyhow::Result<()> {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("E2E_REQUIRED").is_ok_and(|v| v == "1") {
                bail!("promtool not found (Debian package prometheus) and E2E_REQUIRED=1");
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

/// The value of the sample `name{labels}` (labels as written, e.g.
/// `x_total{side="agent"}`); `None` when the scrape has no such sample.
pub fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn value_of_a_sample_as_written() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total{side=\"agent\"} 3\n\
                    x_total{side=\"client\"} 4.5\nx_total_created 17\nup 1\n# EOF\n";
        assert_eq!(value(text, "x_total{side=\"agent\"}"), Some(3.0));
        assert_eq!(value(text, "x_total{side=\"client\"}"), Some(4.5));
        assert_eq!(value(text, "x_total_created"), Some(17.0));
        assert_eq!(value(text, "up"), Some(1.0));
        // Not a prefix of a longer name, not a comment, not a missing label set.
        assert_eq!(value(text, "x_total"), None);
        assert_eq!(value(text, "x_total{side=\"other\"}"), None);
        assert_eq!(value(text, "# HELP"), None);
        assert_eq!(value("x_total NaNa\n", "x_total"), None);
    }
}
