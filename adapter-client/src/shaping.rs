//! Speed limits on the client's tun device with `tc`.
//!
//! - upload (client → server) = HTB on the tun egress;
//! - download (server → client) = an `ingress` qdisc on the tun with a `u32` match-all filter
//!   whose `mirred` action redirects to an IFB device, and HTB on that IFB's egress.
//!
//! Each direction has a parent class 1:1 with rate = ceil = max speed and a leaf 1:10 with
//! rate = min speed (or max when no min is given) and ceil = max speed: a class directly
//! under the root cannot borrow, so the leaf needs a parent to reach its ceil. A direction
//! without a max speed is not shaped (a minimum alone limits nothing on a single tunnel).
//!
//! Commands are built with [`TcCommand`] (argv unit-tested, nothing run) and executed by
//! [`run_all`] with stderr kept in the error.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use service_api::SpeedLimits;

/// Errors of running a shaping command.
#[derive(Debug, thiserror::Error)]
pub enum ShapingError {
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

/// One `tc` or `ip` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcCommand {
    program: PathBuf,
    args: Vec<String>,
    /// Failure is expected when the object is already gone (removal commands).
    ignore_missing: bool,
}

/// Paths of the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub tc: PathBuf,
    pub ip: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            tc: PathBuf::from("tc"),
            ip: PathBuf::from("ip"),
        }
    }
}

/// HTB rate/ceil in bit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub rate_bps: u64,
    pub ceil_bps: u64,
}

impl Rate {
    /// From (min, max): None when there is no max.
    pub fn from_min_max(min: Option<u64>, max: Option<u64>) -> Option<Self> {
        let ceil = max?;
        Some(Self {
            rate_bps: min.unwrap_or(ceil).min(ceil),
            ceil_bps: ceil,
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mbit = |b: u64| format!("{}.{:03}", b / 1_000_000, (b % 1_000_000) / 1_000);
        write!(f, "{}-{} Mbit/s", mbit(self.rate_bps), mbit(self.ceil_bps))
    }
}

impl std::fmt::Display for ShapingPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |r: Option<Rate>| r.map_or_else(|| "unlimited".to_string(), |r| r.to_string());
        write!(
            f,
            "upload {} on {}, download {} via {}",
            show(self.upload),
            self.tun,
            show(self.download),
            self.ifb
        )
    }
}

impl TcCommand {
    fn new(program: &Path, args: &[&str]) -> Self {
        Self {
            program: program.to_path_buf(),
            args: args.iter().map(|s| (*s).to_string()).collect(),
            ignore_missing: false,
        }
    }
    fn tolerant(mut self) -> Self {
        self.ignore_missing = true;
        self
    }

    /// `tc qdisc replace dev DEV root handle 1: htb default 10`
    pub fn htb_root(t: &Tools, dev: &str) -> Self {
        Self::new(
            &t.tc,
            &[
                "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "10",
            ],
        )
    }
    /// `tc class replace dev DEV parent PARENT classid ID htb rate Rbit ceil Cbit quantum 1514`
    /// (an explicit quantum: the default rate/r2q is out of range at high rates and makes the
    /// kernel complain; with one leaf per device it has no other effect).
    pub fn htb_class(t: &Tools, dev: &str, parent: &str, classid: &str, r: Rate) -> Self {
        let rate = format!("{}bit", r.rate_bps);
        let ceil = format!("{}bit", r.ceil_bps);
        Self::new(
            &t.tc,
            &[
                "class", "replace", "dev", dev, "parent", parent, "classid", classid, "htb",
                "rate", &rate, "ceil", &ceil, "quantum", "1514",
            ],
        )
    }
    /// `tc qdisc replace dev DEV handle ffff: ingress`
    pub fn ingress(t: &Tools, dev: &str) -> Self {
        Self::new(
            &t.tc,
            &["qdisc", "replace", "dev", dev, "handle", "ffff:", "ingress"],
        )
    }
    /// `tc filter replace dev DEV parent ffff: protocol all prio 1 handle 800::1 u32 match u32 0 0 action mirred egress redirect dev IFB`
    pub fn redirect_to_ifb(t: &Tools, dev: &str, ifb: &str) -> Self {
        Self::new(
            &t.tc,
            &[
                "filter", "replace", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1",
                "handle", "800::1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
                "redirect", "dev", ifb,
            ],
        )
    }
    /// `ip link add IFB type ifb`
    pub fn ifb_add(t: &Tools, ifb: &str) -> Self {
        Self::new(&t.ip, &["link", "add", ifb, "type", "ifb"])
    }
    /// `ip link set dev IFB up`
    pub fn ifb_up(t: &Tools, ifb: &str) -> Self {
        Self::new(&t.ip, &["link", "set", "dev", ifb, "up"])
    }
    /// `ip link del IFB` (tolerates a missing device)
    pub fn ifb_del(t: &Tools, ifb: &str) -> Self {
        Self::new(&t.ip, &["link", "del", ifb]).tolerant()
    }
    /// `tc qdisc del dev DEV root` (tolerates a missing qdisc/device)
    pub fn root_del(t: &Tools, dev: &str) -> Self {
        Self::new(&t.tc, &["qdisc", "del", "dev", dev, "root"]).tolerant()
    }
    /// `tc qdisc del dev DEV ingress` (tolerates a missing qdisc/device)
    pub fn ingress_del(t: &Tools, dev: &str) -> Self {
        Self::new(&t.tc, &["qdisc", "del", "dev", dev, "ingress"]).tolerant()
    }

    pub fn program(&self) -> &Path {
        &self.program
    }
    pub fn args(&self) -> &[String] {
        &self.args
    }
    /// The whole command line for messages.
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Runs the command; stderr is kept in the error.
    pub async fn run(&self) -> Result<(), ShapingError> {
        let out = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| ShapingError::Spawn {
                program: self.program.display().to_string(),
                source: e,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if self.ignore_missing && is_missing_error(&stderr) {
            return Ok(());
        }
        Err(ShapingError::Failed {
            command: self.display(),
            status: out.status.to_string(),
            stderr,
        })
    }
}

/// Whether a tc/ip error means "the thing to remove is not there".
pub fn is_missing_error(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("cannot find device")
        || s.contains("no such device")
        || s.contains("handle of zero")
        || s.contains("cannot delete qdisc with handle of zero")
        || s.contains("invalid handle")
        || s.contains("no such file or directory")
        || s.contains("does not exist")
}

/// What to shape on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapingPlan {
    pub tun: String,
    pub ifb: String,
    pub upload: Option<Rate>,
    pub download: Option<Rate>,
}

impl ShapingPlan {
    /// None when neither direction has a max speed.
    pub fn new(tun: &str, ifb: &str, speed: &SpeedLimits) -> Option<Self> {
        let upload = Rate::from_min_max(speed.min_upload_bps, speed.max_upload_bps);
        let download = Rate::from_min_max(speed.min_download_bps, speed.max_download_bps);
        if upload.is_none() && download.is_none() {
            return None;
        }
        Some(Self {
            tun: tun.to_string(),
            ifb: ifb.to_string(),
            upload,
            download,
        })
    }

    /// Commands that install the limits, in order.
    pub fn apply_commands(&self, t: &Tools) -> Vec<TcCommand> {
        let mut v = Vec::new();
        if let Some(r) = self.upload {
            v.push(TcCommand::htb_root(t, &self.tun));
            v.push(TcCommand::htb_class(
                t,
                &self.tun,
                "1:",
                "1:1",
                Rate {
                    rate_bps: r.ceil_bps,
                    ceil_bps: r.ceil_bps,
                },
            ));
            v.push(TcCommand::htb_class(t, &self.tun, "1:1", "1:10", r));
        }
        if let Some(r) = self.download {
            v.push(TcCommand::ifb_add(t, &self.ifb));
            v.push(TcCommand::ifb_up(t, &self.ifb));
            v.push(TcCommand::htb_root(t, &self.ifb));
            v.push(TcCommand::htb_class(
                t,
                &self.ifb,
                "1:",
                "1:1",
                Rate {
                    rate_bps: r.ceil_bps,
                    ceil_bps: r.ceil_bps,
                },
            ));
            v.push(TcCommand::htb_class(t, &self.ifb, "1:1", "1:10", r));
            v.push(TcCommand::ingress(t, &self.tun));
            v.push(TcCommand::redirect_to_ifb(t, &self.tun, &self.ifb));
        }
        v
    }

    /// Commands that remove everything [`Self::apply_commands`] may have installed; each
    /// tolerates the object being gone already (the tun disappears with OpenVPN).
    pub fn remove_commands(&self, t: &Tools) -> Vec<TcCommand> {
        let mut v = Vec::new();
        if self.download.is_some() {
            v.push(TcCommand::ingress_del(t, &self.tun));
            v.push(TcCommand::ifb_del(t, &self.ifb));
        }
        if self.upload.is_some() {
            v.push(TcCommand::root_del(t, &self.tun));
        }
        v
    }
}

/// Runs commands in order, stopping at the first failure.
pub async fn run_all(cmds: &[TcCommand]) -> Result<(), ShapingError> {
    for c in cmds {
        c.run().await?;
    }
    Ok(())
}

/// Runs every command, returning all failures (for cleanup: one failure must not leave the
/// rest in place).
pub async fn run_each(cmds: &[TcCommand]) -> Vec<ShapingError> {
    let mut errs = Vec::new();
    for c in cmds {
        if let Err(e) = c.run().await {
            errs.push(e);
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(c: &TcCommand) -> String {
        c.display()
    }

    #[test]
    fn rate_from_min_max() {
        assert_eq!(Rate::from_min_max(Some(1), None), None);
        assert_eq!(
            Rate::from_min_max(None, Some(8)),
            Some(Rate {
                rate_bps: 8,
                ceil_bps: 8
            })
        );
        assert_eq!(
            Rate::from_min_max(Some(2), Some(8)),
            Some(Rate {
                rate_bps: 2,
                ceil_bps: 8
            })
        );
        assert_eq!(
            Rate::from_min_max(Some(9), Some(8)),
            Some(Rate {
                rate_bps: 8,
                ceil_bps: 8
            })
        );
    }

    #[test]
    fn plan_argv_exact() {
        let t = Tools::default();
        let speed = SpeedLimits {
            min_download_bps: Some(1_000_000),
            max_download_bps: Some(8_000_000),
            min_upload_bps: None,
            max_upload_bps: Some(4_000_000),
        };
        let p = ShapingPlan::new("tunac7", "ifbac7", &speed).expect("plan");
        let apply: Vec<String> = p.apply_commands(&t).iter().map(argv).collect();
        assert_eq!(
            apply,
            vec![
                "tc qdisc replace dev tunac7 root handle 1: htb default 10",
                "tc class replace dev tunac7 parent 1: classid 1:1 htb rate 4000000bit ceil 4000000bit quantum 1514",
                "tc class replace dev tunac7 parent 1:1 classid 1:10 htb rate 4000000bit ceil 4000000bit quantum 1514",
                "ip link add ifbac7 type ifb",
                "ip link set dev ifbac7 up",
                "tc qdisc replace dev ifbac7 root handle 1: htb default 10",
                "tc class replace dev ifbac7 parent 1: classid 1:1 htb rate 8000000bit ceil 8000000bit quantum 1514",
                "tc class replace dev ifbac7 parent 1:1 classid 1:10 htb rate 1000000bit ceil 8000000bit quantum 1514",
                "tc qdisc replace dev tunac7 handle ffff: ingress",
                "tc filter replace dev tunac7 parent ffff: protocol all prio 1 handle 800::1 u32 match u32 0 0 action mirred egress redirect dev ifbac7",
            ]
        );
        let remove: Vec<String> = p.remove_commands(&t).iter().map(argv).collect();
        assert_eq!(
            remove,
            vec![
                "tc qdisc del dev tunac7 ingress",
                "ip link del ifbac7",
                "tc qdisc del dev tunac7 root",
            ]
        );
        assert!(p.remove_commands(&t).iter().all(|c| c.ignore_missing));
        assert!(p.apply_commands(&t).iter().all(|c| !c.ignore_missing));
    }

    #[test]
    fn plan_display() {
        let p = ShapingPlan {
            tun: "t".into(),
            ifb: "i".into(),
            upload: Some(Rate {
                rate_bps: 1_000_000,
                ceil_bps: 4_500_000,
            }),
            download: None,
        };
        assert_eq!(
            p.to_string(),
            "upload 1.000-4.500 Mbit/s on t, download unlimited via i"
        );
    }

    #[test]
    fn only_upload_and_no_limits() {
        let t = Tools {
            tc: PathBuf::from("/sbin/tc"),
            ip: PathBuf::from("/sbin/ip"),
        };
        let speed = SpeedLimits {
            max_upload_bps: Some(500_000),
            min_download_bps: Some(1),
            ..Default::default()
        };
        let p = ShapingPlan::new("t0", "i0", &speed).expect("plan");
        assert_eq!(p.download, None);
        let apply = p.apply_commands(&t);
        assert_eq!(apply.len(), 3);
        assert_eq!(apply[0].program(), Path::new("/sbin/tc"));
        assert_eq!(
            apply[0].args(),
            ["qdisc", "replace", "dev", "t0", "root", "handle", "1:", "htb", "default", "10"]
        );
        assert_eq!(p.remove_commands(&t).len(), 1);
        assert_eq!(ShapingPlan::new("t0", "i0", &SpeedLimits::default()), None);
    }

    #[test]
    fn missing_errors_recognised() {
        for s in [
            "Cannot find device \"tunac7\"",
            "Error: Cannot delete qdisc with handle of zero.",
            "RTNETLINK answers: No such file or directory",
        ] {
            assert!(is_missing_error(s), "{s}");
        }
        assert!(!is_missing_error(
            "RTNETLINK answers: Operation not permitted"
        ));
    }

    #[tokio::test]
    async fn failing_command_keeps_stderr() {
        let c = TcCommand::new(Path::new("sh"), &["-c", "echo boom >&2; exit 3"]);
        match c.run().await {
            Err(ShapingError::Failed {
                stderr, command, ..
            }) => {
                assert_eq!(stderr, "boom");
                assert!(command.starts_with("sh -c"));
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let tolerant = TcCommand::new(
            Path::new("sh"),
            &["-c", "echo 'Cannot find device' >&2; exit 1"],
        )
        .tolerant();
        assert!(tolerant.run().await.is_ok());
    }
}
