//! What a run decides for each environment and command line (table-driven).

use std::collections::HashMap;

use super::*;

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

fn plan_with(args: &[&str], env: &[(&str, &str)]) -> Plan {
    let map: HashMap<String, OsString> = env
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    plan(&os(args), &|n: &str| map.get(n).cloned())
}

fn handed(p: Plan) -> (Request, PathBuf) {
    match p {
        Plan::HandOff { request, socket } => (request, socket),
        Plan::Fallback { why } => panic!("fell back: {why}"),
    }
}

fn fell_back(p: &Plan, frag: &str) -> bool {
    matches!(p, Plan::Fallback { why } if why.contains(frag))
}

const FULL: &[&str] = &["--config", "/etc/a.toml", "hook"];

#[test]
fn what_is_handed_off_and_what_falls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "ck-1\nsecret\n").expect("creds");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&creds, &link).expect("symlink");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; wire::MAX_CREDENTIALS + 1]).expect("big");
    let (creds, link, big) = (
        creds.display().to_string(),
        link.display().to_string(),
        big.display().to_string(),
    );
    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [FULL, extra].concat()
    }
    let auth = [
        ("script_type", "user-pass-verify"),
        ("username", "ck-1"),
        ("untrusted_ip", "192.0.2.7"),
        ("untrusted_port", "50123"),
        ("auth_control_file", "/tmp/acf"),
        ("auth_failed_reason_file", "/tmp/arf"),
    ];
    let auth_env = |extra: &[(&'static str, &'static str)]| [auth.as_slice(), extra].concat();
    let long = "x".repeat(wire::MAX_VALUE + 1);

    // Falls back.
    let cases: Vec<(&str, Plan, &str)> = vec![
        ("no script_type", plan_with(FULL, &[]), "script_type"),
        (
            "other script",
            plan_with(FULL, &[("script_type", "up")]),
            "script_type",
        ),
        (
            "no auth_control_file",
            plan_with(&with(&[&creds]), &auth[..4]),
            "auth_control_file",
        ),
        (
            "--sync",
            plan_with(&with(&["--sync", &creds]), &auth),
            "--sync",
        ),
        (
            "ADAPTER_SERVER_SYNC",
            plan_with(&with(&[&creds]), &auth_env(&[("ADAPTER_SERVER_SYNC", "1")])),
            "--sync",
        ),
        (
            "credentials file is a link",
            plan_with(&with(&[&link]), &auth),
            "credentials file",
        ),
        (
            "credentials file too large",
            plan_with(&with(&[&big]), &auth),
            "credentials file",
        ),
        (
            "credentials file absent",
            plan_with(&with(&["/nonexistent/creds"]), &auth),
            "credentials file",
        ),
        (
            "no password and no file",
            plan_with(&with(&["--state-dir", "/x", "--sync-not"]), &auth),
            "no password",
        ),
        (
            "value beyond the wire bound",
            plan_with(
                FULL,
                &[("script_type", "client-connect"), ("common_name", &long)],
            ),
            "longer than",
        ),
    ];
    for (what, p, frag) in &cases {
        assert!(fell_back(p, frag), "{what}: {p:?}");
    }

    // Handed off.
    let (r, socket) = handed(plan_with(&with(&[&creds]), &auth));
    assert_eq!(r.kind, Kind::Auth);
    assert_eq!(r.credentials.as_deref(), Some(b"ck-1\nsecret\n".as_slice()));
    assert_eq!(r.var("auth_control_file"), Some(b"/tmp/acf".as_slice()));
    assert_eq!(socket, PathBuf::from(DEFAULT_SOCKET));

    let (r, _) = handed(plan_with(
        FULL,
        &auth_env(&[("password", "pw"), ("ADAPTER_SERVER_SYNC", "false")]),
    ));
    assert_eq!(r.var("password"), Some(b"pw".as_slice()));
    assert_eq!(r.credentials, None);

    let (r, _) = handed(plan_with(
        &with(&["/tmp/dynamic.conf"]),
        &[
            ("script_type", "client-connect"),
            ("username", "ck-1"),
            ("password", "leftover"),
            ("time_unix", "1700000000"),
        ],
    ));
    assert_eq!(r.kind, Kind::ClientConnect);
    assert_eq!(r.var("password"), None, "a password outside auth");
    assert_eq!(r.credentials, None);

    let (r, _) = handed(plan_with(
        FULL,
        &[
            ("script_type", "client-disconnect"),
            ("bytes_received", "1"),
            ("bytes_sent", "2"),
            ("PATH", "/bin"),
        ],
    ));
    assert_eq!(r.kind, Kind::ClientDisconnect);
    assert_eq!(r.env.len(), 2, "{r:?}");
}

#[test]
fn socket_path_precedence() {
    let env_socket = |n: &str| (n == SOCKET_ENV).then(|| OsString::from("/env.sock"));
    let none = |_: &str| None;
    let cases: Vec<(Vec<&str>, bool, &str)> = vec![
        (vec!["hook"], false, DEFAULT_SOCKET),
        (vec!["hook"], true, "/env.sock"),
        (vec!["--handoff-socket", "/a.sock", "hook"], true, "/a.sock"),
        (vec!["--handoff-socket=/b.sock", "hook"], false, "/b.sock"),
        (
            vec![
                "--handoff-socket=/b.sock",
                "hook",
                "--handoff-socket",
                "/c.sock",
            ],
            false,
            "/c.sock",
        ),
    ];
    for (args, env, want) in cases {
        let got = if env {
            socket_path(&os(&args), &env_socket)
        } else {
            socket_path(&os(&args), &none)
        };
        assert_eq!(got, PathBuf::from(want), "{args:?}");
    }
}
