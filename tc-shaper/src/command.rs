//! [`TcCommand`]: one `tc` or `ip` invocation, built without running anything.
//!
//! The constructors here are the building blocks both plans use (qdiscs, HTB classes, the
//! IFB device and the ingress redirect); the `u32` filters are in [`crate::filter`].
//! Running is in [`crate::run`].

use std::path::{Path, PathBuf};

use crate::rate::Rate;

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

/// How a qdisc, class or filter is installed: `add` fails when it exists (the server
/// removes its whole setup first), `replace` is idempotent (the client re-applies over
/// whatever an earlier connection left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Replace => "replace",
        }
    }
}

/// One `tc` or `ip` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcCommand {
    program: PathBuf,
    args: Vec<String>,
    /// Failure is expected when the object is already gone (removal commands).
    ignore_missing: bool,
}

impl std::fmt::Display for TcCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program.display())?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

fn bits(bps: u64) -> String {
    format!("{bps}bit")
}

impl TcCommand {
    /// Any command (also used by tests to run something that is not `tc`).
    pub fn new(program: &Path, args: &[&str]) -> Self {
        Self {
            program: program.to_path_buf(),
            args: args.iter().map(|s| (*s).to_string()).collect(),
            ignore_missing: false,
        }
    }

    /// Marks the command as a removal whose object may already be gone.
    pub fn tolerant(mut self) -> Self {
        self.ignore_missing = true;
        self
    }

    /// Runs the command in a network namespace (`ip -n NS ...`, `tc -n NS ...`).
    pub fn in_netns(mut self, netns: Option<&str>) -> Self {
        if let Some(ns) = netns {
            self.args.splice(0..0, ["-n".to_string(), ns.to_string()]);
        }
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }
    pub fn args(&self) -> &[String] {
        &self.args
    }
    /// True for removals that tolerate a missing object.
    pub fn ignores_missing(&self) -> bool {
        self.ignore_missing
    }
    /// The whole command line for messages.
    pub fn display(&self) -> String {
        self.to_string()
    }

    pub(crate) fn tc(t: &Tools, args: &[&str]) -> Self {
        Self::new(&t.tc, args)
    }
    pub(crate) fn ip(t: &Tools, args: &[&str]) -> Self {
        Self::new(&t.ip, args)
    }

    /// `ip link add name IFB type ifb`
    pub fn ifb_add(t: &Tools, ifb: &str) -> Self {
        Self::ip(t, &["link", "add", "name", ifb, "type", "ifb"])
    }
    /// `ip link set dev IFB up`
    pub fn ifb_up(t: &Tools, ifb: &str) -> Self {
        Self::ip(t, &["link", "set", "dev", ifb, "up"])
    }
    /// `ip link del dev IFB` (tolerates a missing device)
    pub fn ifb_del(t: &Tools, ifb: &str) -> Self {
        Self::ip(t, &["link", "del", "dev", ifb]).tolerant()
    }
    /// `tc qdisc del dev DEV root` (tolerates a missing qdisc/device)
    pub fn root_del(t: &Tools, dev: &str) -> Self {
        Self::tc(t, &["qdisc", "del", "dev", dev, "root"]).tolerant()
    }
    /// `tc qdisc del dev DEV ingress` (tolerates a missing qdisc/device)
    pub fn ingress_del(t: &Tools, dev: &str) -> Self {
        Self::tc(t, &["qdisc", "del", "dev", dev, "ingress"]).tolerant()
    }
    /// `tc qdisc add|replace dev DEV handle ffff: ingress`
    pub fn ingress(t: &Tools, op: Op, dev: &str) -> Self {
        Self::tc(
            t,
            &["qdisc", op.word(), "dev", dev, "handle", "ffff:", "ingress"],
        )
    }
    /// Match-all redirect of the ingress of DEV to the IFB:
    /// `tc filter add|replace dev DEV parent ffff: protocol all prio 1 [handle 800::1] u32
    /// match u32 0 0 action mirred egress redirect dev IFB`. `replace` names the filter's
    /// handle so that a second replace finds the same filter.
    pub fn redirect_to_ifb(t: &Tools, op: Op, dev: &str, ifb: &str) -> Self {
        let mut a = vec![
            "filter",
            op.word(),
            "dev",
            dev,
            "parent",
            "ffff:",
            "protocol",
            "all",
            "prio",
            "1",
        ];
        if op == Op::Replace {
            a.extend(["handle", "800::1"]);
        }
        a.extend([
            "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb,
        ]);
        Self::tc(t, &a)
    }
    /// `tc qdisc add|replace dev DEV root handle 1: htb default MINOR` (`MINOR` in hex, as
    /// tc reads it; 0 = unclassified traffic is not shaped).
    pub fn htb_root(t: &Tools, op: Op, dev: &str, default_minor: u32) -> Self {
        let d = format!("{default_minor:x}");
        Self::tc(
            t,
            &[
                "qdisc",
                op.word(),
                "dev",
                dev,
                "root",
                "handle",
                "1:",
                "htb",
                "default",
                &d,
            ],
        )
    }
    /// `tc class add|replace dev DEV parent PARENT classid ID htb rate Rbit ceil Cbit
    /// [quantum Q]`. Leaf classes get an explicit quantum: the default rate/r2q is out of
    /// range at high rates and makes the kernel complain.
    pub fn htb_class(
        t: &Tools,
        op: Op,
        dev: &str,
        parent: &str,
        classid: &str,
        r: Rate,
        quantum: Option<u32>,
    ) -> Self {
        let (rate, ceil) = (bits(r.rate_bps), bits(r.ceil_bps));
        let mut a = vec![
            "class",
            op.word(),
            "dev",
            dev,
            "parent",
            parent,
            "classid",
            classid,
            "htb",
            "rate",
            &rate,
            "ceil",
            &ceil,
        ];
        let q = quantum.map(|q| q.to_string());
        if let Some(q) = &q {
            a.extend(["quantum", q.as_str()]);
        }
        Self::tc(t, &a)
    }
    /// `tc class del dev DEV classid ID`
    pub fn htb_class_del(t: &Tools, dev: &str, classid: &str) -> Self {
        Self::tc(t, &["class", "del", "dev", dev, "classid", classid])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every building block's argv, and the namespace prefix.
    #[test]
    fn building_blocks_argv_exact() {
        let t = Tools::default();
        let r = Rate {
            rate_bps: 1_000,
            ceil_bps: 8_000,
        };
        let table: Vec<(TcCommand, &str, bool)> = vec![
            (TcCommand::ifb_add(&t, "ifb0"), "ip link add name ifb0 type ifb", false),
            (TcCommand::ifb_up(&t, "ifb0"), "ip link set dev ifb0 up", false),
            (TcCommand::ifb_del(&t, "ifb0"), "ip link del dev ifb0", true),
            (TcCommand::root_del(&t, "tun0"), "tc qdisc del dev tun0 root", true),
            (TcCommand::ingress_del(&t, "tun0"), "tc qdisc del dev tun0 ingress", true),
            (
                TcCommand::ingress(&t, Op::Add, "tun0"),
                "tc qdisc add dev tun0 handle ffff: ingress",
                false,
            ),
            (
                TcCommand::ingress(&t, Op::Replace, "tun0"),
                "tc qdisc replace dev tun0 handle ffff: ingress",
                false,
            ),
            (
                TcCommand::redirect_to_ifb(&t, Op::Add, "tun0", "ifb0"),
                "tc filter add dev tun0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ifb0",
                false,
            ),
            (
                TcCommand::redirect_to_ifb(&t, Op::Replace, "tun0", "ifb0"),
                "tc filter replace dev tun0 parent ffff: protocol all prio 1 handle 800::1 u32 match u32 0 0 action mirred egress redirect dev ifb0",
                false,
            ),
            (
                TcCommand::htb_root(&t, Op::Add, "tun0", 0),
                "tc qdisc add dev tun0 root handle 1: htb default 0",
                false,
            ),
            (
                TcCommand::htb_root(&t, Op::Replace, "tun0", 0x10),
                "tc qdisc replace dev tun0 root handle 1: htb default 10",
                false,
            ),
            (
                TcCommand::htb_class(&t, Op::Add, "tun0", "1:", "1:1", r, None),
                "tc class add dev tun0 parent 1: classid 1:1 htb rate 1000bit ceil 8000bit",
                false,
            ),
            (
                TcCommand::htb_class(&t, Op::Replace, "tun0", "1:1", "1:10", r, Some(1514)),
                "tc class replace dev tun0 parent 1:1 classid 1:10 htb rate 1000bit ceil 8000bit quantum 1514",
                false,
            ),
            (
                TcCommand::htb_class_del(&t, "tun0", "1:f"),
                "tc class del dev tun0 classid 1:f",
                false,
            ),
        ];
        for (c, want, tolerant) in table {
            assert_eq!(c.display(), want);
            assert_eq!(c.ignores_missing(), tolerant, "{want}");
        }
        let c = TcCommand::ifb_add(&t, "ifb0").in_netns(Some("ns1"));
        assert_eq!(c.to_string(), "ip -n ns1 link add name ifb0 type ifb");
        assert_eq!(c.program(), Path::new("ip"));
        assert_eq!(
            c.args(),
            ["-n", "ns1", "link", "add", "name", "ifb0", "type", "ifb"]
        );
        assert_eq!(
            TcCommand::ifb_add(&t, "ifb0").in_netns(None).to_string(),
            "ip link add name ifb0 type ifb"
        );
        let custom = Tools {
            tc: PathBuf::from("/sbin/tc"),
            ip: PathBuf::from("/sbin/ip"),
        };
        assert_eq!(
            TcCommand::root_del(&custom, "t0").program(),
            Path::new("/sbin/tc")
        );
        assert_eq!(
            TcCommand::ifb_up(&custom, "i0").program(),
            Path::new("/sbin/ip")
        );
    }
}
