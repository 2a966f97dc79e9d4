//! systemd-resolved: the tunnel's DNS settings go on the tun link with `resolvectl`, and
//! `resolvectl revert` takes them off. resolved forgets a link's settings by itself when the
//! link goes away, so a killed adapter leaves nothing behind once its tun is gone.
//!
//! The link gets `~.` as a routing domain and `default-route yes`, so resolved sends every
//! query that no more specific link claims through the tunnel.

use std::path::Path;

use super::push::DnsConfig;
use crate::tool::ToolCommand;

/// The `resolvectl` calls that put `cfg` on `link`.
pub fn apply_commands(resolvectl: &Path, link: &str, cfg: &DnsConfig) -> Vec<ToolCommand> {
    let servers: Vec<String> = cfg.servers.iter().map(ToString::to_string).collect();
    let mut dns = vec!["dns", link];
    dns.extend(servers.iter().map(String::as_str));
    let mut domain = vec!["domain", link, "~."];
    domain.extend(cfg.search.iter().map(String::as_str));
    vec![
        ToolCommand::new(resolvectl, &dns),
        ToolCommand::new(resolvectl, &domain),
        ToolCommand::new(resolvectl, &["default-route", link, "yes"]),
    ]
}

/// The call that takes the settings off `link` again.
pub fn revert_command(resolvectl: &Path, link: &str) -> ToolCommand {
    ToolCommand::new(resolvectl, &["revert", link])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let r = Path::new("resolvectl");
        let cfg = DnsConfig {
            servers: vec![
                "10.8.0.1".parse().expect("ip"),
                "fd00::1".parse().expect("ip"),
            ],
            search: vec!["vpn.example".into()],
        };
        let argv: Vec<Vec<String>> = apply_commands(r, "tunac7", &cfg)
            .into_iter()
            .map(|c| c.args)
            .collect();
        assert_eq!(
            argv,
            vec![
                vec!["dns", "tunac7", "10.8.0.1", "fd00::1"],
                vec!["domain", "tunac7", "~.", "vpn.example"],
                vec!["default-route", "tunac7", "yes"],
            ]
        );
        assert_eq!(revert_command(r, "tunac7").args, ["revert", "tunac7"]);
    }
}
