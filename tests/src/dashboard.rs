//! The example Grafana dashboard (`docs/grafana-dashboard.json`) against real data: a
//! Prometheus server (Debian's `prometheus`) scrapes the core and the monitor inside the
//! test's namespace, every query of every panel is evaluated by that Prometheus (each must
//! return a series: the dashboard names metrics that exist), and the results are drawn as a
//! preview page (the console's own chart code) for a screenshot. Grafana itself is not in
//! Debian; the preview shows the same queries, not Grafana's rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::env::TestEnv;
use crate::netns::Netns;
use crate::proc::{Proc, ProcBuilder};

/// `docs/grafana-dashboard.json` of this workspace.
pub fn dashboard_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana-dashboard.json")
}

/// The console's chart code, reused by the preview.
fn chart_js() -> Result<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core-lite/src/ui/assets/chart.js");
    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
}

/// One scrape target of the test's Prometheus.
pub struct Target<'a> {
    pub job: &'a str,
    pub addr: SocketAddr,
    /// A bearer token file (`authorization.credentials_file`).
    pub token_file: Option<&'a Path>,
}

/// One series of a range query: its labels and points (unix seconds, value).
pub type Series = (BTreeMap<String, String>, Vec<(f64, f64)>);

/// A Prometheus server in `ns` on `listen`, scraping `targets` every second.
pub struct Prometheus {
    pub proc: Proc,
    listen: SocketAddr,
}

impl Prometheus {
    pub fn start(
        env: &TestEnv,
        ns: &Netns,
        listen: SocketAddr,
        targets: &[Target<'_>],
    ) -> Result<Prometheus> {
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for t in targets {
            let _ = writeln!(cfg, "  - job_name: {}", t.job);
            if let Some(f) = t.token_file {
                let _ = writeln!(
                    cfg,
                    "    authorization:\n      credentials_file: {}",
                    f.display()
                );
            }
            let _ = writeln!(cfg, "    static_configs:\n      - targets: ['{}']", t.addr);
        }
        let path = env.path("prometheus.yml");
        std::fs::write(&path, cfg).with_context(|| format!("writing {}", path.display()))?;
        let proc = ProcBuilder::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                env.path("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn")
            .netns(ns)
            .label("prometheus")
            .spawn(env)?;
        ns.wait_for_tcp(listen, Duration::from_secs(30))
            .with_context(|| format!("prometheus did not come up\n{}", proc.log_tail(20)))?;
        Ok(Prometheus { proc, listen })
    }

    /// `GET /api/v1/<path>` with query parameters, from inside `ns`; the `data` of the answer.
    fn api(&self, ns: &Netns, path: &str, params: &[(&str, String)]) -> Result<Value> {
        let url = format!("http://{}/api/v1/{path}", self.listen);
        let args: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut argv = vec!["curl", "-sS", "--max-time", "10", "-G", url.as_str()];
        for a in &args {
            argv.extend(["--data-urlencode", a.as_str()]);
        }
        let out = ns.run(&argv)?;
        let v: Value =
            serde_json::from_str(&out).with_context(|| format!("prometheus answered {out}"))?;
        if v["status"] != "success" {
            bail!("prometheus {path} {params:?}: {v}");
        }
        Ok(v["data"].clone())
    }

    /// The value of an instant query that returns one sample (None when it returns none).
    pub fn instant(&self, ns: &Netns, expr: &str) -> Result<Option<f64>> {
        let data = self.api(ns, "query", &[("query", expr.to_string())])?;
        Ok(data["result"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|s| s.pointer("/value/1"))
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok()))
    }

    /// A range query: each series' labels and points (unix seconds, value; NaN dropped).
    pub fn range(&self, ns: &Netns, expr: &str, start: f64, end: f64) -> Result<Vec<Series>> {
        let data = self.api(
            ns,
            "query_range",
            &[
                ("query", expr.to_string()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", "1".into()),
            ],
        )?;
        let mut out = Vec::new();
        for s in data["result"].as_array().into_iter().flatten() {
            let labels = s["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let points = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let t = p.get(0)?.as_f64()?;
                    let v: f64 = p.get(1)?.as_str()?.parse().ok()?;
                    v.is_finite().then_some((t, v))
                })
                .collect();
            out.push((labels, points));
        }
        Ok(out)
    }
}

/// A dashboard query as Prometheus evaluates it: Grafana's variables replaced (`$core`,
/// `$monitor`: every instance; `$__rate_interval`: 10 s, four scrape intervals and more).
pub fn prometheus_expr(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$core", ".*")
        .replace("$monitor", ".*")
}

/// `{{label}}` of a legend format filled from a series' labels.
fn legend(format: &str, labels: &BTreeMap<String, String>) -> String {
    let mut s = format.to_string();
    for (k, v) in labels {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    s
}

/// Evaluates every query of every panel over `[start, end]`; each query must give at least
/// one series. Returns the preview's data: `[{title, unit, series: [{name, points}]}]`.
pub fn evaluate(prom: &Prometheus, ns: &Netns, start: f64, end: f64) -> Result<Value> {
    let path = dashboard_path();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let mut panels = Vec::new();
    for p in dash["panels"].as_array().context("no panels")? {
        if p["type"] == "row" {
            panels.push(json!({"row": p["title"]}));
            continue;
        }
        let mut series = Vec::new();
        for t in p["targets"].as_array().context("a panel without targets")? {
            let expr = prometheus_expr(t["expr"].as_str().context("a target without expr")?);
            let got = prom.range(ns, &expr, start, end)?;
            ensure!(
                !got.is_empty(),
                "panel {:?}: the query {expr} gives no series",
                p["title"]
            );
            for (labels, points) in got {
                let name = legend(t["legendFormat"].as_str().unwrap_or(""), &labels);
                let points: Vec<Value> = points
                    .iter()
                    .map(|(t, v)| json!([(t * 1000.0).round(), v]))
                    .collect();
                series.push(json!({"name": name, "points": points}));
            }
        }
        panels.push(json!({
            "title": p["title"],
            "unit": p.pointer("/fieldConfig/defaults/unit").cloned().unwrap_or(Value::Null),
            "series": series,
        }));
    }
    Ok(json!({"title": dash["title"], "panels": panels}))
}

/// A self-contained HTML page drawing `data` (from [`evaluate`]) with the console's charts.
pub fn preview_html(data: &Value) -> Result<String> {
    const COLORS: [&str; 8] = [
        "#1f6feb", "#2e7d32", "#b26a00", "#c62828", "#6a1b9a", "#00838f", "#5d4037", "#546e7a",
    ];
    let script = format!(
        "const DATA = {};\nconst COLORS = {};\n{}\n{}",
        serde_json::to_string(data)?,
        serde_json::to_string(&COLORS)?,
        chart_js()?,
        r#"
document.getElementById('title').textContent = DATA.title;
const grid = document.getElementById('grid');
for (const p of DATA.panels) {
  if (p.row) { const h = document.createElement('h2'); h.textContent = p.row; grid.append(h); continue; }
  const box = document.createElement('div'); box.className = 'chart';
  const h = document.createElement('h3'); h.textContent = p.title + (p.unit ? ' (' + p.unit + ')' : '');
  const body = document.createElement('div');
  box.append(h, body); grid.append(box);
  Chart.line(body, { series: p.series.map((s, i) => ({ name: s.name, color: COLORS[i % COLORS.length], points: s.points })) });
}
document.body.dataset.ready = 'yes';
"#
    );
    Ok(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>dashboard preview</title><style>
body {{ margin: 0; padding: 16px 20px; font: 13px system-ui, sans-serif; background: #111217; color: #ccccdc; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }} p.note {{ margin: 0 0 8px; color: #8e8ea0; }}
#grid {{ display: grid; grid-template-columns: repeat(3, 1fr); gap: 10px; }}
#grid h2 {{ grid-column: 1 / -1; font-size: 14px; margin: 8px 0 0; color: #d8d9da; }}
.chart {{ background: #181b1f; border: 1px solid #2c3235; border-radius: 3px; padding: 6px 8px; }}
.chart h3 {{ margin: 0 0 2px; font-size: 12.5px; font-weight: 500; color: #d8d9da; }}
.chart svg {{ display: block; width: 100%; height: 190px; }}
.chart svg text {{ font-size: 11px; }} .chart svg text:not([fill]) {{ fill: #8e8ea0; }}
.chart svg .grid {{ stroke: #2c3235; }} .chart svg .axis {{ stroke: #464c54; }}
</style></head><body><h1 id="title"></h1>
<p class="note">docs/grafana-dashboard.json: every panel's queries as Prometheus evaluated them during the end-to-end test (preview drawn by the test, not by Grafana).</p>
<div id="grid"></div><script>{script}</script></body></html>"#
    ))
}
