//! A real browser for the console's tests: headless Chromium driven by `chromedriver` over
//! the W3C WebDriver protocol (plain JSON over HTTP on loopback), with the few commands the
//! tests need: navigate, find elements (CSS), click, type, read text and attributes, run a
//! script, take a screenshot.
//!
//! Chromium runs as root here, so it gets `--headless=new --no-sandbox`, no GPU, no
//! background networking, component updates or sync, and a fresh profile in the test's
//! directory. The driver process is a [`Proc`] of the test (killed on drop).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::env::{required, TestEnv};
use crate::proc::{wait_for_tcp, Proc, ProcBuilder};

/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The programs needed.
const TOOLS: [&str; 2] = ["chromium", "chromedriver"];

/// A WebDriver session on headless Chromium.
pub struct Browser {
    http: reqwest::blocking::Client,
    session: String,
    base: String,
    _driver: Proc,
}

/// An element of the page (its WebDriver reference).
#[derive(Clone, Debug)]
pub struct Element(String);

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session. `Ok(None)` (after printing why)
    /// when the programs are missing, unless `E2E_REQUIRED=1` (then an error).
    pub fn start(env: &TestEnv) -> Result<Option<Browser>> {
        let missing: Vec<&str> = TOOLS
            .iter()
            .copied()
            .filter(|t| find_tool(t).is_none())
            .collect();
        if !missing.is_empty() {
            let why = format!(
                "needs {} in PATH (Debian: chromium chromium-driver)",
                missing.join(", ")
            );
            if required() {
                bail!("test `{}` cannot run: {why}", env.test_name());
            }
            eprintln!("test `{}` skipped: {why}", env.test_name());
            return Ok(None);
        }
        let chromium = find_tool("chromium").context("chromium")?;
        let port = free_port()?;
        let driver = ProcBuilder::new("chromedriver")
            .arg(format!("--port={port}"))
            .label("chromedriver")
            .spawn(env)?;
        wait_for_tcp(
            format!("127.0.0.1:{port}").parse()?,
            Duration::from_secs(30),
        )
        .with_context(|| format!("chromedriver did not come up\n{}", driver.log_tail(20)))?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let profile = env.path("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,1000",
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .context("creating the WebDriver session")?
            .json()?;
        let session = answer
            .pointer("/value/sessionId")
            .and_then(Value::as_str)
            .with_context(|| format!("no WebDriver session: {answer}\n{}", driver.log_tail(20)))?
            .to_string();
        Ok(Some(Browser {
            http,
            session,
            base,
            _driver: driver,
        }))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    /// One command; the answer's `value`, or an error with WebDriver's message.
    fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req.send().with_context(|| format!("WebDriver {path}"))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .with_context(|| format!("WebDriver {path}: answer"))?;
        if !status.is_success() {
            bail!(
                "WebDriver {path}: {} {}",
                v.pointer("/value/error").unwrap_or(&Value::Null),
                v.pointer("/value/message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            );
        }
        Ok(v.get("value").cloned().unwrap_or(Value::Null))
    }

    /// Resizes the window (screenshots show the window).
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )?;
        Ok(())
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    /// The elements matching a CSS selector now (maybe none).
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.cmd(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get(ELEMENT_KEY).and_then(Value::as_str))
                    .map(|s| Element(s.to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until an element matches the selector.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_all(css)?.into_iter().next() {
                return Ok(e);
            }
            if Instant::now() > until {
                bail!(
                    "no element {css:?} after {timeout:?}; the page says: {}",
                    self.page_text().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `f` gives a value (it is asked every 200 ms).
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Browser) -> Result<Option<T>>,
    ) -> Result<T> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self)? {
                return Ok(v);
            }
            if Instant::now() > until {
                bail!(
                    "{what}: not after {timeout:?}; the page says: {}",
                    self.page_text().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn click(&self, e: &Element) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/click", e.0),
            None,
        )?;
        Ok(())
    }

    pub fn clear(&self, e: &Element) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/clear", e.0),
            None,
        )?;
        Ok(())
    }

    /// Types `text` into the element (after what it holds).
    pub fn type_text(&self, e: &Element, text: &str) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    /// Clears the element, then types `text`.
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.wait_for(css, Duration::from_secs(10))?;
        self.clear(&e)?;
        self.type_text(&e, text)
    }

    /// The rendered text of an element.
    pub fn text(&self, e: &Element) -> Result<String> {
        let v = self.cmd(
            reqwest::Method::GET,
            &format!("/element/{}/text", e.0),
            None,
        )?;
        Ok(v.as_str().unwrap_or("").to_string())
    }

    pub fn attr(&self, e: &Element, name: &str) -> Result<Option<String>> {
        let v = self.cmd(
            reqwest::Method::GET,
            &format!("/element/{}/attribute/{name}", e.0),
            None,
        )?;
        Ok(v.as_str().map(str::to_string))
    }

    /// Runs a script in the page (`return …` gives its value).
    pub fn exec(&self, script: &str) -> Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// The page's visible text (for error messages), cut to 2,000 characters.
    pub fn page_text(&self) -> Result<String> {
        let v = self.exec("return document.body ? document.body.innerText : ''")?;
        Ok(v.as_str().unwrap_or("").chars().take(2000).collect())
    }

    /// Saves a PNG of the window.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot: no data")?)
            .context("screenshot: not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
    }
}

/// Where tests put their artifacts (screenshots): `<target>/test-artifacts/<name>`.
pub fn artifacts_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artifacts").join(name)
}
