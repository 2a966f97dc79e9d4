//! The shell helpers of `scripts/lib/` (used by demo.sh) do what they say and clean up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use e2e::*;

fn lib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/lib")
        .join(name)
}

/// Runs `script` in bash with `netns.sh` sourced, `$P` = the scope prefix.
fn bash(env: &TestEnv, script: &str) -> Result<String> {
    let full = format!(
        "set -euo pipefail\nsource '{}'\nP='{}'\n{script}",
        lib("netns.sh").display(),
        env.prefix()
    );
    run_cmd(
        Command::new("bash")
            .args(["-c", &full])
            .env(SCOPE_ENV, env.prefix()),
    )
}

/// Removes the script-made namespaces even when an assertion fails.
struct Cleanup<'a>(&'a TestEnv);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Err(e) = bash(self.0, "netns_cleanup \"$P\"") {
            eprintln!("cleanup: {e:#}");
        }
    }
}

#[test]
fn netns_sh_creates_links_and_cleans_up_by_prefix() -> Result<()> {
    let Some(env) = TestEnv::new("scripts_lib_netns")? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    {
        let _cleanup = Cleanup(&env);
        bash(
            &env,
            "netns_add \"${P}s1\"; netns_add \"${P}s2\"
             veth_add \"${P}s1\" \"${P}va\" 10.98.0.1/24 \"${P}s2\" \"${P}vb\" 10.98.0.2/24
             ip netns exec \"${P}s1\" sleep 600 </dev/null >/dev/null 2>&1 &",
        )?;
        let s1 = format!("{}s1", env.prefix());
        let addr = run_cmd(Command::new("ip").args(["-n", &s1, "-o", "-4", "addr", "show"]))?;
        ensure!(
            addr.contains("10.98.0.1/24"),
            "no veth address in {s1}: {addr}"
        );
        let found = leaks.find()?;
        ensure!(
            found.iter().filter(|l| l.starts_with("namespace")).count() == 2
                && found.iter().any(|l| l.contains("sleep 600")),
            "expected two namespaces and the sleeper: {found:?}"
        );
        ensure!(
            bash(
                &env,
                "netns_exists \"${P}s2\" && ! netns_exists \"${P}zz\" && echo yes"
            )?
            .trim()
                == "yes",
            "netns_exists is wrong"
        );
        bash(&env, "netns_cleanup \"$P\"")?;
        leaks.wait_clean(Duration::from_secs(30))?;
    }
    Ok(())
}

#[test]
fn pki_sh_usage_errors_are_reported() -> Result<()> {
    let Some(env) = TestEnv::new("scripts_lib_pki")? else {
        return Ok(());
    };
    let out = Command::new("bash")
        .arg(lib("pki.sh"))
        .arg(env.path("pki"))
        .arg("bogus")
        .output()?;
    ensure!(
        out.status.code() == Some(2) && String::from_utf8_lossy(&out.stderr).contains("usage"),
        "unexpected: {out:?}"
    );
    // The happy path is covered by the harness's own PKI test and every OpenVPN test.
    let pki = Pki::generate(&env)?;
    ensure!(pki.server_cert.is_file() && pki.tls_auth.is_file());
    Ok(())
}
