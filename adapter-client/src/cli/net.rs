//! The flags of the DNS and kill-switch settings (`--dns`, `--lockdown`,
//! `--lockdown-allow`, `--nft`) and how they combine with the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::config::{CliError, FileConfig};
use crate::dns::DnsMode;
use crate::netguard::NetSettings;

#[derive(Debug, Clone, Default, Args)]
pub struct NetArgs {
    /// How DNS servers pushed by the VPN server (`dhcp-option DNS`, `dns server`) are
    /// applied while connected: auto (systemd-resolved when /etc/resolv.conf is its stub,
    /// else /etc/resolv.conf, restored afterwards), resolved, resolv-conf, off
    /// [default: auto].
    #[arg(long, env = "ADAPTER_CLIENT_DNS", value_enum)]
    pub dns: Option<DnsMode>,
    /// Kill switch: while the adapter runs (connected, reconnecting or suspended) traffic
    /// leaves only through the tunnel or to the VPN server's address and port (nftables
    /// table `inet adapter_client_<pid>`, removed on exit); DNS only through the tunnel.
    #[arg(long, env = "ADAPTER_CLIENT_LOCKDOWN")]
    pub lockdown: bool,
    /// With --lockdown: also allow TCP to this IP:PORT outside the tunnel (e.g. the agent's
    /// market API that the client's core pays over); repeat or separate with commas.
    #[arg(long, env = "ADAPTER_CLIENT_LOCKDOWN_ALLOW", value_delimiter = ',')]
    pub lockdown_allow: Vec<String>,
    /// The nft program (for --lockdown) [default: nft].
    #[arg(long, env = "ADAPTER_CLIENT_NFT")]
    pub nft: Option<PathBuf>,
}

/// An `IP:PORT` (`[IPv6]:PORT`) of `--lockdown-allow`: addresses only, port 1-65535.
pub fn parse_allow(v: &str) -> Result<SocketAddr, CliError> {
    let shown: String = v.chars().take(64).collect();
    match v.trim().parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(CliError::Invalid(format!(
            "lockdown-allow {shown:?}: expected IP:PORT or [IPv6]:PORT with a port 1-65535"
        ))),
    }
}

/// The net settings from flags/env, then the file.
pub fn resolve_net(a: &NetArgs, f: &FileConfig) -> Result<NetSettings, CliError> {
    let mut n = NetSettings::default();
    if let Some(m) = a.dns.or(f.dns) {
        n.dns = m;
    }
    n.lockdown = a.lockdown || f.lockdown.unwrap_or(false);
    let allow: Vec<String> = if a.lockdown_allow.is_empty() {
        f.lockdown_allow.clone().unwrap_or_default()
    } else {
        a.lockdown_allow.clone()
    };
    n.lockdown_allow = allow
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_allow(v))
        .collect::<Result<_, _>>()?;
    if !n.lockdown_allow.is_empty() && !n.lockdown {
        return Err(CliError::Invalid(
            "--lockdown-allow needs --lockdown".into(),
        ));
    }
    if let Some(p) = a.nft.clone().or(f.nft.clone()) {
        n.nft = p;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries() {
        assert_eq!(
            parse_allow("10.99.1.1:7710").expect("v4"),
            "10.99.1.1:7710".parse::<SocketAddr>().expect("addr")
        );
        assert!(parse_allow("[fd00::1]:443").is_ok());
        for bad in [
            "agent.example:7710",
            "10.99.1.1",
            "10.99.1.1:0",
            "10.99.1.1:70000",
            "",
        ] {
            assert!(parse_allow(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_then_file() {
        let f = FileConfig {
            dns: Some(DnsMode::Off),
            lockdown: Some(true),
            lockdown_allow: Some(vec!["10.0.0.1:1".into()]),
            ..FileConfig::default()
        };
        let n = resolve_net(&NetArgs::default(), &f).expect("file");
        assert_eq!(n.dns, DnsMode::Off);
        assert!(n.lockdown);
        assert_eq!(n.lockdown_allow.len(), 1);
        let a = NetArgs {
            dns: Some(DnsMode::ResolvConf),
            lockdown_allow: vec!["10.0.0.2:2".into(), "10.0.0.3:3".into()],
            ..NetArgs::default()
        };
        let n = resolve_net(&a, &f).expect("flags");
        assert_eq!(n.dns, DnsMode::ResolvConf);
        assert_eq!(n.lockdown_allow.len(), 2);
        let n = resolve_net(&NetArgs::default(), &FileConfig::default()).expect("defaults");
        assert_eq!(n, NetSettings::default());
        let only_allow = NetArgs {
            lockdown_allow: vec!["10.0.0.2:2".into()],
            ..NetArgs::default()
        };
        assert!(resolve_net(&only_allow, &FileConfig::default()).is_err());
    }
}
