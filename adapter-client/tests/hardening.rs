//! Regression tests of issue 11 (hardening), adapter-client items:
//! - 11: no secret (the VPN password, the client token) ever reaches a log line, an error
//!   message or a panic message; errors name the offending field instead;
//! - 13: the access message's username must be the `--client-key`; an all-digit host is not
//!   an endpoint.
//!
//! A recording proxy between the adapter and a real client core rewrites the core's
//! GetAccess answer the way a broken or hostile core would send it.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use adapter_client::cli;
use adapter_client::connect;
use anyhow::{Context, Result};
use common::proxy::{Proxy, Rewrite};
use common::{settings, Cores, FakeOpenVpn};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_adapter-client");
const PASSWORD: &str = "pw-LEAK-CHECK-8c1f27";

fn base_cmd() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ADAPTER_CLIENT_") {
            c.env_remove(k);
        }
    }
    c
}

/// A proxy whose GetAccess answer is changed by `f` (after the password was replaced by
/// [`PASSWORD`], so a test knows what must never be shown).
async fn access_proxy(
    cores: &Cores,
    f: impl Fn(&mut Value) + Send + Sync + 'static,
) -> Result<Proxy> {
    let rewrite: Rewrite = Arc::new(move |path, mut v| {
        if path == service_api::paths::GET_ACCESS && v.get("password").is_some() {
            v["password"] = PASSWORD.into();
            f(&mut v);
        }
        v
    });
    Proxy::start(&cores.client.url, Some(rewrite)).await
}

/// `connect::run` against `core_url`; its error (the whole chain, as the binary logs it).
async fn connect_error(cores: &Cores, core_url: &str) -> Result<(String, FakeOpenVpn)> {
    let fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = settings(cores, &fake, work.path());
    s.core_url = core_url.to_string();
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));
    // A refused access message ends `run` at once; an accepted one would start openvpn and
    // run until cancelled.
    let r = match tokio::time::timeout(Duration::from_secs(5), h).await {
        Ok(r) => r?,
        Err(_) => {
            cancel.cancel();
            anyhow::bail!(
                "connect::run accepted the access message (openvpn starts: {:?})",
                fake.spawns()
            );
        }
    };
    match r {
        Ok(o) => anyhow::bail!("connect::run returned {o:?} instead of an error"),
        Err(e) => Ok((format!("{:#}", anyhow::Error::from(e)), fake)),
    }
}

/// Runs the binary with `args` against `core_url` (token in a file); exit code and stderr.
fn run_bin(cores: &Cores, core_url: &str, args: &[&str]) -> Result<(Option<i32>, String)> {
    let work = tempfile::tempdir()?;
    let token_file = work.path().join("token");
    std::fs::write(&token_file, format!("{}\n", cores.client_token.expose()))?;
    let fake = FakeOpenVpn::new()?;
    let mut c = base_cmd();
    c.args(args)
        .args(["--client-key", &cores.client_key.0])
        .args(["--core-url", core_url])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--runtime-dir")
        .arg(work.path().join("rt"))
        .env("ADAPTER_CLIENT_LOG", "debug")
        .stdin(Stdio::null());
    if args.first() == Some(&"connect") {
        c.arg("--openvpn")
            .arg(&fake.script)
            .arg("--state-file")
            .arg(work.path().join("state.json"))
            .arg("--no-shaping");
    }
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "adapter-client {args:?} did not exit (spawns: {:?})",
                fake.spawns()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code(), text))
}

fn assert_no_secret(text: &str, cores: &Cores) {
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    assert!(
        !text.contains(cores.client_token.expose()),
        "the token leaked:\n{text}"
    );
}

/// Item 11: GetAccess answers with one field of the wrong type; the error names the field
/// and what was expected, and neither the library's error nor anything the binary prints
/// (at debug level) holds the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_access_message_names_the_field_and_never_shows_the_password() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let proxy = access_proxy(&cores, |v| v["additionalParams"]["port"] = 1194.into()).await?;

    let (err, fake) = connect_error(&cores, &proxy.url).await?;
    assert!(
        err.contains("additionalParams.port: expected a string, found an integer"),
        "{err}"
    );
    assert_no_secret(&err, &cores);
    assert!(fake.spawns().is_empty(), "openvpn never started");

    for cmd in ["connect", "render"] {
        let (code, text) = run_bin(&cores, &proxy.url, &[cmd])?;
        assert_eq!(code, Some(1), "{cmd}: {text}");
        assert!(text.contains("additionalParams.port"), "{cmd}: {text}");
        assert_no_secret(&text, &cores);
    }
    Ok(())
}

/// Item 11: the password itself has the wrong type: it is named, its value never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_of_the_wrong_type_is_named_not_shown() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let proxy = access_proxy(&cores, |v| v["password"] = 98_765_432_101_u64.into()).await?;
    let (err, _) = connect_error(&cores, &proxy.url).await?;
    assert!(
        err.contains("password: expected a string, found an integer"),
        "{err}"
    );
    assert!(!err.contains("98765432101"), "{err}");
    Ok(())
}

/// Item 11: the config file (which may hold the token) and an access file (which holds the
/// password) are refused by field and position, never by quoting them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_access_file_errors_never_show_secrets() -> Result<()> {
    let work = tempfile::tempdir()?;
    let cfg = work.path().join("c.toml");
    for (text, field) in [
        ("client_key = \"ck\"\ntoken = 4711471147114711\n", "token"),
        ("client_key = \"ck\"\ntoken = \"tok-SECRET-4711\n", "line 2"),
        (
            "client_key = \"ck\"\ntoken = [\"tok-SECRET-4711\"]\n",
            "token",
        ),
    ] {
        std::fs::write(&cfg, text)?;
        let e = cli::load_file_config(Some(&cfg)).expect_err("refused");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("4711"), "{shown}");
        assert!(shown.contains(field), "{field}: {shown}");
        assert_eq!(e.exit_code(), 2, "{shown}");
    }

    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let access = service_api::Client::new(
        &cores.client.url,
        cores.client_token.clone(),
        Duration::from_secs(5),
    )?
    .get_access(&service_api::GetAccessRequest {
        client_key: cores.client_key.clone(),
    })
    .await?;
    let mut access = serde_json::to_value(access)?;
    access["password"] = 313_374_711_u64.into();
    let f = work.path().join("access.json");
    std::fs::write(&f, serde_json::to_vec(&access)?)?;
    let a = cli::RenderArgs {
        core: cli::CoreArgs {
            config: None,
            core_url: None,
            token: None,
            token_file: None,
            client_key: None,
        },
        access_file: Some(f),
        runtime_dir: None,
        tun_dev: None,
    };
    let e = cli::render_cmd(&a).await.expect_err("refused");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("password"), "{shown}");
    assert!(!shown.contains("313374711"), "{shown}");
    Ok(())
}

/// Item 13: an access message whose username is not the adapter's `--client-key` is
/// refused before anything is written or started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_message_for_another_client_key_is_refused() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let proxy = access_proxy(&cores, |v| v["username"] = "someone-else".into()).await?;
    let (err, fake) = connect_error(&cores, &proxy.url).await?;
    assert!(
        err.contains("username") && err.contains(&cores.client_key.0),
        "{err}"
    );
    assert_no_secret(&err, &cores);
    assert!(fake.spawns().is_empty(), "openvpn never started");
    let (code, text) = run_bin(&cores, &proxy.url, &["render"])?;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("username"), "{text}");
    assert!(
        !text.contains("auth-user-pass"),
        "no config printed: {text}"
    );
    Ok(())
}

/// Item 13: an all-digit host (`70000`) is not an endpoint, through GetAccess too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_digit_host_is_refused() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    for host in ["70000", "70000:1194", "10.0.0.300", "vpn.example.123"] {
        let h = host.to_string();
        let proxy = access_proxy(&cores, move |v| {
            v["serviceEndpointAddress"] = h.clone().into();
        })
        .await?;
        let (err, _) = connect_error(&cores, &proxy.url)
            .await
            .with_context(|| host.to_string())?;
        assert!(err.contains("serviceEndpointAddress"), "{host}: {err}");
    }
    Ok(())
}
