//! iperf3 servers and measurements inside namespaces (for shaping tests).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::env::TestEnv;
use crate::netns::Netns;
use crate::proc::Proc;

const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// `iperf3 -s -B BIND -p PORT` inside `ns`; returns once it listens.
pub fn iperf3_server(env: &TestEnv, ns: &Netns, bind: Ipv4Addr, port: u16) -> Result<Proc> {
    let proc = ns
        .spawn("iperf3")
        .args([
            "-s",
            "--forceflush",
            "-B",
            &bind.to_string(),
            "-p",
            &port.to_string(),
        ])
        .label("iperf3-server")
        .spawn(env)?;
    proc.wait_for_line("Server listening", SERVER_START_TIMEOUT)?;
    Ok(proc)
}

/// The totals of one iperf3 run, in bits per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Iperf3Result {
    /// `end.sum_sent.bits_per_second`
    pub sent_bps: f64,
    /// `end.sum_received.bits_per_second` (what actually arrived)
    pub received_bps: f64,
}

/// How an iperf3 client run looks.
#[derive(Clone, Copy, Debug)]
pub struct Iperf3Run {
    pub server: Ipv4Addr,
    pub port: u16,
    pub seconds: u32,
    /// `-R`: the server sends (measures the client's download).
    pub reverse: bool,
}

impl Iperf3Run {
    /// The iperf3 argument list (after the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "-c".to_string(),
            self.server.to_string(),
            "-p".to_string(),
            self.port.to_string(),
            "-t".to_string(),
            self.seconds.to_string(),
            "-J".to_string(),
            "--connect-timeout".to_string(),
            "5000".to_string(),
        ];
        if self.reverse {
            a.push("-R".to_string());
        }
        a
    }

    /// Runs the client inside `ns` (bounded by `timeout` from coreutils) and parses its JSON.
    pub fn run(&self, ns: &Netns) -> Result<Iperf3Result> {
        let limit = (self.seconds + 30).to_string();
        let mut argv = vec!["timeout", limit.as_str(), "iperf3"];
        let args = self.args();
        argv.extend(args.iter().map(String::as_str));
        let out = ns.output(&argv)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "iperf3 {} failed ({}): {} {}",
                args.join(" "),
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse_iperf3_json(&stdout)
    }
}

/// Totals from `iperf3 -J` output.
pub fn parse_iperf3_json(text: &str) -> Result<Iperf3Result> {
    let v: Value = serde_json::from_str(text).context("iperf3 output is not JSON")?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {err}");
    }
    let bps = |key: &str| {
        v.pointer(&format!("/end/{key}/bits_per_second"))
            .and_then(Value::as_f64)
            .with_context(|| format!("iperf3 JSON has no end.{key}.bits_per_second"))
    };
    Ok(Iperf3Result {
        sent_bps: bps("sum_sent")?,
        received_bps: bps("sum_received")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_and_json() -> Result<()> {
        let run = Iperf3Run {
            server: Ipv4Addr::new(10, 8, 1, 1),
            port: 5201,
            seconds: 3,
            reverse: true,
        };
        assert_eq!(
            run.args().join(" "),
            "-c 10.8.1.1 -p 5201 -t 3 -J --connect-timeout 5000 -R"
        );
        let json = r#"{"start":{},"intervals":[],"end":{
            "sum_sent":{"bytes":1000,"bits_per_second":8000000.5},
            "sum_received":{"bytes":990,"bits_per_second":7920000.0}}}"#;
        let r = parse_iperf3_json(json)?;
        assert_eq!(r.sent_bps, 8_000_000.5);
        assert_eq!(r.received_bps, 7_920_000.0);
        let err = parse_iperf3_json(r#"{"start":{},"end":{},"error":"unable to connect"}"#);
        assert!(err.is_err_and(|e| e.to_string().contains("unable to connect")));
        assert!(parse_iperf3_json("not json").is_err());
        assert!(parse_iperf3_json(r#"{"end":{}}"#).is_err());
        Ok(())
    }
}
