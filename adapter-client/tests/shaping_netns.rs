//! The shaping commands against the real kernel, in a private network namespace: the test
//! thread unshares its own netns (gone when the thread ends, with every device in it), makes
//! a tun device with `ip tuntap add`, applies the plan, checks `tc`, removes it.

use std::process::Command;

use anyhow::{bail, Context, Result};
use service_api::SpeedLimits;
use tc_shaper::{self as shaping, ShapingPlan, Tools};

fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| program.to_string())?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn in_private_netns() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET) (needs root)")?;
    sh("ip", &["link", "set", "lo", "up"])?;
    sh("ip", &["tuntap", "add", "dev", "tunac0", "mode", "tun"])?;
    sh("ip", &["link", "set", "tunac0", "up"])?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tools = Tools::default();
        let speed = SpeedLimits {
            min_download_bps: Some(1_000_000),
            max_download_bps: Some(8_000_000),
            min_upload_bps: Some(1_000_000),
            max_upload_bps: Some(4_000_000),
        };
        let plan = ShapingPlan::new("tunac0", "ifbac0", &speed).context("plan")?;
        shaping::run_all(&plan.apply_commands(&tools)).await?;
        // Applying twice (a reconnect after a failed cleanup) must fail loudly only for the
        // IFB that exists; the adapter removes first, so do the same here.
        let errs = shaping::run_each(&plan.remove_commands(&tools)).await;
        assert!(errs.is_empty(), "{errs:?}");
        shaping::run_all(&plan.apply_commands(&tools)).await?;

        let q = sh("tc", &["qdisc", "show", "dev", "tunac0"])?;
        assert!(q.contains("qdisc htb 1: root"), "{q}");
        assert!(q.contains("qdisc ingress ffff:"), "{q}");
        let c = sh("tc", &["class", "show", "dev", "tunac0"])?;
        assert!(
            c.contains("class htb 1:10 parent 1:1") && c.contains("rate 1Mbit ceil 4Mbit"),
            "{c}"
        );
        let c = sh("tc", &["class", "show", "dev", "ifbac0"])?;
        assert!(
            c.contains("class htb 1:10 parent 1:1") && c.contains("rate 1Mbit ceil 8Mbit"),
            "{c}"
        );
        let f = sh("tc", &["filter", "show", "dev", "tunac0", "ingress"])?;
        assert!(
            f.contains("mirred (Egress Redirect to device ifbac0)"),
            "{f}"
        );

        let errs = shaping::run_each(&plan.remove_commands(&tools)).await;
        assert!(errs.is_empty(), "{errs:?}");
        let q = sh("tc", &["qdisc", "show", "dev", "tunac0"])?;
        assert!(!q.contains("htb") && !q.contains("ingress"), "{q}");
        assert!(
            sh("ip", &["link", "show", "ifbac0"]).is_err(),
            "IFB removed"
        );
        // Removing again (tun already gone with OpenVPN, say) is not an error.
        sh("ip", &["link", "del", "tunac0"])?;
        let errs = shaping::run_each(&plan.remove_commands(&tools)).await;
        assert!(errs.is_empty(), "{errs:?}");
        Ok(())
    })
}

#[test]
fn shaping_applies_and_removes_in_a_private_netns() -> Result<()> {
    // A dedicated thread: unshare only changes this thread's namespace, and the namespace
    // (with its tun and IFB devices) disappears when the thread ends, even on a panic.
    std::thread::spawn(in_private_netns)
        .join()
        .map_err(|_| anyhow::anyhow!("the netns thread panicked"))?
}
