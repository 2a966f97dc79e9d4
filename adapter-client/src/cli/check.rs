//! `adapter-client check-config [FILE]`: every problem of a config file at once — syntax,
//! unknown keys, types, then the values (core URL, token file, client key, device names,
//! programs, intervals, lockdown addresses) — each with the line and the key, without
//! starting anything.

use std::path::Path;

use config_check::{Checker, Report};

use super::config::FileConfig;
use super::MAX_FILE;

/// Keys whose values a report never shows.
const SECRET_KEYS: &[&str] = &["token"];

/// Checks the config file at `path`.
pub fn check(path: &Path) -> Report {
    let mut c = Checker::<FileConfig>::read(path, MAX_FILE, SECRET_KEYS);
    let Some(f) = c.config().cloned() else {
        return c.finish();
    };
    if let Some(u) = &f.core_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            c.problem("core_url", "must start with http:// or https://");
        }
    }
    if let Some(t) = &f.token {
        if t.expose().trim().is_empty() {
            c.problem("token", "is empty");
        }
        c.not_both(("token", true), ("token_file", f.token_file.is_some()));
    }
    if let Some(p) = &f.token_file {
        let read = super::config::read_small("token file", p);
        c.first_line_file("token_file", p, read, str::trim);
    }
    if let Some(k) = &f.client_key {
        if k.is_empty() || k.len() > service_api::MAX_FIELD_LEN || k.chars().any(char::is_control) {
            c.problem(
                "client_key",
                "empty, too long or contains control characters",
            );
        }
    }
    for (key, dev) in [("tun_dev", &f.tun_dev), ("ifb_dev", &f.ifb_dev)] {
        c.check(key, dev.as_deref(), crate::render::check_dev_name);
    }
    for (key, prog) in [
        ("openvpn", &f.openvpn),
        ("tc", &f.tc),
        ("ip", &f.ip),
        ("nft", &f.nft),
    ] {
        // A bare name is looked up in PATH when used; a path must be there now.
        if let Some(p) = prog.as_ref().filter(|p| p.components().count() > 1) {
            if !p.is_file() {
                c.problem(key, format!("{} is not a file", p.display()));
            }
        }
    }
    for (key, v) in [
        ("report_interval_secs", f.report_interval_secs),
        (
            "bytecount_interval_secs",
            f.bytecount_interval_secs.map(u64::from),
        ),
        ("suspend_poll_secs", f.suspend_poll_secs),
    ] {
        c.at_least_one(key, v, "seconds");
    }
    if f.verb.is_some_and(|v| v > 11) {
        c.problem("verb", "OpenVPN's verbosity is 0..=11");
    }
    let allow = f.lockdown_allow.clone().unwrap_or_default();
    for v in allow.iter().filter(|v| !v.trim().is_empty()) {
        c.check("lockdown_allow", Some(v.as_str()), super::net::parse_allow);
    }
    if !allow.is_empty() && !f.lockdown.unwrap_or(false) {
        c.problem("lockdown_allow", "needs lockdown = true");
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_at_once_with_key_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("c.toml");
        std::fs::write(
            &conf,
            "token = 12\nclientkey = \"x\"\nverb = \"loud\"\ndns = \"maybe\"\n",
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
                (Some(1), "token"),
                (Some(2), "clientkey"),
                (Some(3), "verb"),
                (Some(4), "dns")
            ],
            "{r}"
        );

        std::fs::write(
            &conf,
            "core_url = \"127.0.0.1:7701\"\ntoken_file = \"/nonexistent/tok\"\n\
             tun_dev = \"a/b\"\nopenvpn = \"/nonexistent/openvpn\"\nreport_interval_secs = 0\n\
             verb = 20\nlockdown_allow = [\"host.example:1\"]\n",
        )
        .expect("write");
        let r = check(&conf);
        let keys: Vec<_> = r.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "core_url",
                "token_file",
                "tun_dev",
                "openvpn",
                "report_interval_secs",
                "verb",
                "lockdown_allow",
                "lockdown_allow"
            ],
            "{r}"
        );
        assert!(r.to_string().contains("c.toml:6: key `verb`"), "{r}");

        std::fs::write(
            &conf,
            "core_url = \"http://127.0.0.1:7701\"\ntoken = \"t\"\nclient_key = \"c-1\"\n\
             lockdown = true\nlockdown_allow = [\"10.0.0.1:7710\"]\n",
        )
        .expect("write");
        assert!(check(&conf).is_ok());
    }
}
