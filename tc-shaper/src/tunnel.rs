//! The client's plan: speed limits on the client's own tun device (all its traffic).
//!
//! - upload (client → server) = HTB on the tun egress;
//! - download (server → client) = an `ingress` qdisc on the tun with a `u32` match-all
//!   filter whose `mirred` action redirects to an IFB device, and HTB on that IFB's egress.
//!
//! Each direction has a parent class 1:1 with rate = ceil = max speed and a leaf 1:10 with
//! rate = min speed (or max when no min is given) and ceil = max speed: a class directly
//! under the root cannot borrow, so the leaf needs a parent to reach its ceil. Everything
//! goes to the leaf (`default 10`, match-all redirect), IPv4 and IPv6 alike. A direction
//! without a max speed is not shaped (a minimum alone limits nothing on a single tunnel).
//! Commands use `replace` so that applying over an earlier connection's leftovers works.

use service_api::SpeedLimits;

use crate::command::{Op, TcCommand, Tools};
use crate::rate::Rate;

/// The leaf class every packet goes to.
const LEAF: u32 = 0x10;

/// What to shape on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapingPlan {
    pub tun: String,
    pub ifb: String,
    pub upload: Option<Rate>,
    pub download: Option<Rate>,
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

/// Root, parent class and leaf of one HTB tree.
fn tree(t: &Tools, dev: &str, r: Rate) -> [TcCommand; 3] {
    let leaf = format!("1:{LEAF:x}");
    [
        TcCommand::htb_root(t, Op::Replace, dev, LEAF),
        TcCommand::htb_class(
            t,
            Op::Replace,
            dev,
            "1:",
            "1:1",
            Rate::flat(r.ceil_bps),
            Some(1514),
        ),
        TcCommand::htb_class(t, Op::Replace, dev, "1:1", &leaf, r, Some(1514)),
    ]
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
            v.extend(tree(t, &self.tun, r));
        }
        if let Some(r) = self.download {
            v.push(TcCommand::ifb_add(t, &self.ifb));
            v.push(TcCommand::ifb_up(t, &self.ifb));
            v.extend(tree(t, &self.ifb, r));
            v.push(TcCommand::ingress(t, Op::Replace, &self.tun));
            v.push(TcCommand::redirect_to_ifb(
                t,
                Op::Replace,
                &self.tun,
                &self.ifb,
            ));
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn argv(c: &TcCommand) -> String {
        c.display()
    }

    /// Moved from adapter-client's shaping. The IFB commands now use the `name` / `dev`
    /// keywords (the same commands to `ip`), as the server's always did.
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
                "ip link add name ifbac7 type ifb",
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
                "ip link del dev ifbac7",
                "tc qdisc del dev tunac7 root",
            ]
        );
        assert!(p.remove_commands(&t).iter().all(|c| c.ignores_missing()));
        assert!(p.apply_commands(&t).iter().all(|c| !c.ignores_missing()));
    }

    /// Moved from adapter-client's shaping.
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

    /// Moved from adapter-client's shaping.
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
}
