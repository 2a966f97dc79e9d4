use super::*;

fn parse(args: &[&str]) -> Cli {
    let mut v = vec!["adapter-client"];
    v.extend_from_slice(args);
    match Cli::try_parse_from(v) {
        Ok(c) => c,
        Err(e) => panic!("parse failed: {e}"),
    }
}

#[test]
fn file_config_denies_unknown_fields() {
    let ok: FileConfig =
        toml::from_str("core_url = \"http://x:1\"\nno_shaping = true\n").expect("ok");
    assert_eq!(ok.core_url.as_deref(), Some("http://x:1"));
    assert!(toml::from_str::<FileConfig>("core_ur = \"x\"").is_err());
}

#[test]
fn flags_override_file_and_defaults_apply() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("c.toml");
    let tokf = tmp.path().join("tok");
    std::fs::write(&tokf, "file-token\n").expect("w");
    std::fs::write(
        &cfg,
        format!(
            "core_url = \"http://10.0.0.1:7701\"\ntoken_file = \"{}\"\nclient_key = \"ck-file\"\nreport_interval_secs = 7\ntun_dev = \"tunfile\"\n",
            tokf.display()
        ),
    )
    .expect("w");
    let cli = parse(&[
        "connect",
        "--config",
        cfg.to_str().expect("utf8"),
        "--client-key",
        "ck-flag",
        "--no-shaping",
        "--backoff-initial-ms",
        "50",
    ]);
    let Command::Connect(a) = cli.command else {
        panic!("not connect")
    };
    let s = resolve_connect(&a).expect("resolve");
    assert_eq!(s.client_key.0, "ck-flag");
    assert_eq!(s.core_url, "http://10.0.0.1:7701");
    assert_eq!(s.token.expose(), "file-token");
    assert_eq!(s.report_interval, Duration::from_secs(7));
    assert_eq!(s.backoff_initial, Duration::from_millis(50));
    assert_eq!(s.tun_dev, "tunfile");
    assert!(!s.shaping);
    assert_eq!(s.bytecount_interval, 1);
    assert_eq!(s.suspend_poll, Duration::from_secs(2));
    assert_eq!(s.max_suspend_wait, None);
    assert_eq!(s.halt_grace, Duration::from_secs(5));
}

#[test]
fn suspend_and_halt_flags() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "token = \"t\"\nclient_key = \"ck\"\nsuspend_poll_secs = 9\nmax_suspend_wait_secs = 600\nhalt_grace_secs = 3\n",
    )
    .expect("w");
    let base = ["connect", "--config", cfg.to_str().expect("utf8")];
    let resolve = |extra: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        let Command::Connect(a) = parse(&v).command else {
            panic!("not connect")
        };
        resolve_connect(&a)
    };
    let s = resolve(&[]).expect("file values");
    assert_eq!(s.suspend_poll, Duration::from_secs(9));
    assert_eq!(s.max_suspend_wait, Some(Duration::from_secs(600)));
    assert_eq!(s.halt_grace, Duration::from_secs(3));
    let s = resolve(&[
        "--suspend-poll",
        "1",
        "--max-suspend-wait",
        "60",
        "--halt-grace",
        "0",
    ])
    .expect("flags win");
    assert_eq!(s.suspend_poll, Duration::from_secs(1));
    assert_eq!(s.max_suspend_wait, Some(Duration::from_secs(60)));
    assert_eq!(s.halt_grace, Duration::ZERO);
    let e = resolve(&["--suspend-poll", "0"]).expect_err("zero poll");
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[test]
fn missing_token_and_bad_dev_are_usage_errors() {
    let cli = parse(&[
        "connect",
        "--client-key",
        "ck",
        "--core-url",
        "http://127.0.0.1:1",
    ]);
    let Command::Connect(mut a) = cli.command else {
        panic!("not connect")
    };
    a.core.token = None;
    a.core.token_file = None;
    a.core.config = None;
    let e = resolve_connect(&a).expect_err("no token");
    assert!(matches!(e, CliError::MissingToken), "{e}");
    assert_eq!(e.exit_code(), 2);
    a.core.token = Some(service_api::Secret("t".into()));
    a.tun_dev = Some("a-very-long-device-name".into());
    let e = resolve_connect(&a).expect_err("bad dev");
    assert_eq!(e.exit_code(), 2, "{e}");
}

/// Issue 11, item 11: the token never shows in a `Debug` of the settings, and the config
/// file's errors name the place and the kind of problem, never a value.
#[test]
fn no_secret_in_debug_or_config_errors() {
    const TOKEN: &str = "tok-SECRET-0815";
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, format!("token = \"{TOKEN}\"\nclient_key = \"ck\"\n")).expect("w");
    let cli = parse(&[
        "connect",
        "--config",
        cfg.to_str().expect("utf8"),
        "--token",
        TOKEN,
    ]);
    let Command::Connect(a) = &cli.command else {
        panic!("not connect")
    };
    let s = resolve_connect(a).expect("resolve");
    assert_eq!(s.token.expose(), TOKEN);
    let f = load_file_config(Some(&cfg)).expect("file");
    let shown = format!("{cli:?} {s:?} {f:?}");
    assert!(!shown.contains("SECRET"), "{shown}");

    for (text, want) in [
        (format!("token = \"{TOKEN}\n"), "line 1, column"),
        (format!("{TOKEN}\n"), "line 1"),
        (format!("token = {TOKEN}\n"), "line 1"),
        (format!("[{TOKEN}\n"), "line 1"),
        (format!("{TOKEN} = 1\n{TOKEN} = 2\n"), "duplicate key in"),
        (format!("token = \"a\\q{TOKEN}\"\n"), "invalid escape"),
        (format!("token = 1{TOKEN}\n"), "line 1"),
        (
            format!("client_key = \"ck\"\ntoken = [\"{TOKEN}\"]\n"),
            "token: expected a string, found",
        ),
        (
            format!("token = {{ x = \"{TOKEN}\" }}\n"),
            "token: expected a string, found",
        ),
        (format!("{TOKEN} = \"x\"\n"), "unknown field"),
        (
            format!("report_interval_secs = \"{TOKEN}\"\n"),
            "report_interval_secs: expected",
        ),
    ] {
        let e = parse_file_config(&text).expect_err(&text);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("SECRET"), "{text:?}: {shown}");
        assert!(shown.contains(want), "{text:?}: {shown}");
    }
    let e = parse_file_config("a = 1\nb = \"x\ny = 2\n").expect_err("unterminated");
    assert!(matches!(e, ConfigFileError::Syntax { line: 2, .. }), "{e}");
}
