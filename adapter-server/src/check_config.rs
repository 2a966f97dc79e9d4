//! `adapter-server check-config [FILE]`: every problem of a config file at once — syntax,
//! unknown keys, types, then the values: URLs, the files it names (token, management
//! password, OpenVPN server config), device names, rates, users — each with the line and the
//! key, without starting anything.

use std::path::Path;

use config_check::{Checker, Report};
use service_api::Secret;

use crate::settings::{self, FileConfig, DEFAULT_CORE_URL, MAX_CONFIG_FILE};

/// Keys whose values a report never shows.
const SECRET_KEYS: &[&str] = &["token"];

/// Checks the config file at `path`.
pub fn check(path: &Path) -> Report {
    let mut c = Checker::<FileConfig>::read(path, MAX_CONFIG_FILE, SECRET_KEYS);
    let Some(f) = c.config().cloned() else {
        return c.finish();
    };
    c.check("core_url", f.core_url.as_deref(), |url| {
        service_api::Client::new(url, Secret(String::new()), settings::DEFAULT_CORE_TIMEOUT)
            .map_err(|e| format!("{e} (e.g. {DEFAULT_CORE_URL})"))
    });
    if let Some(t) = &f.token {
        if settings::parse_token(t.expose().as_bytes()).is_none() {
            c.problem(
                "token",
                "must be one line of printable ASCII (value not shown)",
            );
        }
        c.not_both(("token", true), ("token_file", f.token_file.is_some()));
    }
    c.check(
        "token_file",
        f.token_file.as_deref(),
        settings::read_token_file,
    );
    c.at_least_one("core_timeout_ms", f.core_timeout_ms, "");
    c.at_least_one(
        "bytecount_interval",
        f.bytecount_interval.map(u64::from),
        "seconds",
    );
    c.check(
        "management",
        f.management.as_deref(),
        str::parse::<crate::monitor::MgmtAddr>,
    );
    if let Some(p) = &f.management_password_file {
        let read = settings::read_bounded(p, 4096)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("cannot read {}: {e}", p.display()));
        // The monitor sends the first line as it is (spaces are part of the password).
        c.first_line_file("management_password_file", p, read, |l| l);
    }
    let mut server_user = None;
    if let Some(p) = &f.server_config {
        match crate::read_server_config(p) {
            Ok(sc) => {
                server_user = sc.user.clone();
                if f.tun.is_none() && !f.no_shaping.unwrap_or(false) {
                    if let Err(e) = crate::push_config::tun_device(&sc) {
                        c.problem("server_config", e);
                    }
                }
            }
            Err(e) => c.problem("server_config", e),
        }
    }
    if f.endpoint.as_deref().is_some_and(|e| e.trim().is_empty()) {
        c.problem("endpoint", "must not be empty (HOST or HOST:PORT)");
    }
    for (key, dev) in [("tun", &f.tun), ("ifb", &f.ifb)] {
        c.check(key, dev.as_deref(), tc_shaper::check_dev);
    }
    c.check(
        "link_capacity",
        f.link_capacity.as_deref(),
        tc_shaper::parse_rate,
    );
    if let Some(n) = f.max_clients {
        if n == 0 || n > tc_shaper::MAX_SLOTS {
            c.problem(
                "max_clients",
                format!("must be 1..={}", tc_shaper::MAX_SLOTS),
            );
        }
    }
    for (key, p) in [
        ("state_dir", &f.state_dir),
        ("handoff_socket", &f.handoff_socket),
    ] {
        if p.as_ref().is_some_and(|p| !p.is_absolute()) {
            c.problem(key, "must be an absolute path");
        }
    }
    if let Some(u) = f.handoff_user.as_ref().or(server_user.as_ref()) {
        if let Err(e) = crate::resolve_uid(u) {
            let key = if f.handoff_user.is_some() {
                "handoff_user"
            } else {
                "server_config"
            };
            c.problem(key, e);
        }
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_at_once_with_key_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("config.toml");
        std::fs::write(
            &conf,
            "core_url = 7700\nbogus = true\nmax_clients = \"many\"\ntoken = \"s3cret-tok\"\n",
        )
        .expect("write");
        let r = check(&conf);
        let keys: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.line, p.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (Some(1), "core_url"),
                (Some(2), "bogus"),
                (Some(3), "max_clients")
            ],
            "{r}"
        );
        assert!(!r.to_string().contains("s3cret"), "{r}");

        let token = dir.path().join("token");
        std::fs::write(&token, "").expect("write");
        std::fs::write(
            &conf,
            format!(
                "core_url = \"ftp://core\"\ntoken_file = \"{}\"\nmanagement_password_file = \"/nonexistent/pw\"\n\
                 link_capacity = \"fast\"\ntun = \"bad dev name\"\nmax_clients = 0\n\
                 handoff_user = \"no-such-user-x\"\nhandoff_socket = \"relative.sock\"\n\
                 server_config = \"/nonexistent/server.conf\"\nbytecount_interval = 0\n",
                token.display()
            ),
        )
        .expect("write");
        let r = check(&conf);
        let keys: Vec<_> = r.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "core_url",
                "token_file",
                "management_password_file",
                "link_capacity",
                "tun",
                "max_clients",
                "handoff_user",
                "handoff_socket",
                "server_config",
                "bytecount_interval"
            ],
            "{r}"
        );
        assert!(
            r.to_string().contains("config.toml:4: key `link_capacity`"),
            "{r}"
        );
        assert_eq!(r.exit_code(), 1);

        std::fs::write(&token, "tok\n").expect("write");
        std::fs::write(
            &conf,
            format!(
                "core_url = \"http://127.0.0.1:7700\"\ntoken_file = \"{}\"\n\
                 management = \"/run/openvpn-server/mgmt.sock\"\nlink_capacity = \"100mbit\"\n\
                 handoff_socket = \"/run/adapter-server/hook.sock\"\nhandoff_user = \"root\"\n",
                token.display()
            ),
        )
        .expect("write");
        let r = check(&conf);
        assert!(r.is_ok(), "{r}");
    }
}
