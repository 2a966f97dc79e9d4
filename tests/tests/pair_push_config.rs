//! The server config as an operator writes it for the pair: OpenVPN lets a tun device have
//! any name (`dev NAME` + `dev-type tun`), and `adapter-server push-config` must read such
//! a config (the e2e harness names its devices that way).

use std::process::Command;

use anyhow::{ensure, Result};
use e2e::*;

#[test]
fn push_config_reads_a_named_tun_device() -> Result<()> {
    let Some(env) = TestEnv::with_bins("pair_push_config", &["adapter-server"])? else {
        return Ok(());
    };
    let pki = Pki::generate(&env)?;
    for (dev_lines, name) in [
        ("dev tun7\n", "tun7"),
        ("dev vpn-agent\ndev-type tun\n", "vpn-agent"),
        ("dev-type tun\ndev vpn0\n", "vpn0"),
    ] {
        let conf = env.path(&format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "{dev_lines}proto udp\nport 1194\nca {}\ntls-crypt {}\n",
                pki.ca_cert.display(),
                pki.tls_crypt.display()
            ),
        )?;
        let out = Command::new(bin_path("adapter-server")?)
            .args(["push-config", "--dry-run", "--server-config"])
            .arg(&conf)
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "push-config refused `{}`: {}{}",
            dev_lines.trim().replace('\n', "; "),
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout.trim()
        );
        ensure!(
            stdout.lines().any(|l| l.trim() == "dev = tun"),
            "dev not pushed as tun: {stdout}"
        );
    }
    // A tap device is still refused (the module is tun only).
    let conf = env.path("tap.conf");
    std::fs::write(
        &conf,
        format!(
            "dev tap0\nproto udp\nport 1194\nca {}\n",
            pki.ca_cert.display()
        ),
    )?;
    let out = Command::new(bin_path("adapter-server")?)
        .args(["push-config", "--dry-run", "--server-config"])
        .arg(&conf)
        .output()?;
    ensure!(!out.status.success(), "push-config accepted a tap device");
    Ok(())
}
